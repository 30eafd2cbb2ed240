"""Frozen pathology feature extractors, built with timm and loaded strictly from local weights.

STF never fine-tunes its image encoder: features are extracted once (``stflib.features``) and the
model trains on the cached features. This package knows, for each encoder the seed names:

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

Modules: ``specs`` (the registry ``BACKBONES``: architectures, widths, normalisation, hub
locations, the simulator's stand-ins; no torch), ``architectures`` (the timm networks), ``keys`` (published <-> timm key layouts), ``weights`` (finding, reading, checking,
versioning and downloading checkpoints), ``model`` (``Backbone`` and ``get_backbone``).
"""
from stflib.backbones.specs import (
    BACKBONES,
    HIBOU_MEAN,
    HIBOU_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    BackboneSpec,
    StandIn,
    WeightsError,
)

# the torch/timm side is imported on first use, so reading the registry (the run configuration, the
# simulator's stand-ins) stays light
_LAZY = {
    "stflib.backbones.architectures": ("ConvStem", "build_timm_model"),
    "stflib.backbones.keys": ("expected_published_shapes", "make_published_state_dict", "to_published", "to_timm"),
    "stflib.backbones.model": ("Backbone", "get_backbone"),
    "stflib.backbones.weights": ("check_published_state_dict", "download_weights", "file_sha256", "find_weights",
                                 "read_state_dict", "weights_dir", "weights_root", "weights_version"),
}
_LAZY_OWNER = {name: module for module, names in _LAZY.items() for name in names}


def __getattr__(name: str):
    if name not in _LAZY_OWNER:
        raise AttributeError(f"module 'stflib.backbones' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_LAZY_OWNER[name]), name)


__all__ = [
    "BACKBONES", "BackboneSpec", "StandIn", "Backbone", "ConvStem", "WeightsError", "get_backbone", "download_weights",
    "weights_dir", "find_weights", "read_state_dict", "check_published_state_dict", "to_timm", "to_published",
    "expected_published_shapes", "make_published_state_dict", "build_timm_model", "weights_version",
    "file_sha256", "weights_root", "IMAGENET_MEAN", "IMAGENET_STD", "HIBOU_MEAN", "HIBOU_STD",
]
