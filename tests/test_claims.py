"""The recipe's must-show claims read from the grid's summary (stflib.report.claims)."""
import json

import numpy as np
import pandas as pd
import pytest

from stflib import config as C
from stflib.report import claims
from stflib.train import recipe


def _summary(folds=3, seeds=(0, 1), skip=(), collapse=0.2, oracle=0.37):
    """Every grid run the claims read, on folds x seeds of the default world (plus a decoy world).

    pcc_hvg50 depends on the fold and the seed, so pairing on the fold alone would mix seeds; the
    ridge probe is exactly 0.04 below the reference in every pair."""
    rows = []
    for world in ("default", "no-context"):
        for fold in range(folds):
            for seed in seeds:
                base = 0.30 + 0.02 * fold + 0.1 * seed + (0.5 if world != "default" else 0.0)
                for check_arm, (axis, arm) in claims.GRID_ARMS.items():
                    if check_arm in skip:
                        continue
                    pcc = {"ridge_probe": base - 0.04, "mse_pcc": base + 0.02 + 0.005 * fold}.get(check_arm, base)
                    truth = 0.09 if check_arm == "init-on_aux-0.5" else 0.02
                    rows.append(dict(axis=axis, arm=arm, world=world, fold=fold, seed=seed, status="ok",
                                     pcc_hvg50=pcc, collapse_ratio=collapse, collapse_ratio_oracle=oracle,
                                     train_pcc_hvg50=0.6 if check_arm == "reference" else 0.5,
                                     train_mse_ratio=0.8, pathway_pcc_truth=truth, pathway_ceiling=0.1))
    rows = pd.DataFrame(rows)
    return rows.sample(frac=1.0, random_state=0).reset_index(drop=True)  # the order of a summary means nothing


def test_every_check_arm_is_the_grid_run_with_its_configuration():
    from stflib.grid.axes import ARMS

    assert set(claims.GRID_ARMS) == set(recipe.CHECK_ARMS)
    for check_arm, (axis, arm) in claims.GRID_ARMS.items():
        grid = C.validate(ARMS[axis].arms[arm])
        assert C.config_hash(grid) == C.config_hash(C.validate(recipe.arm_overrides(check_arm))), check_arm


def test_every_claim_of_the_check_is_known():
    computed = recipe.check_table(claims.check_frame(_summary()))
    assert set(computed["claim"]) == set(claims.CLAIMS)
    for arms, metrics in claims.CLAIMS.values():
        assert set(arms) <= set(claims.GRID_ARMS) and set(metrics) <= set(claims.CHECK_METRICS)


def test_check_frame_maps_runs_to_check_arms_of_the_default_world():
    frame = claims.check_frame(_summary())
    assert len(frame) == len(claims.GRID_ARMS) * 6
    ref = frame[frame["arm"] == "reference"].set_index("fold")
    assert sorted(ref.index) == ["f0s0", "f0s1", "f1s0", "f1s1", "f2s0", "f2s1"]
    assert ref.loc["f2s1", "pcc_hvg50"] == pytest.approx(0.30 + 0.04 + 0.1)  # the decoy world (+0.5) left out
    assert claims.missing_arms(frame) == []


def test_pairs_match_on_fold_and_seed():
    summary = _summary()
    # the probe lacks one pair: the comparison uses the five pairs both arms completed
    summary = summary[~((summary["arm"] == "ridge_probe") & (summary["fold"] == 2) & (summary["seed"] == 1))]
    table = claims.claims_table(summary).set_index("claim")
    row = table.loc["reference pcc_hvg50 >= ridge probe + 0.03 on average and >= the probe in every (fold, seed) pair"]
    assert row["n_pairs"] == 5
    assert row["paired_mean"] == pytest.approx(0.04) and row["worst_pair"] == pytest.approx(0.04)
    assert row["holds"] is True
    mse_pcc = table.loc["mse_pcc (pcc_weight 1) differs measurably from mse (pcc_hvg50)"]
    assert mse_pcc["n_pairs"] == 6 and mse_pcc["paired_mean"] == pytest.approx(0.025)
    assert mse_pcc["ci_low"] > 0 and mse_pcc["holds"] is True


def test_collapse_claim_is_restated_against_the_oracle():
    table = claims.claims_table(_summary(collapse=0.2, oracle=0.37)).set_index("claim")
    absolute = table.loc["reference collapse_ratio >= 0.5 (unreachable: the oracle reaches only 0.370)"]
    assert absolute["holds"] is False
    restated = table.loc[claims.RESTATED_COLLAPSE_CLAIM]
    assert restated["n_pairs"] == 6 and restated["worst_pair"] == pytest.approx(0.2 / 0.37)
    assert restated["holds"] is True and "0.54" in restated["figure"]
    order = list(table.index)
    assert order.index(claims.RESTATED_COLLAPSE_CLAIM) == order.index(absolute.name) + 1

    table = claims.claims_table(_summary(collapse=0.25, oracle=0.6)).set_index("claim")
    assert "reference collapse_ratio >= 0.5 (the oracle reaches 0.600)" in table.index
    assert table.loc[claims.RESTATED_COLLAPSE_CLAIM, "holds"] is False  # 0.25 / 0.6 < 0.5


