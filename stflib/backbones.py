"""Frozen pathology feature extractors, built with timm and loaded strictly from local weights.

STF never fine-tunes its image encoder: features are extracted once (``stflib.features``) and the
model trains on the cached features. This module knows, for each encoder the seed names:

* the exact timm architecture (and its keyword arguments) that reproduces the published network,
* the feature width and the input normalisation (mean/std on 0-1 RGB, 224 px input),
* where the published checkpoint lives on the Hugging Face hub (and whether it is gated),
* how the published checkpoint's key layout maps onto timm's (``to_timm``) and back
  (``to_published``, used to describe and test the expected file layout).

Weights are never downloaded implicitly. ``get_backbone(name)`` looks for them in, in order:
the ``weights`` argument (a file, a folder, or an in-memory state dict), then
``$STFLIB_WEIGHTS_DIR/<name>/``, ``$STFLIB_CACHE/weights/<name>/`` or ``~/.cache/stflib/weights/<name>/``.
``download_weights(name)`` fetches them there for users who have hub access (token from ``HF_TOKEN``).
Loading is strict: a missing, unexpected or wrongly shaped key is an error that names the key.
``pretrained=False`` builds the same architecture with random weights (tests, the simulator).
"""
from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn

__all__ = [
    "BACKBONES", "BackboneSpec", "Backbone", "ConvStem", "WeightsError", "get_backbone", "download_weights",
    "weights_dir", "find_weights", "read_state_dict", "check_published_state_dict", "to_timm", "to_published",
    "expected_published_shapes", "make_published_state_dict", "build_timm_model", "weights_version",
    "file_sha256", "weights_root",
]

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


def _spec(name: str) -> BackboneSpec:
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

    spec = _spec(name)
    kwargs = _timm_kwargs(spec)
    if device is None:
        return timm.create_model(spec.timm_name, pretrained=False, **kwargs)
    with torch.device(device):  # build (and randomly initialise) directly on the target device
        return timm.create_model(spec.timm_name, pretrained=False, **kwargs)


# --------------------------------------------------------------------------------------------
# Key layouts: published <-> timm
# --------------------------------------------------------------------------------------------
StateDict = dict[str, torch.Tensor]


def _identity(sd: Mapping[str, torch.Tensor]) -> StateDict:
    return dict(sd)


# ---- CTransPath (timm 0.5.4 Swin: PatchMerging at the END of stages 0-2) -----------------
_DOWN_OLD = re.compile(r"^layers\.(\d+)\.downsample\.")


def _ctp_to_timm(sd: Mapping[str, torch.Tensor]) -> StateDict:
    out = {}
    for k, v in sd.items():
        m = _DOWN_OLD.match(k)
        if m:
            k = f"layers.{int(m.group(1)) + 1}.downsample." + k[m.end():]
        out[k] = v
    return out


def _ctp_to_published(sd: Mapping[str, torch.Tensor]) -> StateDict:
    out = {}
    for k, v in sd.items():
        m = _DOWN_OLD.match(k)
        if m:
            k = f"layers.{int(m.group(1)) - 1}.downsample." + k[m.end():]
        out[k] = v
    return out


# ---- Hugging Face ViT / DINOv2 encoders ------------------------------------------------------
# per-block renames shared by HF ViTModel (phikon) and HF Dinov2 (hibou); q/k/v handled separately
_HF_VIT_BLOCK = {
    "layernorm_before": "norm1", "layernorm_after": "norm2",
    "attention.output.dense": "attn.proj", "intermediate.dense": "mlp.fc1", "output.dense": "mlp.fc2",
}
_HF_DINO_BLOCK = {
    "norm1": "norm1", "norm2": "norm2", "attention.output.dense": "attn.proj",
    "mlp.weights_in": "mlp.fc1", "mlp.weights_out": "mlp.fc2", "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2",
    "layer_scale1": "ls1", "layer_scale2": "ls2",
}
_HF_LAYER = re.compile(r"^encoder\.layer\.(\d+)\.(.+)\.(weight|bias|lambda1)$")
_TIMM_BLOCK = re.compile(r"^blocks\.(\d+)\.(.+)\.(weight|bias|gamma)$")


