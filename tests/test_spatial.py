"""stflib.spatial: spot pitch, hex neighbours, k nearest neighbours, the context-matched input and the
Visium lattice."""
from __future__ import annotations

import numpy as np
import pytest

from stflib import spatial


def _hex(n_rows=10, n_cols=20, pitch=100.0):
    return spatial.lattice_centres(*spatial.hex_lattice(n_rows, n_cols), pitch)


def test_spot_pitch_of_a_hex_grid():
    assert spatial.spot_pitch(_hex(pitch=100.0)) == pytest.approx(100.0)
    assert spatial.spot_pitch(_hex(pitch=200.0) + 7.0) == pytest.approx(200.0)
    with pytest.raises(ValueError, match="at least 2 spots"):
        spatial.spot_pitch(np.zeros((1, 2)))
    with pytest.raises(ValueError, match=r"shape \(N, 2\)"):
        spatial.spot_pitch(np.zeros((5, 3)))


def test_spot_pitch_is_not_biased_by_registration_jitter():
    """The median over hex-ring distances, not each spot's nearest: the nearest of 6 jittered distances is
    biased low (here by ~5 %), the ring median is not."""
    xy = _hex(40, 80) + np.random.default_rng(0).normal(0, 5.0, (1600, 2))
    nearest = np.median(np.sort(np.linalg.norm(xy[:, None] - xy[None], axis=-1), 1)[:, 1])
    assert nearest < 97.0
    assert spatial.spot_pitch(xy) == pytest.approx(100.0, abs=1.0)
    assert spatial.spot_pitch(np.zeros((4, 2))) == 0.0  # all at one place: no pitch


def test_hex_lattice_is_the_visium_array():
    rows, cols = spatial.hex_lattice(78, 128)  # Visium v1
    assert len(rows) == 4992 and ((rows + cols) % 2 == 0).all()
    assert rows.max() == 77 and cols.max() == 127
    assert np.all(np.diff(rows * 128 + cols) > 0)  # row-major
    xy = spatial.lattice_centres(rows, cols, 100.0)
    deg = np.asarray(spatial.hex_neighbours(xy, 100.0).sum(1)).ravel()
    assert deg.max() == 6 and np.median(deg) == 6
    d = np.linalg.norm(xy[1] - xy[0])  # same row, columns 0 and 2
    assert d == pytest.approx(100.0)


def test_hex_neighbours_are_the_first_ring():
    xy = _hex()
    adj = spatial.hex_neighbours(xy, 100.0)
    deg = np.asarray(adj.sum(1)).ravel()
    assert deg.max() == 6 and deg.min() >= 2
    assert (adj != adj.T).nnz == 0 and adj.diagonal().sum() == 0
    with pytest.raises(ValueError, match="pitch must be > 0"):
        spatial.hex_neighbours(xy, 0.0)


def test_knn_excludes_the_spot_and_matches_hex_ring_inside():
    xy = _hex()
    idx = spatial.knn_indices(xy, 6)
    assert idx.shape == (len(xy), 6)
    assert not (idx == np.arange(len(xy))[:, None]).any()
    adj = spatial.hex_neighbours(xy, 100.0)
    interior = np.flatnonzero(np.asarray(adj.sum(1)).ravel() == 6)
    for i in interior[:20]:
        assert set(idx[i]) == set(adj[i].indices)
    # the nearest come first
    d = np.linalg.norm(xy[idx] - xy[:, None, :], axis=2)
    assert (np.diff(d, axis=1) >= -1e-9).all()
    assert spatial.knn_indices(xy[:3], 6).shape == (3, 2)  # fewer spots than k: all others
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="k must be an integer >= 1"):
            spatial.knn_indices(xy, bad)


def test_with_neighbour_mean_is_own_then_knn_mean():
    rng = np.random.default_rng(0)
    xy = _hex()
    x = rng.normal(size=(len(xy), 3)).astype(np.float32)
    out = spatial.with_neighbour_mean(x, xy, 6)
    assert out.shape == (len(xy), 6) and out.dtype == np.float32
    np.testing.assert_array_equal(out[:, :3], x)
    idx = spatial.knn_indices(xy, 6)
    np.testing.assert_allclose(out[5, 3:], x[idx[5]].mean(0), rtol=1e-6)
    # neighbour averaging removes i.i.d. noise but keeps a smooth field
    smooth = np.sin(xy[:, :1] / 300.0)
    noisy = smooth + rng.normal(size=smooth.shape)
    nb = spatial.knn_mean(noisy, xy, 6)
    assert np.corrcoef(nb[:, 0], smooth[:, 0])[0, 1] > np.corrcoef(noisy[:, 0], smooth[:, 0])[0, 1] + 0.2
    with pytest.raises(ValueError, match="rows but coords"):
        spatial.knn_mean(x[:5], xy, 6)


def test_gaussian_smoother_rows_sum_to_one():
    xy = _hex()
    m = spatial.gaussian_smoother(xy, 150.0)
    np.testing.assert_allclose(np.asarray(m.sum(1)).ravel(), 1.0)
    assert (m.diagonal() > 0).all()
    with pytest.raises(ValueError, match="sigma must be > 0"):
        spatial.gaussian_smoother(xy, -1.0)
