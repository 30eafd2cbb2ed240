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
