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
locations), ``keys`` (published <-> timm key layouts), ``weights`` (finding, reading, checking,
versioning and downloading checkpoints), ``model`` (``Backbone`` and ``get_backbone``).
"""
from stflib.backbones.keys import expected_published_shapes, make_published_state_dict, to_published, to_timm
from stflib.backbones.model import Backbone, get_backbone
from stflib.backbones.specs import (
    BACKBONES,
    HIBOU_MEAN,
    HIBOU_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    BackboneSpec,
    ConvStem,
    WeightsError,
    build_timm_model,
)
from stflib.backbones.weights import (
    check_published_state_dict,
    download_weights,
    file_sha256,
    find_weights,
    read_state_dict,
    weights_dir,
    weights_root,
    weights_version,
)

__all__ = [
    "BACKBONES", "BackboneSpec", "Backbone", "ConvStem", "WeightsError", "get_backbone", "download_weights",
    "weights_dir", "find_weights", "read_state_dict", "check_published_state_dict", "to_timm", "to_published",
    "expected_published_shapes", "make_published_state_dict", "build_timm_model", "weights_version",
    "file_sha256", "weights_root", "IMAGENET_MEAN", "IMAGENET_STD", "HIBOU_MEAN", "HIBOU_STD",
]
