"""The training recipe's must-show claims, computed from the ablation grid.

The training recipe states what the reference configuration must show on the default simulated
cohort; :func:`stflib.train.recipe.check_table` evaluates those claims from one row per (arm, pair).
The grid trains every arm the claims compare on every (fold, seed) pair, so the claims are read from
``results/summary.csv``: :data:`GRID_ARMS` says which grid run trains which check arm,
:func:`check_frame` turns the summary into the check's rows, and :func:`claims_table` evaluates the
claims. A pair is one (fold, seed): an arm and the arm it is compared with saw the same test patients
and the same seed. Claims whose arms the grid has not run yet are listed as skipped, so the book
builds on a partial grid.

The collapse claim is restated against the simulator's oracle: even the expected expression varies
less within a slide than the measured counts (counting noise), so its ``collapse_ratio_oracle`` is the
most a model can show, and the absolute bar of 0.5 is out of reach when the oracle stays below it.

:func:`width_adoption` gives the reference search's figures behind the reference width.
"""
from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd

from stflib.report.results import DEFAULT_WORLD, PAIR_COLUMNS, runs_of_reference_version, with_design_columns
from stflib.train import recipe

# check arm (the keys of recipe.CHECK_ARMS) -> the grid run (axis, arm) that trains the same configuration
GRID_ARMS: dict[str, tuple[str, str]] = {
    "reference": ("baselines", "stf"),  # the same run as interactions/full (the default STF)
    "mlp": ("baselines", "mlp"),
    "ridge_probe": ("baselines", "ridge_probe"),
    "ridge_probe_k6": ("baselines", "ridge_probe_k6"),
    "mlp_k6": ("baselines", "mlp_k6"),
    "ridge_probe_k18": ("baselines", "ridge_probe_k18"),
    "mlp_k18": ("baselines", "mlp_k18"),
    "mean": ("baselines", "mean"),
    "seed_defaults": ("baselines", "seed_defaults"),
    "mse": ("losses", "mse"),  # the reference loss
    "mse_pcc": ("losses", "mse_pcc"),
    "zinb": ("losses", "zinb"),
    "init-on_aux-0": ("pathways", "init-on_aux-0"),
    "init-on_aux-0.5": ("pathways", "init-on_aux-0.5"),
    "log_transform-off": ("log_transform", "off"),
    "log_transform-on": ("log_transform", "on"),
}

# each claim of recipe.check_table -> (the check arms its figures read, the metrics it reads); a claim
# is skipped while one of its arms has no runs, or records none of its metrics (an older summary)
PCC = ("pcc_hvg50",)
CLAIMS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "reference train_pcc_hvg50 >= MLP's (same loop)": (("reference", "mlp"), ("train_pcc_hvg50",)),
    "reference train_mse_ratio < 1 (fits better than the training mean)": (("reference", "mlp"), ("train_mse_ratio",)),
    "reference collapse_ratio >= 0.5": (("reference",), ("collapse_ratio",)),
    "reference pcc_hvg50 >= ridge probe + 0.03 on average and >= the probe in every fold":
        (("reference", "ridge_probe"), PCC),
    "reference pcc_hvg50 >= ridge probe on [own, 18-NN mean] (its own neighbourhood) + 0.03, every fold":
        (("reference", "ridge_probe_k18"), PCC),
    "reference pcc_hvg50 vs MLP": (("reference", "mlp"), PCC),
    "reference pcc_hvg50 vs ridge probe on [own, 6-NN mean]": (("reference", "ridge_probe_k6"), PCC),
    "reference pcc_hvg50 vs MLP on [own, 6-NN mean]": (("reference", "mlp_k6"), PCC),
    "reference pcc_hvg50 vs MLP on [own, 18-NN mean]": (("reference", "mlp_k18"), PCC),
    "mse_pcc (pcc_weight 1) differs measurably from mse (pcc_hvg50)": (("mse_pcc", "mse"), PCC),
    "mse_pcc vs mse (collapse_ratio)": (("mse_pcc", "mse"), ("collapse_ratio",)),
    "Hallmark init + aux 0.5 reaches >= 70 % of the pathway ceiling":
        (("init-on_aux-0.5",), ("pathway_pcc_truth", "pathway_ceiling")),
    "aux 0.5 vs aux 0 (Hallmark init) raises pathway_pcc_truth by >= 0.05":
        (("init-on_aux-0.5", "init-on_aux-0"), ("pathway_pcc_truth",)),
    "log_transform on and off both train stably (sd of pcc_hvg50 over folds <= 0.05)":
        (("log_transform-on", "log_transform-off"), PCC),
    "ZINB within 0.03 of the MSE arm's pcc_hvg50": (("zinb", "mse"), PCC),
    "reference vs the seed's command-line defaults (same loop)": (("reference", "seed_defaults"), PCC),
}
COLLAPSE_CLAIM = "reference collapse_ratio >= 0.5"
COLLAPSE_BAR = 0.5  # the recipe's bar, for the absolute figure and for the share of the oracle's variance
RESTATED_COLLAPSE_CLAIM = ("reference keeps >= half the oracle's spatial variance "
                           "(collapse_ratio / collapse_ratio_oracle >= 0.5, mean over pairs)")

