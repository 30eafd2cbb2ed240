"""Paired intervals, Holm correction and factorial main effects (stflib.report.stats)."""
import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from stflib.report import stats


def test_paired_interval_is_the_t_interval_of_the_differences():
    diff = np.array([0.10, 0.14, 0.08, 0.12, 0.11, 0.09])
    out = stats.paired_interval(diff)
    half = sps.t.ppf(0.975, len(diff) - 1) * diff.std(ddof=1) / np.sqrt(len(diff))
    assert out["pairs"] == 6 and out["mean_delta"] == pytest.approx(diff.mean())
    assert (out["ci_low"], out["ci_high"]) == pytest.approx((diff.mean() - half, diff.mean() + half))
    assert out["p_value"] < 1e-4


def test_paired_interval_without_spread_has_no_interval():
    assert np.isnan(stats.paired_interval([0.2])["ci_low"])
    same = stats.paired_interval([0.1, 0.1, np.nan])
    assert same["pairs"] == 2 and np.isnan(same["p_value"]) and same["mean_delta"] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="confidence must be in"):
        stats.paired_interval([0.1, 0.2], confidence=95)


def test_holm_matches_the_step_down_by_hand():
    # sorted 0.01, 0.03, 0.04 -> 0.03, max(0.06, 0.03), max(0.04, 0.06): monotone step-down
    assert stats.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    adjusted = stats.holm([0.02, np.nan, 0.5])  # NaN is not part of the family
    assert adjusted[0] == pytest.approx(0.04) and np.isnan(adjusted[1]) and adjusted[2] == pytest.approx(0.5)


def _per_pair(n=6, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.normal(0.3, 0.05, n)  # fold/seed difficulty shared by every arm of a pair
    noise = lambda: rng.normal(0, 0.005, n)  # noqa: E731
    alternating = 0.005 * np.resize([1, -1], n)  # mean exactly zero: no effect
    return pd.DataFrame({"ref": base, "better": base + 0.05 + noise(), "same": base + alternating,
                         "worse": base - 0.04 + noise()},
                        index=pd.MultiIndex.from_product([range(n // 2), range(2)], names=["fold", "seed"]))


def test_paired_effects_calls_only_clear_differences_findings():
    out = stats.paired_effects(_per_pair(12), "ref")  # 6 folds x 2 seeds
    assert list(out.columns) == stats.EFFECT_COLUMNS
    assert out.loc["better", "finding"] and out.loc["worse", "finding"] and not out.loc["same", "finding"]
    assert out.loc["better", "wins"] == 6 and out.loc["worse", "wins"] == 0 and out.loc["better", "pairs"] == 6
    tested = out.dropna(subset=["p_value"])  # `same` averages to exactly 0 in every fold: no interval, no test
    assert len(tested) == 2 and (tested["p_holm"] >= tested["p_value"]).all()
    assert out.loc["better", "ci_low"] > 0 > out.loc["worse", "ci_high"]
    # lower is better (e.g. MSE): wins flip, the differences do not
    flipped = stats.paired_effects(_per_pair(12), "ref", higher_is_better=False)
    assert flipped.loc["worse", "wins"] == 6 and flipped.loc["better", "mean_delta"] > 0
    with pytest.raises(ValueError, match="reference arm 'nope'"):
        stats.paired_effects(_per_pair(), "nope")
    with pytest.raises(ValueError, match="unit: unknown 'patient'; allowed: fold, pair"):
        stats.paired_effects(_per_pair(), "ref", unit="patient")


def test_paired_effects_uses_only_complete_pairs():
    wide = _per_pair()
    wide.iloc[0, wide.columns.get_loc("better")] = np.nan
    assert stats.paired_effects(wide, "ref", unit="pair").loc["better", "pairs"] == 5
    # fold 0 keeps its one complete pair: still 3 folds, its mean over the seed both arms ran
    by_fold = stats.paired_effects(wide, "ref")
    diff = (wide["better"] - wide["ref"]).dropna()
    assert by_fold.loc["better", "pairs"] == 3
    assert by_fold.loc["better", "mean_delta"] == pytest.approx(diff.groupby(level="fold").mean().mean())


def test_the_unit_is_the_fold_with_its_seeds_averaged():
    """3 folds x 2 seeds: 3 units, not 6, and the interval of the 3 fold means (t with 2 degrees of
    freedom), which is wider than the 6-pair one when the folds differ more than the seeds."""
    folds = np.array([0.02, 0.08, 0.05])  # the effect differs from one group of held-out patients to the next
    seeds = np.array([0.001, -0.001])  # and barely between the seeds of a fold
    index = pd.MultiIndex.from_product([range(3), range(2)], names=["fold", "seed"])
    diff = (folds[:, None] + seeds[None, :]).ravel()
    wide = pd.DataFrame({"ref": 0.3, "arm": 0.3 + diff}, index=index)
    by_fold, by_pair = (stats.paired_effects(wide, "ref", unit=u).loc["arm"] for u in ("fold", "pair"))
    assert by_fold["pairs"] == 3 and by_pair["pairs"] == 6
    assert by_fold["mean_delta"] == pytest.approx(by_pair["mean_delta"])  # same seeds in every fold: the same mean
    half = sps.t.ppf(0.975, 2) * folds.std(ddof=1) / np.sqrt(3)
    assert (by_fold["ci_low"], by_fold["ci_high"]) == pytest.approx((folds.mean() - half, folds.mean() + half))
    assert by_fold["ci_high"] - by_fold["ci_low"] > by_pair["ci_high"] - by_pair["ci_low"]
    assert by_fold["p_value"] > by_pair["p_value"]
    with pytest.raises(ValueError, match="averages over the index level 'seed'"):
        stats.unit_differences(pd.Series([0.1, 0.2], index=pd.Index([0, 1], name="fold")))


def test_factorial_main_effect_with_interval():
    rows = []
    rng = np.random.default_rng(1)
    for fold in range(3):
        for seed in range(2):
            for arm, has_a, has_b in (("a", 1, 0), ("b", 0, 1), ("a-b", 1, 1), ("none", 0, 0)):
                rows.append(dict(arm=arm, fold=fold, seed=seed, has_a=bool(has_a), has_b=bool(has_b),
                                 pcc=0.2 + 0.1 * has_a + rng.normal(0, 0.003)))
    runs = pd.DataFrame(rows)
    out = stats.factorial_effects(runs, {"A": runs["has_a"], "B": runs["has_b"]}, ["fold", "seed"], "pcc")
    assert out.loc["A", "mean_delta"] == pytest.approx(0.1, abs=0.005) and out.loc["A", "finding"]
    assert out.loc["A", "pairs"] == 3 and out.loc["A", "arms_with"] == 2  # 3 folds, seeds averaged
    by_pair = stats.factorial_effects(runs, {"A": runs["has_a"], "B": runs["has_b"]}, ["fold", "seed"], "pcc",
                                      unit="pair")
    assert by_pair.loc["A", "pairs"] == 6 and by_pair.loc["A", "mean_delta"] == pytest.approx(out.loc["A", "mean_delta"])
    assert out.loc["B", "ci_low"] < 0 < out.loc["B", "ci_high"] and not out.loc["B", "finding"]