def _hf_blocks_to_timm(sd: Mapping[str, torch.Tensor], block_map: dict, out: StateDict) -> None:
    qkv: dict[tuple[int, str], dict[str, torch.Tensor]] = {}
    for k, v in sd.items():
        m = _HF_LAYER.match(k)
        if not m:
            continue
        i, mod, leaf = int(m.group(1)), m.group(2), m.group(3)
        if mod.startswith("attention.attention."):
            qkv.setdefault((i, leaf), {})[mod.rsplit(".", 1)[1]] = v
        elif mod in block_map:
            tmod = block_map[mod]
            tleaf = "gamma" if leaf == "lambda1" else leaf
            out[f"blocks.{i}.{tmod}.{tleaf}"] = v
        else:
            out[k] = v  # unknown: keep the name so that the strict check reports it
    for (i, leaf), parts in qkv.items():
        if set(parts) == {"query", "key", "value"}:
            out[f"blocks.{i}.attn.qkv.{leaf}"] = torch.cat([parts["query"], parts["key"], parts["value"]], 0)
        else:
            for p, v in parts.items():
                out[f"encoder.layer.{i}.attention.attention.{p}.{leaf}"] = v


def _timm_blocks_to_hf(sd: Mapping[str, torch.Tensor], block_map: dict, out: StateDict) -> None:
    inverse = {}
    for hf, tm in block_map.items():
        inverse.setdefault(tm, hf)  # first HF name wins (weights_in before fc1 for DINOv2)
    for k, v in sd.items():
        m = _TIMM_BLOCK.match(k)
        if not m:
            continue
        i, mod, leaf = int(m.group(1)), m.group(2), m.group(3)
        if mod == "attn.qkv":
            for name, part in zip(("query", "key", "value"), v.chunk(3, dim=0)):
                out[f"encoder.layer.{i}.attention.attention.{name}.{leaf}"] = part
        else:
            hf = inverse[mod]
            hleaf = "lambda1" if leaf == "gamma" else leaf
            out[f"encoder.layer.{i}.{hf}.{hleaf}"] = v


def _hf_vit_to_timm(sd: Mapping[str, torch.Tensor]) -> StateDict:
    out: StateDict = {}
    renames = {
        "embeddings.cls_token": "cls_token", "embeddings.position_embeddings": "pos_embed",
        "embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
        "embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
        "layernorm.weight": "norm.weight", "layernorm.bias": "norm.bias",
    }
    for k, v in sd.items():
        if k in renames:
            out[renames[k]] = v
        elif not k.startswith("encoder.layer."):
            out[k] = v
    _hf_blocks_to_timm(sd, _HF_VIT_BLOCK, out)
    return out


def _hf_vit_to_published(sd: Mapping[str, torch.Tensor]) -> StateDict:
    out: StateDict = {}
    renames = {
        "cls_token": "embeddings.cls_token", "pos_embed": "embeddings.position_embeddings",
        "patch_embed.proj.weight": "embeddings.patch_embeddings.projection.weight",
        "patch_embed.proj.bias": "embeddings.patch_embeddings.projection.bias",
        "norm.weight": "layernorm.weight", "norm.bias": "layernorm.bias",
    }
    for k, v in sd.items():
        if k in renames:
            out[renames[k]] = v
        elif not k.startswith("blocks."):
            out[k] = v
    _timm_blocks_to_hf(sd, _HF_VIT_BLOCK, out)
    return out


