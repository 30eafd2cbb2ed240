"""The backbone registry: one entry per encoder the seed names, with everything any part of the
project needs to know about it.

``BACKBONES`` (a :class:`~stflib.registry.Registry` of ``BackboneSpec``) is the only list of backbone
names: the run parameter ``backbone``, the feature cache, the grid's backbones axis and the simulator
read it. A spec holds the timm architecture that reproduces the published network, the feature width
(typed once: the real network's and its simulated stand-in's), the input normalisation, where the
published checkpoint lives, and ``stand_in``: the simulator's parameters for the stand-in features
of that encoder (:class:`StandIn`).

Adding a backbone is one ``BACKBONES.register`` here (and, if its checkpoint uses a new key layout, a
converter pair in ``keys.py``); ``tests/test_backbones.py`` checks every entry. This module imports
no torch: the networks themselves are built in :mod:`stflib.backbones.architectures`.
"""
from __future__ import annotations

from dataclasses import dataclass

from stflib.registry import Registry

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HIBOU_MEAN = (0.7068, 0.5755, 0.722)
HIBOU_STD = (0.195, 0.2316, 0.1816)


class WeightsError(RuntimeError):
    """Weights missing, unreadable, or not matching the published layout of a backbone."""


@dataclass(frozen=True)
class StandIn:
    """The simulator's stand-in features for one encoder (``stflib.sim.standin``): how much of a spot's
    latent morphology they carry. Their width is the spec's ``feature_dim``.

    Information levels are calibrated on the default world (``python -m stflib truth``, with HEST-Bench's
    own ridge protocol): each stand-in's own-feature ridge inside its encoder's published bowel range
    (``stflib.sim.truth.HEST_BENCH_BOWEL``: HEST-Bench's ridge leaderboard 08.30.24, READ to COAD) and in
    their order there (resnet50 ~ ctranspath < phikon < gigapath; Hibou has no published figure: hibou-b
    next to phikon, hibou-l next to gigapath), with [own, mean of 6 nearest] +10-20 % relative for every
    foundation-model stand-in (STFlow). Set on those anchors alone, never on a model's result.
    """

    noise: float  # std of the Gaussian noise on the standardised latent morphology (information level)
    stain_sensitivity: float  # gain on slide stain / spot nuisance dims
    out_noise: float  # iid noise on the output features


@dataclass(frozen=True)
class BackboneSpec:
    """Everything needed to build one encoder, load its published checkpoint and simulate its features."""

    timm_name: str                      # timm architecture
    timm_kwargs: dict                   # passed to timm.create_model (num_classes=0 -> pooled features)
    feature_dim: int                    # width of the features (the real network's and the stand-in's)
    layout: str                         # key layout of the published checkpoint (see keys.LAYOUTS)
    hub_repo: str                       # Hugging Face repository holding the published weights
    hub_files: tuple[str, ...]          # accepted file names, in order of preference
    gated: bool                         # hub repository requires accepting terms / a token
    licence: str
    source: str                         # where the architecture facts come from
    stand_in: StandIn                   # the simulator's stand-in features for this encoder
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    input_size: int = 224
    pooling: str = "cls"                # what the feature vector is
    hub_repo_type: str = "model"
    hub_subfolder: str | None = None
    extra_keys: tuple[str, ...] = ()    # regexes: published keys that exist but are not needed (dropped)
    notes: str = ""

    @property
    def name(self) -> str:
        """The name this spec is registered under."""
        for name, spec in BACKBONES.items():
            if spec is self:
                return name
        raise ValueError(f"backbone spec with timm_name {self.timm_name!r} is not registered; registered: "
                         f"{', '.join(BACKBONES)}")


BACKBONES: Registry[BackboneSpec] = Registry("backbone")

