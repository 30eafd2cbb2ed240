"""Run parameters: one table, the single source for the notebook, the params files and the book.

``PARAMETERS`` lists every parameter of ``notebooks/ablation.ipynb`` with its default, its type,
the values it allows and a one-line description. The seed's command-line flags keep their names
(in snake_case); the defaults are the grid's reference configuration, chosen on validation
patients (``results/recipe/``). The seed's own command-line defaults (``SEED_FLAG_DEFAULTS``) are the
``baselines/seed_defaults`` arm; the seed's *preset* "small interaction, CTransPath, 4 layers" is the
``model_size/small`` arm of the grid.

``RunConfig`` is the typed, frozen configuration of one run: one field per row of the table, checked
and normalised once, when it is built (``RunConfig(**params)`` or ``RunConfig.from_params``;
strings from ``papermill -p`` are coerced), raising ``ValueError`` naming the bad value and the
allowed ones. Training and model building take it whole. ``validate(params)`` is the same check
returning a plain dict; ``config_hash`` identifies a run's result (the grid resumes by it).

The allowed names of models, losses, backbones, attention quadrants and pathway sets are not listed
here: they are read from the registries that own them (``stflib.models.MODELS``, ``stflib.losses.LOSSES``,
``stflib.backbones.BACKBONES``, ``stflib.models.config.QUADRANTS``, ``stflib.pathways.PATHWAY_SETS``), and
rules that belong to one model or loss are asked of it (``ModelSpec.check``, ``GeneLoss.needs_counts``,
``ModelSpec.zinb_head``). ``interactions`` is one value type, ``Interactions``, parsed where it enters.
Importing this module imports no torch, so parameters are checked before anything heavy; the losses'
registry (torch) is read when a configuration is first validated.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field, make_dataclass
from pathlib import Path
from typing import Any

from stflib import backbones as _backbones
from stflib import pathways as _pathways
from stflib.models.config import OUTPUT_MODES, PATHWAY_READOUTS, POSITIONAL_ENCODINGS, Interactions
from stflib.models.registry import MODELS as _MODELS
from stflib.sim import worlds as _worlds


def _losses():
    """The losses' registry (imports torch: read when a configuration is validated, not on import)."""
    from stflib.losses import LOSSES

    return LOSSES


def __getattr__(name: str):  # LOSSES: the loss names, read from their registry on first use (torch)
    if name == "LOSSES":
        return tuple(_losses())
    raise AttributeError(f"module 'stflib.config' has no attribute {name!r}")


# allowed values: read from the registries that own the names
MODELS = tuple(_MODELS)
BACKBONES = tuple(_backbones.BACKBONES)
PATHWAY_SETS = _pathways.PATHWAY_SETS  # stflib.pathways owns the gene-set memberships
PRESETS = tuple(_worlds.PRESETS)  # the simulator owns the presets
WORLDS = tuple(_worlds.WORLDS)  # the simulator owns the worlds
PREDICTION_GENES = ("all", "hvg50")  # genes kept in predictions.h5ad: every gene or the 50 evaluation HVGs
RUN_FIGURES = ("all", "book")  # figures a run writes: all of them, or only gene_maps.png (the one the book shows)
SPLITS = ("patient", "study")  # held-out unit: patient-grouped folds, or leave one study out (stflib.data.cohort_folds)
PATHWAY_SUBSETS = tuple(_pathways.PATHWAY_SUBSETS)  # stflib.pathways owns the named subsets
# what the model is trained to predict: the genes (the pathway scores are a bottleneck the genes are read
# from) or the pathway targets themselves (the upstream's current design; stflib.train.targets)
TARGETS = ("genes", "pathways")
# the pathway targets' depth correction (stflib.train.targets; the same names as stflib.sim.reliability's)
DEPTH_CORRECTIONS = ("none", "regress")


