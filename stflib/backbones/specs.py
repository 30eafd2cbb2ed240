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
