"""Key layouts of the published checkpoints and their conversion to timm's (``to_timm``) and back
(``to_published``, used to describe and test the file a user must provide).

Each layout's renames are written once, as published -> timm maps; the reverse direction is
derived from them.
"""
from __future__ import annotations

import re
from typing import Callable, Mapping

import torch

from stflib.backbones.architectures import build_timm_model
from stflib.backbones.specs import BACKBONES, BackboneSpec

# --------------------------------------------------------------------------------------------
# Key layouts: published <-> timm
# --------------------------------------------------------------------------------------------
StateDict = dict[str, torch.Tensor]


def _identity(sd: Mapping[str, torch.Tensor]) -> StateDict:
    return dict(sd)


# ---- CTransPath (timm 0.5.4 Swin: PatchMerging at the END of stages 0-2) -----------------
_DOWN_OLD = re.compile(r"^layers\.(\d+)\.downsample\.")


def _ctp_shift_downsample(sd: Mapping[str, torch.Tensor], by: int) -> StateDict:
    """Move each PatchMerging from the end of stage i to the start of stage i + ``by`` (+1: published
    -> timm, -1: back)."""
    out = {}
    for k, v in sd.items():
        m = _DOWN_OLD.match(k)
        if m:
            k = f"layers.{int(m.group(1)) + by}.downsample." + k[m.end():]
        out[k] = v
    return out


def _ctp_to_timm(sd: Mapping[str, torch.Tensor]) -> StateDict:
    return _ctp_shift_downsample(sd, +1)


def _ctp_to_published(sd: Mapping[str, torch.Tensor]) -> StateDict:
    return _ctp_shift_downsample(sd, -1)


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


# published -> timm names outside the blocks; the reverse maps are their inverses
_HF_VIT_TOP = {
    "embeddings.cls_token": "cls_token", "embeddings.position_embeddings": "pos_embed",
    "embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
    "embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
    "layernorm.weight": "norm.weight", "layernorm.bias": "norm.bias",
}
_HF_DINO_TOP = {  # cls_token and position_embeddings are folded separately (see _hf_dino_to_timm)
    "embeddings.register_tokens": "reg_token",
    "embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
    "embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
    "layernorm.weight": "norm.weight", "layernorm.bias": "norm.bias",
}


def _inverse(renames: dict[str, str]) -> dict[str, str]:
    return {new: old for old, new in renames.items()}


def _convert(sd: Mapping[str, torch.Tensor], renames: dict[str, str], blocks_prefix: str,
             convert_blocks: Callable, block_map: dict, out: StateDict | None = None) -> StateDict:
    """Rename the keys outside the transformer blocks (``renames``; other keys kept as they are, so
    that the strict check reports unknown ones), then convert the blocks (keys under ``blocks_prefix``)."""
    out = {} if out is None else out
    for k, v in sd.items():
        if k in renames:
            out[renames[k]] = v
        elif not k.startswith(blocks_prefix):
            out[k] = v
    convert_blocks(sd, block_map, out)
    return out


def _hf_vit_to_timm(sd: Mapping[str, torch.Tensor]) -> StateDict:
    return _convert(sd, _HF_VIT_TOP, "encoder.layer.", _hf_blocks_to_timm, _HF_VIT_BLOCK)


def _hf_vit_to_published(sd: Mapping[str, torch.Tensor]) -> StateDict:
    return _convert(sd, _inverse(_HF_VIT_TOP), "blocks.", _timm_blocks_to_hf, _HF_VIT_BLOCK)


_DINO_CLS, _DINO_POS = "embeddings.cls_token", "embeddings.position_embeddings"


def _hf_dino_to_timm(sd: Mapping[str, torch.Tensor]) -> StateDict:
    """HF Dinov2-with-registers -> timm reg4 ViT (no_embed_class: cls/registers carry no pos-embed).

    DINOv2 adds position_embeddings[0] to the CLS token before inserting the registers, so folding
    it into timm's cls_token gives the same network (as timm's own DINOv2 converter does).
    """
    out: StateDict = {}
    if _DINO_CLS in sd and _DINO_POS in sd:
        pos = sd[_DINO_POS]
        out["cls_token"], out["pos_embed"] = sd[_DINO_CLS] + pos[:, :1], pos[:, 1:]
        sd = {k: v for k, v in sd.items() if k not in (_DINO_CLS, _DINO_POS)}
    return _convert(sd, _HF_DINO_TOP, "encoder.layer.", _hf_blocks_to_timm, _HF_DINO_BLOCK, out)