# the metrics the claims read; a summary without one of them gets an empty column (its claims show nan)
CHECK_METRICS = ("pcc_hvg50", "collapse_ratio", "collapse_ratio_oracle", "train_pcc_hvg50", "train_mse_ratio",
                 "pathway_pcc_truth", "pathway_ceiling")

# the check table speaks of folds; on the grid each fold is run with several seeds, so a unit is a pair
PAIR_WORDING = (("in every fold", "in every (fold, seed) pair"), ("every fold", "every pair"),
                ("over folds", "over pairs"))

# the reference search's rule: a change is adopted when it raises the mean validation PCC by more than
# this; one that keeps it within this and costs less training time is adopted for its cost
ADOPTION_MARGIN = 0.005


def _grid_label(check_arm: str) -> str:
    return "/".join(GRID_ARMS[check_arm])


def check_frame(summary: pd.DataFrame, world: str = DEFAULT_WORLD) -> pd.DataFrame:
    """The grid's runs as the check's rows: one per (check arm, pair) of ``world``.

    Columns: ``arm`` (a key of :data:`GRID_ARMS`), ``fold`` (the pair id ``f<fold>s<seed>``: the
    check pairs arms on this column, so pairs match on fold *and* seed), ``grid_fold``, ``seed`` and
    :data:`CHECK_METRICS`. Arms the grid has not run yet, or has run only with another library version
    than the reference's (``code_version``), have no rows.
    """
    summary = with_design_columns(summary)
    summary = summary[summary["world"] == world]
    # a claim compares runs of one library version: while the grid is being re-run, arms still
    # holding an earlier version's runs count as not run yet (their pairs would mix two codes)
    axis, arm = GRID_ARMS["reference"]
    summary = runs_of_reference_version(summary, (summary["axis"] == axis) & (summary["arm"] == arm))
    frames = []
    for check_arm, (axis, arm) in GRID_ARMS.items():
        rows = summary[(summary["axis"] == axis) & (summary["arm"] == arm)]
        twice = rows[rows.duplicated(PAIR_COLUMNS, keep=False)]
        if not twice.empty:
            pairs = sorted(set(zip(twice["fold"], twice["seed"])))
            raise ValueError(f"{axis}/{arm} (world {world!r}) has several runs of the (fold, seed) pairs {pairs}; "
                             "allowed: one run per pair (re-run `python -m stflib collect`)")
        frames.append(pd.DataFrame({
            "arm": check_arm,
            "fold": [f"f{int(f)}s{int(s)}" for f, s in zip(rows["fold"], rows["seed"])],
            "grid_fold": rows["fold"].astype(int).to_numpy(), "seed": rows["seed"].astype(int).to_numpy(),
            **{m: (pd.to_numeric(rows[m], errors="coerce").to_numpy() if m in rows else np.nan)
               for m in CHECK_METRICS},
        }))
    return pd.concat(frames, ignore_index=True)


