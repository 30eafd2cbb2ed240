"""Evaluation metrics (stflib.metrics)."""
import numpy as np
import pytest

from stflib import metrics


def test_pearson_columns_matches_numpy_and_edge_cases():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(40, 3)), rng.normal(size=(40, 3))
    r = metrics.pearson_columns(a, b)
    for k in range(3):
        assert r[k] == pytest.approx(np.corrcoef(a[:, k], b[:, k])[0, 1])
    const_pred = np.ones((40, 3))
    assert np.allclose(metrics.pearson_columns(const_pred, b), 0.0)  # a collapsed prediction earns 0
    assert np.isnan(metrics.pearson_columns(b, const_pred)).all()  # no PCC for constant truth
    assert np.allclose(metrics.pearson_columns(2 * b + 1, b), 1.0)


def test_to_log_cp10k():
    x = np.array([[-1.0, 0.0, 9.0]])
    assert np.allclose(metrics.to_log_cp10k(x, "cp10k"), np.log1p([0, 0, 9]))
    assert np.allclose(metrics.to_log_cp10k(x, "log"), x)
    mu = np.array([[10.0, 0.0]])
    assert np.allclose(metrics.to_log_cp10k(mu, "counts", np.array([1000.0])), np.log1p([100.0, 0.0]))
    with pytest.raises(ValueError):
        metrics.to_log_cp10k(x, "raw")


def _toy(n_slides=3, n=50, g=60, seed=0):
    rng = np.random.default_rng(seed)
    true = rng.gamma(2.0, 1.0, size=(n_slides * n, g))
    slides = np.repeat(np.arange(n_slides), n)
    genes = [f"G{i}" for i in range(g)]
    return true, slides, genes


def test_evaluate_perfect_noisy_and_collapsed():
    true, slides, genes = _toy()
    hvg = genes[:50]
    perfect, arrays = metrics.evaluate(true, true, genes, hvg, slides)
    assert perfect["pcc_hvg50"] == pytest.approx(1.0) and perfect["pcc_all"] == pytest.approx(1.0)
    assert perfect["mse"] == pytest.approx(0.0) and perfect["collapse_ratio"] == pytest.approx(1.0)
    assert arrays["pcc"].shape == (60,) and arrays["is_hvg"].sum() == 50
    rng = np.random.default_rng(1)
    noisy, _ = metrics.evaluate(true + rng.normal(scale=1.0, size=true.shape), true, genes, hvg, slides)
    assert 0.3 < noisy["pcc_hvg50"] < 0.95 and noisy["mse"] == pytest.approx(1.0, rel=0.1)
    mean_pred = np.broadcast_to(true.mean(0), true.shape)
    collapsed, _ = metrics.evaluate(mean_pred, true, genes, hvg, slides)
    assert collapsed["pcc_hvg50"] == 0.0 and collapsed["collapse_ratio"] == pytest.approx(0.0)
    # slide means only: some pooled PCC but no within-slide pattern
    slide_mean = np.concatenate([np.broadcast_to(true[slides == s].mean(0), ((slides == s).sum(), 60)) for s in range(3)])
    sm, _ = metrics.evaluate(slide_mean, true, genes, hvg, slides)
    assert sm["collapse_ratio"] == pytest.approx(0.0) and sm["pcc_hvg50_within_slide"] == 0.0


def test_evaluate_pathways_and_ceiling():
    true, slides, genes = _toy()
    rng = np.random.default_rng(2)
    truth = rng.normal(size=(len(true), 5))
    scores = truth[:, ::-1] * 3 + 1  # right pathways, wrong order
    m, arrays = metrics.evaluate(true, true, genes, genes[:50], slides, pathway_scores=scores, pathway_truth=truth,
                                 expected=true + rng.normal(scale=0.5, size=true.shape))
    assert m["pathway_pcc_truth_matched"] == pytest.approx(1.0)
    assert m["pathway_pcc_truth"] < 0.9
    m2, _ = metrics.evaluate(true, true, genes, genes[:50], slides, pathway_scores=truth * 2, pathway_truth=truth)
    assert m2["pathway_pcc_truth"] == pytest.approx(1.0)
    assert 0.5 < m["noise_ceiling_hvg50"] < 1.0 and "ceiling" in arrays
    # the oracle here is the truth plus independent noise: its spatial variance exceeds the truth's
    assert m["collapse_ratio_oracle"] > 1.0
    shrunk, _ = metrics.evaluate(true, true, genes, genes[:50], slides, expected=true.mean(0) + 0.5 * (true - true.mean(0)))
    assert shrunk["collapse_ratio_oracle"] == pytest.approx(0.25, rel=0.05)


def test_hvg_must_be_in_vocabulary():
    true, slides, genes = _toy()
    with pytest.raises(ValueError, match="HVGs"):
        metrics.evaluate(true, true, genes, ["NOPE"], slides)


def test_training_fit_figures():
    M = metrics
    rng = np.random.default_rng(0)
    true = [rng.normal(size=(30, 6)), rng.normal(size=(20, 6))]
    perfect = M.training_fit(true, true, [0, 2, 4])
    assert perfect["train_pcc_hvg50"] == pytest.approx(1.0) and perfect["train_mse_ratio"] == pytest.approx(0.0)
    pooled_mean = np.concatenate(true).mean(0)
    mean = M.training_fit([np.broadcast_to(pooled_mean, t.shape) for t in true], true, [0, 2, 4])
    assert mean["train_mse_ratio"] == pytest.approx(1.0)
    worse = M.training_fit([t + 1.0 for t in true], true, [0])
    assert worse["train_mse_ratio"] > 1 and worse["train_pcc_hvg50"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="differ"):
        M.training_fit([true[0][:, :3]], [true[0]], [0])
