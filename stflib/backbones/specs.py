"""The backbone registry: for each encoder the seed names, the timm architecture that reproduces the
published network, its feature width, input normalisation and where its published checkpoint lives.

``BACKBONES`` (name -> ``BackboneSpec``) is the only list of backbone names and feature widths: the
run parameter ``backbone`` and the feature cache read it. Adding a backbone: a ``BackboneSpec`` here
(and, if its checkpoint uses a new key layout, a converter pair in ``keys.py``), a params file
``params/backbones/<name>.yaml`` and a test in ``tests/test_backbones.py``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HIBOU_MEAN = (0.7068, 0.5755, 0.722)
HIBOU_STD = (0.195, 0.2316, 0.1816)


class WeightsError(RuntimeError):
    """Weights missing, unreadable, or not matching the published layout of a backbone."""


# --------------------------------------------------------------------------------------------
# CTransPath's convolutional stem (replaces Swin's 4x4 patchify convolution)
# --------------------------------------------------------------------------------------------
class ConvStem(nn.Module):
    """CTransPath's patch embedding: two stride-2 3x3 conv+BN+ReLU stages, then a 1x1 projection.

    Channel widths follow the published network: 3 -> D/8 -> D/4 -> D (D = Swin's first-stage width,
    96 for Swin-T), so the sub-module names ``proj.0, proj.1, proj.3, proj.4, proj.6`` and
    ``norm`` match the published checkpoint. Output is NHWC as timm's Swin expects.
    """

    def __init__(self, img_size: int | tuple[int, int] = 224, patch_size: int | tuple[int, int] = 4,
                 in_chans: int = 3, embed_dim: int = 96, norm_layer: Any = None,
                 output_fmt: str = "NHWC", strict_img_size: bool = True, **_: Any):
        super().__init__()
        img_size = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        patch_size = (patch_size, patch_size) if isinstance(patch_size, int) else tuple(patch_size)
        if patch_size != (4, 4):
            raise ValueError(f"ConvStem: patch_size must be 4 (two stride-2 convs), got {patch_size}")
        if embed_dim % 8:
            raise ValueError(f"ConvStem: embed_dim must be a multiple of 8, got {embed_dim}")
        self.img_size = img_size
        self.patch_size = patch_size
        self.grid_size = (img_size[0] // 4, img_size[1] // 4)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.strict_img_size = strict_img_size
        self.output_fmt = output_fmt
        c1, c2 = embed_dim // 8, embed_dim // 4
        self.proj = nn.Sequential(
            nn.Conv2d(in_chans, c1, kernel_size=3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(c1),
            nn.ReLU(inplace=True),
            nn.Conv2d(c1, c2, kernel_size=3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(c2),
            nn.ReLU(inplace=True),
            nn.Conv2d(c2, embed_dim, kernel_size=1),
        )
        if isinstance(norm_layer, str):
            from timm.layers import get_norm_layer
            norm_layer = get_norm_layer(norm_layer)
        self.norm = norm_layer(embed_dim) if norm_layer else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.strict_img_size and tuple(x.shape[-2:]) != self.img_size:
            raise ValueError(f"ConvStem: input size {tuple(x.shape[-2:])} != {self.img_size}")
        x = self.proj(x)
        x = x.permute(0, 2, 3, 1) if self.output_fmt == "NHWC" else x.flatten(2).transpose(1, 2)
        return self.norm(x)


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BackboneSpec:
    """Everything needed to build one encoder and load its published checkpoint."""

    name: str
    timm_name: str                      # timm architecture
    timm_kwargs: dict                   # passed to timm.create_model (num_classes=0 -> pooled features)
    feature_dim: int
    layout: str                         # key layout of the published checkpoint (see LAYOUTS)
    hub_repo: str                       # Hugging Face repository holding the published weights
    hub_files: tuple[str, ...]          # accepted file names, in order of preference
    gated: bool                         # hub repository requires accepting terms / a token
    licence: str
    source: str                         # where the architecture facts come from
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    input_size: int = 224
    pooling: str = "cls"                # what the feature vector is
    hub_repo_type: str = "model"
    hub_subfolder: str | None = None
    extra_keys: tuple[str, ...] = ()    # regexes: published keys that exist but are not needed (dropped)
    notes: str = ""


def _swiglu_ratio(dim: int, hidden: int) -> float:
    """mlp_ratio making timm's packed SwiGLU fc1 exactly 2*hidden wide (timm uses int(dim*ratio))."""
    return (2 * hidden + 0.5) / dim


