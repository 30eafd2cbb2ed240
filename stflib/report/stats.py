"""Paired comparisons of ablation arms: intervals, multiple-comparison correction, factorial effects.

Every arm of an axis is run on the same patient folds and seeds as the axis's reference arm, so
the unit of comparison is a *pair* (one fold x seed): the arm's metric minus the reference's on the
same held-out patients, trained from the same seed. Over the pairs we report

- the mean paired difference with its two-sided 95 % t interval (``scipy.stats.ttest_1samp``),
- the p-value of the paired t-test and its Holm-adjusted value across the arms of the axis
  (``statsmodels.stats.multitest.multipletests``, family-wise error rate 5 %),
- how many pairs the arm wins.

An arm's effect is called a *finding* when its **Holm-adjusted p-value is below 0.05**; this is the
same decision as "the Holm step-down interval excludes zero", stated on the p-value because the
unadjusted 95 % interval is the one the tables print.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

ALPHA = 0.05
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


def paired_effects(per_pair: pd.DataFrame, reference: str, higher_is_better: bool = True,
                   alpha: float = ALPHA) -> pd.DataFrame:
    """Every arm against ``reference``: one row per arm with :data:`EFFECT_COLUMNS`.

    ``per_pair`` has one row per pair (e.g. a (fold, seed) index) and one column per arm; only the
    pairs where both the arm and the reference have a value count. The Holm family is the set of
    arms compared here (the arms of one axis).
    """
    if reference not in per_pair:
        raise ValueError(f"reference arm {reference!r} not among the arms: {sorted(map(str, per_pair.columns))}")
    rows = {}
    for arm in per_pair.columns.drop(reference):
        diff = (per_pair[arm] - per_pair[reference]).dropna()
        rows[arm] = {**paired_interval(diff, 1 - alpha),
                     "wins": int((diff > 0).sum() if higher_is_better else (diff < 0).sum())}
    out = pd.DataFrame.from_dict(rows, orient="index", columns=[c for c in EFFECT_COLUMNS if c not in ("p_holm", "finding")])
    out["p_holm"] = holm(out["p_value"].to_numpy(), alpha) if len(out) else []
    out["finding"] = out["p_holm"] < alpha
    out["pairs"] = out["pairs"].astype(int)
    out["wins"] = out["wins"].astype(int)
    return out[EFFECT_COLUMNS]


def factorial_effects(runs: pd.DataFrame, factors: dict[str, pd.Series], pair_columns: list[str],
                      metric: str, alpha: float = ALPHA) -> pd.DataFrame:
    """Main effect of each two-level factor of a factorial design, with a paired interval.

    For every pair (``pair_columns``, e.g. fold and seed) the effect of a factor is the mean of
    ``metric`` over the runs that have it minus the mean over the runs that do not; the interval
    and the Holm correction (across the factors) are then taken over the pairs. ``factors`` maps a
    factor name to a boolean Series aligned with ``runs``.
    """
    rows = {}
    for name, present in factors.items():
        present = present.reindex(runs.index).astype(bool)
        with_factor = runs[present].groupby(pair_columns)[metric].mean()
        without = runs[~present].groupby(pair_columns)[metric].mean()
        diff = (with_factor - without).dropna()
        rows[name] = {**paired_interval(diff, 1 - alpha), "wins": int((diff > 0).sum()),
                      "arms_with": int(runs.loc[present, "arm"].nunique()),
                      "arms_without": int(runs.loc[~present, "arm"].nunique())}
    out = pd.DataFrame.from_dict(rows, orient="index")
    out["p_holm"] = holm(out["p_value"].to_numpy(), alpha)
    out["finding"] = out["p_holm"] < alpha
    return out[["arms_with", "arms_without", *EFFECT_COLUMNS]]
