"""Models: SpatialTranscriptFormer, its baselines, the model registry, and the frozen backbones.

``MODELS`` is the only list of model names (the run parameter ``model``'s allowed values, the book's
``model_table()``): name -> ``ModelSpec``, which says what the model is (``torch``: trained by
``stflib.train.loop.fit``; ``numpy``: fitted in closed form on per-spot features), which run
arguments its constructor takes (``run_args``, routed explicitly by ``stflib.train.model``), and
how it sees ``n_neighbors``. ``build_model(name, feature_dim, num_genes, **params)`` builds a torch
model by name. ``get_backbone``/``BACKBONES`` are re-exported from ``stflib.backbones`` (imported on
first use, so this package imports without timm).

Adding a torch baseline: its class in ``baselines.py`` (with ``description`` and ``reference``), an
entry here, a params file ``params/baselines/<name>.yaml`` and a test in ``tests/test_models.py``.
"""
from __future__ import annotations

from dataclasses import dataclass

from stflib.models.baselines import ABMIL, HE2RNA, MeanExpression, RidgeProbe, SpotMLP, TransMIL
from stflib.models.stf import (
    NAMED_INTERACTIONS,
    QUADRANTS,
    ModelOutput,
    SpatialTranscriptFormer,
    check_depth,
    check_neighbours,
    interaction_mask,
    parse_interactions,
)


@dataclass(frozen=True)
class ModelSpec:
    """One registered model.

    ``run_args``: the constructor keywords a run passes (``stflib.train.model.run_arguments`` computes
    them from the run parameters); anything else keeps the class default.
    ``context_features``: with ``n_neighbors = k`` the model is fed [own, mean of the k nearest
    spots'] features (per-spot models); otherwise it attends to the neighbourhood itself (the
    model has an ``n_neighbors`` argument) or sees neighbourhood windows (``stflib.train.windows``).
    ``zinb_head``: the model can model raw counts (losses with ``needs_counts``).
    """

    cls: type
    kind: str  # "torch" or "numpy"
    run_args: tuple[str, ...] = ()
    context_features: bool = False
    zinb_head: bool = False

    @property
    def description(self) -> str:
        return self.cls.description

    @property
    def reference(self) -> str:
        return self.cls.reference


# "interaction" is the seed's --model name for SpatialTranscriptFormer
MODELS: dict[str, ModelSpec] = {
    "interaction": ModelSpec(SpatialTranscriptFormer, "torch", (
        "num_pathways", "token_dim", "n_heads", "n_layers", "interactions", "positional_encoding", "pathway_init",
        "pathway_names", "output_mode", "zinb", "dropout", "n_neighbors"), zinb_head=True),
    "he2rna": ModelSpec(HE2RNA, "torch", ("output_mode",)),
    "mlp": ModelSpec(SpotMLP, "torch", ("dropout", "output_mode"), context_features=True),
    "abmil": ModelSpec(ABMIL, "torch", ("dropout",)),
    "transmil": ModelSpec(TransMIL, "torch", ("n_heads", "dropout")),
    "mean": ModelSpec(MeanExpression, "numpy"),
    "ridge_probe": ModelSpec(RidgeProbe, "numpy", ("random_state",), context_features=True),
}
TORCH_MODELS = tuple(name for name, spec in MODELS.items() if spec.kind == "torch")


def get_model(name: str) -> ModelSpec:
    """``MODELS[name]`` with an error naming the allowed ones."""
    if name not in MODELS:
        raise ValueError(f"model: unknown {name!r}; allowed: {', '.join(MODELS)}")
    return MODELS[name]


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
    "MODELS", "TORCH_MODELS", "ModelSpec", "get_model", "build_model", "model_table", "ModelOutput",
    "SpatialTranscriptFormer", "interaction_mask", "parse_interactions", "check_depth", "check_neighbours", "QUADRANTS",
    "NAMED_INTERACTIONS", "HE2RNA", "SpotMLP", "ABMIL", "TransMIL", "MeanExpression", "RidgeProbe",
    "get_backbone", "BACKBONES",
]