def _dinov2_swiglu_hidden(dim: int, mlp_ratio: float = 4.0) -> int:
    """Hidden width of DINOv2's fused SwiGLU FFN (as in the DINOv2 and HF Dinov2 code)."""
    h = int(dim * mlp_ratio)
    return (int(h * 2 / 3) + 7) // 8 * 8


def _hibou_kwargs(dim: int) -> dict:
    from timm.layers import SwiGLUPacked
    return dict(img_size=224, num_classes=0, mlp_layer=SwiGLUPacked, act_layer=nn.SiLU,
                mlp_ratio=_swiglu_ratio(dim, _dinov2_swiglu_hidden(dim)))


def _gigapath_kwargs() -> dict:
    # prov-gigapath/prov-gigapath config.json "model_args" (timm vit_giant_patch14_dinov2 keeps its
    # SwiGLUPacked MLP and SiLU; 1536 * 5.33334 -> fc1 8192 = 2 x 4096).
    return dict(img_size=224, in_chans=3, patch_size=16, embed_dim=1536, depth=40, num_heads=24,
                init_values=1e-5, mlp_ratio=5.33334, num_classes=0)


def _ctranspath_kwargs() -> dict:
    return dict(num_classes=0, embed_layer=ConvStem)


BACKBONES: dict[str, BackboneSpec] = {
    "resnet50": BackboneSpec(
        name="resnet50", timm_name="resnet50", timm_kwargs={"num_classes": 0}, feature_dim=2048,
        layout="torchvision", pooling="global average pool of layer4",
        hub_repo="timm/resnet50.tv_in1k", hub_files=("model.safetensors", "pytorch_model.bin"),
        gated=False, licence="BSD-3-Clause (torchvision ImageNet weights)",
        source="torchvision ResNet-50 IMAGENET1K_V1; timm resnet50 uses torchvision's key names",
        extra_keys=(r"^fc\.(weight|bias)$",),
        notes="torchvision's own resnet50-0676ba61.pth / resnet50-11ad3fa6.pth files have the same layout.",
    ),
    "ctranspath": BackboneSpec(
        name="ctranspath", timm_name="swin_tiny_patch4_window7_224", timm_kwargs={}, feature_dim=768,
        layout="ctranspath", pooling="global average pool of the final Swin stage (after norm)",
        hub_repo="MahmoodLab/hest-bench", hub_repo_type="dataset", hub_subfolder="fm_v1/ctranspath",
        hub_files=("CHIEF_CTransPath.pth", "ctranspath.pth"), gated=True,
        licence="research use; original weights from github.com/Xiyue-Wang/TransPath (Google Drive link)",
        source="Wang et al. 2022 (TransPath): Swin-T (timm 0.5.4) with ConvStem; checkpoint {'model': state_dict} "
               "with downsample at the end of stages 0-2, relative_position_index and attn_mask buffers, no head",
        extra_keys=(r"\.relative_position_index$", r"\.attn_mask$"),
        notes="The hub copy is HEST-bench's mirror (CHIEF_CTransPath.pth); TransPath's ctranspath.pth has the same layout.",
    ),
    "phikon": BackboneSpec(
        name="phikon", timm_name="vit_base_patch16_224", timm_kwargs={"num_classes": 0}, feature_dim=768,
        layout="hf_vit", pooling="CLS token after the final LayerNorm",
        hub_repo="owkin/phikon", hub_files=("model.safetensors", "pytorch_model.bin"), gated=False,
        licence="Owkin non-commercial licence",
        source="owkin/phikon config.json: HF ViTModel, ViT-B/16, 224 px, qkv_bias; iBOT trained with timm "
               "(LayerNorm eps 1e-6)",
        extra_keys=(r"^pooler\.dense\.(weight|bias)$",),
    ),
    "hibou-b": BackboneSpec(
        name="hibou-b", timm_name="vit_base_patch14_reg4_dinov2", timm_kwargs={"_hibou_dim": 768},
        feature_dim=768, layout="hf_dinov2_reg", mean=HIBOU_MEAN, std=HIBOU_STD,
        pooling="CLS token after the final LayerNorm (HF pooler_output)",
        hub_repo="histai/hibou-b", hub_files=("model.safetensors",), gated=False, licence="Apache-2.0",
        source="histai/hibou-b config.json: Dinov2ModelWithRegisters, ViT-B/14, image_size 224, 4 registers, "
               "use_swiglu_ffn, layer_norm_eps 1e-6; normalisation from TRIDENT's Hibou constants",
        extra_keys=(r"^embeddings\.mask_token$",),
    ),
    "hibou-l": BackboneSpec(
        name="hibou-l", timm_name="vit_large_patch14_reg4_dinov2", timm_kwargs={"_hibou_dim": 1024},
        feature_dim=1024, layout="hf_dinov2_reg", mean=HIBOU_MEAN, std=HIBOU_STD,
        pooling="CLS token after the final LayerNorm (HF pooler_output)",
        hub_repo="histai/hibou-L", hub_files=("model.safetensors",), gated=True, licence="Apache-2.0",
        source="Hibou paper / HistAI code: ViT-L/14 DINOv2 with 4 registers; assumed to share hibou-b's "
               "config (224 px, fused SwiGLU FFN)",
        extra_keys=(r"^embeddings\.mask_token$",),
        notes="hibou-L's config.json was not available to check; if its FFN is a plain MLP the strict loader "
              "reports the mlp.weights_in/weights_out keys as missing.",
    ),
    "gigapath": BackboneSpec(
        name="gigapath", timm_name="vit_giant_patch14_dinov2", timm_kwargs={"_gigapath": True},
        feature_dim=1536, layout="timm", pooling="CLS token after the final LayerNorm",
        hub_repo="prov-gigapath/prov-gigapath", hub_files=("pytorch_model.bin",), gated=True,
        licence="Prov-GigaPath licence (research, non-commercial; accept terms on the hub)",
        source="prov-gigapath/prov-gigapath config.json (timm vit_giant_patch14_dinov2, patch 16, 224 px, "
               "init_values 1e-5, mlp_ratio 5.33334); the file is a timm state dict",
    ),
}


def get_spec(name: str) -> BackboneSpec:
    if name not in BACKBONES:
        raise ValueError(f"backbone: unknown name {name!r}; allowed: {', '.join(BACKBONES)}")
    return BACKBONES[name]


def _timm_kwargs(spec: BackboneSpec) -> dict:
    kw = dict(spec.timm_kwargs)
    if "_hibou_dim" in kw:
        return _hibou_kwargs(kw.pop("_hibou_dim"))
    if kw.pop("_gigapath", False):
        return _gigapath_kwargs()
    if spec.layout == "ctranspath":
        return _ctranspath_kwargs()
    return kw


def build_timm_model(name: str, device: str | torch.device | None = None) -> nn.Module:
    """The bare timm network of ``name`` with random weights (``device='meta'``: shapes only)."""
    import timm

    spec = get_spec(name)
    kwargs = _timm_kwargs(spec)
    if device is None:
        return timm.create_model(spec.timm_name, pretrained=False, **kwargs)
    with torch.device(device):  # build (and randomly initialise) directly on the target device
        return timm.create_model(spec.timm_name, pretrained=False, **kwargs)
