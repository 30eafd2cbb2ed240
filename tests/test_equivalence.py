"""Which interaction subsets are the same model (stflib.models.equivalence), checked against the model itself."""
import itertools

import numpy as np
import pytest
import torch

from stflib.models import ModelConfig, SpatialTranscriptFormer
from stflib.models.config import PATHWAY_READOUTS, Interactions
from stflib.models.equivalence import alias_groups, computation_key, effective_interactions, reaching_flows

B, S, F, G, P, D = 2, 7, 12, 9, 5, 16
SUBSETS = Interactions.subsets()
# the membership that initialises the gene head, so that the genes depend on the pathway scores from the start
MEMBERSHIP = (np.random.default_rng(0).random((P, G)) < 0.4).astype(np.float32)


def subset_params(readout: str, n_layers: int, k: int) -> dict[str, dict]:
    """The 15 subsets as the grid builds them: h2h restricted to k neighbours where there is h2h (the
    depth rule leaves out subsets without h2h at one layer)."""
    return {s.name: {"interactions": s, "pathway_readout": readout, "n_layers": n_layers,
                     "n_neighbors": k if "h2h" in s else 0}
            for s in SUBSETS if n_layers >= 2 or "h2h" in s}


def outputs(params: dict, impl: str, batch) -> list[torch.Tensor]:
    """Predictions (genes, pathway scores) of a model built from ``params`` under seed 0, at
    initialisation and after two training steps."""
    features, coords, pad, target = batch
    torch.manual_seed(0)
    config = ModelConfig(num_pathways=P, token_dim=D, n_heads=2, pathway_init=MEMBERSHIP, attention_impl=impl, **params)
    model = SpatialTranscriptFormer(F, G, config)
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-2)
    out = model(features, coords, pad)
    found = [out.genes.detach().clone(), out.pathway_scores.detach().clone()]
    for _ in range(2):  # two steps: the second moves parameters by the first step's gradients too
        optimiser.zero_grad()
        pred = model(features, coords, pad).genes
        ((pred - target)[~pad] ** 2).mean().backward()
        optimiser.step()
    out = model(features, coords, pad)
    return found + [out.genes.detach(), out.pathway_scores.detach()]


@pytest.fixture(scope="module")
def batch():
    g = torch.Generator().manual_seed(0)
    features = torch.randn(B, S, F, generator=g)
    coords = torch.rand(B, S, 2, generator=g) * 2000
    pad = torch.zeros(B, S, dtype=torch.bool)
    pad[1, 5:] = True
    return features, coords, pad, torch.randn(B, S, G, generator=g)


def test_the_rule_by_readout():
    # shared read-out: pathway-side flows reach a prediction only through h2p in a later layer
    assert reaching_flows("p2p,p2h", "shared") == ()
    assert reaching_flows("p2p,p2h,h2h", "shared") == ("h2h",)
    assert reaching_flows("bottleneck", "shared") == ("p2p", "p2h", "h2p")
    assert reaching_flows("all", "shared", n_layers=1) == ("h2p", "h2h")
    # contextual read-out: the encoded pathway tokens score the patches, so every flow reaches
    assert all(reaching_flows(s, "contextual", n) == tuple(s) for s in SUBSETS for n in (1, 2))
    assert effective_interactions(ModelConfig(interactions="p2h")) == ()
    assert effective_interactions({"interactions": ["p2h", "h2p"], "pathway_readout": "contextual"}) == ("p2h", "h2p")
    with pytest.raises(ValueError, match="pathway_readout: unknown 'nope'; allowed: contextual, shared"):
        reaching_flows("all", "nope")
    with pytest.raises(TypeError, match="expected a ModelConfig or a mapping"):
        effective_interactions("all")


def test_the_issue_groups_under_the_default_readout():
    groups = alias_groups(subset_params("shared", 2, 0))
    assert groups == {"p2p": ("p2h", "p2p-p2h"), "h2h": ("p2p-h2h", "p2h-h2h", "p2p-p2h-h2h")}
    assert len({computation_key(p) for p in subset_params("shared", 2, 0).values()}) == 10
    assert alias_groups(subset_params("contextual", 2, 0)) == {}


# the grid's two layers whole-slide and with k neighbours, one layer (h2h subsets only), and the dense reference
CASES = [(readout, n_layers, k, impl) for readout in PATHWAY_READOUTS
         for n_layers, k, impl in ((2, 0, "fast"), (2, 3, "fast"), (1, 3, "fast"), (2, 0, "reference"))]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: threads only add overhead on a shared machine
    yield
    torch.set_num_threads(previous)


@pytest.mark.parametrize("readout,n_layers,k,impl", CASES, ids=lambda v: str(v))
def test_every_claimed_alias_is_bit_identical_and_every_distinct_model_differs(readout, n_layers, k, impl, batch):
    params = subset_params(readout, n_layers, k)
    groups = alias_groups(params)
    predicted = {name: outputs(p, impl, batch) for name, p in params.items()}
    for canonical, aliases in groups.items():
        for alias in aliases:
            assert all(torch.equal(a, b) for a, b in zip(predicted[canonical], predicted[alias])), \
                f"{readout} read-out, {n_layers} layers, k={k}: {alias} is claimed to be {canonical} but predicts differently"
    distinct = [name for name in params if not any(name in names for names in groups.values())]
    assert len(distinct) == len({computation_key(params[n]) for n in params})
    for a, b in itertools.combinations(distinct, 2):
        assert not torch.equal(predicted[a][2], predicted[b][2]), \
            f"{readout} read-out, {n_layers} layers, k={k}: {a} and {b} are distinct models but predict identically"


def test_the_grid_runs_one_arm_per_model_and_records_the_aliases():
    from stflib.grid.axes import ARMS, Axis, distinct_axis

    flows = ARMS["interactions"]
    assert len(flows.arms) == 10 and flows.reference == "full"
    assert flows.aliases == {"p2p": ("p2h", "p2p-p2h"), "h2h": ("p2p-h2h", "p2h-h2h", "p2p-p2h-h2h")}
    assert flows.canonical("p2p-p2h") == "p2p" and flows.canonical("full") == "full"
    contextual = ARMS["interactions_contextual"]
    assert len(contextual.arms) == 15 and not contextual.aliases
    assert all(a["pathway_readout"] == "contextual" for a in contextual.arms.values())
    # the reference stays the arm of its group
    kept = distinct_axis("p2h", {"p2h": {"interactions": ["p2h"]}, "p2p": {"interactions": ["p2p"]},
                                 "h2h": {"interactions": ["h2h"]}})
    assert set(kept.arms) == {"p2h", "h2h"} and kept.aliases == {"p2h": ("p2p",)}
    with pytest.raises(ValueError, match="also run as arms"):
        Axis("a", {"a": {}, "b": {}}, {"a": ("b",)})