def missing_arms(frame: pd.DataFrame) -> list[str]:
    """The check arms of :data:`GRID_ARMS` with no runs in ``frame`` (from :func:`check_frame`)."""
    present = set(frame["arm"])
    return [a for a in GRID_ARMS if a not in present]


def _skip_reason(frame: pd.DataFrame, arms: tuple[str, ...], metrics: tuple[str, ...]) -> str | None:
    """Why a claim cannot be evaluated yet (an arm without runs, a metric not recorded), or None."""
    absent = [a for a in arms if not (frame["arm"] == a).any()]
    if absent:
        return (f"the grid has no runs of {', '.join(_grid_label(a) for a in absent)} by the reference's "
                "library version yet")
    unrecorded = [f"{m} of {_grid_label(a)}" for a in arms for m in metrics
                  if frame.loc[frame["arm"] == a, m].isna().all()]
    if unrecorded:
        return f"the summary does not record {', '.join(unrecorded)} (runs of an older library: re-run, then collect)"
    return None


def _collapse_rows(frame: pd.DataFrame, original: dict) -> list[dict]:
    """The recipe's absolute collapse row, with the oracle's own ratio beside it, and the restated claim:
    the reference keeps at least half of the oracle's within-slide variance (per pair, then the mean)."""
    reason = _skip_reason(frame, ("reference",), ("collapse_ratio_oracle",))
    if reason:
        return [{**original, "claim": f"{COLLAPSE_CLAIM} (the oracle's own ratio not recorded)"},
                {"claim": RESTATED_COLLAPSE_CLAIM, "figure": f"skipped: {reason}", "holds": None}]
    ref = frame[frame["arm"] == "reference"]
    mean_oracle = float(ref["collapse_ratio_oracle"].mean())
    mark = (f"unreachable: the oracle reaches only {mean_oracle:.3f}" if mean_oracle < COLLAPSE_BAR
            else f"the oracle reaches {mean_oracle:.3f}")
    absolute = {**original, "claim": f"{COLLAPSE_CLAIM} ({mark})"}
    both = ref.dropna(subset=["collapse_ratio", "collapse_ratio_oracle"])
    share = (both["collapse_ratio"] / both["collapse_ratio_oracle"]).to_numpy()  # (pairs,)
    restated = {"claim": RESTATED_COLLAPSE_CLAIM,
                "figure": f"mean {share.mean():.2f}, min over pairs {share.min():.2f} (collapse_ratio "
                          f"{both['collapse_ratio'].mean():.3f} / oracle {both['collapse_ratio_oracle'].mean():.3f})",
                "worst_pair": float(share.min()), "n_pairs": len(share), "holds": bool(share.mean() >= COLLAPSE_BAR)}
    return [absolute, restated]


def claims_table(summary: pd.DataFrame, world: str = DEFAULT_WORLD) -> pd.DataFrame:
    """The must-show claims on the grid's runs of ``world``: one row per claim with its figures, the
    (fold, seed)-paired difference, its 95 % t interval, the worst pair, the number of pairs and
    whether it holds (``None`` where the claim has no bar or was skipped).

    The claims are :func:`stflib.train.recipe.check_table`'s, in its order, plus the restated collapse
    claim after the absolute one; a claim whose arms the grid has not run yet is a row that says so.
    """
    frame = check_frame(summary, world)
    with warnings.catch_warnings():  # the means of absent arms are empty; those claims are replaced below
        warnings.simplefilter("ignore", RuntimeWarning)
        computed = recipe.check_table(frame).rename(columns={"worst_fold": "worst_pair"})
    by_claim = {r["claim"]: r for r in computed.to_dict("records")}
    rows = []
    for claim, (arms, metrics) in CLAIMS.items():
        reason = _skip_reason(frame, arms, metrics)
        if reason:
            rows.append({"claim": claim, "figure": f"skipped: {reason}", "holds": None})
            if claim == COLLAPSE_CLAIM:
                rows.append({"claim": RESTATED_COLLAPSE_CLAIM, "figure": f"skipped: {reason}", "holds": None})
        elif claim == COLLAPSE_CLAIM:
            rows += _collapse_rows(frame, by_claim[claim])
        elif claim in by_claim:
            rows.append(by_claim[claim])
    rows += [r for c, r in by_claim.items() if c not in CLAIMS]  # a claim this table does not know yet
    table = pd.DataFrame(rows).reindex(columns=["claim", "figure", "paired_mean", "ci_low", "ci_high", "worst_pair",
                                                "n_pairs", "holds"])
    for old, new in PAIR_WORDING:
        for column in ("claim", "figure"):
            table[column] = table[column].str.replace(old, new, regex=False)
    table["n_pairs"] = table["n_pairs"].astype("Int64")
    table["holds"] = [None if h is None or (isinstance(h, float) and np.isnan(h)) else bool(h) for h in table["holds"]]
    return table