@dataclass(frozen=True)
class Param:
    """One run parameter. ``type``: bool, int, float, str, or a value type that parses its own
    spellings (``Interactions``); ``allowed``: the allowed values, or a function returning them (read
    from a registry when first needed)."""

    name: str
    default: Any
    type: type
    help: str
    group: str  # "seed flag", "data", "training", "run"
    allowed: tuple | Callable[[], tuple] | None = None
    nullable: bool = False

    def choices(self) -> tuple | None:
        return tuple(self.allowed()) if callable(self.allowed) else self.allowed


PARAMETERS: tuple[Param, ...] = (
    # the seed's flags (snake_case, seed defaults)
    Param("model", "interaction", str, "model: SpatialTranscriptFormer ('interaction') or a baseline", "seed flag", MODELS),
    Param("backbone", "resnet50", str, "frozen foundation-model backbone whose cached features are used", "seed flag", BACKBONES),
    Param("token_dim", 128, int, "transformer embedding dimension", "seed flag"),
    Param("n_heads", 4, int, "attention heads", "seed flag"),
    Param("n_layers", 2, int, "transformer layers (at least 2 without h2h: the depth rule of the seed)", "seed flag"),
    Param("num_pathways", 50, int, "pathway bottleneck tokens (the Hallmarks covered by the gene vocabulary when pathway_init or the auxiliary loss name them)", "seed flag"),
    Param("pathway_init", False, bool, "initialise the gene reconstructor from MSigDB Hallmark membership", "seed flag"),
    Param("loss", "mse", str, "gene loss", "seed flag", lambda: tuple(_losses())),
    Param("pcc_weight", 1.0, float, "weight of the PCC term in mse_pcc", "seed flag"),
    Param("pathway_loss_weight", 0.0, float, "weight of the auxiliary pathway loss (lambda_aux)", "seed flag"),
    Param("interactions", "all", Interactions, "enabled attention quadrants: 'all', 'full', 'bottleneck', or a subset of p2p,p2h,h2p,h2h (string or list)", "seed flag"),
    Param("log_transform", True, bool, "True: train on log1p(CP10k); False: on CP10k (both standardised per gene inside the loss, both scored on log1p(CP10k))", "seed flag"),
    Param("return_attention", False, bool, "return attention maps (diagnostics; the notebook plots them)", "seed flag"),
    Param("n_neighbors", None, int, "None: the reference (18 for STF with h2h, else 0); 0: patches attend to the whole slide; k > 0: h2h attention restricted to each spot's k nearest spots (ridge_probe and mlp: input [own features, mean of the k nearest spots' features])", "seed flag", nullable=True),
    # additions
    Param("global_context", 0, int, "STF with n_neighbors k > 0: also attend to this many random spots of the same slide (the same for every spot of a slide), as the upstream --use-global-context", "model"),
    Param("positional_encoding", "sinusoidal", str, "2D positional encoding of the patch tokens", "model", POSITIONAL_ENCODINGS),
    Param("balance_h2p", True, bool, "STF: a learnable per-head offset on the patches' attention logits for the pathway keys, starting at -log P, so the P pathway tokens start with the weight of one neighbour (False: the seed's plain softmax, where 50 tokens take most of a patch's attention)", "model"),
    Param("pathway_readout", "shared", str, "STF: score the encoded patches against the learnable pathway tokens shared by every slide ('shared'), or against the encoder's output pathway tokens, which have read the slide's patches through p2h ('contextual', the seed)", "model", PATHWAY_READOUTS),
    Param("pathway_sets", "hallmark", str, "gene sets of pathway_init and the auxiliary target: hallmark, or the negative control permuted (each Hallmark keeps its name and size, its genes are drawn at random, seeded by the fold; stflib.pathways.permuted_membership)", "model", PATHWAY_SETS),
    Param("pathway_subset", "all", str, "named pathways: all (every Hallmark the vocabulary covers) or colorectal (the upstream CRC preset of 14 Hallmarks, stflib.pathways.COLORECTAL_PATHWAYS)", "model", PATHWAY_SUBSETS),
    Param("target", "genes", str, "genes: the pathway scores reconstruct the genes (the auxiliary pathway loss optional); pathways: the model predicts the per-slide pathway targets directly (loss on the pathway scores, no genes predicted; stflib.train.targets)", "model", TARGETS),
    Param("depth_correction", "none", str, "pathway targets: none, or regress (each slide's log total counts regressed out of its targets over the QC-passed spots)", "model", DEPTH_CORRECTIONS),
    Param("output_mode", "dense", str, "dense: one prediction per spot; global: one (mean-pooled) prediction per slide", "model", OUTPUT_MODES),
    Param("standardize_features", True, bool, "z-score each feature with the training fold's mean and sd (as HEST-Bench's probe does)", "training"),
    Param("center_targets", True, bool, "standardise every gene with the training fold's mean and sd: the model predicts standardised targets and the MSE is computed on them (False: raw targets, the seed's scale)", "training"),
    Param("dropout", 0.0, float, "dropout (0 on CPU: attention dropout is ~4x slower)", "model"),
    Param("data_dir", None, str, "HEST-1k style folder; None: the embedded simulated cohort (generated on first use)", "data", nullable=True),
    Param("preset", "default", str, "simulated cohort preset used when data_dir is None", "data", PRESETS),
    Param("world", "default", str, "simulator world (named assumptions, stflib.simulate.WORLDS) used when data_dir is None", "data", WORLDS),
    Param("n_genes", 1000, int, "gene vocabulary size (the most expressed genes of the training fold; the 50 evaluation HVGs are chosen among them)", "data"),
    # the cohort: rows of data_dir/metadata.csv kept (HEST columns organ, species, st_technology,
    # oncotree_code; comma-separated values or a YAML list; None = no filter on that column)
    Param("organ", "Bowel", str, "cohort filter: organ(s) as HEST spells them (None: any)", "data", nullable=True),
    Param("species", "Homo sapiens", str, "cohort filter: species (None: any)", "data", nullable=True),
    Param("technology", "Visium", str, "cohort filter: st_technology, exact (Visium excludes Visium HD; None: any)", "data", nullable=True),
    Param("oncotree", "COAD,READ,COADREAD", str, "cohort filter: OncoTree code(s) (None: any)", "data", nullable=True),
    Param("qc_min_umis", 200.0, float, "spot QC: minimum total UMIs (failing spots are masked out of losses and metrics)", "data"),
    Param("qc_min_genes", 100, int, "spot QC: minimum detected genes", "data"),
    Param("n_folds", 3, int, "patient-grouped folds", "data"),
    Param("fold", 0, int, "which fold is held out for testing", "data"),
    Param("split", "patient", str, "held-out unit: patient (n_folds patient-grouped folds) or study (leave one study out: fold k holds out the k-th study by dataset_title, n_folds unused; validation patients come from the training studies)", "data", SPLITS),
    Param("val_fraction", 0.3, float, "fraction of the training slides (whole patients) held out for model selection (>= 3 patients on the default cohort)", "data"),
    Param("epochs", None, int, "optional cap in passes over the training slides (None: max_steps alone ends training)", "training", nullable=True),
    Param("max_steps", 400, int, "optimiser steps of the schedule (cosine decay ends here; early stopping may end sooner)", "training"),
    Param("eval_every", 25, int, "optimiser steps between validation evaluations", "training"),
    Param("patience", 4, int, "early-stopping patience in evaluations without a better smoothed validation PCC (0: off)", "training"),
    Param("batch_size", 2, int, "slides per optimiser step (padded, with a padding mask)", "training"),
    Param("crop_spots", 256, int, "training only: a random subset of this many spots per slide and step (0: whole slides); evaluation always uses whole slides", "training"),
    Param("lr", 1e-3, float, "AdamW peak learning rate", "training"),
    Param("weight_decay", 0.1, float, "AdamW weight decay", "training"),
    Param("warmup_steps", 50, int, "linear warm-up optimiser steps before cosine decay", "training"),
    Param("grad_clip", 1.0, float, "gradient-norm clipping (0: off)", "training"),
    Param("seed", 0, int, "random seed (weights, batching)", "run"),
    Param("device", "auto", str, "auto, cpu, cuda, cuda:N or mps", "run"),
    Param("output_dir", "out", str, "where metrics.json, predictions.h5ad and figures go", "run"),
    Param("time_limit_s", 0.0, float, "stop training after this many seconds (0: no limit)", "run"),
    Param("progress", True, bool, "show a progress bar", "run"),
    Param("torch_threads", 0, int, "torch CPU threads of this run (0: the torch default; the grid runner sets one per run)", "run"),
    Param("prediction_genes", "all", str, "genes kept in predictions.h5ad: all, or the 50 evaluation HVGs (hvg50, as the grid writes them)", "run", PREDICTION_GENES),
    Param("figures", "all", str, "figures written into output_dir: all, or book (only gene_maps.png, the one the book shows, as the grid writes them)", "run", RUN_FIGURES),
)
PARAM_BY_NAME = {p.name: p for p in PARAMETERS}
# cohort-filter parameter -> stflib.data.select_samples keyword
COHORT_FILTERS = {"organ": "organ", "species": "species", "technology": "technology", "oncotree": "oncotree"}


