"""Paired comparisons of ablation arms: intervals, multiple-comparison correction, factorial effects.

Every arm of an axis is run on the same patient folds and seeds as the axis's reference arm. The
unit of comparison is the **held-out patient fold** (``unit="fold"``, :data:`UNITS`): in each fold the
arm's metric minus the reference's, run by run on the same seeds, averaged over the seeds; one paired
difference per fold. What generalises to new patients is the fold-to-fold variation: the seeds of a fold
share its test patients and vary only the initialisation, so counting them as independent pairs
(``unit="pair"``, one difference per (fold, seed), the book's earlier derivation, kept to be shown
beside) makes intervals too narrow. Over the units we report

- the mean paired difference with its two-sided 95 % t interval (``scipy.stats.ttest_1samp``),
- the p-value of the paired t-test and its Holm-adjusted value across the arms of the axis
  (``statsmodels.stats.multitest.multipletests``, family-wise error rate 5 %),
- how many units the arm wins.

The column ``pairs`` counts the paired units (folds, or (fold, seed) pairs with ``unit="pair"``). The
interval is conditional on the cohort's patients and the training budget: it says how the difference
varies from one held-out group of this cohort's patients to another, not over other cohorts.

An arm's effect is called a *finding* when its **Holm-adjusted p-value is below 0.05**; this is the
same decision as "the Holm step-down interval excludes zero", stated on the p-value because the
unadjusted 95 % interval is the one the tables print.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

ALPHA = 0.05
# the paired unit: the held-out patient fold (seeds averaged within it), or each (fold, seed) pair
UNITS = ("fold", "pair")
SEED_LEVEL = "seed"  # the index level that ``unit="fold"`` averages over
EFFECT_COLUMNS = ["pairs", "mean_delta", "ci_low", "ci_high", "p_value", "p_holm", "wins", "finding"]


def paired_interval(differences, confidence: float = 1 - ALPHA) -> dict[str, float]:
    """Mean of paired differences with its t interval and the paired t-test's two-sided p-value.

    Fewer than two pairs, or pairs that are all identical (up to rounding), give no interval (NaN
    bounds, NaN p-value): there is no spread to estimate one from.
    """
    from scipy import stats

    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    diff = np.asarray(differences, dtype=float)
    diff = diff[~np.isnan(diff)]
    out = {"pairs": int(diff.size), "mean_delta": float(diff.mean()) if diff.size else np.nan,
           "ci_low": np.nan, "ci_high": np.nan, "p_value": np.nan}
    if diff.size < 2 or np.allclose(diff, diff[0], rtol=1e-9, atol=1e-12):
        return out  # no spread (identical up to rounding): a t interval would be meaningless
    test = stats.ttest_1samp(diff, 0.0)
    ci = test.confidence_interval(confidence_level=confidence)
    out.update(ci_low=float(ci.low), ci_high=float(ci.high), p_value=float(test.pvalue))
    return out


def mean_interval(values, confidence: float = 1 - ALPHA) -> dict[str, float]:
    """Mean of one arm's runs with its t interval (``runs``, ``mean``, ``ci_low``, ``ci_high``): the
    one-sample form of :func:`paired_interval`, with the same rules for too few or identical values."""
    out = paired_interval(values, confidence)
    return {"runs": out["pairs"], "mean": out["mean_delta"], "ci_low": out["ci_low"], "ci_high": out["ci_high"]}


def holm(p_values, alpha: float = ALPHA) -> np.ndarray:
    """Holm-adjusted p-values (family-wise error rate ``alpha``); NaN p-values stay NaN and do not
    count towards the family size."""
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(p_values, dtype=float)
    adjusted = np.full(p.shape, np.nan)
    present = ~np.isnan(p)
    if present.any():
        adjusted[present] = multipletests(p[present], alpha=alpha, method="holm")[1]
    return adjusted


def check_unit(unit: str) -> str:
    if unit not in UNITS:
        raise ValueError(f"unit: unknown {unit!r}; allowed: {', '.join(UNITS)}")
    return unit


def unit_differences(differences: pd.Series, unit: str = "fold") -> pd.Series:
    """Paired differences per (fold, seed, ...) pair -> one per unit: with ``unit="fold"`` the mean over
    the index level ``seed`` (every other level, the fold and the code version, keeps two units apart);
    with ``unit="pair"`` unchanged. Missing pairs are dropped first, so a fold's mean is over the seeds
    both arms ran."""
    differences = differences.dropna()
    if check_unit(unit) == "pair" or differences.empty:
        return differences
    names = list(differences.index.names)
    if SEED_LEVEL not in names:
        raise ValueError(f"unit='fold' averages over the index level {SEED_LEVEL!r}; the index has {names}")
    keep = [n for n in names if n != SEED_LEVEL]
    if not keep:
        raise ValueError(f"unit='fold': the index {names} has no level besides {SEED_LEVEL!r} to group by")
    return differences.groupby(level=keep).mean()


def paired_effects(per_pair: pd.DataFrame, reference: str, higher_is_better: bool = True,
                   alpha: float = ALPHA, unit: str = "fold") -> pd.DataFrame:
    """Every arm against ``reference``: one row per arm with :data:`EFFECT_COLUMNS`.

    ``per_pair`` has one row per pair (a (fold, seed[, version]) index) and one column per arm; only
    the pairs where both the arm and the reference have a value count, and with ``unit="fold"`` their
    differences are averaged over the seeds of each fold (:func:`unit_differences`). The Holm family
    is the set of arms compared here (the arms of one axis).
    """
    check_unit(unit)
    if reference not in per_pair:
        raise ValueError(f"reference arm {reference!r} not among the arms: {sorted(map(str, per_pair.columns))}")
    rows = {}
    for arm in per_pair.columns.drop(reference):
        diff = unit_differences(per_pair[arm] - per_pair[reference], unit)
        rows[arm] = {**paired_interval(diff, 1 - alpha),
                     "wins": int((diff > 0).sum() if higher_is_better else (diff < 0).sum())}
    out = pd.DataFrame.from_dict(rows, orient="index", columns=[c for c in EFFECT_COLUMNS if c not in ("p_holm", "finding")])
    out["p_holm"] = holm(out["p_value"].to_numpy(), alpha) if len(out) else []
    out["finding"] = out["p_holm"] < alpha
    out["pairs"] = out["pairs"].astype(int)
    out["wins"] = out["wins"].astype(int)
    return out[EFFECT_COLUMNS]


def factorial_effects(runs: pd.DataFrame, factors: dict[str, pd.Series], pair_columns: list[str],
                      metric: str, alpha: float = ALPHA, unit: str = "fold") -> pd.DataFrame:
    """Main effect of each two-level factor of a factorial design, with a paired interval.

    For every pair (``pair_columns``, e.g. fold and seed) the effect of a factor is the mean of
    ``metric`` over the runs that have it minus the mean over the runs that do not; with ``unit="fold"``
    these are averaged over the seeds of each fold (:func:`unit_differences`), and the interval and the
    Holm correction (across the factors) are taken over the units. ``factors`` maps a factor name to a
    boolean Series aligned with ``runs``.
    """
    check_unit(unit)
    rows = {}
    for name, present in factors.items():
        present = present.reindex(runs.index).astype(bool)
        with_factor = runs[present].groupby(pair_columns)[metric].mean()
        without = runs[~present].groupby(pair_columns)[metric].mean()
        diff = unit_differences(with_factor - without, unit)
        rows[name] = {**paired_interval(diff, 1 - alpha), "wins": int((diff > 0).sum()),
                      "arms_with": int(runs.loc[present, "arm"].nunique()),
                      "arms_without": int(runs.loc[~present, "arm"].nunique())}
    out = pd.DataFrame.from_dict(rows, orient="index")
    out["p_holm"] = holm(out["p_value"].to_numpy(), alpha)
    out["finding"] = out["p_holm"] < alpha
    return out[["arms_with", "arms_without", *EFFECT_COLUMNS]]