BACKBONES.register("resnet50", BackboneSpec(
    timm_name="resnet50", timm_kwargs={"num_classes": 0}, feature_dim=2048,
    layout="torchvision", pooling="global average pool of layer4",
    hub_repo="timm/resnet50.tv_in1k", hub_files=("model.safetensors", "pytorch_model.bin"),
    gated=False, licence="BSD-3-Clause (torchvision ImageNet weights)",
    source="torchvision ResNet-50 IMAGENET1K_V1; timm resnet50 uses torchvision's key names",
    extra_keys=(r"^fc\.(weight|bias)$",),
    notes="torchvision's own resnet50-0676ba61.pth / resnet50-11ad3fa6.pth files have the same layout.",
    stand_in=StandIn(2.30, 1.2, 0.30),
))

BACKBONES.register("ctranspath", BackboneSpec(
    timm_name="swin_tiny_patch4_window7_224", timm_kwargs={}, feature_dim=768,
    layout="ctranspath", pooling="global average pool of the final Swin stage (after norm)",
    hub_repo="MahmoodLab/hest-bench", hub_repo_type="dataset", hub_subfolder="fm_v1/ctranspath",
    hub_files=("CHIEF_CTransPath.pth", "ctranspath.pth"), gated=True,
    licence="research use; original weights from github.com/Xiyue-Wang/TransPath (Google Drive link)",
    source="Wang et al. 2022 (TransPath): Swin-T (timm 0.5.4) with ConvStem; checkpoint {'model': state_dict} "
           "with downsample at the end of stages 0-2, relative_position_index and attn_mask buffers, no head",
    extra_keys=(r"\.relative_position_index$", r"\.attn_mask$"),
    notes="The hub copy is HEST-bench's mirror (CHIEF_CTransPath.pth); TransPath's ctranspath.pth has the same layout.",
    stand_in=StandIn(2.64, 0.7, 0.20),
))

BACKBONES.register("phikon", BackboneSpec(
    timm_name="vit_base_patch16_224", timm_kwargs={"num_classes": 0}, feature_dim=768,
    layout="hf_vit", pooling="CLS token after the final LayerNorm",
    hub_repo="owkin/phikon", hub_files=("model.safetensors", "pytorch_model.bin"), gated=False,
    licence="Owkin non-commercial licence",
    source="owkin/phikon config.json: HF ViTModel, ViT-B/16, 224 px, qkv_bias; iBOT trained with timm "
           "(LayerNorm eps 1e-6)",
    extra_keys=(r"^pooler\.dense\.(weight|bias)$",),
    stand_in=StandIn(2.45, 0.6, 0.20),
))

BACKBONES.register("hibou-b", BackboneSpec(
    timm_name="vit_base_patch14_reg4_dinov2", timm_kwargs={"_hibou_dim": 768},
    feature_dim=768, layout="hf_dinov2_reg", mean=HIBOU_MEAN, std=HIBOU_STD,
    pooling="CLS token after the final LayerNorm (HF pooler_output)",
    hub_repo="histai/hibou-b", hub_files=("model.safetensors",), gated=False, licence="Apache-2.0",
    source="histai/hibou-b config.json: Dinov2ModelWithRegisters, ViT-B/14, image_size 224, 4 registers, "
           "use_swiglu_ffn, layer_norm_eps 1e-6; normalisation from TRIDENT's Hibou constants",
    extra_keys=(r"^embeddings\.mask_token$",),
    stand_in=StandIn(2.30, 0.6, 0.45),
))

BACKBONES.register("hibou-l", BackboneSpec(
    timm_name="vit_large_patch14_reg4_dinov2", timm_kwargs={"_hibou_dim": 1024},
    feature_dim=1024, layout="hf_dinov2_reg", mean=HIBOU_MEAN, std=HIBOU_STD,
    pooling="CLS token after the final LayerNorm (HF pooler_output)",
    hub_repo="histai/hibou-L", hub_files=("model.safetensors",), gated=True, licence="Apache-2.0",
    source="Hibou paper / HistAI code: ViT-L/14 DINOv2 with 4 registers; assumed to share hibou-b's "
           "config (224 px, fused SwiGLU FFN)",
    extra_keys=(r"^embeddings\.mask_token$",),
    notes="hibou-L's config.json was not available to check; if its FFN is a plain MLP the strict loader "
          "reports the mlp.weights_in/weights_out keys as missing.",
    stand_in=StandIn(2.25, 0.5, 0.20),
))

