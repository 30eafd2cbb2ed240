"""Models: SpatialTranscriptFormer, its baselines, the model registry, and the frozen backbones.

``MODELS`` is the only list of model names (the run parameter ``model``'s allowed values, the book's
``model_table()``): name -> ``ModelSpec``, which says what the model is (``torch``: trained by
``stflib.train.loop.fit``; ``numpy``: fitted in closed form on per-spot features), which run
arguments its constructor takes (``run_args``, routed explicitly by ``stflib.train.model``), and
how it sees ``n_neighbors``. ``build_model(name, feature_dim, num_genes, **params)`` builds a torch
model by name. ``get_backbone``/``BACKBONES`` are re-exported from ``stflib.backbones`` (imported on
first use, so this package imports without timm).

Adding a torch baseline: its class in ``baselines.py`` (with ``description``, ``reference`` and its
``@register_model`` line) and a test in ``tests/test_models.py``; the grid's baselines axis and its
params files follow from the registry.
"""
from __future__ import annotations

from stflib.models.stf import (  # noqa: I001  (the model file registers first: MODELS order)
    NAMED_INTERACTIONS,
    QUADRANTS,
    ModelOutput,
    SpatialTranscriptFormer,
    check_depth,
    check_neighbours,
    interaction_mask,
    parse_interactions,
)
from stflib.models.baselines import ABMIL, HE2RNA, MeanExpression, RidgeProbe, SpotMLP, TransMIL
from stflib.models.registry import MODELS, ModelSpec, get_model, register_model

TORCH_MODELS = tuple(name for name, spec in MODELS.items() if spec.kind == "torch")


def build_model(name: str, feature_dim: int, num_genes: int, **params):
    """Build the torch model ``MODELS[name]`` as ``cls(feature_dim, num_genes, **params)``; a keyword
    the model does not take is a ``TypeError`` naming it."""
    spec = get_model(name)
    if spec.kind != "torch":
        raise ValueError(f"model: {name!r} is a numpy model (fit/predict on per-spot features): use "
                         f"MODELS[{name!r}].cls(); torch models: {', '.join(TORCH_MODELS)}")
    return spec.cls(feature_dim, num_genes, **params)


def model_table():
    """pandas DataFrame of the models: name, class, description, reference (for the book)."""
    import pandas as pd

    rows = [{"name": name, "class": spec.cls.__name__, "description": spec.description, "reference": spec.reference}
            for name, spec in MODELS.items()]
    return pd.DataFrame(rows, columns=["name", "class", "description", "reference"])


def __getattr__(name: str):
    # lazy re-export: stflib.backbones imports heavy dependencies (timm) on first use
    if name in ("get_backbone", "BACKBONES"):
        from stflib import backbones

        return getattr(backbones, name)
    raise AttributeError(f"module 'stflib.models' has no attribute {name!r}")


__all__ = [
    "MODELS", "TORCH_MODELS", "ModelSpec", "get_model", "register_model", "build_model", "model_table", "ModelOutput",
    "SpatialTranscriptFormer", "interaction_mask", "parse_interactions", "check_depth", "check_neighbours", "QUADRANTS",
    "NAMED_INTERACTIONS", "HE2RNA", "SpotMLP", "ABMIL", "TransMIL", "MeanExpression", "RidgeProbe",
    "get_backbone", "BACKBONES",
]
