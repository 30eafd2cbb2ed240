"""The global-context arm: each spot attends to its k nearest spots plus G random spots of its slide,
the same G for every spot of a slide; the fast path equals the dense reference, and bad settings stop."""
import numpy as np
import pytest
import torch

from stflib import config as C
from stflib.models import SpatialTranscriptFormer, neighbours
from stflib.models.config import ModelConfig

B, S, F, G, P, D = 2, 12, 6, 5, 3, 8


def _batch():
    g = torch.Generator().manual_seed(0)
    features = torch.randn(B, S, F, generator=g, dtype=torch.float64)
    coords = torch.rand(B, S, 2, generator=g, dtype=torch.float64) * 2000
    pad = torch.zeros(B, S, dtype=torch.bool)
    pad[1, 7:] = True  # slide 1: 7 spots, 5 padding
    return features, coords, pad


def test_global_slots_are_the_same_random_spots_for_every_spot_and_never_repeat_a_key():
    _, coords, pad = _batch()
    k, n_global = 2, 4
    index, valid = neighbours.knn_neighbours(coords, ~pad, k, n_global)
    assert index.shape == (B, S, k + 1 + n_global)
    for b in range(B):
        rows = torch.nonzero(~pad[b]).flatten()
        chosen = index[b, rows][:, k + 1:][valid[b, rows][:, k + 1:]]
        assert set(chosen.tolist()) <= set(rows.tolist())  # valid spots of the same slide only
        kept = [set(index[b, i][valid[b, i]].tolist()) for i in rows.tolist()]
        assert all(len(s) == int(valid[b, i].sum()) for s, i in zip(kept, rows.tolist()))  # each key once
        # every spot's global slots come from one draw of the slide: their union has at most G spots
        union = set(index[b, rows][:, k + 1:][valid[b, rows][:, k + 1:]].tolist())
        assert len(union) <= n_global
    again, _ = neighbours.knn_neighbours(coords, ~pad, k, n_global)
    assert torch.equal(index, again)  # seeded by the slide: the same spots every time


def test_fast_path_with_global_context_equals_the_dense_reference():
    features, coords, pad = _batch()
    torch.manual_seed(1)
    model = SpatialTranscriptFormer(F, G, num_pathways=P, token_dim=D, n_heads=2, n_layers=2, n_neighbors=2,
                                    global_context=3).double()
    with torch.no_grad():
        model.reconstructor.weight.normal_(0, 0.3, generator=torch.Generator().manual_seed(1))
    outs = {}
    for impl in ("fast", "reference", "explicit"):
        m = SpatialTranscriptFormer(F, G, ModelConfig(**{**model.config.__dict__, "attention_impl": impl})).double()
        m.load_state_dict(model.state_dict())
        x = features.clone().requires_grad_()
        out = m(x, coords, pad).genes
        out[~pad].sum().backward()
        outs[impl] = (out[~pad].detach(), x.grad[~pad])
    for impl in ("reference", "explicit"):
        for a, b in zip(outs["fast"], outs[impl]):
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)


def test_global_context_reaches_spots_beyond_the_neighbourhood():
    """With k = 1 a spot's output depends on far spots only through the global slots."""
    features, coords, pad = _batch()
    pad[:] = False
    local = SpatialTranscriptFormer(F, G, num_pathways=P, token_dim=D, n_heads=2, n_layers=1, n_neighbors=1,
                                    interactions="h2h").double()
    wide = SpatialTranscriptFormer(F, G, ModelConfig(**{**local.config.__dict__, "global_context": 6})).double()
    wide.load_state_dict(local.state_dict())
    for model, expected_more in ((local, False), (wide, True)):
        x = features.clone().requires_grad_()
        model(x, coords, pad).pathway_scores[0, 0].sum().backward()
        reached = int((x.grad[0].abs().sum(-1) > 0).sum())
        assert (reached > 2) == expected_more, reached


@pytest.mark.parametrize("params, message", [
    ({"global_context": 64, "n_neighbors": 0}, "with n_neighbors=0 every spot already attends to the whole slide"),
    ({"global_context": -1}, "global_context: must be >= 0, got -1"),
    ({"global_context": 8, "model": "mlp"}, "only SpatialTranscriptFormer"),
])
def test_bad_global_context_stops_with_the_reason(params, message):
    with pytest.raises(ValueError, match=message):
        C.RunConfig.from_params(params)


def test_the_context_axis_has_the_global_arm_and_old_hashes_hold():
    from stflib.grid.axes import ARMS

    assert ARMS["context"].arms["k18_global64"] == {"n_neighbors": 18, "global_context": 64}
    assert C.config_hash(C.RunConfig.from_params({})) == C.config_hash(C.RunConfig.from_params({"global_context": 0}))
    assert np.all([C.config_hash(C.RunConfig.from_params({"global_context": 64}))
                   != C.config_hash(C.RunConfig.from_params({}))])