def _hf_dino_to_timm(sd: Mapping[str, torch.Tensor]) -> StateDict:
    """HF Dinov2-with-registers -> timm reg4 ViT (no_embed_class: cls/registers carry no pos-embed).

    DINOv2 adds position_embeddings[0] to the CLS token before inserting the registers, so folding
    it into timm's cls_token gives the same network (as timm's own DINOv2 converter does).
    """
    out: StateDict = {}
    renames = {
        "embeddings.register_tokens": "reg_token",
        "embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
        "embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
        "layernorm.weight": "norm.weight", "layernorm.bias": "norm.bias",
    }
    pos = sd.get("embeddings.position_embeddings")
    cls = sd.get("embeddings.cls_token")
    if pos is not None and cls is not None:
        out["cls_token"] = cls + pos[:, :1]
        out["pos_embed"] = pos[:, 1:]
    for k, v in sd.items():
        if k in renames:
            out[renames[k]] = v
        elif k in ("embeddings.position_embeddings", "embeddings.cls_token"):
            if pos is None or cls is None:
                out[k] = v
        elif not k.startswith("encoder.layer."):
            out[k] = v
    _hf_blocks_to_timm(sd, _HF_DINO_BLOCK, out)
    return out


def _hf_dino_to_published(sd: Mapping[str, torch.Tensor]) -> StateDict:
    """timm -> HF Dinov2 layout; the CLS position embedding is set to zero (the fold is not invertible)."""
    out: StateDict = {}
    renames = {
        "reg_token": "embeddings.register_tokens",
        "patch_embed.proj.weight": "embeddings.patch_embeddings.projection.weight",
        "patch_embed.proj.bias": "embeddings.patch_embeddings.projection.bias",
        "norm.weight": "layernorm.weight", "norm.bias": "layernorm.bias",
    }
    for k, v in sd.items():
        if k == "cls_token":
            out["embeddings.cls_token"] = v
        elif k == "pos_embed":
            out["embeddings.position_embeddings"] = torch.cat([torch.zeros_like(v[:, :1]), v], dim=1)
        elif k in renames:
            out[renames[k]] = v
        elif not k.startswith("blocks."):
            out[k] = v
    _timm_blocks_to_hf(sd, _HF_DINO_BLOCK, out)
    return out


LAYOUTS: dict[str, tuple[Callable, Callable]] = {
    "timm": (_identity, _identity),
    "torchvision": (_identity, _identity),
    "ctranspath": (_ctp_to_timm, _ctp_to_published),
    "hf_vit": (_hf_vit_to_timm, _hf_vit_to_published),
    "hf_dinov2_reg": (_hf_dino_to_timm, _hf_dino_to_published),
}


def to_timm(name: str, published: Mapping[str, torch.Tensor]) -> StateDict:
    """Convert a state dict in ``name``'s published key layout to timm's (extra keys dropped)."""
    spec = _spec(name)
    kept = {k: v for k, v in published.items() if not _is_extra(spec, k)}
    return LAYOUTS[spec.layout][0](kept)


def to_published(name: str, timm_state: Mapping[str, torch.Tensor]) -> StateDict:
    """Convert a timm state dict of ``name`` to the published checkpoint's key layout (without extras)."""
    return LAYOUTS[_spec(name).layout][1](timm_state)


def _is_extra(spec: BackboneSpec, key: str) -> bool:
    return any(re.search(p, key) for p in spec.extra_keys)


def expected_published_shapes(name: str) -> dict[str, tuple[int, ...]]:
    """Key -> shape of every tensor the published checkpoint must contain (extras not included)."""
    meta = build_timm_model(name, device="meta").state_dict()
    return {k: tuple(v.shape) for k, v in to_published(name, meta).items()}


