"""Spot-neighbourhood helpers shared by the simulator, the calibration probes and the per-spot baselines.

One home for "who are a spot's neighbours" so that the simulator's smoothing, the calibration's
context probe and the context-matched baseline arms (``ridge_probe`` / ``mlp`` with
``n_neighbors=k``) all mean the same thing:

- ``spot_pitch(coords)``: centre-to-centre distance of the spot grid (median nearest-neighbour
  distance; Visium: 100 um).
- ``hex_neighbours(coords, pitch)``: binary adjacency of spots within 1.2 pitches (the 6 hex
  neighbours on a full Visium grid), used for Moran's I.
- ``knn_indices(coords, k)`` / ``knn_mean(values, coords, k)``: the k nearest other spots and the
  mean of their rows.
- ``with_neighbour_mean(features, coords, k)``: [own features, mean of the k nearest neighbours'
  features], the context-matched input of the per-spot baselines (k = 6 is the first hex ring).
- ``gaussian_smoother(coords, sigma)``: row-normalised Gaussian smoothing matrix (simulator fields).
- ``hex_lattice(n_rows, n_cols)`` / ``lattice_centres(rows, cols, pitch)``: the Visium hexagonal
  array (``array_row``, ``array_col`` with row + col even) and its spot centres.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def _coords(coords) -> np.ndarray:
    xy = np.asarray(coords, np.float64)
    if xy.ndim != 2 or xy.shape[1] != 2:
        raise ValueError(f"coords must have shape (N, 2); got {xy.shape}")
    return xy


def spot_pitch(coords) -> float:
    """Centre-to-centre distance of the spot grid, in coords' unit: the median distance to the (up to 6)
    hexagonal neighbours, i.e. the neighbours within 0.8-1.2 times the median nearest-neighbour distance.

    On a regular grid this is the nearest-neighbour distance. The median over all neighbour pairs, not of
    each spot's nearest distance, because with registration jitter the nearest of 6 noisy distances is
    biased low, and a 1 % error in the pitch is a whole cell at the far side of a 128-column Visium array.
    Duplicated coordinates (median nearest distance 0) give 0.
    """
    from scipy.spatial import cKDTree

    xy = _coords(coords)
    if len(xy) < 2:
        raise ValueError(f"spot_pitch needs at least 2 spots; got {len(xy)}")
    dist, _ = cKDTree(xy).query(xy, k=min(7, len(xy)))
    nearest = float(np.median(dist[:, 1]))
    if nearest <= 0:
        return nearest
    others = dist[:, 1:]
    return float(np.median(others[(others > 0.8 * nearest) & (others < 1.2 * nearest)]))


def _pairs_within(xy: np.ndarray, radius: float, name: str, value: float) -> sp.coo_matrix:
    """Sparse (N, N) distances of every pair of spots closer than ``radius`` (self pairs included)."""
    from scipy.spatial import cKDTree

    if not value > 0:
        raise ValueError(f"{name} must be > 0; got {value!r}")
    tree = cKDTree(xy)
    return tree.sparse_distance_matrix(tree, radius, output_type="coo_matrix")


def hex_neighbours(coords, pitch: float) -> sp.csr_matrix:
    """Binary adjacency of spots within 1.2 pitches (the 6 hex neighbours on a full grid), no self loops."""
    xy = _coords(coords)
    d = _pairs_within(xy, 1.2 * pitch, "pitch", pitch)
    keep = d.row != d.col
    return sp.coo_matrix((np.ones(keep.sum()), (d.row[keep], d.col[keep])), shape=(len(xy), len(xy))).tocsr()


def neighbour_mean(values: np.ndarray, coords, pitch: float) -> np.ndarray:
    """Mean of each spot's hex neighbours' rows of ``values`` (its own row when it has none)."""
    adj = hex_neighbours(coords, pitch)
    deg = np.asarray(adj.sum(1)).reshape(-1)
    nb = adj @ np.asarray(values, np.float64)
    out = np.array(values, dtype=np.float64, copy=True)
    has = deg > 0
    out[has] = nb[has] / deg[has, None]
    return out


def knn_indices(coords, k: int) -> np.ndarray:
    """(N, min(k, N-1)) indices of each spot's k nearest other spots, nearest first."""
    from scipy.spatial import cKDTree

    xy = _coords(coords)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be an integer >= 1; got {k!r}")
    if len(xy) < 2:
        raise ValueError(f"knn needs at least 2 spots; got {len(xy)}")
    kk = min(int(k), len(xy) - 1)
    _, idx = cKDTree(xy).query(xy, k=kk + 1)
    idx = np.asarray(idx).reshape(len(xy), kk + 1)
    own = idx == np.arange(len(xy))[:, None]
    # drop the spot itself (column 0 unless coordinates are duplicated); if absent, drop the farthest
    own[~own.any(1), -1] = True
    return idx[~own].reshape(len(xy), kk).astype(np.int64)


def knn_mean(values: np.ndarray, coords, k: int) -> np.ndarray:
    """Mean of the rows of ``values`` over each spot's k nearest other spots."""
    values = np.asarray(values)
    if len(values) != len(coords):
        raise ValueError(f"values have {len(values)} rows but coords {len(coords)}")
    idx = knn_indices(coords, k)
    return np.asarray(values, np.float64)[idx].mean(1)


def with_neighbour_mean(features: np.ndarray, coords, k: int) -> np.ndarray:
    """[own features, mean of the k nearest neighbours' features] (N, 2F): the context-matched input."""
    x = np.asarray(features)
    return np.concatenate([x, knn_mean(x, coords, k).astype(x.dtype, copy=False)], 1)


def gaussian_smoother(coords, sigma: float) -> sp.csr_matrix:
    """Row-normalised Gaussian smoothing matrix over spots (sparse, cut at 3 sigma, plus the identity)."""
    xy = _coords(coords)
    d = _pairs_within(xy, 3 * sigma, "sigma", sigma)
    w = np.exp(-0.5 * (d.data / sigma) ** 2)
    n = len(xy)
    m = sp.coo_matrix((w, (d.row, d.col)), shape=(n, n)).tocsr() + sp.identity(n, format="csr")
    return sp.diags(1.0 / np.asarray(m.sum(1)).ravel()) @ m


def hex_lattice(n_rows: int, n_cols: int) -> tuple[np.ndarray, np.ndarray]:
    """(array_row, array_col) of the cells of a Visium hexagonal array with ``n_rows`` rows and ``n_cols``
    columns: Visium's convention, odd rows shifted by half a pitch, so a spot sits where row + col is
    even (Visium v1: 78 x 128 -> 4,992 spots); row-major order."""
    rows, cols = np.meshgrid(np.arange(n_rows), np.arange(n_cols), indexing="ij")
    keep = (rows + cols) % 2 == 0
    return rows[keep], cols[keep]


def lattice_centres(rows: np.ndarray, cols: np.ndarray, pitch: float) -> np.ndarray:
    """(N, 2) spot centres (x, y) of Visium array cells: x = col * pitch / 2, y = row * pitch * sqrt(3) / 2,
    so every spot is ``pitch`` from its 6 neighbours."""
    return np.stack([cols * pitch / 2, rows * pitch * np.sqrt(3) / 2], 1)