def cohort_filter(cfg: dict[str, Any]) -> dict[str, list[str] | None]:
    """The run's cohort filter as ``select_samples`` keywords (lists; None = no filter)."""
    return {kw: (None if cfg.get(name) is None else str(cfg[name]).split(","))
            for name, kw in COHORT_FILTERS.items()}


def describe_cohort(cfg: dict[str, Any]) -> str:
    """'organ=Bowel species=Homo sapiens ...' for messages."""
    return " ".join(f"{name}={cfg.get(name)}" for name in COHORT_FILTERS)

# the seed's own command-line defaults (its README's flag table); where the reference configuration
# above differs, the grid runs them as the `baselines/seed_defaults` arm
SEED_FLAG_DEFAULTS: dict[str, Any] = dict(
    model="interaction", backbone="resnet50", token_dim=256, n_heads=4, n_layers=2, num_pathways=50,
    pathway_init=False, loss="mse", pcc_weight=1.0, pathway_loss_weight=0.0, interactions="all",
    log_transform=False, return_attention=False, n_neighbors=0,
)


def seed_flag_overrides() -> dict[str, Any]:
    """The seed's command-line defaults that differ from the reference configuration (``defaults()``)."""
    d = defaults()
    return {k: v for k, v in SEED_FLAG_DEFAULTS.items()
            if validate({k: v}, check_paths=False)[k] != validate({k: d[k]}, check_paths=False)[k]}


