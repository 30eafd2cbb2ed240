"""The pathways page's bounds for the named pathway tokens (stflib.report.pathway_bounds)."""
import pandas as pd
import pytest

from stflib.report import pathway_bounds as B


def bounds(ceiling=(0.1, 0.2), aux_readout=(0.15, 0.2), aux_target=(0.3, 0.4)):
    return pd.DataFrame({"fold": [0, 1], "ceiling": ceiling, "aux_readout": aux_readout, "aux_target": aux_target})


def summary(model=((0.05, 0.07), (0.1, 0.12)), ceiling=(0.1, 0.2)):
    axis, arm = B.BOUNDS_ARM
    rows = [{"axis": axis, "arm": arm, "world": "default", "fold": f, "seed": s, "pathway_pcc_truth": model[f][s],
             "pathway_ceiling": ceiling[f]} for f in (0, 1) for s in (0, 1)]
    rows.append({"axis": "baselines", "arm": "stf", "world": "default", "fold": 0, "seed": 0,
                 "pathway_pcc_truth": 0.9, "pathway_ceiling": 0.1})  # another arm: ignored
    return pd.DataFrame(rows)


def test_bounds_table_shares_per_fold_and_mean():
    t = B.bounds_table(summary(), bounds())
    assert list(t.index) == [0, 1, "mean"]
    assert t.loc[0, "model"] == pytest.approx(0.06) and t.loc[1, "seeds"] == 2
    assert t.loc[0, "share of ceiling"] == pytest.approx(0.6) and t.loc[0, "share of aux read-out"] == pytest.approx(0.4)
    assert t.loc["mean", "share of ceiling"] == pytest.approx((0.6 + 0.55) / 2)  # the mean of the folds' shares


def test_bounds_of_other_inputs_are_refused():
    with pytest.raises(ValueError, match=r"folds \[1\]: the runs record pathway_ceiling \[0.25\]"):
        B.bounds_table(summary(ceiling=(0.1, 0.25)), bounds())
    with pytest.raises(ValueError, match="no runs of pathways/init-on_aux-0.5 in world 'other'"):
        B.bounds_table(summary(), bounds(), world="other")


@pytest.mark.parametrize("aux_readout, says", [((0.15, 0.25), "in every fold"), ((0.15, 0.1), "in 1 of 2 folds"),
                                               ((0.05, 0.1), "stays above")])
def test_describe_bounds_reads_the_table(aux_readout, says):
    text = B.describe_bounds(B.bounds_table(summary(), bounds(aux_readout=aux_readout)))
    assert says in text and "0.085" in text and "57%" in text  # mean model, mean share of the ceiling (0.575)


@pytest.mark.slow
def test_pathway_bounds_on_the_tiny_cohort_match_the_runs_ceiling(tmp_path):
    from stflib.config import RunConfig
    from stflib.train.evaluate import pathway_ceiling
    from stflib.train.fold import load_fold, prepare_features

    params = {"preset": "tiny", "n_neighbors": 0}  # the spot alone: a 2048-wide ridge, not 4096, keeps it quick
    path = B.write_pathway_bounds(n_folds=3, results_dir=tmp_path, log=None, params=params)
    table = B.load_pathway_bounds(results_dir=tmp_path)
    assert path == B.bounds_path(results_dir=tmp_path) and list(table["fold"]) == [0, 1, 2]
    assert (table["n_neighbors"] == 0).all() and table[["ceiling", "aux_readout", "aux_target"]].abs().le(1).all().all()
    cfg = RunConfig.from_params({**params, "pathway_init": True, "pathway_loss_weight": 0.5, "fold": 1})
    fold = load_fold(cfg)
    prepare_features(fold, cfg)
    assert table.loc[1, "ceiling"] == pytest.approx(pathway_ceiling(fold, cfg), abs=1e-5)


def _write_predictions(path, scores, truth, slide):
    import anndata as ad
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    a = ad.AnnData(np.zeros((len(slide), 1), np.float32))
    a.obs["valid"] = np.ones(len(slide), bool)
    a.obs["sample_id"] = slide
    a.obsm["pathway_scores"] = scores.astype(np.float32)
    a.obsm["true_pathway_activity"] = truth[:, ::-1].astype(np.float32)  # another column order than the scores
    a.uns["pathway_names"] = ["A", "B"]
    a.uns["true_pathway_names"] = ["B", "A"]
    a.write_h5ad(path)


def test_slide_levels_separate_slide_offsets_from_the_pattern(tmp_path):
    """Scores that follow the truth inside every slide but carry slide offsets of their own lose
    pooled PCC, not within-slide PCC; scores equal to the truth keep both at 1."""
    import numpy as np

    rng = np.random.default_rng(0)
    slide = np.repeat(["s0", "s1", "s2", "s3"], 50)
    truth = rng.normal(size=(200, 2))
    offsets = np.repeat(rng.normal(scale=3.0, size=(4, 2)), 50, axis=0)
    _write_predictions(tmp_path / "pathway_readout/contextual/fold0/predictions.h5ad", truth + offsets, truth, slide)
    _write_predictions(tmp_path / "pathway_readout/shared/fold0/predictions.h5ad", truth, truth, slide)
    with pytest.raises(FileNotFoundError, match="run `python -m stflib pathway-bounds --slide-levels pathway_readout`"):
        B.slide_levels("pathway_readout", results_dir=tmp_path)
    path = B.write_slide_levels("pathway_readout", results_dir=tmp_path)
    assert path == tmp_path / "ceilings" / "slide_levels_pathway_readout.csv"
    table = B.slide_levels("pathway_readout", results_dir=tmp_path)
    assert list(table.index) == ["contextual", "shared"] and (table["runs"] == 1).all()
    ctx, shared = table.loc["contextual"], table.loc["shared"]
    assert shared["pooled PCC"] == pytest.approx(1.0) and shared["within-slide PCC"] == pytest.approx(1.0)
    assert ctx["within-slide PCC"] == pytest.approx(1.0) and ctx["pooled PCC"] < 0.6
    assert ctx["scores between slides"] > 0.7 > shared["scores between slides"]
    assert shared["scores between slides"] == pytest.approx(shared["truth between slides"])


def test_slide_levels_without_runs_say_what_to_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="run `python -m stflib ablate params/pathway_readout`"):
        B.write_slide_levels("pathway_readout", results_dir=tmp_path)
