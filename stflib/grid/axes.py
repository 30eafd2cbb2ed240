"""The ablation grid's one table: every axis, its arms (parameter overrides) and its reference arm.

``ARMS`` (a :class:`~stflib.registry.Registry`) maps an axis to an :class:`Axis`: the arms (arm -> the
notebook parameters it sets; the others keep their defaults) and the reference arm every other arm of the axis is compared with in
the book (the seed's default for that choice). The params files (:mod:`stflib.grid.params`), the
runner and the book's tables and findings all read this table.

An axis holds distinct models only (:func:`distinct_axis`): arms that are the same computation by the
model's construction (:mod:`stflib.models.equivalence`, e.g. interaction subsets whose extra flows
cannot reach a prediction) are one arm, the canonical one, which is run; the others are recorded as its
``aliases`` and never run, and the book shows the model once with its aliases.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from stflib import config as C
from stflib.backbones import BACKBONES
from stflib.losses import LOSSES
from stflib.metrics import METRICS
from stflib.models import MODELS
from stflib.models.equivalence import alias_groups
from stflib.registry import Registry


@dataclass(frozen=True)
class Axis:
    """One design choice of the grid: its arms, the arm the others are compared with, for an arm
    that stands for several equivalent ones their names (``aliases``: arm -> the arms that are the
    same model; they are not run), the book page that shows it (``page``: ``book/ablations/<page>``,
    by default the axis's own name), and the metric its page and conclusion box compare the arms on
    (``metric``, a ``stflib.metrics`` name: an axis whose every arm predicts pathway scores has no gene PCC)."""

    reference: str
    arms: dict[str, dict[str, Any]]
    aliases: dict[str, tuple[str, ...]] = field(default_factory=dict)
    page: str | None = None
    metric: str = "pcc_hvg50"

    def __post_init__(self):
        if self.reference not in self.arms:
            raise ValueError(f"reference arm {self.reference!r} is not an arm of its axis; arms: {', '.join(self.arms)}")
        unknown = sorted(set(self.aliases) - set(self.arms))
        if unknown:
            raise ValueError(f"aliases of {unknown}: not arms of the axis; arms: {', '.join(self.arms)}")
        clash = sorted({a for names in self.aliases.values() for a in names} & set(self.arms))
        if clash:
            raise ValueError(f"aliases {clash} are also run as arms: an alias names a model run under another arm")
        if self.metric not in METRICS:
            raise ValueError(f"metric {self.metric!r} is not a summarised metric; allowed: {', '.join(METRICS)}")

    def canonical(self, arm: str) -> str:
        """The arm that is run for ``arm``: ``arm`` itself, or the arm it is an alias of."""
        for name, names in self.aliases.items():
            if arm in names:
                return name
        return arm


def distinct_axis(reference: str, arms: dict[str, dict[str, Any]], page: str | None = None) -> Axis:
    """An :class:`Axis` of the distinct models among ``arms``: arms whose resolved parameters are the
    same computation (:func:`stflib.models.equivalence.alias_groups`) become one arm, the canonical one,
    with the others as its aliases. The reference is kept as the arm of its group."""
    resolved = {arm: C.validate(over, check_paths=False) for arm, over in arms.items()}
    groups = alias_groups(resolved)
    for canonical, names in list(groups.items()):
        if reference in names:  # the axis's reference stays the arm every page names
            groups[reference] = tuple(a for a in (canonical, *names) if a != reference)
            del groups[canonical]
    dropped = {a for names in groups.values() for a in names}
    return Axis(reference, {arm: over for arm, over in arms.items() if arm not in dropped}, groups, page)


def _interaction_arms(**common) -> dict[str, dict]:
    return {C.interactions_name(q): {"interactions": list(q), **common} for q in C.interaction_subsets()}


def _loss_arms() -> dict[str, dict]:
    # one arm per registered loss; a loss of raw counts (ZINB) trains without the log transform
    return {name: {"loss": name, **({"log_transform": False} if spec.needs_counts else {})}
            for name, spec in LOSSES.items()}


# the neighbourhoods of the context axis (6: the first hexagonal ring; 18: two rings, the reference's):
# each gets context-matched baselines that see what STF's arm with that k sees
CONTEXT_KS = (6, C.REFERENCE_NEIGHBOURS)


def _baseline_arms() -> dict[str, dict]:
    arms: dict[str, dict] = {
        "stf": {},  # the default SpatialTranscriptFormer, for reference (shared with interactions/full)
        "seed_defaults": C.seed_flag_overrides(),  # the seed's own command-line defaults in the same loop
    }
    # every other registered model, and a context-matched twin of each model that takes context
    # features: [own features, mean of the k nearest spots' features], as STF's context arm with that k
    arms.update({name: {"model": name} for name in MODELS if name != "interaction"})
    arms.update({f"{name}_k{k}": {"model": name, "n_neighbors": k}
                 for k in CONTEXT_KS for name, spec in MODELS.items() if spec.context_features})
    return arms


ARMS: Registry[Axis] = Registry("axis")
# every non-empty subset of the four attention quadrants (full = all four, bottleneck = no h2h). Under the
# default shared read-out, p2p and p2h reach a prediction only through h2p: the 15 subsets are 10 models
ARMS.register("interactions", distinct_axis("full", _interaction_arms()))
# the same 15 subsets under the contextual read-out (the seed's), where every flow can act on a prediction
# (the encoded pathway tokens score the patches): the factorial of the four flows without aliases, shown
# on the interactions page
ARMS.register("interactions_contextual", distinct_axis("full", _interaction_arms(pathway_readout="contextual"),
                                                       page="interactions"))
ARMS.register("losses", Axis("mse", _loss_arms()))
ARMS.register("backbones", Axis("resnet50", {b: {"backbone": b} for b in BACKBONES}))
ARMS.register("pathways", Axis("init-off_aux-0", {
    "init-off_aux-0": {"pathway_init": False, "pathway_loss_weight": 0.0},
    "init-off_aux-0.5": {"pathway_init": False, "pathway_loss_weight": 0.5},
    "init-on_aux-0": {"pathway_init": True, "pathway_loss_weight": 0.0},
    "init-on_aux-0.5": {"pathway_init": True, "pathway_loss_weight": 0.5},
}))
ARMS.register("log_transform", Axis("off", {
    "off": {"log_transform": False},
    "on": {"log_transform": True},
}))
ARMS.register("positional_encoding", Axis("sinusoidal", {p: {"positional_encoding": p} for p in C.POSITIONAL_ENCODINGS}))
# the seed's preset "small interaction, CTransPath, 4 layers" is `small`; sizes share the backbone
ARMS.register("model_size", Axis("small", {
    "tiny": {"backbone": "ctranspath", "token_dim": 64, "n_heads": 2, "n_layers": 2},
    "small": {"backbone": "ctranspath", "token_dim": 256, "n_heads": 4, "n_layers": 4},
    "medium": {"backbone": "ctranspath", "token_dim": 384, "n_heads": 6, "n_layers": 6},
}))
# whole-slide attention vs a local neighbourhood (the seed's --n-neighbors): each spot's h2h
# attention restricted to its k nearest spots (k = 6 is the first hexagonal ring, 18 the second)
ARMS.register("context", Axis("whole-slide", {
    "whole-slide": {"n_neighbors": 0},  # the seed's default: every patch attends to the whole slide
    "k6": {"n_neighbors": 6},
    "k18": {"n_neighbors": 18},
    "k6_pcc": {"n_neighbors": 6, "loss": "pcc"},
    # the reference's 18 nearest plus 64 random spots of the slide as extra keys (the upstream's global context)
    "k18_global64": {"n_neighbors": 18, "global_context": 64},
}))
ARMS.register("baselines", Axis("stf", _baseline_arms()))
# how patches read the pathway tokens (h2p): the seed's plain softmax over [50 pathways + neighbours],
# or a learnable per-head logit offset on the pathway keys that starts at -log P (the default)
ARMS.register("h2p_balance", Axis("plain", {
    "plain": {"balance_h2p": False},  # the seed's attention
    "balanced": {},  # the default STF
}))
# which pathway tokens score the patches, in the arm whose tokens are named and supervised
# (Hallmark init + aux 0.5): the encoder's output tokens, which have read the slide through p2h
# (the seed), or the learnable tokens shared by every slide (the default)
ARMS.register("pathway_readout", Axis("contextual", {
    "contextual": {"pathway_readout": "contextual", "pathway_init": True, "pathway_loss_weight": 0.5},
    "shared": {"pathway_init": True, "pathway_loss_weight": 0.5},
}))

# what the model predicts (stflib.train.targets): the genes through the pathway bottleneck, without and with
# the named auxiliary pathway loss, or the per-slide pathway targets directly (the upstream's current
# design), on the 50 Hallmarks, the upstream's 14-pathway colorectal preset, or the permuted control
ARMS.register("target", Axis("genes", {
    "genes": {},
    "genes_aux": {"pathway_init": True, "pathway_loss_weight": 0.5},
    "pathways": {"target": "pathways"},
    "pathways_colorectal": {"target": "pathways", "pathway_subset": "colorectal"},
    "pathways_permuted": {"target": "pathways", "pathway_sets": "permuted"},
}))
# the pathway targets with each slide's log depth regressed out, in the arm that predicts them
ARMS.register("depth_correction", Axis("none", {
    "none": {"target": "pathways"},
    "regress": {"target": "pathways", "depth_correction": "regress"},
}, metric="pathway_pcc_truth"))


def axis_references() -> dict[str, str]:
    """axis -> its reference arm, in the order of ``ARMS``."""
    return {axis: a.reference for axis, a in ARMS.items()}


# the grid's design: held-out patient folds of the cohort (the default cohort's 12 patients: 2 per fold), one
# training seed per fold (seeds vary the initialisation only; what generalises to new patients is the fold)
GRID_FOLDS: int = 6
GRID_SEEDS: tuple[int, ...] = (0,)

# the simulator world of the full grid; every other world re-runs only the robustness subset below
DEFAULT_WORLD: str = C.PARAM_BY_NAME["world"].default
ROBUSTNESS_WORLDS: tuple[str, ...] = tuple(w for w in C.WORLDS if w != DEFAULT_WORLD)

# The robustness subset: (axis, arm) re-run in each of ROBUSTNESS_WORLDS (3 patient folds x 1 seed),
# so the findings page can say in which worlds each default-world finding holds. Every axis touched
# keeps its reference arm, so each arm has paired differences in every world. interactions/full,
# pathways/init-off_aux-0, context/k18 and baselines/stf are all the default STF: the runner runs
# them once and copies the run, so the subset is 7 distinct configurations.
ROBUSTNESS_ARMS: tuple[tuple[str, str], ...] = (
    ("interactions", ARMS["interactions"].reference),  # full: the reference STF
    ("interactions", "bottleneck"),  # the pathway bottleneck: no h2h
    ("interactions", "h2h"),  # h2h only
    ("pathways", ARMS["pathways"].reference),
    ("pathways", "init-on_aux-0.5"),  # Hallmark init + auxiliary pathway loss
    ("context", ARMS["context"].reference),  # whole-slide attention
    # the context axis's best arm chosen on validation patients: the reference search
    # (results/recipe/search.csv) compared k = 0, 6 and 18 on the validation patients only and kept 18,
    # the reference's own neighbourhood
    ("context", f"k{C.REFERENCE_NEIGHBOURS}"),
    ("baselines", ARMS["baselines"].reference),  # stf
    ("baselines", "ridge_probe"),  # the linear probe on own features
    ("baselines", f"ridge_probe_k{C.REFERENCE_NEIGHBOURS}"),  # ... and on the reference's neighbourhood
)
