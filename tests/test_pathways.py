import hashlib
from pathlib import Path

import numpy as np
import pytest

from stflib import pathways

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def test_hallmarks_offline_fifty_sets():
    sets = pathways.hallmarks()
    assert len(sets) == 50
    assert all(name.startswith("HALLMARK_") for name in sets)
    assert len(set().union(*sets.values())) == 4383  # distinct human symbols in v7.5.1
    assert "VIM" in sets["HALLMARK_EPITHELIAL_MESENCHYMAL_TRANSITION"]


def test_packaged_gmt_matches_reference_copy():
    ref = SHARED / "msigdb" / "h.all.v7.5.1.symbols.gmt"
    if not ref.exists():
        pytest.skip(f"reference data absent: {ref}")
    assert pathways.read_gmt(ref) == pathways.hallmarks()
    assert hashlib.sha256(ref.read_bytes()).hexdigest() == pathways.HALLMARK_SHA256


def test_read_gmt_user_file_and_errors(tmp_path):
    good = tmp_path / "sets.gmt"
    good.write_text("S1\tdesc\tA\tB\tA\nS2\t\tC\n")
    assert pathways.read_gmt(good) == {"S1": ["A", "B"], "S2": ["C"]}
    bad = tmp_path / "bad.gmt"
    bad.write_text("S1\tonly-description\n")
    with pytest.raises(ValueError, match="bad.gmt:1"):
        pathways.read_gmt(bad)
    with pytest.raises(FileNotFoundError, match="missing.gmt"):
        pathways.read_gmt(tmp_path / "missing.gmt")


def test_membership_reports_coverage_and_drops_small_sets():
    sets = {"P1": ["A", "B", "C", "Z"], "P2": ["D"]}
    m = pathways.membership_matrix(sets, ["A", "B", "C", "D"], min_genes=2)
    assert m.names == ["P1"] and m.dropped == ["P2"]
    np.testing.assert_array_equal(m.matrix, [[1, 1, 1, 0]])
    assert m.coverage == {"P1": (3, 4), "P2": (1, 1)}
    assert "dropped" in m.report()
    with pytest.raises(ValueError, match="HGNC symbols"):
        pathways.membership_matrix(sets, ["ENSG000001", "ENSG000002"], min_genes=2)


def test_pathway_targets_match_direct_computation():
    rng = np.random.default_rng(0)
    expr = rng.poisson(3.0, size=(40, 6)).astype(float)
    expr[:, 2] = 7.0  # a constant gene: zero variance, must contribute 0 and never NaN
    valid = np.ones(40, bool)
    valid[::7] = False
    membership = np.array([[1, 1, 1, 0, 0, 0], [0, 0, 0, 1, 1, 0]], float)
    got = pathways.pathway_targets(expr, membership, valid)
    x = expr[valid]
    z = np.zeros_like(expr)
    for g in range(expr.shape[1]):
        sd = x[:, g].std()
        if sd > 0:
            z[:, g] = (expr[:, g] - x[:, g].mean()) / sd
    z[~valid] = 0
    want = np.stack([z[:, :3].sum(1) / 3, z[:, 3:5].sum(1) / 2], axis=1)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert np.isfinite(got).all()


# ------------------------------------------------------------------ the permuted negative control


@pytest.fixture(scope="module")
def hallmark_membership():
    sets = pathways.hallmarks()
    # a vocabulary of Hallmark genes and genes in no set (a run's vocabulary has both)
    vocab = sorted(set().union(*sets.values()))[::4] + [f"NOTINASET{i}" for i in range(300)]
    return pathways.membership_matrix(sets, vocab)


def test_pathway_sets_registry_starts_with_todays_hallmarks():
    assert pathways.PATHWAY_SETS[0] == "hallmark" and "permuted" in pathways.PATHWAY_SETS


def test_permuted_membership_keeps_names_and_sizes_with_random_members(hallmark_membership):
    m = hallmark_membership
    p = pathways.permuted_membership(m, seed=1)
    assert isinstance(p, pathways.Membership)
    assert p.names == m.names and p.genes == m.genes
    assert p.coverage == m.coverage and p.dropped == m.dropped
    assert p.matrix.shape == m.matrix.shape and p.matrix.dtype == np.float32
    assert set(np.unique(p.matrix)) <= {0.0, 1.0}  # a valid 0/1 matrix over the vocabulary
    np.testing.assert_array_equal(p.matrix.sum(1), m.matrix.sum(1))  # every set keeps its size
    assert all((p.matrix[i] != m.matrix[i]).any() for i in range(len(m.names)))  # every set is redrawn
    overlap = (p.matrix * m.matrix).sum() / m.matrix.sum()
    assert overlap < 0.5  # mostly other genes than the Hallmark's own
    # the members are spread over the whole vocabulary, genes in no Hallmark included
    assert p.matrix[:, [m.genes.index(f"NOTINASET{i}") for i in range(300)]].any()
    np.testing.assert_array_equal(p.matrix, pathways.permuted_membership(m, seed=1).matrix)  # deterministic
    assert (p.matrix != pathways.permuted_membership(m, seed=2).matrix).any()
    assert m.matrix is not p.matrix and m.names is not p.names  # the original is left alone


def test_a_runs_membership_follows_pathway_sets_and_its_fold(hallmark_membership):
    genes = hallmark_membership.genes
    hallmark = pathways.pathway_membership(genes, "hallmark", fold=2)
    np.testing.assert_array_equal(hallmark.matrix, hallmark_membership.matrix)  # today's behaviour
    permuted = pathways.pathway_membership(genes, "permuted", fold=0)
    np.testing.assert_array_equal(
        permuted.matrix, pathways.permuted_membership(hallmark_membership, pathways.permutation_seed(0)).matrix)
    assert pathways.permutation_seed(1) == pathways.PERMUTATION_SEED + 1  # a constant plus the fold
    assert (permuted.matrix != pathways.pathway_membership(genes, "permuted", fold=1).matrix).any()
    allowed = ", ".join(pathways.PATHWAY_SETS)
    with pytest.raises(ValueError, match=f"pathway_sets: unknown value 'random'; allowed: {allowed}"):
        pathways.pathway_membership(genes, "random")


def test_a_permuted_run_uses_the_permutation_for_init_and_auxiliary_targets():
    """load_fold on the simulator's tiny cohort (no training): the fold's membership, which
    ``pathway_init`` and the auxiliary targets read, is the fold's permutation whatever the seed."""
    from stflib.config import RunConfig
    from stflib.train.fold import load_fold

    hallmark = load_fold(RunConfig(preset="tiny"))
    permuted = load_fold(RunConfig(preset="tiny", pathway_sets="permuted", seed=1))
    assert hallmark.genes == permuted.genes
    expected = pathways.pathway_membership(permuted.genes, "permuted", fold=0)
    np.testing.assert_array_equal(permuted.membership.matrix, expected.matrix)  # not seeded by the training seed
    assert permuted.membership.names == hallmark.membership.names
    sample = hallmark.train_ids[0]
    assert not np.allclose(hallmark.items[sample]["pathway_targets"], permuted.items[sample]["pathway_targets"])
    np.testing.assert_array_equal(hallmark.items[sample]["targets"], permuted.items[sample]["targets"])