def test_collapse_restatement_waits_for_the_oracle_metric():
    summary = _summary().drop(columns="collapse_ratio_oracle")
    table = claims.claims_table(summary).set_index("claim")
    assert table.loc[claims.RESTATED_COLLAPSE_CLAIM, "holds"] is None
    assert "collapse_ratio_oracle of baselines/stf" in table.loc[claims.RESTATED_COLLAPSE_CLAIM, "figure"]


def test_a_partial_grid_skips_the_claims_it_cannot_show():
    summary = _summary(skip=("mse_pcc", "ridge_probe_k18", "seed_defaults"))
    table = claims.claims_table(summary).set_index("claim")
    skipped = table[table["figure"].str.startswith("skipped")]
    assert set(skipped.index) == {
        "mse_pcc (pcc_weight 1) differs measurably from mse (pcc_hvg50)", "mse_pcc vs mse (collapse_ratio)",
        "reference pcc_hvg50 >= ridge probe on [own, 18-NN mean] (its own neighbourhood) + 0.03, every pair",
        "reference vs the seed's command-line defaults (same loop)"}
    assert skipped["holds"].isna().all()
    figure = skipped.loc["mse_pcc vs mse (collapse_ratio)", "figure"]
    assert figure == "skipped: the grid has no runs of losses/mse_pcc by the reference's library version yet"
    assert table.loc["ZINB within 0.03 of the MSE arm's pcc_hvg50", "holds"] is True  # the rest is evaluated
    note = claims.pairs_note(summary)
    assert "6 (fold, seed) pairs" in note and "3 folds x 2 seeds" in note
    assert "losses/mse_pcc" in note and "baselines/seed_defaults" in note

    empty = _summary()
    empty = empty[empty["world"] != "default"]
    table = claims.claims_table(empty)
    assert table["figure"].str.startswith("skipped").all() and table["holds"].isna().all()
    assert "no runs of the reference" in claims.pairs_note(empty)


def test_runs_of_another_library_version_than_the_reference_count_as_not_run():
    summary = _summary().assign(code_version="new")
    summary.loc[summary["arm"] == "mse_pcc", "code_version"] = "old"  # not re-run yet
    table = claims.claims_table(summary).set_index("claim")
    assert table.loc["mse_pcc vs mse (collapse_ratio)", "figure"].startswith("skipped: the grid has no runs of losses/mse_pcc")
    assert table.loc["ZINB within 0.03 of the MSE arm's pcc_hvg50", "holds"] is True


def test_two_runs_of_one_pair_are_refused():
    summary = _summary()
    mlp = summary[(summary["arm"] == "mlp") & (summary["fold"] == 1) & (summary["world"] == "default")]
    twice = pd.concat([summary, mlp.head(1)])
    with pytest.raises(ValueError, match=r"baselines/mlp .*\(fold, seed\) pairs \[\(1, "):
        claims.check_frame(twice)


def _search(width_pcc, width_seconds):
    width = C.defaults()["token_dim"]
    rows = [("{}", 0.3815, 88.8), (json.dumps({"token_dim": width}), width_pcc, width_seconds),
            (json.dumps({"lr": 0.0003}), 0.3839, 82.5)]
    return pd.DataFrame(rows, columns=["setting", "val_pcc", "train_seconds"]).sort_values("val_pcc")


def test_width_adoption_reads_the_base_and_the_default_width_rows():
    w = claims.width_adoption(_search(0.3828, 47.9))
    assert w["base_width"] == recipe.SEARCH_BASE["token_dim"] and w["width"] == C.defaults()["token_dim"]
    assert (w["base_val_pcc"], w["val_pcc"], w["base_seconds"], w["seconds"]) == (0.3815, 0.3828, 88.8, 47.9)
    sentence = claims.width_sentence(_search(0.3828, 47.9))
    assert "adopted for its cost" in sentence and "54 % of the time" in sentence and "0.3815" in sentence
    assert "does not favour" in claims.width_sentence(_search(0.3700, 47.9))  # a loss beyond the margin
    assert "for its gain" in claims.width_sentence(_search(0.3900, 95.0))
    search = _search(0.38, 47.9)
    with pytest.raises(ValueError, match=r"no row for the setting \{\}"):
        claims.width_adoption(search[search["setting"] != "{}"])
