"""The model registry: the only list of model names (as timm's ``register_model``).

A model class registers itself where it is defined, with :func:`register_model`; ``MODELS`` maps
each name to a :class:`ModelSpec` in registration order (``stflib.models`` imports the model
file first, then the baselines). The run parameter ``model``'s allowed values, the grid's baselines
axis and the book's ``model_table()`` read it.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelSpec:
    """One registered model.

    ``kind``: ``torch`` (trained by ``stflib.train.loop.fit``) or ``numpy`` (fitted in closed form on
    per-spot features).
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


MODELS: dict[str, ModelSpec] = {}
KINDS = ("torch", "numpy")


def register_model(name: str, kind: str, run_args: tuple[str, ...] = (), context_features: bool = False,
                   zinb_head: bool = False):
    """Class decorator: register the class as model ``name`` (see :class:`ModelSpec`)."""
    if kind not in KINDS:
        raise ValueError(f"register_model({name!r}): unknown kind {kind!r}; allowed: {', '.join(KINDS)}")

    def register(cls: type) -> type:
        if name in MODELS and MODELS[name].cls is not cls:
            raise ValueError(f"model {name!r} is already registered to {MODELS[name].cls.__name__}")
        MODELS[name] = ModelSpec(cls, kind, tuple(run_args), context_features, zinb_head)
        return cls

    return register


def get_model(name: str) -> ModelSpec:
    """``MODELS[name]`` with an error naming the allowed ones."""
    if name not in MODELS:
        raise ValueError(f"model: unknown {name!r}; allowed: {', '.join(MODELS)}")
    return MODELS[name]
