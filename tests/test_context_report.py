"""The context page: STF against the simple models that read the same neighbourhood, and the ceilings
(stflib.report.context, stflib.report.figures.plot_context)."""
import json

import matplotlib

matplotlib.use("Agg")
import numpy as np
import pandas as pd
import pytest

from stflib.report import context, figures, stats

NEIGHBOURHOODS = ["none (STF: whole slide)", "6 nearest spots", "18 nearest spots"]
ARMS = {  # (axis, arm) -> its offset from the pair's base value
    ("context", "whole-slide"): 0.00, ("context", "k6"): 0.04, ("context", "k18"): 0.06, ("context", "k6_pcc"): 0.05,
    ("baselines", "ridge_probe"): 0.02, ("baselines", "mlp"): 0.01,
    ("baselines", "ridge_probe_k6"): 0.03, ("baselines", "mlp_k6"): 0.02,
    ("baselines", "ridge_probe_k18"): 0.03, ("baselines", "mlp_k18"): 0.07,
}


def _summary(folds=(0, 1, 2), seeds=(0, 1), drop=(), rng_seed=0):
    """Runs of every matched arm over folds x seeds: each (fold, seed) pair has its own base value
    (far larger than the arms' offsets), so only pairing by (fold, seed) recovers the offsets."""
    rng = np.random.default_rng(rng_seed)
    rows = []
    for fold in folds:
        for seed in seeds:
            base = 0.2 + 0.05 * fold + 0.08 * seed
            for (axis, arm), offset in ARMS.items():
                if (axis, arm) in drop:
                    continue
                rows.append(dict(axis=axis, arm=arm, world="default", fold=fold, seed=seed,
                                 pcc_hvg50=base + offset + rng.normal(0, 0.003),
                                 noise_ceiling_hvg50=0.6 + 0.01 * fold, code_version="v1"))
    return pd.DataFrame(rows).sample(frac=1.0, random_state=1).reset_index(drop=True)  # row order means nothing


def test_matched_arms_read_the_grid():
    arms = context.matched_arms()
    assert list(arms.index) == NEIGHBOURHOODS
    assert arms.loc["6 nearest spots"].to_dict() == {"n_neighbors": 6, "stf": "context/k6",
                                                     "ridge_probe": "baselines/ridge_probe_k6", "mlp": "baselines/mlp_k6"}
    assert arms.loc[NEIGHBOURHOODS[0], "stf"] == "context/whole-slide"  # STF's "no neighbourhood" is the whole slide


def _per_fold(summary, a, b):
    """``a`` minus ``b`` (``axis/arm`` keys) paired by (fold, seed), then one difference per fold."""
    wide = summary.assign(key=summary["axis"] + "/" + summary["arm"]).pivot_table(
        index=["fold", "seed"], columns="key", values="pcc_hvg50")
    return stats.unit_differences(wide[a] - wide[b], "fold")


def test_table_pairs_runs_by_fold_and_seed_then_takes_the_fold_as_the_unit():
    summary = _summary()
    # runs STF has no partner for (seed 7): far off, so that counting them would move the means
    extra = summary[(summary["arm"] == "ridge_probe_k18") & (summary["seed"] == 0)].assign(seed=7, pcc_hvg50=1.0)
    table = context.context_matched_table(pd.concat([summary, extra]))
    assert list(table.index) == NEIGHBOURHOODS and list(table["n_neighbors"]) == [0, 6, 18]
    row = table.loc["18 nearest spots"]
    assert row["stf_arm"] == "context/k18" and row["ridge_probe_arm"] == "baselines/ridge_probe_k18"
    assert row["stf_minus_ridge_probe"] == pytest.approx(0.03, abs=0.004)  # the unpaired seed-7 runs are left out
    assert row["stf_minus_ridge_probe_folds"] == 3  # 3 folds x 2 seeds: 3 units, not 6
    assert row["stf_minus_ridge_probe_wins"] == 3 and row["stf_minus_mlp_wins"] == 0
    assert row["stf_minus_mlp"] == pytest.approx(-0.01, abs=0.004)
    # paired by (fold, seed): the spread of the differences is the noise, not the pairs' base values
    assert row["stf_minus_ridge_probe_ci_high"] - row["stf_minus_ridge_probe_ci_low"] < 0.03
    expected = stats.paired_interval(_per_fold(summary, "context/k6", "baselines/mlp_k6"))
    assert expected["pairs"] == 3
    assert table.loc["6 nearest spots", "stf_minus_mlp"] == pytest.approx(expected["mean_delta"])
    assert table.loc["6 nearest spots", "stf_minus_mlp_ci_low"] == pytest.approx(expected["ci_low"])
    assert table["missing"].eq("").all()
    assert not any(c.endswith("_pairs") for c in table.columns)