def _hf_dino_to_published(sd: Mapping[str, torch.Tensor]) -> StateDict:
    """timm -> HF Dinov2 layout; the CLS position embedding is set to zero (the fold is not invertible)."""
    out: StateDict = {}
    if "pos_embed" in sd:
        pos = sd["pos_embed"]
        out[_DINO_POS] = torch.cat([torch.zeros_like(pos[:, :1]), pos], dim=1)
        sd = {k: v for k, v in sd.items() if k != "pos_embed"}
    renames = {**_inverse(_HF_DINO_TOP), "cls_token": _DINO_CLS}
    return _convert(sd, renames, "blocks.", _timm_blocks_to_hf, _HF_DINO_BLOCK, out)


LAYOUTS: dict[str, tuple[Callable, Callable]] = {
    "timm": (_identity, _identity),
    "torchvision": (_identity, _identity),
    "ctranspath": (_ctp_to_timm, _ctp_to_published),
    "hf_vit": (_hf_vit_to_timm, _hf_vit_to_published),
    "hf_dinov2_reg": (_hf_dino_to_timm, _hf_dino_to_published),
}


def layout_of(spec: BackboneSpec) -> tuple:
    """``(to_timm, to_published[, extras])`` of a spec's layout: a name of ``LAYOUTS``, or a
    ``"package.module:NAME"`` string naming such a tuple. The second form keeps a new layout's converters
    with the one backbone that uses them (the code version of other runs does not cover them)."""
    if spec.layout in LAYOUTS:
        return LAYOUTS[spec.layout]
    module, sep, attr = spec.layout.partition(":")
    if not sep:
        raise ValueError(f"backbone layout {spec.layout!r}: unknown; allowed: {', '.join(LAYOUTS)} "
                         "or 'package.module:NAME' of a (to_timm, to_published, extras) tuple")
    import importlib

    return getattr(importlib.import_module(module), attr)


def to_timm(name: str, published: Mapping[str, torch.Tensor]) -> StateDict:
    """Convert a state dict in ``name``'s published key layout to timm's (extra keys dropped)."""
    spec = BACKBONES[name]
    kept = {k: v for k, v in published.items() if not is_extra_key(spec, k)}
    return layout_of(spec)[0](kept)


def to_published(name: str, timm_state: Mapping[str, torch.Tensor]) -> StateDict:
    """Convert a timm state dict of ``name`` to the published checkpoint's key layout (without extras)."""
    return layout_of(BACKBONES[name])[1](timm_state)


def is_extra_key(spec: BackboneSpec, key: str) -> bool:
    return any(re.search(p, key) for p in spec.extra_keys)


def expected_published_shapes(name: str) -> dict[str, tuple[int, ...]]:
    """Key -> shape of every tensor the published checkpoint must contain (extras not included)."""
    meta = build_timm_model(name, device="meta").state_dict()
    return {k: tuple(v.shape) for k, v in to_published(name, meta).items()}


def _published_extras(name: str, device: str | torch.device = "cpu") -> StateDict:
    """The known-but-unused tensors of a published checkpoint (values are placeholders)."""
    spec = BACKBONES[name]
    z = lambda *s, dtype=torch.float32: torch.zeros(*s, dtype=dtype, device=device)  # noqa: E731
    layout = layout_of(spec)
    if len(layout) > 2:  # a layout kept with its backbone knows its own extras
        return layout[2](spec, z)
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


