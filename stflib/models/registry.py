"""The model registry: the only list of model names, and what each model is.

``MODELS`` maps a name to a :class:`ModelSpec`: where the class lives (imported when the model is
built, so this module, and the run configuration that validates ``model`` against it, need no
torch), whether it is trained (``torch``) or fitted in closed form (``numpy``), what it sees and
outputs (the book's model zoo, ``model_table()``), how ``n_neighbors`` reaches it, and the run
parameter rules it imposes. Every torch model is built as ``cls(feature_dim, num_genes, config)``
from one ``ModelConfig`` (``stflib.models.build_model``); a numpy one as ``cls(config)``.

Adding a model: its class (in ``baselines.py`` or a module of its own, taking a ``ModelConfig``) and its entry here; the
grid's baselines axis, its params files, the run parameter ``model`` and the book's table follow.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from stflib.models.config import check_interaction_model
from stflib.registry import Registry

KINDS = ("torch", "numpy")
SEES = ("nothing", "one spot", "the whole slide")  # what one prediction can depend on
OUTPUTS = ("per-spot genes", "slide mean", "pathway scores", "training mean")
# how n_neighbors = k > 0 reaches a model: its own attention is restricted to the k nearest spots;
# its input features become [own, mean of the k nearest spots']; the training loop feeds it windows
# of each spot and its k nearest spots (``stflib.train.windows``); or not at all
NEIGHBOURHOODS = ("attention", "features", "windows", "none")


@dataclass(frozen=True)
class ModelSpec:
    """One registered model.

    ``target``: ``"module:Class"``, imported on first use (``cls``).
    ``kind``: ``torch`` (trained by ``stflib.train.loop.fit``) or ``numpy`` (fitted in closed form on
    per-spot features). ``sees`` (``SEES``) and ``outputs`` (``OUTPUTS``): what one prediction
    depends on and what the model returns, in its default configuration. ``neighbourhood``
    (``NEIGHBOURHOODS``): how ``n_neighbors = k > 0`` reaches it. ``zinb_head``: it can model raw
    counts (losses with ``needs_counts``). ``check``: rules the model puts on the run parameters,
    called with the normalised parameters by the run configuration's validation.
    """

    target: str
    kind: str
    sees: str
    outputs: tuple[str, ...]
    neighbourhood: str
    description: str
    reference: str
    zinb_head: bool = False
    check: Callable[[Mapping[str, Any]], None] | None = None

    def __post_init__(self):
        for name, value, allowed in (("kind", self.kind, KINDS), ("sees", self.sees, SEES),
                                     ("neighbourhood", self.neighbourhood, NEIGHBOURHOODS)):
            if value not in allowed:
                raise ValueError(f"ModelSpec {self.target}: unknown {name} {value!r}; allowed: {', '.join(allowed)}")
        for value in self.outputs:
            if value not in OUTPUTS:
                raise ValueError(f"ModelSpec {self.target}: unknown output {value!r}; allowed: {', '.join(OUTPUTS)}")
        if ":" not in self.target:
            raise ValueError(f"ModelSpec target {self.target!r}: expected 'module:Class'")

    @property
    def class_name(self) -> str:
        return self.target.split(":", 1)[1]

    @property
    def cls(self) -> type:
        """The model class (importing its module: torch for the torch models)."""
        module, name = self.target.split(":", 1)
        return getattr(importlib.import_module(module), name)

    @property
    def context_features(self) -> bool:
        """With ``n_neighbors = k`` the model is fed [own, mean of the k nearest spots'] features."""
        return self.neighbourhood == "features"

    def window_k(self, n_neighbors: int) -> int:
        """k of the spot windows the training loop builds for this model (0: whole slides)."""
        return n_neighbors if self.neighbourhood == "windows" else 0


MODELS: Registry[ModelSpec] = Registry("model")

# "interaction" is the seed's --model name for SpatialTranscriptFormer
MODELS.register("interaction", ModelSpec(
    "stflib.models.stf:SpatialTranscriptFormer", "torch", "the whole slide", ("per-spot genes", "pathway scores"),
    "attention", "SpatialTranscriptFormer: pathway-token transformer with cosine pathway scores",
    "this book's seed (SpatialTranscriptFormer); quadrant masking after SurvPath (Jaume et al. 2024)",
    zinb_head=True, check=check_interaction_model))
MODELS.register("he2rna", ModelSpec(
    "stflib.models.baselines:HE2RNA", "torch", "one spot", ("per-spot genes",), "windows",
    "per-spot linear regression from frozen features (HE2RNA-style)", "Schmauch et al. (2020), Nature Communications"))
MODELS.register("mlp", ModelSpec(
    "stflib.models.baselines:SpotMLP", "torch", "one spot", ("per-spot genes",), "features",
    "per-spot MLP (one hidden layer)", "generic baseline"))
MODELS.register("mean", ModelSpec(
    "stflib.models.baselines:MeanExpression", "numpy", "nothing", ("training mean",), "none",
    "training-set mean expression at every spot (the floor)", "floor"))
MODELS.register("ridge_probe", ModelSpec(
    "stflib.models.baselines:RidgeProbe", "numpy", "one spot", ("per-spot genes",), "features",
    "StandardScaler + PCA(256) + ridge, per spot (HEST-Bench probe)", "Jaume et al. (2024), HEST-1k, NeurIPS"))
MODELS.register("abmil", ModelSpec(
    "stflib.models.mil:ABMIL", "torch", "the whole slide", ("slide mean",), "windows",
    "gated-attention MIL pooling, slide-level", "Ilse et al. (2018), ICML"))
MODELS.register("transmil", ModelSpec(
    "stflib.models.mil:TransMIL", "torch", "the whole slide", ("slide mean",), "windows",
    "Nystrom-attention transformer + PPEG on the spot grid, slide-level", "Shao et al. (2021), NeurIPS"))

MODELS.register("knn_retrieval", ModelSpec(
    "stflib.models.baselines:KNNRetrieval", "numpy", "one spot", ("per-spot genes",), "none",
    "mean expression of the 16 training spots nearest by cosine similarity of standardised features",
    "retrieval as in BLEEP (Xie et al. 2023, NeurIPS), on the frozen features"))
MODELS.register("patch_transformer", ModelSpec(
    "stflib.models.baselines:PatchTransformer", "torch", "the whole slide", ("per-spot genes",), "attention",
    "STF's encoder over the patch tokens alone (no pathway tokens), a linear gene head",
    "this book's seed (SpatialTranscriptFormer) without its pathway tokens"))

TORCH_MODELS = tuple(name for name, spec in MODELS.items() if spec.kind == "torch")


def model_table():
    """pandas DataFrame of the models, one row per registry entry (the book's model zoo): name,
    class, kind, what it sees and outputs, description, reference. Imports no torch."""
    return MODELS.table({
        "class": lambda s: s.class_name, "kind": lambda s: s.kind, "sees": lambda s: s.sees,
        "outputs": lambda s: ", ".join(s.outputs), "description": lambda s: s.description,
        "reference": lambda s: s.reference,
    })