def defaults() -> dict[str, Any]:
    """Every parameter with its default value (the notebook's parameters cell)."""
    return {p.name: p.default for p in PARAMETERS}


def _allowed(values) -> str:
    return ", ".join(str(v) for v in values)


def interactions_name(quadrants) -> str:
    """Canonical arm name of an interaction subset: 'full', 'bottleneck' or e.g. 'p2p-p2h' (``Interactions.name``)."""
    return Interactions(quadrants).name


def interaction_subsets() -> list[Interactions]:
    """All 15 non-empty subsets of the four quadrants (``Interactions.subsets``)."""
    return Interactions.subsets()


def _coerce(p: Param, value):
    if value is None:
        if p.nullable:
            return None
        raise ValueError(f"{p.name}: None is not allowed (default {p.default!r})")
    if p.nullable and isinstance(value, str) and value.strip().lower() in ("none", "null", ""):
        return None
    if p.type is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, (int, float)) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
            return value.strip().lower() in ("true", "yes", "on", "1")
        raise ValueError(f"{p.name}: expected a boolean, got {value!r}; allowed: True, False")
    if p.type is int:
        if isinstance(value, bool):
            raise ValueError(f"{p.name}: expected an integer, got {value!r}")
        try:
            f = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{p.name}: expected an integer, got {value!r}") from None
        if f != int(f):
            raise ValueError(f"{p.name}: expected an integer, got {value!r}")
        return int(f)
    if p.type is float:
        if isinstance(value, bool):  # YAML's yes/true would otherwise be 1.0
            raise ValueError(f"{p.name}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{p.name}: expected a number, got {value!r}") from None
    if p.type is str:
        if p.name in COHORT_FILTERS:  # one canonical spelling: "COAD,READ" (from "COAD, READ" or a list)
            items = value if isinstance(value, (list, tuple)) else str(value).split(",")
            items = [str(v).strip() for v in items if str(v).strip()]
            if not items:
                raise ValueError(f"{p.name}: empty cohort filter {value!r}; give values or None (no filter)")
            return ",".join(items)
        return str(value)
    return p.type(value)  # a value type parses its own spellings (Interactions)