# ---- Hugging Face CLIPModel (PLIP): the image tower and its projection -------------------------
# published -> timm names; the CLIP tower's q/k/v projections are fused into timm's qkv, and the
# projection (no bias in CLIP) becomes timm's classifier head with a zero bias
_CLIP_V = "vision_model."
_CLIP_TOP = {
    "embeddings.patch_embedding.weight": "patch_embed.proj.weight",
    "pre_layrnorm.weight": "norm_pre.weight", "pre_layrnorm.bias": "norm_pre.bias",  # HF's own spelling
    "post_layernorm.weight": "norm.weight", "post_layernorm.bias": "norm.bias",
}
_CLIP_BLOCK = {"layer_norm1": "norm1", "layer_norm2": "norm2", "self_attn.out_proj": "attn.proj",
               "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2"}
_CLIP_LAYER = re.compile(r"^vision_model\.encoder\.layers\.(\d+)\.(.+)\.(weight|bias)$")


def _hf_clip_to_timm(sd: Mapping[str, torch.Tensor]) -> StateDict:
    out: StateDict = {}
    qkv: dict[tuple[int, str], dict[str, torch.Tensor]] = {}
    for k, v in sd.items():
        m = _CLIP_LAYER.match(k)
        if m:
            i, mod, leaf = int(m.group(1)), m.group(2), m.group(3)
            if mod in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"):
                qkv.setdefault((i, leaf), {})[mod[len("self_attn."):][0]] = v
            else:
                out[f"blocks.{i}.{_CLIP_BLOCK.get(mod, mod)}.{leaf}"] = v
            continue
        short = k[len(_CLIP_V):] if k.startswith(_CLIP_V) else None
        if short == "embeddings.class_embedding":
            out["cls_token"] = v.reshape(1, 1, -1)
        elif short == "embeddings.position_embedding.weight":
            out["pos_embed"] = v.unsqueeze(0)
        elif short in _CLIP_TOP:
            out[_CLIP_TOP[short]] = v
        elif k == "visual_projection.weight":
            out["head.weight"] = v
            out["head.bias"] = torch.zeros(v.shape[0], dtype=v.dtype, device=v.device)
        else:
            out[k] = v  # unknown: kept under its name so that the strict check reports it
    for (i, leaf), parts in qkv.items():
        if set(parts) == {"q", "k", "v"}:
            out[f"blocks.{i}.attn.qkv.{leaf}"] = torch.cat([parts["q"], parts["k"], parts["v"]], 0)
        else:
            for p, v in parts.items():
                out[f"vision_model.encoder.layers.{i}.self_attn.{p}_proj.{leaf}"] = v
    return out


def _hf_clip_to_published(sd: Mapping[str, torch.Tensor]) -> StateDict:
    """timm -> HF CLIPModel's image tower; ``head.bias`` is dropped (CLIP's projection has none)."""
    out: StateDict = {}
    top = _inverse(_CLIP_TOP)
    block = _inverse(_CLIP_BLOCK)
    for k, v in sd.items():
        m = _TIMM_BLOCK.match(k)
        if m:
            i, mod, leaf = int(m.group(1)), m.group(2), m.group(3)
            base = f"{_CLIP_V}encoder.layers.{i}."
            if mod == "attn.qkv":
                for p, part in zip("qkv", v.chunk(3, dim=0)):
                    out[f"{base}self_attn.{p}_proj.{leaf}"] = part
            else:
                out[f"{base}{block[mod]}.{leaf}"] = v
        elif k == "cls_token":
            out[f"{_CLIP_V}embeddings.class_embedding"] = v.reshape(-1)
        elif k == "pos_embed":
            out[f"{_CLIP_V}embeddings.position_embedding.weight"] = v.squeeze(0)
        elif k == "head.weight":
            out["visual_projection.weight"] = v
        elif k != "head.bias":
            out[_CLIP_V + top[k]] = v
    return out


def _hf_clip_extras(spec: BackboneSpec, zeros: Callable) -> StateDict:
    """A few of the text tower's tensors (the real file holds all of it; ``extra_keys`` drops them)."""
    d = spec.feature_dim
    return {"logit_scale": zeros(()), "text_projection.weight": zeros(d, d),
            "text_model.final_layer_norm.weight": zeros(d), "vision_model.embeddings.position_ids": zeros(1, 50)}


HF_CLIP = (_hf_clip_to_timm, _hf_clip_to_published, _hf_clip_extras)
