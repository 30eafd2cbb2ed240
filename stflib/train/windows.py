"""Neighbourhood windows: how models without their own spatial attention see a spot's neighbours.

With ``n_neighbors = k`` a model that does not restrict attention itself (every baseline except the
per-spot ones fed [own, neighbour-mean] features) is trained and evaluated on *windows*: each spot
with its k nearest spots (``stflib.spatial.knn_indices``), the centre at position 0 and the only one
supervised. Windows of several slides are pooled and batched like spots.
"""
from __future__ import annotations

import numpy as np
import torch

from stflib.spatial import knn_indices

WINDOW_BATCH = 256  # spot windows per step in n_neighbors mode (times batch_size / 2)


def window_index(coords: np.ndarray, k: int) -> np.ndarray:
    """(S, k+1) indices of each spot and its k nearest spots (itself first); a slide with fewer than
    k+1 spots repeats its last neighbour (those positions are masked as padding)."""
    n = len(coords)
    others = knn_indices(coords, k) if n > 1 else np.zeros((n, 0), np.int64)
    idx = np.concatenate([np.arange(n, dtype=np.int64)[:, None], others], 1)
    if idx.shape[1] < k + 1:
        idx = np.concatenate([idx, np.repeat(idx[:, -1:], k + 1 - idx.shape[1], 1)], 1)
    return idx


def make_windows(item: dict, k: int) -> dict:
    """Turn one slide item into S windows of (1 + k) spots; the centre spot (position 0) is supervised."""
    idx = torch.as_tensor(window_index(item["coords"].cpu().numpy(), k))
    s = idx.shape[0]
    pad = torch.zeros(idx.shape, dtype=torch.bool)
    if s < k + 1:
        pad[:, s:] = True
    w = {
        "features": item["features"][idx],
        "coords": item["coords"][idx],
        "pad_mask": pad,
    }
    for key in ("targets", "counts", "library_size", "valid", "pathway_targets", "true_pathways"):
        if item.get(key) is not None:
            w[key] = item[key]
    return w


def pool_windows(windows: list[dict]) -> dict:
    """The windows of several slides concatenated into one set (tensor keys only)."""
    keys = [k for k in windows[0] if torch.is_tensor(windows[0][k])]
    return {k: torch.cat([w[k] for w in windows]) for k in keys}


def window_batches(windows: list[dict], batch: int) -> list[dict]:
    """Pool the windows of several slides and cut them, in order, into batches of ``batch`` windows."""
    pooled = pool_windows(windows)
    n = pooled["features"].shape[0]
    return [{k: v[start:start + batch] for k, v in pooled.items()} for start in range(0, n, batch)]