# The reference neighbourhood of STF's h2h flow, chosen on the validation patients of every fold
# (`python -m stflib recipe search`, results/recipe/search.csv): each spot attends to its 18 nearest
# spots (the first two hexagonal rings) instead of the whole slide.
REFERENCE_NEIGHBOURS = 18


def reference_neighbours(model: str, interactions, output_mode: str = "dense") -> int:
    """``n_neighbors`` when none is given: REFERENCE_NEIGHBOURS for STF with an h2h flow to restrict,
    0 for every other model (the per-spot baselines stay per-spot unless asked for context) and for
    STF without h2h (there is no patch-patch attention to restrict) or with one output per slide."""
    restricts_h2h = _MODELS[model].neighbourhood == "attention" and "h2h" in Interactions(interactions)
    return REFERENCE_NEIGHBOURS if restricts_h2h and output_mode != "global" else 0


def _normalised(given: dict[str, Any]) -> dict[str, Any]:
    """Every parameter, checked and normalised (the one place the rules between parameters live);
    ``given`` holds known names only. Raises ``ValueError`` naming the bad value and the allowed ones."""
    cfg = defaults()
    for name, value in given.items():
        cfg[name] = _coerce(PARAM_BY_NAME[name], value)
    for p in PARAMETERS:
        allowed = p.choices()
        if allowed is not None:
            v = cfg[p.name]
            if isinstance(v, str) and p.name != "backbone":
                v = v.strip().lower()
            if v not in allowed:
                raise ValueError(f"{p.name}: unknown value {cfg[p.name]!r}; allowed: {_allowed(allowed)}")
            cfg[p.name] = v
    model, loss = _MODELS[cfg["model"]], _losses()[cfg["loss"]]
    if cfg["n_neighbors"] is None:
        cfg["n_neighbors"] = reference_neighbours(cfg["model"], cfg["interactions"], cfg["output_mode"])

    def positive(name, strict=True):
        v = cfg[name]
        if (v <= 0) if strict else (v < 0):
            raise ValueError(f"{name}: must be {'> 0' if strict else '>= 0'}, got {v!r}")

    for name in ("token_dim", "n_heads", "n_layers", "num_pathways", "n_genes", "max_steps", "eval_every", "batch_size", "lr", "n_folds"):
        positive(name)
    if cfg["epochs"] is not None:
        positive("epochs")
    for name in ("pcc_weight", "pathway_loss_weight", "n_neighbors", "global_context", "weight_decay", "warmup_steps", "crop_spots",
                 "grad_clip", "patience", "dropout", "time_limit_s", "seed", "qc_min_umis", "qc_min_genes", "torch_threads"):
        positive(name, strict=False)
    if model.check is not None:  # the model's own rules (STF: the depth rule, n_neighbors needs h2h)
        model.check(cfg)
    if cfg.get("global_context") and cfg["model"] != "interaction":
        raise ValueError(f"global_context={cfg['global_context']}: only SpatialTranscriptFormer (model 'interaction') "
                         f"attends to global-context spots; model {cfg['model']!r} needs global_context=0")
    if cfg["token_dim"] % cfg["n_heads"]:
        raise ValueError(f"token_dim ({cfg['token_dim']}) must be divisible by n_heads ({cfg['n_heads']})")
    if cfg["n_folds"] < 2:
        raise ValueError(f"n_folds: must be >= 2, got {cfg['n_folds']}")
    if cfg["split"] == "patient" and not 0 <= cfg["fold"] < cfg["n_folds"]:
        raise ValueError(f"fold: must be in 0..{cfg['n_folds'] - 1} (n_folds={cfg['n_folds']}), got {cfg['fold']}")
    if cfg["fold"] < 0:  # split=study: the upper bound is the cohort's number of studies, checked when it is read
        raise ValueError(f"fold: must be >= 0, got {cfg['fold']}")
    if not 0 < cfg["val_fraction"] < 1:
        raise ValueError(f"val_fraction: must be in (0, 1), got {cfg['val_fraction']}")
    if not 0 <= cfg["dropout"] < 1:
        raise ValueError(f"dropout: must be in [0, 1), got {cfg['dropout']}")
    dev = str(cfg["device"]).strip().lower()
    if not (dev in ("auto", "cpu", "cuda", "mps") or (dev.startswith("cuda:") and dev[5:].isdigit())):
        raise ValueError(f"device: unknown value {cfg['device']!r}; allowed: auto, cpu, cuda, cuda:N, mps")
    cfg["device"] = dev
    if loss.needs_counts and not model.zinb_head:
        with_head = ", ".join(name for name, spec in _MODELS.items() if spec.zinb_head)
        raise ValueError(f"loss {cfg['loss']!r} needs a model with a ZINB head; allowed: {with_head} (got model {cfg['model']!r})")
    if loss.needs_counts and cfg["log_transform"]:
        raise ValueError(f"loss {cfg['loss']!r} models raw counts: log_transform must be False")
    if cfg["output_mode"] == "global" and cfg["n_neighbors"]:
        raise ValueError("output_mode 'global' predicts one profile per slide: n_neighbors must be 0")
    if cfg["target"] == "pathways":
        _check_pathway_target(cfg, model, loss)
    if cfg["data_dir"] is not None:
        cfg["data_dir"] = str(cfg["data_dir"])
    cfg["output_dir"] = str(cfg["output_dir"])
    return cfg