def test_seeds_are_averaged_within_a_fold_not_counted_as_units():
    """The seeds of a fold disagree in opposite directions (+-0.02 around a 0.03 difference): over the 6
    (fold, seed) pairs the interval would be wide; over the 3 fold means, where they cancel, it is narrow."""
    summary = _summary(rng_seed=1)
    k6 = (summary["arm"] == "k6") & (summary["axis"] == "context")
    summary.loc[k6, "pcc_hvg50"] += np.where(summary.loc[k6, "seed"] == 0, 0.02, -0.02)
    table = context.context_matched_table(summary)
    row = table.loc["6 nearest spots"]
    by_fold = stats.paired_interval(_per_fold(summary, "context/k6", "baselines/mlp_k6"))
    wide = summary.assign(key=summary["axis"] + "/" + summary["arm"]).pivot_table(
        index=["fold", "seed"], columns="key", values="pcc_hvg50")
    by_pair = stats.paired_interval(wide["context/k6"] - wide["baselines/mlp_k6"])
    assert row["stf_minus_mlp_folds"] == 3 and by_pair["pairs"] == 6
    assert (row["stf_minus_mlp_ci_low"], row["stf_minus_mlp_ci_high"]) == pytest.approx((by_fold["ci_low"], by_fold["ci_high"]))
    assert row["stf_minus_mlp_ci_high"] - row["stf_minus_mlp_ci_low"] < by_pair["ci_high"] - by_pair["ci_low"]
    text = context.describe_matched(table)
    assert text.startswith("Each difference is STF minus a simple model over 3 held-out patient folds")
    assert "conditional on the cohort's patients and the training budget" in text
    assert "winning 3 of 3 folds" in text and "pairs" not in text
    # an arm's own interval: over its fold means too
    intervals = context.arm_intervals(summary).set_index("arm")
    k6_fold_means = summary[k6].groupby("fold")["pcc_hvg50"].mean()
    assert intervals.loc["context/k6", ["runs", "folds"]].tolist() == [6, 3]
    assert intervals.loc["context/k6", "ci_low"] == pytest.approx(stats.mean_interval(k6_fold_means)["ci_low"])


def test_an_unadjusted_interval_that_excludes_zero_is_said_so():
    table = context.context_matched_table(_summary())
    row = table.loc["6 nearest spots"]
    assert row["stf_minus_ridge_probe_ci_low"] > 0  # +0.01 in every fold
    table.loc["6 nearest spots", "stf_minus_ridge_probe_p_holm"] = 0.2  # as if the family were larger
    text = context.describe_matched(table)
    assert "Holm p = 0.2, not a finding after Holm, though its unadjusted interval excludes zero" in text


def test_holm_family_is_every_comparison_of_the_table():
    summary = _summary()
    table = context.context_matched_table(summary)
    arms = context.matched_arms()
    raw = [stats.paired_interval(_per_fold(summary, arms.loc[n, "stf"], arms.loc[n, m]))["p_value"]
           for n in NEIGHBOURHOODS for m in ("ridge_probe", "mlp")]
    adjusted = stats.holm(raw).reshape(3, 2)
    np.testing.assert_allclose(table[["stf_minus_ridge_probe_p_holm", "stf_minus_mlp_p_holm"]].to_numpy(), adjusted)
    assert (adjusted >= np.reshape(raw, (3, 2))).all()


