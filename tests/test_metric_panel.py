"""The second metric panel (issue 34): pcc_pathway_genes on the pathway- and context-gene panel, the
within-slide PCC, and the collapse ratio read against the noise-free truth (NaN for scale-free losses)."""
from types import SimpleNamespace

import numpy as np
import pytest

from stflib import metrics as M
from stflib.panels import PANEL_SIZE, pathway_context_panel


def _drive(gene: str) -> float:
    """A gene's context drive computed here from the simulator's biology, independently of the panel code."""
    from stflib.sim.biology import biology

    bio = biology()
    i = list(bio.genes).index(gene)
    return float(np.sqrt(sum((bio.pathway_loadings[i] @ w) ** 2 for w in (*bio.w_ctx, *bio.w_long))))


def test_simulator_panel_keeps_context_driven_hallmark_genes_outside_the_hvgs():
    from stflib.sim.biology import biology

    bio = biology()
    klass = dict(zip(map(str, bio.genes), map(str, bio.gene_class)))
    genes = [str(g) for g in bio.genes]
    panel = pathway_context_panel(genes, hvg=[])
    assert len(panel) == PANEL_SIZE and len(set(panel)) == PANEL_SIZE
    assert {klass[g] for g in panel} == {"hallmark"}  # no marker, ribosomal or background gene
    drives = [_drive(g) for g in panel]
    assert drives == sorted(drives, reverse=True) and drives[-1] > 0
    # no Hallmark-class gene left out has a larger drive than the last one kept
    rest = [g for g in genes if klass[g] == "hallmark" and g not in panel]
    assert max(_drive(g) for g in rest[::7]) <= drives[-1] + 1e-12
    # the HVGs are never in it, and the next genes take their place
    top = panel[0]
    without_top = pathway_context_panel(genes, hvg=[top])
    assert top not in without_top and without_top[:PANEL_SIZE - 1] == panel[1:]
    # a vocabulary without driven genes gives an empty panel; a marker with a Hallmark loading is not kept
    assert pathway_context_panel(["MRPL1", "CD8A", "NOT_A_GENE"], hvg=[]) == []
    assert pathway_context_panel([top, "CD8A"], hvg=[], size=3) == [top]


def test_measured_panel_is_the_hallmark_members_outside_the_hvgs():
    genes = ["STAT3", "ENSG00000168610", "GAPDH_X", "CD274", "ITK"]
    assert pathway_context_panel(genes, hvg=["ITK"], source="measured") == ["STAT3", "CD274"]
    assert pathway_context_panel(["ENSG00000168610"], hvg=[], source="measured") == []
    with pytest.raises(ValueError, match="allowed: simulator, measured"):
        pathway_context_panel(genes, hvg=[], source="hest")


def _cohort(seed=0, n_slides=3, n=40):
    """Four genes over three slides: two HVGs (H1, H2) and two panel genes (P1, P2)."""
    rng = np.random.default_rng(seed)
    expected = rng.normal(size=(n_slides * n, 4)) + np.repeat(rng.normal(size=(n_slides, 4)), n, axis=0)
    true = expected + rng.normal(scale=0.7, size=expected.shape)  # the counting noise
    return expected, true, np.repeat(np.arange(n_slides), n), ["H1", "H2", "P1", "P2"]


def test_pcc_pathway_genes_reads_only_the_panel():
    expected, true, slides, genes = _cohort()
    pred = true.copy()
    pred[:, 2:] = -true[:, 2:]  # the panel genes anti-correlated, the HVGs perfect
    out, arrays = M.evaluate(pred, true, genes, ["H1", "H2"], slides, panel=["P1", "P2"])
    assert out["pcc_hvg50"] == pytest.approx(1.0) and out["pcc_pathway_genes"] == pytest.approx(-1.0)
    assert out["n_pathway_genes"] == 2 and arrays["is_panel"].tolist() == [False, False, True, True]
    # one gene of the panel: its own PCC, computed by hand
    noisy = true.copy()
    noisy[:, 3] = true[:, 3] + np.random.default_rng(3).normal(size=len(true))
    out, _ = M.evaluate(noisy, true, genes, ["H1", "H2"], slides, panel=["P2", "NOT_MEASURED"])
    assert out["pcc_pathway_genes"] == pytest.approx(np.corrcoef(noisy[:, 3], true[:, 3])[0, 1])
    # no panel gene measured (toy names are neither Hallmark members nor simulator genes): NaN, not 0
    out, _ = M.evaluate(true, true, genes, ["H1", "H2"], slides)
    assert np.isnan(out["pcc_pathway_genes"]) and out["n_pathway_genes"] == 0
    assert "pcc_hvg50_within_slide" in out  # the within-slide PCC of the same panel run