def _check_pathway_target(cfg: dict[str, Any], model, loss) -> None:
    """The rules of ``target="pathways"``: the model's pathway scores are its output, one named token per
    pathway, trained by the gene loss's terms on the pathway targets instead of the genes."""
    with_scores = [name for name, spec in _MODELS.items() if "pathway scores" in spec.outputs]
    if "pathway scores" not in model.outputs:
        raise ValueError(f"target 'pathways' needs a model with pathway scores; allowed: {', '.join(with_scores)} "
                         f"(got model {cfg['model']!r})")
    if loss.needs_counts:
        allowed = ", ".join(name for name, spec in _losses().items() if not spec.needs_counts)
        raise ValueError(f"target 'pathways': loss {cfg['loss']!r} models counts, the pathway targets are z-scores; "
                         f"allowed: {allowed}")
    if cfg["pathway_init"] or cfg["pathway_loss_weight"] > 0:
        raise ValueError("target 'pathways' trains no gene reconstructor and its pathway loss is the loss: "
                         f"pathway_init must be False and pathway_loss_weight 0 (got {cfg['pathway_init']!r}, "
                         f"{cfg['pathway_loss_weight']!r})")
    if cfg["num_pathways"] != 50:
        raise ValueError("target 'pathways' needs one token per named pathway: num_pathways must be 50 (the "
                         f"named tokens; pathway_subset chooses which), got {cfg['num_pathways']}")
    if cfg["output_mode"] != "dense":
        raise ValueError(f"target 'pathways' predicts a map per slide: output_mode must be 'dense', got {cfg['output_mode']!r}")


def check_data_dir(data_dir: str | None) -> None:
    """A ``data_dir`` must hold a HEST-1k style ``metadata.csv`` (None: the embedded simulated cohort)."""
    if data_dir is None:
        return
    if not Path(data_dir).is_dir():
        raise ValueError(f"data_dir: {data_dir!r} does not exist or is not a folder; give a HEST-1k style folder "
                         "(with metadata.csv), or None for the embedded simulated cohort")
    if not (Path(data_dir) / "metadata.csv").is_file():
        raise ValueError(f"data_dir: {data_dir!r} has no metadata.csv (a HEST-1k style folder is expected); "
                         "use None for the embedded simulated cohort")