BACKBONES.register("gigapath", BackboneSpec(
    timm_name="vit_giant_patch14_dinov2", timm_kwargs={"_gigapath": True},
    feature_dim=1536, layout="timm", pooling="CLS token after the final LayerNorm",
    hub_repo="prov-gigapath/prov-gigapath", hub_files=("pytorch_model.bin",), gated=True,
    licence="Prov-GigaPath licence (research, non-commercial; accept terms on the hub)",
    source="prov-gigapath/prov-gigapath config.json (timm vit_giant_patch14_dinov2, patch 16, 224 px, "
           "init_values 1e-5, mlp_ratio 5.33334); the file is a timm state dict",
    stand_in=StandIn(2.20, 0.5, 0.20),
))

# Bioptimus's normalisation (H-optimus-0/1 config.json "pretrained_cfg" mean/std)
HOPTIMUS_MEAN = (0.707223, 0.578729, 0.703617)
HOPTIMUS_STD = (0.211883, 0.230117, 0.177517)

# The stand-ins below were placed by interpolation (no truth run): the default world's own-feature ridge
# rises about linearly as the stand-in noise falls from 2.64 (ctranspath, probe 0.195) to 2.20 (gigapath,
# 0.241), and the anchors' READ-COAD midpoints rise by about 0.154 per unit of noise between phikon (2.45,
# 0.205) and gigapath (2.20, 0.244); each new stand-in takes the noise of its encoder's midpoint on that line
# (extrapolated past gigapath for the stronger encoders) and its larger neighbour's stain and output noise.
BACKBONES.register("h-optimus-0", BackboneSpec(
    timm_name="vit_giant_patch14_reg4_dinov2",
    timm_kwargs={"img_size": 224, "num_classes": 0, "init_values": 1e-5, "dynamic_img_size": False},
    feature_dim=1536, layout="timm", mean=HOPTIMUS_MEAN, std=HOPTIMUS_STD,
    pooling="CLS token after the final LayerNorm (global_pool 'token')",
    hub_repo="bioptimus/H-optimus-0", hub_files=("pytorch_model.bin", "model.safetensors"), gated=True,
    licence="Apache-2.0 (the hub asks to share contact information; access is automatic)",
    source="bioptimus/H-optimus-0 config.json: timm vit_giant_patch14_reg4_dinov2 (ViT-g/14, 40 blocks, 24 heads, "
           "4 registers, SwiGLU 2 x 4096, LayerScale init_values 1e-5), 224 px, global_pool token, mean/std "
           "(0.707223, 0.578729, 0.703617)/(0.211883, 0.230117, 0.177517); the file is a timm state dict",
    notes="HEST-Bench ridge 08.30.24: READ 0.229, COAD 0.299 (the leaderboard's best average).",
    stand_in=StandIn(2.07, 0.5, 0.20),
))

BACKBONES.register("h-optimus-1", BackboneSpec(
    timm_name="vit_giant_patch14_reg4_dinov2",
    timm_kwargs={"img_size": 224, "num_classes": 0, "init_values": 1e-5, "dynamic_img_size": False},
    feature_dim=1536, layout="timm", mean=HOPTIMUS_MEAN, std=HOPTIMUS_STD,
    pooling="CLS token after the final LayerNorm (global_pool 'token')",
    hub_repo="bioptimus/H-optimus-1", hub_files=("pytorch_model.bin", "model.safetensors"), gated=True,
    licence="Bioptimus H-optimus-1 licence: academic research, non-commercial; access granted on request",
    source="bioptimus/H-optimus-1 model card: same network and normalisation as H-optimus-0 (ViT-g/14 with 4 "
           "registers, 1.1B parameters, timm vit_giant_patch14_reg4_dinov2, init_values 1e-5, "
           "dynamic_img_size False); the file is a timm state dict",
    notes="Bioptimus's H-optimus-1 release reports HEST: READ 0.242, COAD 0.320 (vendor figures, not on "
          "HEST-Bench's 08.30.24 leaderboard).",
    stand_in=StandIn(1.96, 0.5, 0.20),
))