def test_partial_grid_keeps_the_rows_and_names_what_is_missing():
    drop = {("baselines", "mlp_k6"), ("baselines", "ridge_probe_k18"), ("baselines", "mlp_k18")}
    summary = _summary(drop=drop)
    table = context.context_matched_table(summary)
    assert list(table.index) == NEIGHBOURHOODS
    assert table.loc["18 nearest spots", "missing"] == "baselines/ridge_probe_k18, baselines/mlp_k18"
    assert np.isnan(table.loc["18 nearest spots", "ridge_probe"]) and table.loc["18 nearest spots", "stf_minus_mlp_folds"] == 0
    assert table.loc["6 nearest spots", "stf_minus_ridge_probe_folds"] == 3
    line = context.missing_line(table)
    assert "`baselines/mlp_k6`" in line and "`baselines/mlp_k18`" in line and "`context/k18`" not in line
    text = context.describe_matched(table)
    assert " With the 6 nearest spots, STF (`context/k6`)" in text and "MLP (`baselines/mlp_k6`" not in text
    intervals = context.arm_intervals(summary)
    assert intervals.set_index("arm").loc["baselines/mlp_k18", "runs"] == 0
    figures.plot_context(intervals, context.ceiling_table(summary, None), context.oracle_ceiling(summary))
    # nothing run yet: empty cells and a sentence, no exception
    empty = context.context_matched_table(summary.iloc[:0])
    assert empty[["stf", "ridge_probe", "mlp"]].isna().all().all()
    assert context.describe_matched(empty).startswith("No neighbourhood has both")
    with pytest.raises(ValueError, match="no arm has a completed run"):
        figures.plot_context(context.arm_intervals(summary.iloc[:0]))


def _latent(folds=(0, 1, 2), n_folds=3):
    rows = []
    for fold in folds:
        for k in (0, 6, 18):
            for ctx in (False, True):
                rows.append(dict(world="default", n_folds=n_folds, fold=fold, n_neighbors=k, true_context=ctx,
                                 pcc_hvg50=0.5 + 0.01 * fold + 0.001 * k + 0.02 * ctx, test_ids=f"P{fold}",
                                 hvg50="G1;G2", code_version="v1"))
    return pd.DataFrame(rows)


def test_ceilings_are_means_over_the_rows_runs(tmp_path):
    summary = _summary(folds=(0, 1, 1), seeds=(0,))  # fold 1 twice as often: it weighs twice
    ceilings = context.ceiling_table(summary, _latent())
    assert ceilings.loc["6 nearest spots", "latent"] == pytest.approx(0.5 + 0.01 * 2 / 3 + 0.006)
    assert ceilings.loc["18 nearest spots", "latent_true_context"] == pytest.approx(0.5 + 0.01 * 2 / 3 + 0.018 + 0.02)
    assert ceilings.loc["none (STF: whole slide)", "oracle"] == pytest.approx(0.6 + 0.01 * 2 / 3)
    assert context.oracle_ceiling(summary) == pytest.approx(0.6 + 0.01 * 2 / 3)
    # a fold the ceilings lack: no latent value, and the notes say so
    short = context.ceiling_table(_summary(), _latent(folds=(0, 1)))
    assert short["latent"].isna().all() and short["oracle"].notna().all()
    notes = context.ceiling_notes(_summary(), _latent(folds=(0, 1)), results_dir=tmp_path)
    assert "folds [2]" in notes and "--folds 3" in notes
    assert "No latent ceilings" in context.ceiling_notes(_summary(), None, results_dir=tmp_path)
    words = context.describe_ceilings(context.ceiling_table(_summary(), _latent()))
    assert words.startswith("The latent ceiling is 0.510 with no neighbour and 0.528 with the 18 nearest spots (+0.018)")
    assert "add almost nothing" not in words and "context fields add +0.020" in words
    flat = _latent().assign(pcc_hvg50=lambda d: d["pcc_hvg50"] - 0.0009 * d["n_neighbors"])  # +0.0001 per neighbour
    assert "add almost nothing" in context.describe_ceilings(context.ceiling_table(_summary(), flat))
    assert context.describe_ceilings(context.ceiling_table(_summary(), None)) == ""
    text = context.describe_matched(context.context_matched_table(_summary()), context.ceiling_table(_summary(), _latent()))
    assert "The best arm of the table, `baselines/mlp_k18`" in text and "below the latent ceiling" in text