def _published_extras(name: str, device: str | torch.device = "cpu") -> StateDict:
    """The known-but-unused tensors of a published checkpoint (values are placeholders)."""
    spec = _spec(name)
    z = lambda *s, dtype=torch.float32: torch.zeros(*s, dtype=dtype, device=device)  # noqa: E731
    if spec.layout == "torchvision":
        return {"fc.weight": z(1000, spec.feature_dim), "fc.bias": z(1000)}
    if spec.layout == "hf_vit":
        d = spec.feature_dim
        return {"pooler.dense.weight": z(d, d), "pooler.dense.bias": z(d)}
    if spec.layout == "hf_dinov2_reg":
        return {"embeddings.mask_token": z(1, spec.feature_dim)}
    if spec.layout == "ctranspath":
        out = {}
        model = build_timm_model(name, device="meta")
        for i, stage in enumerate(model.layers):
            for j, blk in enumerate(stage.blocks):
                ws = blk.window_size[0] * blk.window_size[1]
                out[f"layers.{i}.blocks.{j}.attn.relative_position_index"] = z(ws, ws, dtype=torch.long)
                if any(blk.shift_size):
                    h, w = blk.input_resolution
                    n_win = (h // blk.window_size[0]) * (w // blk.window_size[1])
                    out[f"layers.{i}.blocks.{j}.attn_mask"] = z(n_win, ws, ws)
        return out
    return {}


def make_published_state_dict(name: str, seed: int = 0, device: str | torch.device = "cpu",
                              with_extras: bool = True) -> StateDict:
    """A state dict in the published checkpoint's own key layout, with random values.

    Names and shapes are the real ones (generated by inverse-mapping timm's network); with
    ``device='meta'`` no memory is allocated (shapes only). Used by the tests and to document what
    a user's file must contain.
    """
    if str(device) == "meta":
        timm_sd = build_timm_model(name, device="meta").state_dict()
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            timm_sd = build_timm_model(name).state_dict()
        timm_sd = {k: v.to(device) for k, v in timm_sd.items()}
    out = to_published(name, timm_sd)
    if with_extras:
        out.update(_published_extras(name, device=device))
    return out


# --------------------------------------------------------------------------------------------
# Reading and strict checking
# --------------------------------------------------------------------------------------------
def weights_root() -> Path:
    """Folder holding ``<name>/`` weight folders: $STFLIB_WEIGHTS_DIR, $STFLIB_CACHE/weights or ~/.cache/stflib/weights."""
    if os.environ.get("STFLIB_WEIGHTS_DIR"):
        return Path(os.environ["STFLIB_WEIGHTS_DIR"]).expanduser()
    if os.environ.get("STFLIB_CACHE"):
        return Path(os.environ["STFLIB_CACHE"]).expanduser() / "weights"
    return Path.home() / ".cache" / "stflib" / "weights"


def weights_dir(name: str) -> Path:
    """Where ``get_backbone(name)`` looks for weights by default (and ``download_weights`` puts them)."""
    _spec(name)
    return weights_root() / name


_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt", ".ckpt")


def find_weights(name: str, weights: str | os.PathLike | None = None) -> Path | None:
    """Resolve the weights file for ``name``: the given file/folder, else the default folder. None if absent."""
    spec = _spec(name)
    if weights is not None:
        p = Path(weights).expanduser()
        if p.is_file():
            return p
        if not p.is_dir():
            raise WeightsError(f"{name}: weights path {p} does not exist")
        folder = p
    else:
        folder = weights_dir(name)
        if not folder.is_dir():
            return None
    for fname in spec.hub_files:  # preferred names, also inside the hub's subfolder layout
        for cand in (folder / fname, *( [folder / spec.hub_subfolder / fname] if spec.hub_subfolder else [])):
            if cand.is_file():
                return cand
    found = sorted(f for f in folder.iterdir() if f.is_file() and f.suffix in _WEIGHT_SUFFIXES)
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        raise WeightsError(f"{name}: several weight files in {folder} ({', '.join(f.name for f in found)}); "
                           f"pass the file itself")
    if weights is not None:
        raise WeightsError(f"{name}: no weights file ({', '.join(spec.hub_files)}) in {folder}")
    return None


def read_state_dict(path: str | os.PathLike) -> StateDict:
    """Read a checkpoint file (safetensors or torch pickle, weights only) and unwrap common containers."""
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            sd: Any = load_file(str(path), device="cpu")
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - report any reader failure with the path
        raise WeightsError(f"cannot read weights file {path}: {exc}") from exc
    return _unwrap(sd, str(path))


def _unwrap(sd: Any, where: str) -> StateDict:
    for key in ("model", "state_dict", "teacher", "module"):
        if isinstance(sd, Mapping) and key in sd and isinstance(sd[key], Mapping) \
                and not isinstance(sd.get(key), torch.Tensor):
            sd = sd[key]
            break
    if not isinstance(sd, Mapping) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise WeightsError(f"{where}: not a state dict of tensors")
    sd = dict(sd)
    for prefix in ("module.",):
        if sd and all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix):]: v for k, v in sd.items()}
    return sd


