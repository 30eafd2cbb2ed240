"""Split-half reliability: binomial thinning, Spearman-Brown, and depth regression, on counts whose
reliability is known by construction."""
import numpy as np
import pytest
import scipy.sparse as sp

from stflib.metrics import pearson_columns
from stflib.sim import reliability as R


def test_thinning_splits_every_count_and_halves_the_depth():
    rng = np.random.default_rng(0)
    counts = rng.poisson(20, size=(300, 40))
    a, b = R.thin_counts(counts, np.random.default_rng(1))
    assert np.array_equal((a + b).toarray(), counts)
    assert (a.toarray() >= 0).all() and (b.toarray() >= 0).all()
    assert abs(a.sum() / counts.sum() - 0.5) < 0.01


@pytest.mark.parametrize("bad", [0.0, 1.0, 1.5])
def test_thinning_rejects_a_probability_outside_the_open_interval(bad):
    with pytest.raises(ValueError, match=f"got {bad}"):
        R.thin_counts(np.ones((2, 2)), np.random.default_rng(0), p=bad)


def test_thinning_rejects_negative_counts():
    with pytest.raises(ValueError, match="negative"):
        R.thin_counts(np.array([[1, -2]]), np.random.default_rng(0))


def test_spearman_brown_steps_a_half_depth_correlation_up():
    assert np.allclose(R.spearman_brown([0.0, 0.5, 1.0]), [0.0, 2 / 3, 1.0])
    assert np.isnan(R.spearman_brown(np.nan))


def _slide(rng, n=800, depth_effect=0.0):
    """Counts of three kinds of gene: a strongly varying one (reliable), a constant-rate one (pure
    counting noise: reliability ~0), and 200 background genes carrying the library."""
    signal = rng.normal(size=n)
    depth = np.exp(rng.normal(scale=0.4, size=n) * (1 + depth_effect))
    rates = np.column_stack([np.exp(4.0 + 1.0 * signal), np.full(n, 3.0), np.full((n, 200), 20.0)])
    counts = rng.poisson(rates * depth[:, None])
    return counts


def test_a_varying_gene_is_reliable_and_a_constant_rate_gene_is_not():
    from types import SimpleNamespace

    rng = np.random.default_rng(3)
    counts = _slide(rng)
    genes = ["VARY", "FLAT"] + [f"BG{i}" for i in range(200)]
    sample = SimpleNamespace(sample_id="S1", counts=sp.csr_matrix(counts), genes=np.array(genes))
    out = R.slide_reliability(sample, ["VARY", "FLAT", "ABSENT"], membership=None)
    assert out["genes"][0] > 0.9
    assert abs(out["genes"][1]) < 0.15
    assert np.isnan(out["genes"][2])  # a gene the slide lacks has no reliability


def test_depth_regression_removes_a_shared_depth_component():
    """Scores driven only by depth replicate between halves (each half sees the same depth), so the
    raw reliability is high; regressing log depth out leaves counting noise (reliability ~0)."""
    rng = np.random.default_rng(4)
    n, members, background = 600, 10, 300
    depth = np.exp(rng.normal(scale=0.8, size=n))
    # the member genes rise with depth faster than the library (the background) does: their
    # log1p(CP10k) is linear in log depth, a depth-driven score and nothing else
    # (at 5 UMIs a gene, counting noise, not the slight curvature of log1p, is what is left)
    exponent = np.r_[np.full(members, 1.6), np.full(background, 1.0)]
    rate = np.r_[np.full(members, 5.0), np.full(background, 50.0)]
    counts = rng.poisson(rate[None, :] * depth[:, None] ** exponent[None, :])
    membership = np.zeros((1, members + background))
    membership[0, :members] = 1
    a, b = R.thin_counts(counts, np.random.default_rng(5))
    raw = R.spearman_brown(pearson_columns(R.pathway_scores(a, membership), R.pathway_scores(b, membership)))
    cor = R.spearman_brown(pearson_columns(R.pathway_scores(a, membership, "regress"),
                                            R.pathway_scores(b, membership, "regress")))
    assert raw[0] > 0.8 and cor[0] < 0.3


def test_an_unknown_depth_correction_names_the_allowed_ones():
    with pytest.raises(ValueError, match="depth_correction: unknown 'zscore'; allowed: none, regress"):
        R.pathway_scores(np.ones((3, 2)), np.ones((1, 2)), "zscore")


def test_the_committed_table_has_every_world():
    import pandas as pd
    from pathlib import Path

    from stflib.sim.worlds import WORLDS

    path = Path(__file__).resolve().parents[1] / "results" / "worlds" / "reliability.csv"
    table = pd.read_csv(path)
    assert list(table.columns) == R.COLUMNS
    assert set(table["world"]) == set(WORLDS)
    assert table["gene_reliability_hvg50"].between(0, 1).all()