def test_ceiling_folds_are_checked_against_the_runs(tmp_path):
    for arm, fold, test_ids, hvg in (("k6", 0, ["P0"], ["G1", "G2"]), ("k18", 1, ["P1"], ["G2", "G3"]),
                                     ("k18", 2, ["X"], ["G1", "G2"])):
        folder = tmp_path / "context" / arm / f"fold{fold}"
        folder.mkdir(parents=True)
        (folder / "metrics.json").write_text(json.dumps({"fold": fold, "test_ids": test_ids, "hvg50": hvg}))
    check = context.folds_match_runs(_latent(), tmp_path)
    assert check.loc[0].tolist() == [1, 1, 1] and check.loc[1].tolist() == [1, 1, 0] and check.loc[2].tolist() == [1, 0, 1]
    assert "1 of the 3 run folders" in context.ceiling_notes(_summary(), _latent(), results_dir=tmp_path)


def test_figure_draws_arms_and_ceilings():
    summary = _summary()
    fig = figures.plot_context(context.arm_intervals(summary), context.ceiling_table(summary, _latent()),
                               context.oracle_ceiling(summary))
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["none\n(STF: whole slide)", "6 nearest spots", "18 nearest spots"]
    labels = ax.get_legend_handles_labels()[1]
    assert {"STF", "STF, loss pcc", "ridge probe", "MLP"} <= set(labels)
    assert any(label.startswith("oracle ceiling") for label in labels) and sum("latent ceiling" in lab for lab in labels) == 2


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from stflib import sim

    out = tmp_path_factory.mktemp("ctx") / "tiny"
    sim.simulate_cohort(out, preset="tiny", seed=0, with_patches=False, backbones=["ctranspath"])
    return out


@pytest.mark.slow
def test_latent_ceiling_uses_the_ridge_probe_arm_on_its_folds(tiny):
    from stflib.config import RunConfig
    from stflib.train.fold import load_fold
    from stflib.train.run import run

    params = {"data_dir": str(tiny), "backbone": "ctranspath", "device": "cpu"}
    cfg = RunConfig.from_params({**params, "model": "ridge_probe", "n_folds": 3, "fold": 0})
    arm = run(cfg, log=None, write=False)
    fold = load_fold(cfg)
    # the probe on the arm's own inputs is the arm
    own = context.probe_on_fold(fold, cfg, {sid: it["features"].numpy() for sid, it in fold.items.items()})
    assert own["pcc_hvg50"] == pytest.approx(arm.metrics["pcc_hvg50"], abs=1e-4)
    latent = context.latent_ceilings(n_folds=3, neighbourhoods=(0, 6), params=params)
    assert len(latent) == 3 * 2 * 2 and latent["pcc_hvg50"].between(-1, 1).all()
    first = latent[latent["fold"] == 0].iloc[0]
    assert first["test_ids"] == ";".join(arm.metrics["test_ids"]) and first["hvg50"] == ";".join(arm.metrics["hvg50"])
    assert first["n_inputs"] < own["n_inputs"]  # the latent, not the features
    widths = latent[latent["fold"] == 0].set_index(["n_neighbors", "true_context"])["n_inputs"]
    assert widths[(6, False)] == 2 * widths[(0, False)] and widths[(0, True)] > widths[(0, False)]
    with pytest.raises(ValueError, match="no inputs for samples"):
        context.probe_on_fold(fold, cfg, {})


def test_mean_interval_is_the_one_sample_t_interval():
    from scipy import stats as st

    values = [0.30, 0.34, 0.29, 0.35]
    got = stats.mean_interval(values)
    low, high = st.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=st.sem(values))
    assert got["runs"] == 4 and got["mean"] == pytest.approx(np.mean(values))
    assert (got["ci_low"], got["ci_high"]) == pytest.approx((low, high))
    assert np.isnan(stats.mean_interval([0.3])["ci_low"]) and stats.mean_interval([])["runs"] == 0
