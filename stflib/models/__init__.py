"""Models: SpatialTranscriptFormer, its baselines, the model registry, and the frozen backbones.

``MODELS`` (``stflib.models.registry``) is the only list of model names: name -> ``ModelSpec``, what
the model is, sees and outputs (``model_table()``, the book's model zoo) and how ``n_neighbors``
reaches it. Every model is built from one ``ModelConfig`` (``stflib.models.config``):
``build_model(name, feature_dim, num_genes, config)``.

Importing this package imports no torch: the registry, the configuration and ``Interactions`` are
light, and the torch modules (``stf``, ``attention``, ``baselines``) and their classes are imported
on first use (``from stflib.models import SpatialTranscriptFormer`` works as before). ``get_backbone``
and ``BACKBONES`` are re-exported from ``stflib.backbones`` the same way.
"""
from __future__ import annotations

import importlib

from stflib.models.config import (
    NAMED_INTERACTIONS,
    QUADRANTS,
    Interactions,
    ModelConfig,
    check_depth,
    check_neighbours,
    parse_interactions,
)
from stflib.models.registry import MODELS, TORCH_MODELS, ModelSpec, model_table


def build_model(name: str, feature_dim: int, num_genes: int, config: ModelConfig | None = None, **overrides):
    """The model ``MODELS[name]`` built from ``config`` (None: the defaults) with ``overrides`` of its
    fields: torch models as ``cls(feature_dim, num_genes, config)``, numpy models (fitted later on
    per-spot features) as ``cls(config)``. An unknown name is a ``ValueError`` naming the models; a
    name that is not a ``ModelConfig`` field is a ``TypeError`` naming the fields."""
    spec = MODELS[name]
    config = ModelConfig.build(config, **overrides)
    if spec.kind == "torch":
        return spec.cls(feature_dim, num_genes, config)
    return spec.cls(config)


# name -> module that defines it; imported on first access (PEP 562), so the package stays torch-free
_LAZY = {
    "ModelOutput": "stflib.models.stf", "SpatialTranscriptFormer": "stflib.models.stf",
    "interaction_mask": "stflib.models.attention",
    "HE2RNA": "stflib.models.baselines", "SpotMLP": "stflib.models.baselines", "ABMIL": "stflib.models.mil",
    "TransMIL": "stflib.models.mil", "MeanExpression": "stflib.models.baselines",
    "RidgeProbe": "stflib.models.baselines",
    "get_backbone": "stflib.backbones", "BACKBONES": "stflib.backbones",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'stflib.models' has no attribute {name!r}")


__all__ = [
    "MODELS", "TORCH_MODELS", "ModelSpec", "ModelConfig", "Interactions", "build_model", "model_table",
    "QUADRANTS", "NAMED_INTERACTIONS", "parse_interactions", "check_depth", "check_neighbours", *_LAZY,
]