def test_within_slide_pcc_ignores_slide_shifts_that_the_pooled_pcc_counts():
    expected, true, slides, genes = _cohort()
    means = np.concatenate([np.broadcast_to(true[slides == s].mean(0), ((slides == s).sum(), 4)) for s in range(3)])
    out, _ = M.evaluate(means, true, genes, ["H1", "H2"], slides, panel=["P1"])
    assert out["pcc_hvg50"] > 0.3 and out["pcc_hvg50_within_slide"] == 0.0


def test_collapse_ratio_against_the_noise_free_truth():
    expected, true, slides, genes = _cohort()
    hvg = ["H1", "H2"]
    # the noise-free truth itself: 1 against it, below 1 against the noisy measurement
    out, _ = M.evaluate(expected, true, genes, hvg, slides, expected=expected, panel=["P1"])
    assert out["collapse_ratio_noise_free"] == pytest.approx(1.0)
    assert out["collapse_ratio"] < 0.8
    # half the noise-free spread around each slide's mean: a quarter of its variance, by hand
    centre = np.concatenate([np.broadcast_to(expected[slides == s].mean(0), ((slides == s).sum(), 4)) for s in range(3)])
    half = centre + 0.5 * (expected - centre)
    out, _ = M.evaluate(half, true, genes, hvg, slides, expected=expected, panel=["P1"])
    assert out["collapse_ratio_noise_free"] == pytest.approx(0.25)
    by_hand = np.mean([half[slides == s][:, :2].var(0).sum() / expected[slides == s][:, :2].var(0).sum()
                       for s in range(3)])
    assert out["collapse_ratio_noise_free"] == pytest.approx(by_hand)
    # left out for a scale-free loss, and without the simulator's truth
    out, _ = M.evaluate(half, true, genes, hvg, slides, expected=expected, panel=["P1"], scale_free=True)
    assert np.isnan(out["collapse_ratio_noise_free"]) and out["collapse_ratio_oracle"] == pytest.approx(
        M.collapse_ratio(expected, true, slides, [0, 1]))
    out, _ = M.evaluate(half, true, genes, hvg, slides, panel=["P1"])
    assert np.isnan(out["collapse_ratio_noise_free"])


def test_new_metrics_are_registered_and_summarised():
    from stflib.grid.collect import SUMMARY_COLUMNS

    for name in ("pcc_pathway_genes", "pcc_hvg50_within_slide", "collapse_ratio_noise_free",
                 "noise_ceiling_pathway_genes"):
        metric = M.METRICS[name]
        assert metric.label and metric.description and metric.higher_is_better
        assert name in SUMMARY_COLUMNS


def test_scale_free_losses_are_marked_in_the_loss_registry():
    from stflib.losses import LOSSES

    assert [name for name, loss in LOSSES.items() if loss.scale_free] == ["pcc"]


def _fold_and_preds(rng, genes, hvg):
    """A minimal fold of two test slides with the simulator's expected counts, and its predictions."""
    from stflib.train.evaluate import expected_log

    samples, preds = {}, []
    for sid in ("s0", "s1"):
        counts = rng.gamma(2.0, 20.0, size=(30, len(genes)))
        samples[sid] = SimpleNamespace(genes=genes, truth={"expected_counts": counts})
        true = expected_log(samples[sid], genes) + rng.normal(scale=0.3, size=(30, len(genes)))
        preds.append({"sample_id": sid, "valid": np.ones(30, bool), "true": true, "pathway_scores": None,
                      "pred": true.mean(0) + 0.5 * (true - true.mean(0))})
    fold = SimpleNamespace(samples=samples, genes=genes, hvg=hvg, truth_pathway_names=[], items={},
                           hvg_columns=np.array([genes.index(g) for g in hvg]))
    return fold, preds


def test_evaluate_predictions_leaves_the_noise_free_ratio_out_for_a_scale_free_loss():
    from stflib.config import RunConfig
    from stflib.train.evaluate import evaluate_predictions

    genes = [f"G{i}" for i in range(6)] + ["ITK", "STAT3"]
    fold, preds = _fold_and_preds(np.random.default_rng(0), genes, genes[:6])
    mse, _ = evaluate_predictions(fold, RunConfig.from_params({"loss": "mse"}), preds, preds, None)
    pcc, _ = evaluate_predictions(fold, RunConfig.from_params({"loss": "pcc"}), preds, preds, None)
    assert 0 < mse["collapse_ratio_noise_free"] < 1 and np.isnan(pcc["collapse_ratio_noise_free"])
    # the simulated fold scores the simulator's panel: ITK and STAT3 are context-driven Hallmark genes
    assert mse["n_pathway_genes"] == 2 and np.isfinite(mse["pcc_pathway_genes"])