BACKBONES.register("uni", BackboneSpec(
    timm_name="vit_large_patch16_224",
    timm_kwargs={"img_size": 224, "patch_size": 16, "init_values": 1e-5, "num_classes": 0,
                 "dynamic_img_size": True},
    feature_dim=1024, layout="timm", pooling="CLS token after the final LayerNorm",
    hub_repo="MahmoodLab/UNI", hub_files=("pytorch_model.bin",), gated=True,
    licence="CC-BY-NC-ND-4.0 (accept the terms on the hub; institutional e-mail)",
    source="MahmoodLab/UNI model card: timm.create_model('vit_large_patch16_224', img_size=224, patch_size=16, "
           "init_values=1e-5, num_classes=0, dynamic_img_size=True); ImageNet mean/std; the file is a timm "
           "state dict loaded with strict=True",
    notes="HEST-Bench ridge 08.30.24: READ 0.176, COAD 0.263.",
    stand_in=StandIn(2.36, 0.5, 0.20),
))

BACKBONES.register("uni2-h", BackboneSpec(
    # timm's DINOv2-g/14 with registers, narrowed to UNI2-h's 24 blocks and 8 registers: the same network
    # as the model card's vit_giant_patch14_224 with SwiGLUPacked, SiLU, no_embed_class and mlp_ratio 2.66667*2
    timm_name="vit_giant_patch14_reg4_dinov2",
    timm_kwargs={"img_size": 224, "patch_size": 14, "depth": 24, "num_heads": 24, "embed_dim": 1536,
                 "init_values": 1e-5, "mlp_ratio": 2.66667 * 2, "reg_tokens": 8, "no_embed_class": True,
                 "num_classes": 0, "dynamic_img_size": True},
    feature_dim=1536, layout="timm", pooling="CLS token after the final LayerNorm",
    hub_repo="MahmoodLab/UNI2-h", hub_files=("pytorch_model.bin",), gated=True,
    licence="CC-BY-NC-ND-4.0 (accept the terms on the hub; institutional e-mail)",
    source="MahmoodLab/UNI2-h model card timm_kwargs: ViT-H/14 width 1536, depth 24, 24 heads, init_values 1e-5, "
           "mlp_ratio 2.66667*2 with SwiGLUPacked and SiLU, 8 register tokens, no_embed_class, 224 px; "
           "ImageNet mean/std; the file is a timm state dict",
    notes="No HEST-Bench ridge figure; the stand-in uses UNIv1.5's (READ 0.224, COAD 0.293, 08.30.24) as a proxy.",
    stand_in=StandIn(2.10, 0.5, 0.20),
))

BACKBONES.register("plip", BackboneSpec(
    timm_name="vit_base_patch32_clip_quickgelu_224", timm_kwargs={"num_classes": 512},
    feature_dim=512, layout="stflib.backbones.keys:HF_CLIP",
    mean=(0.48145466, 0.4578275, 0.40821073), std=(0.26862954, 0.26130258, 0.27577711),  # OpenAI CLIP's
    pooling="CLIP image embedding: CLS token after post_layernorm, through visual_projection (512-d, no bias)",
    hub_repo="vinid/plip", hub_files=("pytorch_model.bin", "model.safetensors"), gated=False,
    licence="research use (PLIP terms: no clinical or commercial use)",
    source="PLIP (Huang et al. 2023, Nat Med) fine-tunes openai/clip-vit-base-patch32: HF CLIPModel, ViT-B/32, "
           "224 px, quick_gelu, pre-LayerNorm, projection_dim 512; CLIP's image mean/std",
    extra_keys=(r"^text_model\.", r"^text_projection\.weight$", r"^logit_scale$", r"position_ids$"),
    notes="No HEST-Bench ridge figure; HEST-Bench's random-forest table (06.24.24) puts PLIP's bowel figures "
          "between ResNet50's and CTransPath's, so its stand-in sits between theirs.",
    stand_in=StandIn(2.47, 0.95, 0.25),
))
