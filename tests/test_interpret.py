"""Attribution read-outs with known truth (stflib.interpret)."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from stflib import interpret as I
from stflib.models import SpatialTranscriptFormer


def _softmax_rows(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_rollout_is_the_product_of_head_averaged_maps_with_the_residual():
    rng = np.random.default_rng(0)
    a1, a2 = _softmax_rows(rng.normal(size=(2, 6, 6))), _softmax_rows(rng.normal(size=(2, 6, 6)))
    step = lambda a: 0.5 * np.eye(6) + 0.5 * a.mean(0)  # noqa: E731  rows already sum to 1
    r = I.attention_rollout([a1[None], a2[None]])
    np.testing.assert_allclose(r, step(a2) @ step(a1), atol=1e-12)
    np.testing.assert_allclose(r.sum(1), 1.0)
    # a layer that attends only to itself leaves the rollout unchanged
    np.testing.assert_allclose(I.attention_rollout([np.eye(6)[None].repeat(3, 0), a1]), step(a1), atol=1e-12)
    with pytest.raises(ValueError, match="one slide at a time, got a batch of 2"):
        I.attention_rollout([np.stack([a1, a1])])
    with pytest.raises(ValueError, match="no attention maps"):
        I.attention_rollout([])


def test_rollout_recovers_where_a_pathway_token_looks():
    """Pathway token 0 attends to the spots in proportion to a map; token 1 uniformly: the rollout's
    spot columns follow the map for token 0 and are flat (no correlation) for token 1."""
    P, S = 2, 40
    rng = np.random.default_rng(1)
    truth = rng.uniform(0.1, 1.0, S)
    a = np.eye(P + S)
    a[0] = np.r_[0.0, 0.0, truth / truth.sum()]
    a[1] = np.r_[0.0, 0.0, np.full(S, 1.0 / S)]
    maps = I.pathway_rollout([a[None, None]], P)
    assert maps.shape == (S, P)
    assert np.corrcoef(maps[:, 0], truth)[0, 1] == pytest.approx(1.0)
    pcc = I.score_maps({"rollout": maps}, np.stack([truth, truth], 1), np.ones(S, bool))["rollout"]
    assert pcc[0] == pytest.approx(1.0) and pcc[1] == 0.0  # a constant map earns nothing


@pytest.fixture(scope="module")
def slide():
    g = torch.Generator().manual_seed(0)
    S, F = 30, 12
    return {"sample_id": "s0", "features": torch.randn(S, F, generator=g), "coords": torch.rand(S, 2, generator=g) * 500,
            "valid": torch.ones(S, dtype=torch.bool), "true_pathways": torch.randn(S, 4, generator=g)}


@pytest.mark.parametrize("kw", [dict(interactions="all", n_neighbors=0), dict(interactions="all", n_neighbors=6),
                                dict(interactions="bottleneck", n_layers=2)])
def test_readouts_of_a_model_have_one_map_per_pathway(slide, kw):
    torch.manual_seed(0)
    model = SpatialTranscriptFormer(12, 7, num_pathways=3, token_dim=16, n_heads=2, **{"n_layers": 2, **kw})
    maps = I.readout_maps(model, slide)
    assert set(maps) == set(I.METHODS)
    for name, m in maps.items():
        assert m.shape == (30, 3) and np.isfinite(m).all(), name
    with torch.no_grad():
        out = model(slide["features"][None], slide["coords"][None], return_attention=True)
    np.testing.assert_allclose(maps["scores"], out.pathway_scores[0].numpy(), atol=1e-6)
    full = I.attention_rollout(out.attention)
    np.testing.assert_allclose(full.sum(1), 1.0, atol=1e-5)  # the maps are row-stochastic, so is the rollout
    np.testing.assert_allclose(maps["rollout"], full[:3, 3:].T, atol=1e-12)


def test_gradient_attributions_match_finite_differences(slide):
    torch.manual_seed(1)
    model = SpatialTranscriptFormer(12, 7, num_pathways=3, token_dim=16, n_heads=2, n_layers=2, n_neighbors=6).double()
    item = {k: (v.double() if torch.is_tensor(v) and v.is_floating_point() else v) for k, v in slide.items()}
    saliency, gxi = I.gradient_attributions(model, item)

    def total(features, p):
        with torch.no_grad():
            return float(model(features[None], item["coords"][None]).pathway_scores[0, :, p].sum())

    spot, p, eps = 5, 1, 1e-6
    grad = np.zeros(12)
    for f in range(12):
        d = torch.zeros_like(item["features"])
        d[spot, f] = eps
        grad[f] = (total(item["features"] + d, p) - total(item["features"] - d, p)) / (2 * eps)
    assert saliency[spot, p] == pytest.approx(np.linalg.norm(grad), rel=1e-4)
    assert gxi[spot, p] == pytest.approx(float(grad @ item["features"][spot].numpy()), rel=1e-4, abs=1e-8)


def test_interpret_run_matches_tokens_to_the_truth_by_name(slide):
    torch.manual_seed(0)
    names = ("HALLMARK_B", "HALLMARK_X", "HALLMARK_A")  # X has no true counterpart
    model = SpatialTranscriptFormer(12, 7, num_pathways=3, token_dim=16, n_heads=2, n_layers=2, pathway_names=names)
    other = {**slide, "sample_id": "s1", "valid": torch.arange(30) < 25}
    items = {"s0": slide, "s1": other}
    fold = SimpleNamespace(truth_pathway_names=["HALLMARK_A", "HALLMARK_B", "HALLMARK_C", "HALLMARK_D"],
                           slides=lambda part: list(items.values()))
    table = I.interpret_run(SimpleNamespace(fold=fold, model=model))
    assert len(table) == len(I.METHODS) * 2 * 2 and set(table["pathway"]) == {"HALLMARK_A", "HALLMARK_B"}
    maps = I.readout_maps(model, other)
    truth = other["true_pathways"].numpy()
    row = table[(table["method"] == "scores") & (table["sample_id"] == "s1") & (table["pathway"] == "HALLMARK_A")]
    expected = np.corrcoef(maps["scores"][:25, 2], truth[:25, 0])[0, 1]  # valid spots only; A is truth column 0
    assert float(row["pcc"].iloc[0]) == pytest.approx(expected, abs=1e-6)
    anonymous = SpatialTranscriptFormer(12, 7, num_pathways=3, token_dim=16, n_heads=2, n_layers=2)
    assert I.interpret_run(SimpleNamespace(fold=fold, model=anonymous)).empty
    with pytest.raises(ValueError, match="unknown method"):
        I.readout_maps(model, slide, methods=("scores", "lime"))


def _runs():
    import pandas as pd

    rows = []
    for world, base in (("default", 0.1), ("depth-confounded", 0.2)):
        for arm, shift in (("genes_aux", 0.0), ("genes_aux_depth", 0.05), ("pathways", 0.1), ("pathways_depth", 0.1)):
            for fold in range(3):
                v = base + shift + 0.01 * fold
                rows.append({"world": world, "arm": arm, "fold": fold, "pathway_pcc_truth": v, "pathway_ccc_truth": v / 2,
                             "pathway_pcc_truth_within": v, "pathway_pcc_target": v, "pathway_ceiling": 0.3,
                             "pathway_pcc_truth_matched": v, "pcc_hvg50": np.nan, "ccc_hvg50": np.nan,
                             "train_seconds": 1.0, "readout_scores": v, "readout_rollout": 0.0})
    return pd.DataFrame(rows)


def test_depth_table_pairs_folds_and_gives_an_interval():
    from stflib.report import interpretability as R

    t = R.depth_table(_runs())
    row = t[(t["world"] == "default") & (t["arm"] == "genes_aux_depth") & (t["metric"] == "pathway_pcc_truth")].iloc[0]
    assert row["difference"] == pytest.approx(0.05) and row["n_folds"] == 3 and row["versus"] == "genes_aux"
    assert np.isnan(row["ci_low"])  # the same difference in every fold: no spread to make an interval of
    same = t[(t["arm"] == "pathways_depth") & (t["metric"] == "pathway_pcc_truth")]
    assert (same["difference"].abs() < 1e-12).all()


def test_summary_table_carries_both_ceilings(tmp_path):
    import pandas as pd

    from stflib.report import interpretability as R

    rel = pd.DataFrame({"world": ["default"], "pathway_reliability_raw": [0.64], "pathway_reliability_depth": [0.36],
                        "pathway_ceiling_raw": [0.8], "pathway_ceiling_depth": [0.6], "pathway_depth_r2": [0.05]})
    path = tmp_path / "reliability.csv"
    rel.to_csv(path, index=False)
    table = R.reliability_table(path)
    assert table["world"].iloc[-1].startswith("upstream") and table["pathway_ceiling_raw"].iloc[-1] == pytest.approx(0.85 ** 0.5)
    s = R.summary_table(_runs(), table)
    row = s[(s["world"] == "default") & (s["arm"] == "pathways") & (s["metric"] == "pathway_pcc_truth")].iloc[0]
    assert row["mean"] == pytest.approx(0.21) and row["ci_low"] < 0.21 < row["ci_high"] and row["n_folds"] == 3
    assert row["feature_ceiling"] == pytest.approx(0.3) and row["reliability_ceiling_raw"] == pytest.approx(0.8)
    assert np.isnan(s[s["world"] == "depth-confounded"]["reliability_ceiling_raw"]).all()  # not in the given table
    assert "readout_rollout" in set(s["metric"]) and "train_seconds" not in set(s["metric"])
    assert list(R.wide_table(s, "default").index) == ["genes_aux", "pathways", "genes_aux_depth", "pathways_depth"]
    with pytest.raises(FileNotFoundError, match="python -m stflib reliability"):
        R.reliability_table(tmp_path / "absent.csv")


def test_adding_a_world_keeps_the_other_worlds_rows(tmp_path):
    import pandas as pd

    from stflib.report import interpretability as R

    runs = _runs()
    old_runs = runs[runs["world"] == "default"]
    old_paths = pd.DataFrame({"world": ["default", "depth-confounded"], "arm": ["genes", "genes"],
                              "method": ["scores", "scores"], "pathway": ["A", "A"], "mean": [0.1, 0.9], "n": [3, 3]})
    old_runs.to_csv(tmp_path / "runs.csv", index=False)
    old_paths.to_csv(tmp_path / "pathways.csv", index=False)
    new_runs = runs[runs["world"] == "depth-confounded"].assign(pathway_pcc_truth=0.5)
    new_paths = old_paths.iloc[[1]].assign(mean=0.2)
    merged_runs, merged_paths = R._with_other_worlds(tmp_path, ["depth-confounded"], new_runs, new_paths, log=None)
    # the default world's rows are used as written; the depth-confounded rows written before are replaced
    pd.testing.assert_frame_equal(merged_runs[merged_runs["world"] == "default"].reset_index(drop=True),
                                  old_runs.reset_index(drop=True))
    assert (merged_runs[merged_runs["world"] == "depth-confounded"]["pathway_pcc_truth"] == 0.5).all()
    assert merged_paths.set_index("world")["mean"].to_dict() == {"default": 0.1, "depth-confounded": 0.2}
    pd.DataFrame({"x": [1]}).to_csv(tmp_path / "runs.csv", index=False)
    with pytest.raises(ValueError, match="no 'world' column"):
        R._with_other_worlds(tmp_path, ["default"], new_runs, new_paths, log=None)


def test_recovery_by_world_and_its_readings_go_through_the_controls():
    import pandas as pd

    from stflib.report import interpretability as R

    rows = []
    for world, named, permuted in (("default", (0.05, 0.01, 0.09), (0.0, -0.1, 0.1)),
                                   ("pathway-visible", (0.15, 0.10, 0.20), (0.02, 0.01, 0.03)),
                                   ("pathway-misspecified", (0.01, -0.02, 0.04), (0.0, -0.1, 0.1))):
        for arm, (mean, lo, hi) in (("genes_aux", named), ("genes_aux_permuted", permuted)):
            for metric in ("pathway_pcc_truth", "readout_rollout"):
                rows.append({"world": world, "arm": arm, "metric": metric, "mean": mean, "ci_low": lo, "ci_high": hi,
                             "n_folds": 3, "feature_ceiling": 0.2, "reliability_ceiling_raw": 0.9})
    summary = pd.DataFrame(rows)
    table = R.recovery_by_world(summary)
    # worlds in the simulator's order, with their role; arms never run say so
    assert list(table.index) == ["default", "pathway-misspecified", "pathway-visible"]
    assert table.loc["pathway-visible", "role"] == "positive control"
    assert table.loc["pathway-visible", "genes_aux"] == "0.150 [0.100, 0.200]"
    assert table.loc["default", "pathways"] == "not run"
    lines = "\n".join(R.readings_by_world(summary))
    assert "(`genes_aux`) correlate with the true activity above zero in 2 of 3 worlds (`default`, `pathway-visible`)" in lines
    # the permuted control above zero in the positive-control world is called a leak, not a finding
    assert "control of `genes_aux` correlate with the true activity above zero in 1 of 3 worlds (`pathway-visible`) (a name" in lines
    assert "0.150 [0.100, 0.200] where activity is visible" in lines and "0.010 [-0.020, 0.040] where the Hallmarks" in lines
    assert ("rollout read-out of the supervised arms (`genes_aux`, `pathways`) lies above zero in 2 of 3 (world, arm) "
            "cells: `default` (genes_aux), `pathway-visible` (genes_aux); including the positive control") in lines