def pairs_note(summary: pd.DataFrame, world: str = DEFAULT_WORLD) -> str:
    """One sentence: how many (fold, seed) pairs the claims rest on, and which grid runs are missing."""
    frame = check_frame(summary, world)
    ref = frame[frame["arm"] == "reference"]
    absent = missing_arms(frame)
    missing = (f" The grid has not run {', '.join(_grid_label(a) for a in absent)} yet: the claims on "
               f"{'it' if len(absent) == 1 else 'them'} are skipped." if absent else "")
    if ref.empty:
        return f"The grid has no runs of the reference ({_grid_label('reference')}) in world {world!r} yet." + missing
    n_folds, n_seeds = ref["grid_fold"].nunique(), ref["seed"].nunique()
    return (f"The claims rest on the grid's {len(ref)} (fold, seed) pairs of the reference ({n_folds} fold"
            f"{'s' if n_folds != 1 else ''} x {n_seeds} seed{'s' if n_seeds != 1 else ''}); each comparison uses "
            f"the pairs both of its arms completed (`n_pairs`)." + missing)


def width_adoption(search: pd.DataFrame) -> dict[str, float]:
    """The reference search's figures behind the reference width: the search's starting point
    (``recipe.SEARCH_BASE``, the ``{}`` row) and the change to today's default width (the
    ``{"token_dim": <default>}`` row), each with its mean validation PCC and training seconds.

    ``search``: ``results/recipe/search.csv`` (columns ``setting``, ``val_pcc``, ``train_seconds``).
    """
    from stflib import config as C

    base_width, width = int(recipe.SEARCH_BASE["token_dim"]), int(C.defaults()["token_dim"])
    settings = {json.dumps(json.loads(s), sort_keys=True): i for i, s in zip(search.index, search["setting"])}

    def row(setting: dict) -> pd.Series:
        key = json.dumps(setting, sort_keys=True)
        if key not in settings:
            raise ValueError(f"search table: no row for the setting {key}; settings: {', '.join(settings)}")
        return search.loc[settings[key]]

    base, adopted = row({}), row({} if width == base_width else {"token_dim": width})
    return {"base_width": base_width, "width": width,
            "base_val_pcc": float(base["val_pcc"]), "val_pcc": float(adopted["val_pcc"]),
            "base_seconds": float(base["train_seconds"]), "seconds": float(adopted["train_seconds"])}


def width_sentence(search: pd.DataFrame, margin: float = ADOPTION_MARGIN) -> str:
    """The sentence saying why the reference has its width, from :func:`width_adoption`."""
    w = width_adoption(search)
    gain, time_share = w["val_pcc"] - w["base_val_pcc"], w["seconds"] / w["base_seconds"]
    figures = (f"validation PCC {w['val_pcc']:.4f} against {w['base_val_pcc']:.4f} at width {w['base_width']}, "
               f"{w['seconds']:.0f} s of training per run against {w['base_seconds']:.0f} s")
    if w["width"] == w["base_width"]:
        return f"The reference keeps the search's starting width {w['width']}."
    if gain > margin:
        return f"Width {w['width']} was adopted for its gain ({figures})."
    if abs(gain) <= margin and time_share < 1:
        return (f"Width {w['width']} was adopted for its cost: its validation PCC is within {margin} of the starting "
                f"point's and it trains in {100 * time_share:.0f} % of the time ({figures}).")
    return f"Width {w['width']} is the reference although the search's rule does not favour it ({figures})."
