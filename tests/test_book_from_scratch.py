"""The book's from-scratch STF (stflib.report.scratch) computes what the library's model computes.

The library model's weights are copied into the from-scratch functions (its state_dict is their
argument) and the outputs must be equal, for every non-empty set of interaction quadrants and both
pathway read-outs; the mask must be the library's; the bottleneck's two hops must show.
"""
from __future__ import annotations

import itertools

import pytest
import torch

from stflib.models import SpatialTranscriptFormer, interaction_mask
from stflib.report import scratch

SUBSETS = [combo for r in range(1, 5) for combo in itertools.combinations(scratch.QUADRANTS, r)]


def library_model(quadrants, n_layers=2, **kwargs):
    torch.manual_seed(0)
    model = SpatialTranscriptFormer(12, 7, num_pathways=3, token_dim=8, n_heads=2, n_layers=n_layers,
                                    interactions=",".join(quadrants), n_neighbors=0, **kwargs)
    with torch.no_grad():  # every weight away from its initial value, so no term can hide behind a zero
        for p in model.parameters():
            p.normal_(0.0, 0.5)
    return model.eval()


def inputs(seed=1, spots=5):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, spots, 12, generator=g), torch.rand(1, spots, 2, generator=g) * 2000


@pytest.mark.parametrize("quadrants", SUBSETS, ids=["+".join(q) for q in SUBSETS])
def test_same_outputs_as_the_library(quadrants):
    model = library_model(quadrants)
    features, coords = inputs()
    with torch.no_grad():
        expected = model(features, coords)
        ours = scratch.forward(features[0], coords[0], model.state_dict(), n_heads=2, quadrants=quadrants)
    torch.testing.assert_close(ours["pathway_scores"], expected.pathway_scores[0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(ours["genes"], expected.genes[0], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("quadrants", [scratch.QUADRANTS, ("p2p", "p2h", "h2p")], ids=["full", "bottleneck"])
def test_contextual_readout_and_plain_softmax(quadrants):
    """The original STF's read-out (the encoded pathway tokens) and its plain softmax (no h2p offset)."""
    model = library_model(quadrants, pathway_readout="contextual", balance_h2p=False)
    assert not any(name.endswith("h2p_logit") for name in model.state_dict())
    features, coords = inputs(2)
    with torch.no_grad():
        expected = model(features, coords)
        ours = scratch.forward(features[0], coords[0], model.state_dict(), 2, quadrants, readout="contextual")
    torch.testing.assert_close(ours["genes"], expected.genes[0], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("quadrants", SUBSETS, ids=["+".join(q) for q in SUBSETS])
def test_same_mask_as_the_library(quadrants):
    assert torch.equal(scratch.interaction_mask(3, 5, quadrants), interaction_mask(3, 5, ",".join(quadrants)))


def test_starting_values_match_the_library():
    """init_weights: the library's shapes, and its starting temperature, gain and h2p offset."""
    model = library_model(scratch.QUADRANTS)
    fresh = SpatialTranscriptFormer(12, 7, num_pathways=3, token_dim=8, n_heads=2, n_layers=2, n_neighbors=0)
    ours = scratch.init_weights(12, 7, num_pathways=3, dim=8, n_layers=2, n_heads=2)
    assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in model.state_dict().items()}
    for name in ("scorer.log_tau", "position.gain", "encoder.layers.0.h2p_logit"):
        torch.testing.assert_close(ours[name], fresh.state_dict()[name])


def test_bottleneck_needs_two_hops():
    """Without h2h a spot's token reaches another spot's only after two layers; with h2h after one."""
    features, coords = inputs(3)
    w = scratch.init_weights(12, 7, num_pathways=3, dim=8, n_layers=2, n_heads=2)
    off_diagonal = ~torch.eye(5, dtype=torch.bool)
    bottleneck = scratch.influence(features[0], coords[0], w, 2, ("p2p", "p2h", "h2p"))
    full = scratch.influence(features[0], coords[0], w, 2, scratch.QUADRANTS)
    assert bottleneck[0][off_diagonal].abs().max() == 0
    assert (bottleneck[1][off_diagonal] > 0).all()
    assert (full[0][off_diagonal] > 0).all()
