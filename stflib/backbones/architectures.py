"""The timm networks of the registered backbones: CTransPath's convolutional stem, the keyword
arguments that make timm's architectures match each published checkpoint, and ``build_timm_model``.

Kept apart from :mod:`stflib.backbones.specs` so that reading the registry (the run configuration,
the simulator's stand-ins) never imports torch or timm.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from stflib.backbones.specs import BACKBONES, BackboneSpec


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

    spec = BACKBONES[name]
    kwargs = _timm_kwargs(spec)
    if device is None:
        return timm.create_model(spec.timm_name, pretrained=False, **kwargs)
    with torch.device(device):  # build (and randomly initialise) directly on the target device
        return timm.create_model(spec.timm_name, pretrained=False, **kwargs)