class _RunConfigMethods:
    """The methods of ``RunConfig`` (its fields are generated from ``PARAMETERS``)."""

    def __post_init__(self):
        values = _normalised({name: getattr(self, name) for name in PARAM_BY_NAME})
        for name, value in values.items():
            object.__setattr__(self, name, value)

    @classmethod
    def from_params(cls, params: "dict[str, Any] | RunConfig | None" = None, **overrides) -> "RunConfig":
        """A RunConfig from a parameter dict (strings from ``papermill -p`` are coerced) or another
        RunConfig, with ``overrides``; an unknown name is a ``ValueError`` naming the allowed ones."""
        if isinstance(params, cls) and not overrides:
            return params
        given = params.as_dict() if isinstance(params, cls) else dict(params or {})
        given.update(overrides)
        unknown = sorted(set(given) - set(PARAM_BY_NAME))
        if unknown:
            raise ValueError(f"unknown parameter(s) {', '.join(unknown)}; allowed: {_allowed(PARAM_BY_NAME)}")
        return cls(**given)

    def as_dict(self) -> dict[str, Any]:
        """Every parameter by name, in table order, as plain data (JSON, YAML, a checkpoint): a value
        type's tuple (``interactions``) as a list, as the params files write it and as the run
        hash of finished runs was computed."""
        return {name: _plain(getattr(self, name)) for name in PARAM_BY_NAME}


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


def _field_type(p: Param) -> Any:
    return (p.type | None) if p.nullable else p.type


# The run configuration: one frozen, typed field per row of PARAMETERS (with its default), checked
# and normalised once, on construction; training and model building take it whole.
RunConfig = make_dataclass(
    "RunConfig",
    [(p.name, _field_type(p), field(default=p.default)) for p in PARAMETERS],
    bases=(_RunConfigMethods,), frozen=True,
)
RunConfig.__module__ = __name__  # importable (and picklable) as stflib.config.RunConfig
RunConfig.__doc__ = ("The parameters of one run (``PARAMETERS``), validated on construction; build it with "
                     "``RunConfig(**params)`` or ``RunConfig.from_params(dict_or_config, **overrides)``.")


def validate(params: dict[str, Any] | None = None, check_paths: bool = True, **overrides) -> dict[str, Any]:
    """Check and normalise run parameters; missing ones take their defaults.

    Raises ``ValueError`` naming the bad value and the allowed ones. Returns a new dict with every
    parameter (``interactions`` as a list of quadrants in canonical order); ``check_paths``: a
    ``data_dir`` must hold a ``metadata.csv``.
    """
    cfg = RunConfig.from_params(params, **overrides).as_dict()
    if check_paths:
        check_data_dir(cfg["data_dir"])
    return cfg


# parameters that do not change what a run computes (left out of the run hash)
NON_RESULT_PARAMS = ("output_dir", "progress", "device", "torch_threads", "prediction_genes", "figures")
# parameters added after runs had finished: left out of the run hash while at their default (the
# behaviour those runs had), so finished runs keep their hash; any other value is hashed as usual
HASHED_UNLESS_DEFAULT = ("pathway_sets", "pathway_subset", "target", "depth_correction", "split", "global_context")


def hash_payload(cfg: "dict[str, Any] | RunConfig") -> dict[str, Any]:
    """The parameters ``config_hash`` hashes: all but ``NON_RESULT_PARAMS`` and, at their default,
    ``HASHED_UNLESS_DEFAULT``."""
    c = RunConfig.from_params(cfg).as_dict()
    d = defaults()
    return {k: v for k, v in c.items()
            if k not in NON_RESULT_PARAMS and not (k in HASHED_UNLESS_DEFAULT and v == d[k])}


def config_hash(cfg: "dict[str, Any] | RunConfig") -> str:
    """Short stable hash of the parameters that determine a run's result (``hash_payload``)."""
    payload = hash_payload(cfg)
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]