def _strip_model_prefix(spec: BackboneSpec, sd: StateDict) -> StateDict:
    """HF checkpoints saved from a task model carry the base-model prefix (``vit.``, ``dinov2.``)."""
    if spec.layout in ("hf_vit", "hf_dinov2_reg"):
        for prefix in ("vit.", "dinov2.", "model."):
            if sd and all(k.startswith(prefix) for k in sd):
                return {k[len(prefix):]: v for k, v in sd.items()}
    return sd


def _fill_batchnorm_counters(name: str, sd: StateDict) -> StateDict:
    """BatchNorm's ``num_batches_tracked`` counters are absent from checkpoints saved before
    PyTorch 0.4.1 (e.g. torchvision's original ResNet-50 file) and unused in eval mode: add zeros."""
    missing = [k for k, shape in expected_published_shapes(name).items()
               if k.endswith(".num_batches_tracked") and k not in sd]
    if missing and len(missing) < len(sd):
        sd = dict(sd)
        for k in missing:
            sd[k] = torch.zeros((), dtype=torch.long)
    return sd


def _fmt_keys(keys: list[str], limit: int = 20) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def check_published_state_dict(name: str, sd: Mapping[str, torch.Tensor], where: str = "state dict") -> None:
    """Raise WeightsError unless ``sd`` has exactly the published keys of ``name`` with the right shapes."""
    spec = _spec(name)
    expected = expected_published_shapes(name)
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected and not _is_extra(spec, k)]
    wrong = [f"{k}: got {tuple(sd[k].shape)}, expected {expected[k]}"
             for k in expected if k in sd and tuple(sd[k].shape) != expected[k]]
    if missing or unexpected or wrong:
        lines = [f"{name}: {where} does not match the published {spec.hub_repo} layout (strict loading)"]
        if missing:
            lines.append(f"  missing keys ({len(missing)}): {_fmt_keys(missing)}")
        if unexpected:
            lines.append(f"  unexpected keys ({len(unexpected)}): {_fmt_keys(unexpected)}")
        if wrong:
            lines.append(f"  wrong shapes ({len(wrong)}): " + "; ".join(sorted(wrong)[:20]))
        raise WeightsError("\n".join(lines))


_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    """sha256 of a file (memoised per path, size and mtime: weight files are large)."""
    st = os.stat(path)
    key = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns)
    if key not in _SHA_CACHE:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(chunk), b""):
                h.update(block)
        _SHA_CACHE[key] = h.hexdigest()
    return _SHA_CACHE[key]


def weights_version(name: str, weights: str | os.PathLike | None = None, pretrained: bool = True) -> str:
    """The ``backbone_version`` that ``get_backbone(name, weights, pretrained)`` will report, without
    building the network: ``sha256:<hex>`` of the weights file, or ``random-init``."""
    if not pretrained:
        return "random-init"
    path = find_weights(name, weights)
    if path is None:
        raise WeightsError(_missing_weights_message(_spec(name), weights))
    return f"sha256:{file_sha256(path)}"


