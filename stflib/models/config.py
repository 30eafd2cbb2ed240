"""What a model is built from: ``ModelConfig``, taken whole by every model (as nanoGPT's ``GPTConfig``),
and ``Interactions``, the attention quadrants as one value type.

Torch-free, so the run configuration (``stflib.config``) validates against the same names and rules
without importing torch. ``stflib.train.model.model_config`` builds a ``ModelConfig`` once from a
run's parameters; ``SpatialTranscriptFormer(feature_dim, num_genes, config)`` and every baseline
read the fields they use. Keyword overrides (``SpatialTranscriptFormer(F, G, token_dim=64)``) build
the same config (``ModelConfig.build``).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from itertools import combinations
from typing import Any

QUADRANTS = ("p2p", "p2h", "h2p", "h2h")  # query->key: p2h = pathway queries read patch keys
# the seed's named interaction variants
NAMED_INTERACTIONS = {
    "all": QUADRANTS,
    "full": QUADRANTS,  # Full Interaction
    "bottleneck": ("p2p", "p2h", "h2p"),  # Pathway Bottleneck: no patch-patch attention
}
POSITIONAL_ENCODINGS = ("sinusoidal", "learned", "none")  # see stf.PositionalEncoding2D
PATHWAY_READOUTS = ("contextual", "shared")  # see stf.CosineScorer
OUTPUT_MODES = ("dense", "global")  # one prediction per spot, or the mean over a slide's valid spots
ATTENTION_IMPLS = ("fast", "reference", "explicit")  # see stflib.models.attention


def _spellings() -> str:
    return f"{', '.join(NAMED_INTERACTIONS)} or a subset of {', '.join(QUADRANTS)}"


class Interactions(tuple):
    """The enabled attention quadrants, a tuple of names of ``QUADRANTS`` in canonical order.

    Parsed once, where a value enters (the run configuration, ``ModelConfig``): ``"all"``, ``"full"``,
    ``"bottleneck"``, ``"p2p,p2h"`` (or separated by spaces or ``+``), or a list such as
    ``["p2h", "p2p"]`` (a YAML list from ``papermill -f``). Being a tuple, it is hashable, pickles,
    is written to JSON as the list of quadrants (the run hash of finished runs is unchanged) and
    answers ``"h2h" in interactions``. ``name`` is the arm name: ``full``, ``bottleneck`` or e.g. ``p2p-p2h``.
    """

    spellings = _spellings()  # the allowed values, for messages and the parameter table

    def __new__(cls, value: str | Iterable[str] = "all") -> "Interactions":
        if isinstance(value, cls):
            return value
        return super().__new__(cls, _parse(value))

    @property
    def name(self) -> str:
        if self == QUADRANTS:
            return "full"
        if self == NAMED_INTERACTIONS["bottleneck"]:
            return "bottleneck"
        return "-".join(self)

    @classmethod
    def subsets(cls) -> list["Interactions"]:
        """All 15 non-empty subsets of the four quadrants."""
        return [cls(c) for r in range(1, len(QUADRANTS) + 1) for c in combinations(QUADRANTS, r)]

    def __repr__(self) -> str:
        return f"Interactions({','.join(self)!r})"

    def __str__(self) -> str:
        return ",".join(self)


def _parse(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        key = value.strip().lower()
        if key in NAMED_INTERACTIONS:
            return NAMED_INTERACTIONS[key]
        items = [s for s in key.replace(",", " ").replace("+", " ").split() if s]
    elif isinstance(value, (list, tuple, set, frozenset)):
        items = [str(s).strip().lower() for s in value]
        if len(items) == 1 and items[0] in NAMED_INTERACTIONS:
            return NAMED_INTERACTIONS[items[0]]
    else:
        raise ValueError(f"interactions: expected a string or a list, got {type(value).__name__} {value!r}; "
                         f"allowed: {_spellings()}")
    for item in items:
        if item not in QUADRANTS:
            raise ValueError(f"interactions: unknown quadrant {item!r}; allowed: {', '.join(QUADRANTS)} "
                             f"(or {', '.join(NAMED_INTERACTIONS)})")
    if not items:
        raise ValueError(f"interactions: empty; allowed: {_spellings()}")
    return tuple(q for q in QUADRANTS if q in items)


def parse_interactions(value: str | Iterable[str]) -> Interactions:
    """``Interactions(value)``: the enabled quadrants in canonical order (see :class:`Interactions`)."""
    return Interactions(value)


def check_depth(interactions: str | Iterable[str], n_layers: int) -> None:
    """The seed's depth rule: without h2h (the pathway bottleneck) patches reach each other only
    through the pathways, so layer 1 lets pathways gather from patches and layer 2 lets patches read
    the contextualised pathways: ``n_layers >= 2``. With h2h one layer is a complete model."""
    quadrants = Interactions(interactions)
    if "h2h" not in quadrants and n_layers < 2:
        raise ValueError(
            f"n_layers: interactions {quadrants} (no h2h, the pathway bottleneck) need n_layers >= 2, "
            f"got n_layers={n_layers}: the seed's rule, layer 1 lets pathways gather from patches and layer 2 "
            "lets patches read the contextualised pathways"
        )
    if n_layers < 1:
        raise ValueError(f"n_layers: must be >= 1, got {n_layers}")


def check_neighbours(interactions: str | Iterable[str], n_neighbors: int) -> None:
    """``n_neighbors = k > 0`` restricts the h2h flow to each spot's k nearest spots: it needs h2h."""
    if n_neighbors < 0:
        raise ValueError(f"n_neighbors: must be >= 0, got {n_neighbors}")
    quadrants = Interactions(interactions)
    if n_neighbors > 0 and "h2h" not in quadrants:
        raise ValueError(f"n_neighbors={n_neighbors} restricts the h2h flow to the k nearest spots, but "
                         f"interactions {quadrants} has no h2h; use n_neighbors=0 or add h2h")


