"""The recipe's must-show table (stflib.train.recipe) on synthetic per-fold rows."""
import numpy as np
import pandas as pd
import pytest

from stflib import config as C
from stflib.train import recipe as R


def _rows(arm, **metrics):
    return [{"arm": arm, "fold": f, **{k: v[f] for k, v in metrics.items()}} for f in range(3)]


def test_paired_difference_and_interval():
    df = pd.DataFrame(_rows("a", pcc_hvg50=[0.30, 0.35, 0.40]) + _rows("b", pcc_hvg50=[0.25, 0.28, 0.36]))
    p = R.paired(df, "pcc_hvg50", "a", "b")
    d = np.array([0.05, 0.07, 0.04])
    assert p["n_pairs"] == 3 and p["mean"] == pytest.approx(d.mean()) and p["min"] == pytest.approx(0.04)
    half = 4.302653 * d.std(ddof=1) / np.sqrt(3)  # t(0.975, 2)
    assert p["ci_low"] == pytest.approx(d.mean() - half, rel=1e-4) and p["ci_high"] == pytest.approx(d.mean() + half, rel=1e-4)


def test_check_table_evaluates_every_claim():
    base = dict(pcc_hvg50=[0.3, 0.3, 0.3], collapse_ratio=[0.6, 0.6, 0.6], train_pcc_hvg50=[0.5, 0.5, 0.5],
                train_mse_ratio=[0.8, 0.8, 0.8], pathway_pcc_truth=[0.01, 0.02, 0.0], pathway_ceiling=[0.1, 0.1, 0.1])
    rows = []
    for arm in R.CHECK_ARMS:
        m = {k: list(v) for k, v in base.items()}
        if arm == "ridge_probe":
            m["pcc_hvg50"] = [0.25, 0.26, 0.29]
        if arm == "init-on_aux-0.5":
            m["pathway_pcc_truth"] = [0.08, 0.09, 0.075]
        rows += _rows(arm, **m)
    t = R.check_table(pd.DataFrame(rows)).set_index("claim")
    holds = t["holds"].to_dict()
    assert holds["reference pcc_hvg50 >= ridge probe + 0.03 on average and >= the probe in every fold"]
    assert holds["Hallmark init + aux 0.5 reaches >= 70 % of the pathway ceiling"]
    assert holds["aux 0.5 vs aux 0 (Hallmark init) raises pathway_pcc_truth by >= 0.05"]
    assert not holds["mse_pcc (pcc_weight 1) differs measurably from mse (pcc_hvg50)"]  # identical arms


def test_arm_overrides_are_valid_and_seed_defaults_come_from_config():
    for arm in R.CHECK_ARMS:
        C.validate(R.arm_overrides(arm))
    assert R.arm_overrides("seed_defaults") == C.seed_flag_overrides()
    with pytest.raises(ValueError, match="allowed"):
        R.arm_overrides("nope")
