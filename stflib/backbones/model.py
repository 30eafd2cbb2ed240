"""``Backbone``: a frozen encoder built from its spec and strictly loaded weights; ``get_backbone``."""
from __future__ import annotations

import os
from typing import Any, Mapping

import torch
from torch import nn

from stflib.backbones.keys import StateDict, to_timm
from stflib.backbones.architectures import build_timm_model
from stflib.backbones.specs import BACKBONES, BackboneSpec, WeightsError
from stflib.backbones.weights import (
    check_published_state_dict,
    file_sha256,
    fill_batchnorm_counters,
    find_weights,
    format_keys,
    missing_weights_message,
    read_state_dict,
    state_dict_digest,
    strip_model_prefix,
)

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


def get_backbone(name: str, weights: str | os.PathLike | Mapping[str, torch.Tensor] | None = None,
                 pretrained: bool = True, seed: int = 0, device: str | torch.device = "cpu") -> Backbone:
    """Build the frozen encoder ``name`` (see ``BACKBONES``) in eval mode.

    ``weights``: a checkpoint file, a folder holding it, or an in-memory state dict, all in the
    published key layout (converted to timm's, then loaded strictly). Without it, the default
    folder ``weights_dir(name)`` is searched. ``pretrained=False`` builds random weights
    (deterministic given ``seed``); it is an explicit choice, never a fallback.
    """
    spec = BACKBONES[name]
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
            raise WeightsError(missing_weights_message(spec, weights))
        sd, where, version = read_state_dict(path), str(path), f"sha256:{file_sha256(path)}"
    sd = fill_batchnorm_counters(name, strip_model_prefix(spec, sd))
    check_published_state_dict(name, sd, where=where)
    if version is None:
        version = f"sha256-tensors:{state_dict_digest(sd)}"
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
    raise WeightsError(f"{name}: tensors left uninitialised after loading: {format_keys(left)}")