def check_interaction_model(params: Mapping[str, Any]) -> None:
    """The rules SpatialTranscriptFormer puts on run parameters (``interactions``, ``n_layers``,
    ``n_neighbors``): its registry entry's ``check``, asked by the run configuration's validation."""
    check_depth(params["interactions"], params["n_layers"])
    check_neighbours(params["interactions"], params["n_neighbors"])
    if params.get("global_context") and not params["n_neighbors"]:
        raise ValueError(f"global_context={params['global_context']} adds random spots of the slide to each spot's k "
                         "nearest; with n_neighbors=0 every spot already attends to the whole slide: give n_neighbors > 0")


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name}: unknown {value!r}; allowed: {', '.join(allowed)}")


@dataclass(frozen=True)
class ModelConfig:
    """Everything a model is built from, checked on construction (``ValueError`` naming the bad
    value and the allowed ones). Every model reads the fields it uses.

    SpatialTranscriptFormer reads all but ``seed``: ``num_pathways`` tokens of ``token_dim``, ``n_heads``
    heads, ``n_layers`` layers over [pathways | patches] with the ``interactions`` quadrants
    (``n_neighbors = k > 0``: h2h restricted to the k nearest spots, plus ``global_context`` random spots
    of the same slide as extra keys for every spot), ``positional_encoding``,
    ``balance_h2p`` (a learnable per-head offset of -log P on the patches' logits for the pathway
    keys), ``pathway_readout`` (see ``CosineScorer``), ``zinb`` (also return pi and theta),
    ``attention_impl`` (all three give the same result). ``pathway_names``: the tokens' names (None:
    anonymous tokens); ``pathway_init``: a (P, G) 0/1 membership to initialise the gene
    reconstructor (or a ``stflib.pathways.Membership``, whose names become ``pathway_names``).
    The baselines read ``output_mode``, ``dropout`` and (TransMIL) ``n_heads``; the ridge probe ``seed``
    (its PCA's random state; torch models draw from the generator the run seeds).
    """

    num_pathways: int = 50
    token_dim: int = 256
    n_heads: int = 4
    n_layers: int = 2
    interactions: Interactions = Interactions("all")
    positional_encoding: str = "sinusoidal"
    pathway_init: Any = field(default=None, compare=False, repr=False)  # (P, G) array: data, not compared
    pathway_names: tuple[str, ...] | None = None
    output_mode: str = "dense"
    zinb: bool = False
    dropout: float = 0.0
    n_neighbors: int = 0
    global_context: int = 0
    attention_impl: str = "fast"
    balance_h2p: bool = True
    pathway_readout: str = "shared"
    seed: int = 0

    def __post_init__(self):
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731  (frozen: normalise once)
        set_("interactions", Interactions(self.interactions))
        for name in ("num_pathways", "token_dim", "n_heads", "n_layers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: must be an integer >= 1, got {value!r}")
        if isinstance(self.n_neighbors, bool) or not isinstance(self.n_neighbors, int) or self.n_neighbors < 0:
            raise ValueError(f"n_neighbors: must be an integer >= 0, got {self.n_neighbors!r}")
        if isinstance(self.global_context, bool) or not isinstance(self.global_context, int) or self.global_context < 0:
            raise ValueError(f"global_context: must be an integer >= 0, got {self.global_context!r}")
        if self.global_context and not self.n_neighbors:
            raise ValueError(f"global_context={self.global_context} adds random spots of the slide to each spot's "
                             "k nearest; with n_neighbors=0 every spot already attends to the whole slide: "
                             "give n_neighbors > 0 or global_context=0")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout: must be in [0, 1), got {self.dropout!r}")
        _choice("positional_encoding", self.positional_encoding, POSITIONAL_ENCODINGS)
        _choice("output_mode", self.output_mode, OUTPUT_MODES)
        _choice("attention_impl", self.attention_impl, ATTENTION_IMPLS)
        _choice("pathway_readout", self.pathway_readout, PATHWAY_READOUTS)
        if self.zinb and self.output_mode != "dense":
            raise ValueError("zinb=True needs output_mode='dense' (a mean of per-spot ZINBs is not a ZINB)")
        init, names = self.pathway_init, self.pathway_names
        if isinstance(init, bool):
            if init:
                raise ValueError("pathway_init=True: pass the membership itself, e.g. "
                                 "stflib.pathways.membership_matrix(hallmarks(), genes) (or its .matrix)")
            init = None
        if hasattr(init, "matrix"):  # a stflib.pathways.Membership
            names = names if names is not None else init.names
            init = init.matrix
        if init is not None and getattr(init, "shape", (self.num_pathways,))[0] != self.num_pathways:
            raise ValueError(f"pathway_init: membership must have num_pathways = {self.num_pathways} rows, "
                             f"got shape {tuple(init.shape)}")
        if names is not None:
            names = tuple(str(n) for n in names)
            if len(names) != self.num_pathways:
                raise ValueError(f"pathway_names has {len(names)} names for num_pathways={self.num_pathways}")
        set_("pathway_init", init)
        set_("pathway_names", names)

    @classmethod
    def build(cls, config: "ModelConfig | None" = None, **overrides) -> "ModelConfig":
        """``config`` (None: the defaults) with ``overrides``; a name that is not a field is a
        ``TypeError`` naming the fields."""
        if config is not None and not isinstance(config, cls):
            raise TypeError(f"config: expected a ModelConfig, got {type(config).__name__} {config!r}")
        unknown = sorted(set(overrides) - set(cls.field_names()))
        if unknown:
            raise TypeError(f"model config: unknown field(s) {', '.join(unknown)}; allowed: {', '.join(cls.field_names())}")
        if config is None:
            return cls(**overrides)
        return replace(config, **overrides) if overrides else config

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    def token_names(self) -> list[str]:
        """Display names of the pathway tokens: ``pathway_names``, else the 50 Hallmarks for 50
        tokens (the seed's), else ``pathway_i``."""
        if self.pathway_names is not None:
            return list(self.pathway_names)
        if self.num_pathways == 50:
            from stflib.pathways import hallmarks

            return list(hallmarks())
        return [f"pathway_{i}" for i in range(self.num_pathways)]

