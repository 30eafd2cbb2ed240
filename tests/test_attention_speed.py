"""Local-context attention (the default model, ``n_neighbors=18``) stays linear in the number of spots:
no tensor of S x S or S x K x d elements in a training step, time that grows linearly, and the
neighbour graph built once per slide. Small sizes; timings are ratios within one test."""
import time

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from stflib.bench import hex_grid_coords
from stflib.models import SpatialTranscriptFormer, attention, neighbours

K = 18


class _Largest(TorchDispatchMode):
    """Records the largest dense tensor any op produces."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor) and t.layout == torch.strided:
                self.largest = max(self.largest, t.numel())
        return out


def _step(model, features, coords):
    out = model(features, coords)
    (out.genes ** 2).mean().backward()
    model.zero_grad(set_to_none=True)


def _inputs(S, F=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, S, F, generator=g), torch.from_numpy(hex_grid_coords(S)).unsqueeze(0)


def test_default_step_never_materialises_pairs_or_gathered_neighbours():
    """The largest tensor of a default-model step is O(S) per feature (the feed-forward's S x 4D),
    far below S x S and below the S x (k+1) x D a gathered copy of the neighbours' keys would take."""
    S, D = 1500, 32
    torch.manual_seed(0)
    model = SpatialTranscriptFormer(8, 6, num_pathways=5, token_dim=D, n_heads=2, n_layers=2, n_neighbors=K)
    features, coords = _inputs(S)
    _step(model, features, coords)  # builds the slide's graph
    with _Largest() as seen:
        _step(model, features, coords)
    T = S + 5
    assert seen.largest <= T * 4 * D, seen.largest
    assert seen.largest < S * (K + 1) * D < S * S


@pytest.mark.parametrize("with_pathways", [True, False])
def test_local_attention_time_is_linear_in_spots(with_pathways):
    """Forward + backward of the sparse neighbour attention at S and 4 S: about 4x the time (16x would be
    quadratic); CPU time, best of 3."""
    H, d, P = 2, 16, 5

    def best(S):
        coords = torch.from_numpy(hex_grid_coords(S)).unsqueeze(0)
        graphs = attention.neighbour_graphs(coords, torch.ones(1, S, dtype=torch.bool), K)
        g = torch.Generator().manual_seed(0)
        q, k, v = (torch.randn(1, H, S, d, generator=g, requires_grad=True) for _ in range(3))
        kp, vp = (torch.randn(1, H, P, d, generator=g, requires_grad=True) if with_pathways else None for _ in range(2))
        times = []
        for _ in range(3):
            t0 = time.process_time()
            attention.LocalPatchAttention.apply(q, k, v, kp, vp, None, graphs, d**-0.5).sum().backward()
            times.append(time.process_time() - t0)
        return min(times)

    best(500)  # warm-up
    ratio = best(16000) / best(4000)
    assert ratio < 8, ratio


def test_the_knn_search_runs_once_per_slide_over_training_steps(monkeypatch):
    calls = []
    real = neighbours.knn_neighbours
    monkeypatch.setattr(neighbours, "knn_neighbours", lambda *a: calls.append(1) or real(*a))
    model = SpatialTranscriptFormer(8, 6, num_pathways=5, token_dim=16, n_heads=2, n_layers=2, n_neighbors=K)
    slides = [_inputs(S, seed=S) for S in (300, 400)]
    for _ in range(3):  # epochs
        for features, coords in slides:
            _step(model, features, coords.clone())  # a new tensor each step, as a data loader gives
    assert len(calls) == 2
