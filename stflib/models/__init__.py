"""Models: SpatialTranscriptFormer, its baselines, a registry, and the frozen backbones.

``build_model(name, feature_dim, num_genes, **params)`` builds any registered model by name
(``MODELS``); ``model_table()`` lists them for the book. ``get_backbone``/``BACKBONES`` are
re-exported from ``stflib.backbones`` (imported on first use, so this package imports without it).
"""
from __future__ import annotations

import inspect
from typing import Any, Callable

from stflib.models.baselines import ABMIL, HE2RNA, MeanExpression, RidgeProbe, SpotMLP, TransMIL
from stflib.models.stf import (
    QUADRANTS,
    ModelOutput,
    SpatialTranscriptFormer,
    interaction_mask,
    parse_interactions,
)

# name -> builder(feature_dim, num_genes, **params); "interaction" is the seed's --model name for STF
MODELS: dict[str, Callable[..., Any]] = {
    "interaction": SpatialTranscriptFormer,
    "he2rna": HE2RNA,
    "mlp": SpotMLP,
    "abmil": ABMIL,
    "transmil": TransMIL,
    "mean": MeanExpression,
}

# the sklearn probe is not a torch module (fit/predict on numpy), so it is listed but not built here
PROBES: dict[str, type] = {"ridge_probe": RidgeProbe}


def _params_of(builder) -> set[str]:
    sig = inspect.signature(builder)
    return {n for n, p in sig.parameters.items() if n not in ("self", "feature_dim", "num_genes")
            and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def build_model(name: str, feature_dim: int, num_genes: int, **params):
    """Build ``MODELS[name](feature_dim, num_genes, **params)``.

    Parameters that belong to another registered model (e.g. ``interactions`` passed to ``he2rna``,
    as a notebook with every flag does) are dropped; a parameter no model knows is an error.
    """
    if name not in MODELS:
        hint = f"; {name!r} is a numpy probe: use stflib.models.baselines.RidgeProbe" if name in PROBES else ""
        raise ValueError(f"model: unknown {name!r}; allowed: {', '.join(MODELS)}{hint}")
    builder = MODELS[name]
    own = _params_of(builder)
    known = set().union(*(_params_of(b) for b in MODELS.values()))
    unknown = sorted(set(params) - known)
    if unknown:
        raise TypeError(f"build_model({name!r}): unknown parameter(s) {', '.join(unknown)}; "
                        f"{name} accepts: {', '.join(sorted(own))}")
    return builder(feature_dim, num_genes, **{k: v for k, v in params.items() if k in own})


def model_table():
    """pandas DataFrame of the models: name, class, description, reference (for the book)."""
    import pandas as pd

    rows = [
        {"name": name, "class": cls.__name__, "description": cls.description, "reference": cls.reference}
        for name, cls in {**MODELS, **PROBES}.items()
    ]
    return pd.DataFrame(rows, columns=["name", "class", "description", "reference"])


def __getattr__(name: str):
    # lazy re-export: stflib.backbones is written separately and may import heavy dependencies (timm)
    if name in ("get_backbone", "BACKBONES"):
        from stflib import backbones

        return getattr(backbones, name)
    raise AttributeError(f"module 'stflib.models' has no attribute {name!r}")


__all__ = [
    "MODELS", "PROBES", "build_model", "model_table", "ModelOutput", "SpatialTranscriptFormer",
    "interaction_mask", "parse_interactions", "QUADRANTS", "HE2RNA", "SpotMLP", "ABMIL", "TransMIL",
    "MeanExpression", "RidgeProbe", "get_backbone", "BACKBONES",
]