def _state_dict_digest(sd: Mapping[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for k in sorted(sd):
        v = sd[k]
        h.update(k.encode())
        if v.device.type != "meta":
            h.update(v.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
                     if v.numel() else b"")
    return h.hexdigest()


# --------------------------------------------------------------------------------------------
# The module
# --------------------------------------------------------------------------------------------
class Backbone(nn.Module):
    """A frozen encoder: ``forward(x)`` maps normalised (B, 3, S, S) images to (B, feature_dim).

    ``transform(images)`` turns uint8 RGB patches (B, H, W, 3) (numpy or tensor) into the normalised
    input (resized to ``input_size`` if needed). ``normalization`` holds the mean/std used.
    The module is in eval mode with ``requires_grad=False``; ``train()`` keeps it frozen in eval.
    """

    def __init__(self, spec: BackboneSpec, model: nn.Module, version: str):
        super().__init__()
        self.spec = spec
        self.name = spec.name
        self.model = model
        self.feature_dim = spec.feature_dim
        self.input_size = spec.input_size
        self.version = version
        self.normalization = {"mean": tuple(spec.mean), "std": tuple(spec.std)}
        self.register_buffer("mean", torch.tensor(spec.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(spec.std).view(1, 3, 1, 1), persistent=False)
        for p in self.parameters():
            p.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> "Backbone":  # frozen: always eval
        return super().train(False)

    def transform(self, images: Any) -> torch.Tensor:
        """uint8 RGB (B, H, W, 3) -> normalised float (B, 3, S, S) on this module's device."""
        x = torch.as_tensor(images)
        if x.ndim == 3:
            x = x[None]
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"{self.name}: expected (B, H, W, 3) RGB patches, got shape {tuple(x.shape)}")
        x = x.to(self.mean.device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255.0)
        s = self.input_size
        if tuple(x.shape[-2:]) != (s, s):
            x = torch.nn.functional.interpolate(x, size=(s, s), mode="bilinear", antialias=True,
                                                align_corners=False)
        return (x - self.mean) / self.std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        if out.ndim != 2 or out.shape[1] != self.feature_dim:
            raise RuntimeError(f"{self.name}: features of shape {tuple(out.shape)}, expected (B, {self.feature_dim})")
        return out

    @torch.inference_mode()
    def embed(self, images: Any) -> torch.Tensor:
        """uint8 patches -> (B, feature_dim) float features (convenience: transform + forward)."""
        return self.forward(self.transform(images))

    def extra_repr(self) -> str:
        return f"name={self.name!r}, feature_dim={self.feature_dim}, version={self.version[:16]!r}"


def _missing_weights_message(spec: BackboneSpec, weights: Any) -> str:
    where = weights_dir(spec.name)
    hub = f"https://huggingface.co/{'datasets/' if spec.hub_repo_type == 'dataset' else ''}{spec.hub_repo}"
    sub = f" (folder {spec.hub_subfolder})" if spec.hub_subfolder else ""
    gate = ("gated: accept the terms on the hub page and set HF_TOKEN" if spec.gated
            else "not gated")
    return (f"{spec.name}: no pretrained weights found (looked in {where}). Put one of "
            f"{', '.join(spec.hub_files)} there, or set STFLIB_WEIGHTS_DIR (folder containing '{spec.name}/'), "
            f"or pass weights=PATH. Get them from {hub}{sub} ({gate}; licence: {spec.licence}), e.g. "
            f"`python -c \"from stflib.backbones import download_weights; download_weights('{spec.name}')\"`. "
            f"Use pretrained=False (--random-init) for random weights.")


def get_backbone(name: str, weights: str | os.PathLike | Mapping[str, torch.Tensor] | None = None,
                 pretrained: bool = True, seed: int = 0, device: str | torch.device = "cpu") -> Backbone:
    """Build the frozen encoder ``name`` (see ``BACKBONES``) in eval mode.

    ``weights``: a checkpoint file, a folder holding it, or an in-memory state dict, all in the
    published key layout (converted to timm's, then loaded strictly). Without it, the default
    folder ``weights_dir(name)`` is searched. ``pretrained=False`` builds random weights
    (deterministic given ``seed``); it is an explicit choice, never a fallback.
    """
    spec = _spec(name)
    if not pretrained:
        if weights is not None:
            raise ValueError(f"{name}: weights given with pretrained=False; drop one of them")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = build_timm_model(name, device=device)
        return Backbone(spec, model, version="random-init").to(device)

    if isinstance(weights, Mapping):
        sd, where, version = dict(weights), "state dict", None
    else:
        path = find_weights(name, weights)
        if path is None:
            raise WeightsError(_missing_weights_message(spec, weights))
        sd, where, version = read_state_dict(path), str(path), f"sha256:{file_sha256(path)}"
    sd = _fill_batchnorm_counters(name, _strip_model_prefix(spec, sd))
    check_published_state_dict(name, sd, where=where)
    if version is None:
        version = f"sha256-tensors:{_state_dict_digest(sd)}"
    timm_sd = {k: (v.float() if v.is_floating_point() else v) for k, v in to_timm(name, sd).items()}
    model = _load_timm(name, spec, timm_sd, where)
    backbone = Backbone(spec, model, version=version)
    if any(p.is_meta for p in model.parameters()):
        return backbone  # shapes-only (meta) state dict: nothing to move
    return backbone.to(device)


def _load_timm(name: str, spec: BackboneSpec, timm_sd: StateDict, where: str) -> nn.Module:
    """Load strictly. Networks without non-persistent buffers are built on the meta device and take
    the checkpoint's tensors directly (no random init, no second copy: matters for ViT-g)."""
    given_meta = any(v.is_meta for v in timm_sd.values())  # shapes-only dict: structural check
    left: list[str] = []
    for attempt in ("meta", "cpu"):
        model = build_timm_model(name, device="meta" if attempt == "meta" else None)
        try:
            model.load_state_dict(timm_sd, strict=True, assign=attempt == "meta")
        except RuntimeError as exc:  # the published-layout check passed, so this is a converter bug
            raise WeightsError(f"{name}: {where}: converted state dict does not fit timm's network: {exc}") from exc
        if given_meta:
            return model
        left = [n for n, t in list(model.named_parameters()) + list(model.named_buffers()) if t.is_meta]
        if not left:
            return model
        # non-persistent buffers (e.g. Swin's attention masks) were not materialised: build normally
    raise WeightsError(f"{name}: tensors left uninitialised after loading: {_fmt_keys(left)}")


def download_weights(name: str, dest: str | os.PathLike | None = None, token: str | None = None) -> Path:
    """Download ``name``'s published checkpoint from the Hugging Face hub into ``dest``.

    ``dest`` defaults to ``weights_dir(name)`` (where ``get_backbone`` looks). ``token`` defaults
    to the ``HF_TOKEN`` environment variable; gated repositories (ctranspath's HEST-bench mirror,
    hibou-l, gigapath) need a token from an account that accepted their terms. Returns the file.
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, GatedRepoError, RepositoryNotFoundError

    spec = _spec(name)
    dest = Path(dest).expanduser() if dest is not None else weights_dir(name)
    dest.mkdir(parents=True, exist_ok=True)
    token = token if token is not None else os.environ.get("HF_TOKEN")
    errors = []
    for fname in spec.hub_files:
        try:
            got = hf_hub_download(repo_id=spec.hub_repo, filename=fname, subfolder=spec.hub_subfolder,
                                  repo_type=spec.hub_repo_type, token=token, local_dir=str(dest))
        except EntryNotFoundError as exc:
            errors.append(f"{fname}: {exc}")
            continue
        except (GatedRepoError, RepositoryNotFoundError) as exc:
            raise WeightsError(f"{name}: cannot access {spec.hub_repo} ({'gated' if spec.gated else 'not found'}): "
                               f"accept its terms on the hub and set HF_TOKEN (or pass token=). {exc}") from exc
        got = Path(got)
        final = dest / fname
        if got.resolve() != final.resolve():  # local_dir keeps the hub's subfolder: flatten it
            os.replace(got, final)
        return final
    raise WeightsError(f"{name}: none of {', '.join(spec.hub_files)} found in {spec.hub_repo}: {'; '.join(errors)}")
