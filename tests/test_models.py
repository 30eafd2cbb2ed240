"""SpatialTranscriptFormer and baselines: masks, exactness of the fast attention, padding, heads, registry."""
import itertools
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from stflib.models import (
    MODELS,
    QUADRANTS,
    TORCH_MODELS,
    ModelConfig,
    SpatialTranscriptFormer,
    build_model,
    check_depth,
    interaction_mask,
    model_table,
    parse_interactions,
)
from stflib.models import attention, baselines, mil, neighbours, stf

from conftest import SHARED  # noqa: E402  (STFLIB_DATA, or ../shared/data beside the checkout)
SUBSETS = [frozenset(c) for r in range(1, 5) for c in itertools.combinations(QUADRANTS, r)]
B, S, F, G, P, D = 2, 7, 12, 9, 5, 16


def small_model(interactions="all", zero_head=False, **kw):
    """A small STF; its gene head is randomised (the default zero head passes no gradient to the
    encoder at initialisation, which the dependence tests need) unless ``zero_head``."""
    kw = {"num_pathways": P, "token_dim": D, "n_heads": 2, "n_layers": 2, **kw}
    model = SpatialTranscriptFormer(F, G, interactions=interactions, **kw)
    if not zero_head and kw.get("pathway_init") is None:
        with torch.no_grad():
            model.reconstructor.weight.normal_(0, 0.3, generator=torch.Generator().manual_seed(1))
    return model


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    features = torch.randn(B, S, F, generator=g)
    coords = torch.rand(B, S, 2, generator=g) * 2000
    pad = torch.zeros(B, S, dtype=torch.bool)
    pad[1, 4:] = True  # slide 1 has 4 spots, 3 padding
    return features, coords, pad


# ---------------------------------------------------------------- interactions and the mask


def test_parse_interactions_forms_and_errors():
    assert parse_interactions("all") == QUADRANTS == parse_interactions("full")
    assert parse_interactions("bottleneck") == ("p2p", "p2h", "h2p")
    assert parse_interactions("p2h,p2p") == ("p2p", "p2h")  # canonical order
    assert parse_interactions(" P2P , h2h ") == ("p2p", "h2h") == parse_interactions("p2p+h2h")
    assert parse_interactions(["h2h", "h2p"]) == ("h2p", "h2h")
    with pytest.raises(ValueError, match=r"interactions: unknown quadrant 'p2x'; allowed: p2p, p2h, h2p, h2h"):
        parse_interactions("p2p,p2x")
    with pytest.raises(ValueError, match="empty"):
        parse_interactions("")
    with pytest.raises(ValueError, match="empty"):
        parse_interactions([])


def test_bottleneck_needs_two_layers():
    with pytest.raises(ValueError, match=r"n_layers >= 2.*seed"):
        small_model("p2p,p2h,h2p", n_layers=1)
    small_model("all", n_layers=1)  # with h2h one layer is fine


def test_interaction_mask_quadrants_and_diagonal():
    m = interaction_mask(2, 3, "p2h,h2p")
    assert m.shape == (5, 5) and m.dtype == torch.bool
    assert m[:2, 2:].all() and m[2:, :2].all()  # p2h, h2p
    assert not m[0, 1] and not m[2, 3]  # p2p, h2h off (off-diagonal)
    assert m.diagonal().all()  # every token keeps itself
    assert interaction_mask(2, 3, "all").all()


def test_mask_polarity_sdpa_allowed_vs_mha_blocked():
    """SDPA's bool mask means True = allowed; nn.MultiheadAttention's means True = blocked."""
    torch.manual_seed(0)
    T, E = 5, 8
    x = torch.randn(1, T, E)
    allowed = interaction_mask(2, 3, "p2p,h2p")
    mha = nn.MultiheadAttention(E, 1, batch_first=True, bias=False)
    _, w_blocked = mha(x, x, x, attn_mask=~allowed)
    assert (w_blocked[0][~allowed] == 0).all()  # negated mask: blocked entries get zero weight
    q, k, v = (x @ w.T for w in mha.in_proj_weight.chunk(3))
    sdpa = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
    manual = (q @ k.transpose(1, 2) / math.sqrt(E)).masked_fill(~allowed, -math.inf).softmax(-1) @ v
    torch.testing.assert_close(sdpa, manual)
    wrong = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=~allowed)
    assert not torch.allclose(wrong, manual)


def test_reference_block_is_transformer_encoder_layer(batch):
    """Our block with the dense mask == nn.TransformerEncoderLayer(norm_first, gelu) given True = blocked."""
    torch.manual_seed(0)
    block = stf.TransformerBlock(D, 2).eval()
    layer = nn.TransformerEncoderLayer(D, 2, dim_feedforward=4 * D, dropout=0.0, activation="gelu",
                                       batch_first=True, norm_first=True).eval()
    with torch.no_grad():
        layer.self_attn.in_proj_weight.copy_(block.qkv.weight)
        layer.self_attn.in_proj_bias.copy_(block.qkv.bias)
        layer.self_attn.out_proj.weight.copy_(block.out.weight)
        layer.self_attn.out_proj.bias.copy_(block.out.bias)
        layer.linear1.load_state_dict(block.ff[0].state_dict())
        layer.linear2.load_state_dict(block.ff[3].state_dict())
        layer.norm1.load_state_dict(block.norm1.state_dict())
        layer.norm2.load_state_dict(block.norm2.state_dict())
    _, _, pad = batch
    x = torch.randn(B, P + S, D)
    key_pad = torch.cat([torch.zeros(B, P, dtype=torch.bool), pad], 1)
    for quads in [frozenset(QUADRANTS), frozenset({"p2p", "p2h", "h2p"})]:
        plan = attention.AttentionPlan(P, quads, ~key_pad, True, impl="reference")
        ours, _ = block(x, plan)
        theirs = layer(x, src_mask=~interaction_mask(P, S, quads), src_key_padding_mask=key_pad)
        keep = ~key_pad
        torch.testing.assert_close(ours[keep], theirs[keep], rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- fast == reference, exactly


def _run(source, impl, features, coords, pad):
    """``source``'s weights run with attention ``impl``: outputs on valid spots, feature and parameter gradients."""
    model = SpatialTranscriptFormer(F, G, replace(source.config, attention_impl=impl)).to(source.project.weight.dtype)
    model.load_state_dict(source.state_dict())
    f = features.clone().requires_grad_()
    out = model(f, coords, pad)
    valid = ~pad
    loss = (out.genes[valid] ** 2).sum() + (out.pathway_scores[valid] ** 3).sum()
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return out.genes[valid].detach(), out.pathway_scores[valid].detach(), f.grad.clone(), grads


@pytest.mark.parametrize("quads", SUBSETS, ids=lambda q: "+".join(sorted(q)))
def test_fast_attention_equals_dense_reference(quads, batch):
    """All 15 subsets, with padding: same outputs and gradients (features and every parameter)."""
    features, coords, pad = (t.double() if t.is_floating_point() else t for t in batch)
    for n_neighbors in ([0, 3] if "h2h" in quads else [0]):
        torch.manual_seed(1)
        model = small_model(sorted(quads), n_neighbors=n_neighbors).double()
        fast = _run(model, "fast", features, coords, pad)
        for impl in ("reference", "explicit"):
            other = _run(model, impl, features, coords, pad)
            for a, b in zip(fast[:3], other[:3]):
                torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)
            assert fast[3].keys() == other[3].keys()
            for name in fast[3]:
                torch.testing.assert_close(fast[3][name], other[3][name], rtol=1e-9, atol=1e-10, msg=name)


def _dependence(block, x, plan):
    """dep[b, i, j] = True when output token i of slide b depends on input token j (its gradient
    through a random projection of output i is non-zero), checking that slides never mix."""
    Bn, T, _ = x.shape
    dep = torch.zeros(Bn, T, T, dtype=torch.bool)
    x = x.clone().requires_grad_()
    out = block(x, plan)[0]
    g = torch.Generator().manual_seed(0)
    for b in range(Bn):
        for i in range(T):
            (grad,) = torch.autograd.grad((out[b, i] * torch.randn(out.shape[-1], generator=g, dtype=out.dtype)).sum(),
                                          x, retain_graph=True)
            dep[b, i] = grad[b].abs().sum(-1) > 0
            assert (grad[[c for c in range(Bn) if c != b]] == 0).all()  # slides never mix
    return dep


@pytest.mark.parametrize("quads", SUBSETS, ids=lambda q: "+".join(sorted(q)))
def test_blocked_quadrants_pass_no_gradient(quads, batch):
    """Per quadrant, in one layer: valid query i depends on key j != i iff quadrant(i, j) is on and j is
    valid; blocked quadrants and padding get exactly zero attention in the maps."""
    _, _, pad = batch
    torch.manual_seed(0)
    block = stf.TransformerBlock(D, 2, h2p_logit_init=-1.0).double()  # the offset must not open a quadrant
    key_valid = torch.cat([torch.ones(B, P, dtype=torch.bool), ~pad], 1)
    x = torch.randn(B, P + S, D, dtype=torch.float64)
    expected = interaction_mask(P, S, quads).unsqueeze(0) & key_valid.unsqueeze(1) | torch.eye(P + S, dtype=torch.bool)
    for impl in ("fast", "reference", "explicit"):
        plan = attention.AttentionPlan(P, quads, key_valid, True, impl=impl)
        dep = _dependence(block, x, plan)
        rows = key_valid  # valid queries (pathways + valid spots)
        assert torch.equal(dep[rows], expected[rows]), impl
    plan = attention.AttentionPlan(P, quads, key_valid, True, impl="explicit")
    _, weights = block(x, plan, need_weights=True)
    assert (weights[~expected.unsqueeze(1).expand_as(weights)] == 0).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones_like(weights.sum(-1)))


@pytest.mark.parametrize("n_neighbors", [0, 3])
def test_h2p_offset_sets_the_pathway_share_at_a_uniform_start(n_neighbors, batch):
    """With equal logits, a patch gives its pathway keys P e^b / (P e^b + n) of its attention, n its
    other keys; balance_h2p (b = -log P) makes that 1 / (1 + n), and all three impls agree."""
    features, coords, pad = batch
    for balance in (False, True):
        torch.manual_seed(0)
        model = small_model("all", n_neighbors=n_neighbors, balance_h2p=balance).double()
        block = model.encoder.layers[0]
        with torch.no_grad():
            block.qkv.weight.zero_()
            block.qkv.bias.zero_()  # q = k = 0: every allowed logit is the offset or 0
        assert (block.h2p_logit is not None) == balance
        valid = ~pad
        plan = model.attention_plan(coords.double(), valid, impl="explicit")
        x = torch.randn(B, P + S, D, dtype=torch.float64)
        _, weights = block(x, plan, need_weights=True)  # (B,H,T,T)
        share = weights[:, :, P:, :P].sum(-1)  # (B,H,S)
        n_other = plan.dense_allowed()[:, 0, P:, P:].sum(-1)  # (B,S): the patch keys a patch may read
        expected = (1.0 / (1.0 + n_other) if balance else P / (P + n_other)).double()
        for b in range(B):
            torch.testing.assert_close(share[b][:, valid[b]], expected[b][valid[b]].expand(share.shape[1], -1))
        keep = torch.cat([torch.ones(B, P, dtype=torch.bool), valid], 1)  # pathways + valid spots
        explicit = block(x, plan)[0][keep]
        for impl in ("fast", "reference"):
            out = block(x, model.attention_plan(coords.double(), valid, impl=impl))[0]
            torch.testing.assert_close(out[keep], explicit)


def test_balance_h2p_needs_h2p():
    """Without the h2p flow there is nothing to balance: no offset parameter is created."""
    model = small_model("p2p,p2h,h2h")
    assert all(layer.h2p_logit is None for layer in model.encoder.layers)


@pytest.mark.parametrize("quads", [q for q in SUBSETS if not q & {"p2h", "h2h"}], ids=lambda q: "+".join(sorted(q)))
def test_without_p2h_and_h2h_spots_are_independent(quads, batch):
    """Whole model, 2 layers: with neither p2h nor h2h, spot i's prediction uses only spot i's features."""
    features, coords, pad = batch
    model = small_model(sorted(quads))
    f = features.clone().requires_grad_()
    out = model(f, coords, pad)
    out.genes[0, 2].sum().backward()
    others = torch.ones(S, dtype=torch.bool)
    others[2] = False
    assert (f.grad[0, others] == 0).all() and (f.grad[1] == 0).all() and f.grad[0, 2].abs().sum() > 0


def test_pathways_never_see_patches_without_p2h(batch):
    features, coords, pad = batch
    model = small_model("p2p,h2p,h2h")
    f = features.clone().requires_grad_()
    captured = {}
    model.encoder.register_forward_hook(lambda m, i, o: captured.update(x=o[0]))
    model(f, coords, pad)
    captured["x"][:, :P].sum().backward()
    assert f.grad is None or (f.grad == 0).all()


# ---------------------------------------------------------------- no NaN, padding, attention maps


@pytest.mark.parametrize("quads", SUBSETS, ids=lambda q: "+".join(sorted(q)))
def test_never_nan_train_and_eval(quads, batch):
    features, coords, pad = batch
    pad = pad.clone()
    pad[0] = True  # a slide that is all padding, the hardest case
    model = small_model(sorted(quads), dropout=0.2)
    for train in (True, False):
        model.train(train)
        for ra in (False, True):
            model.zero_grad()
            out = model(features, coords, pad, return_attention=ra)
            (out.genes.sum() + out.pathway_scores.sum()).backward()
            assert torch.isfinite(out.genes).all() and torch.isfinite(out.pathway_scores).all()
            assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_padding_changes_nothing(batch):
    """Valid outputs are the same alone, padded, and with garbage in the padding (features and coords)."""
    features, coords, pad = batch
    for quads, k in [("all", 0), ("p2p,p2h,h2p", 0), ("all", 2)]:
        torch.manual_seed(0)
        model = small_model(quads, n_neighbors=k).eval()
        n = int((~pad[1]).sum())
        alone = model(features[1:, :n], coords[1:, :n]).genes
        padded = model(features, coords, pad).genes[1:, :n]
        f2, c2 = features.clone(), coords.clone()
        f2[pad], c2[pad] = 1e4, -1e6
        garbage = model(f2, c2, pad).genes[1:, :n]
        torch.testing.assert_close(padded, alone, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(garbage, alone, rtol=1e-5, atol=1e-5)
        assert (model(features, coords, pad).genes[pad] == 0).all()


def test_returned_attention_is_the_one_used(batch):
    """The maps returned are the weights that multiplied V in the forward that made the prediction."""
    features, coords, pad = batch
    model = small_model("p2p,p2h,h2p", n_heads=2).eval()
    layer = model.encoder.layers[1]
    seen = {}
    layer.register_forward_pre_hook(lambda m, a: seen.update(x=a[0]))
    layer.out.register_forward_pre_hook(lambda m, a: seen.update(attended=a[0]))
    out = model(features, coords, pad, return_attention=True)
    assert len(out.attention) == 2 and out.attention[0].shape == (B, 2, P + S, P + S)
    Bn, T, _ = seen["x"].shape
    v = layer.qkv(layer.norm1(seen["x"])).view(Bn, T, 3, 2, D // 2).permute(2, 0, 3, 1, 4)[2]
    recomputed = (out.attention[1] @ v).transpose(1, 2).reshape(Bn, T, D)
    torch.testing.assert_close(recomputed, seen["attended"])
    # explicit vs fused kernel: float32 rounding, amplified ~10x by the score normalisation's 1/sd
    torch.testing.assert_close(out.genes, model(features, coords, pad).genes, rtol=1e-4, atol=2e-5)
    w = out.attention[0]
    assert (w[:, :, P:, P:][:, :, ~torch.eye(S, dtype=torch.bool)] == 0).all()  # no h2h


# ---------------------------------------------------------------- positions, heads, modes


@pytest.mark.parametrize("mode", ["sinusoidal", "learned", "none"])
def test_positional_encodings_run_and_are_translation_and_scale_invariant(mode, batch):
    features, coords, pad = batch
    torch.manual_seed(0)
    model = small_model(positional_encoding=mode).eval()
    a = model(features, coords, pad).genes
    b = model(features, coords * 3 + 500, pad).genes  # same slide at another scale and offset
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    if mode != "none":
        shuffled = coords[:, torch.randperm(S)]
        assert not torch.allclose(model(features, shuffled, pad).genes, a)


def test_normalise_coords_uses_valid_spots_only():
    coords = torch.tensor([[[0.0, 0.0], [2.0, 0.0], [1e6, 1e6]]])
    valid = torch.tensor([[True, True, False]])
    xy = stf.normalise_coords(coords, valid)
    torch.testing.assert_close(xy[0, :2], torch.tensor([[-math.sqrt(2), 0.0], [math.sqrt(2), 0.0]]))
    assert (xy[0, 2] == 0).all()
    one = stf.normalise_coords(coords[:, :1], valid[:, :1])  # a single spot: finite
    assert torch.isfinite(one).all()


def test_pathway_init_puts_membership_in_reconstructor():
    rng = np.random.default_rng(0)
    membership = (rng.random((P, G)) < 0.4).astype(np.float32)
    membership[:, 0] = 0  # a gene in no pathway
    model = small_model(pathway_init=membership)
    w = model.reconstructor.weight.detach().numpy()  # (G, P)
    per_gene = membership.sum(0)
    expected = np.where(per_gene > 0, membership / np.maximum(per_gene, 1), 0).T
    np.testing.assert_allclose(w, expected)
    assert ((w > 0) == (membership.T > 0)).all()
    assert (model.reconstructor.bias == 0).all()
    with pytest.raises(ValueError, match=r"pathway_init.*\(5, 9\)"):
        small_model(pathway_init=membership[:, :3])


def test_pathway_init_accepts_a_membership_object():
    from stflib.pathways import membership_matrix

    genes = [f"G{i}" for i in range(G)]
    sets = {f"SET_{p}": genes[p : p + 5] for p in range(P)}
    membership = membership_matrix(sets, genes)
    model = small_model(pathway_init=membership)
    assert model.pathway_names == membership.names
    torch.testing.assert_close(model.reconstructor.weight, stf.membership_init(torch.tensor(membership.matrix)))
    with pytest.raises(ValueError, match="pass the membership"):
        small_model(pathway_init=True)
    default = small_model(pathway_init=False, zero_head=True).reconstructor  # no membership: a zero head
    assert (default.weight == 0).all() and (default.bias == 0).all()


def test_zero_head_starts_at_the_mean_and_learns(batch):
    """Without pathway_init the gene head is zero: every spot predicts the same (0 = the training mean
    under StandardizedOutput), and one optimiser step moves it."""
    features, coords, pad = batch
    model = small_model(zero_head=True)
    out = model(features, coords, pad)
    assert (out.genes == 0).all()
    loss = (out.genes - torch.randn_like(out.genes)).pow(2).mean()
    loss.backward()
    assert model.reconstructor.weight.grad.abs().sum() > 0


def test_score_norm_removes_the_common_score_component():
    norm = stf.ScoreNorm(P)
    scores = torch.randn(3, 4, P) * 0.1 + 1.4  # a large common mean, little spread
    z = norm(scores)
    torch.testing.assert_close(z.mean(-1), torch.zeros(3, 4), atol=1e-5, rtol=0)
    torch.testing.assert_close(z.std(-1, unbiased=False), torch.ones(3, 4), atol=1e-2, rtol=0)


def test_sinusoidal_encoding_at_tissue_scale():
    """Adjacent spots (pitch ~0.14 std units on a ~25-spot-wide slide) get similar codes, far spots
    different ones, and the encoding's norm starts below a z-scored projection's (sqrt(D/3))."""
    dim = 256
    pe = stf.PositionalEncoding2D(dim)
    side = 25
    xy = torch.stack(torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij"), -1).reshape(1, -1, 2).float()
    enc = pe(xy * 100.0, torch.ones(1, side * side, dtype=torch.bool))[0]
    cos = torch.nn.functional.cosine_similarity
    adjacent = cos(enc[0 * side + 12], enc[1 * side + 12], dim=0)
    far = cos(enc[0 * side + 0], enc[24 * side + 24], dim=0)
    assert adjacent > 0.8 and far < 0.5
    assert float(enc.norm(dim=-1).mean()) < math.sqrt(dim / 3)
    assert pe.freqs.max() <= 12.0 + 1e-6 and isinstance(pe.gain, nn.Parameter)


def test_pathway_names_are_hallmarks_when_50():
    from stflib.pathways import hallmarks

    model = SpatialTranscriptFormer(F, G, num_pathways=50, token_dim=D, n_heads=2)
    assert model.pathway_names == list(hallmarks())
    assert small_model().pathway_names == [f"pathway_{i}" for i in range(P)]


def test_cosine_scores_bounded_by_temperature(batch):
    features, coords, pad = batch
    model = small_model()
    scores = model(features, coords, pad).pathway_scores
    assert scores.shape == (B, S, P)
    assert scores.abs().max() <= model.scorer.temperature + 1e-4
    assert (scores[pad] == 0).all()
    with torch.no_grad():
        model.scorer.log_tau.fill_(10.0)
    assert math.isclose(float(model.scorer.temperature.detach()), 100.0, rel_tol=1e-5)  # capped


def test_zinb_heads_and_library_offset(batch):
    features, coords, pad = batch
    model = small_model(zinb=True).eval()
    lib = torch.full((B, S), 1000.0)
    out = model(features, coords, pad, library_size=lib)
    valid = ~pad
    assert out.pi is not None and out.theta is not None and out.genes.shape == (B, S, G)
    assert ((out.pi[valid] > 0) & (out.pi[valid] < 1)).all() and (out.theta[valid] > 0).all()
    assert out.pi.shape == (B, S, G) and torch.equal(out.pi[0, 0], out.pi[1, 2])  # gene-wise, as scVI
    assert torch.equal(out.theta[0, 0], out.theta[1, 2])
    frac = np.log(np.linspace(1e-4, 1e-2, G))
    model.init_rate_bias(frac)
    with torch.no_grad():
        model.reconstructor.weight.zero_()
    mu = model(features, coords, pad, library_size=lib).genes
    torch.testing.assert_close(mu[valid], (1000.0 * torch.tensor(np.exp(frac), dtype=torch.float32)).expand_as(mu[valid]))
    with pytest.raises(ValueError, match="log mean fractions"):
        model.init_rate_bias(frac[:3])
    doubled = model(features, coords, pad, library_size=lib * 2).genes
    torch.testing.assert_close(doubled[valid], 2 * mu[valid])
    assert torch.isfinite(model(features, coords, pad, library_size=torch.zeros(B, S)).genes).all()
    with pytest.raises(ValueError, match="zinb"):
        small_model(zinb=True, output_mode="global")


def test_global_mode_is_mean_over_valid_spots(batch):
    features, coords, pad = batch
    torch.manual_seed(0)
    dense = small_model()
    glob = small_model(output_mode="global")
    glob.load_state_dict(dense.state_dict())
    g = glob(features, coords, pad).genes
    d = dense(features, coords, pad).genes
    assert g.shape == (B, 1, G)
    expected = torch.stack([d[b][~pad[b]].mean(0) for b in range(B)]).unsqueeze(1)
    torch.testing.assert_close(g, expected)


def test_knn_neighbours_match_brute_force():
    g = torch.Generator().manual_seed(3)
    coords = torch.rand(2, 30, 2, generator=g)
    valid = torch.ones(2, 30, dtype=torch.bool)
    valid[1, 20:] = False
    idx, ok = attention.knn_neighbours(coords, valid, 4)
    assert idx.shape == (2, 30, 5) and (idx[..., 0] == torch.arange(30)).all()
    for b in range(2):
        rows = valid[b].nonzero().squeeze(1)
        d = torch.cdist(coords[b, rows], coords[b, rows])
        d.fill_diagonal_(float("inf"))
        brute = rows[d.topk(4, largest=False).indices]
        assert torch.equal(idx[b, rows, 1:].sort(-1).values, brute.sort(-1).values)
        assert ok[b, rows].all() and not ok[b, ~valid[b], 1:].any()


def test_local_context_sees_only_neighbours():
    """h2h only, one layer, k=2: a spot's output depends on itself and its 2 nearest spots only."""
    coords = torch.tensor([[[0.0, 0], [1, 0], [2, 0], [10, 0], [11, 0], [30, 0]]])
    features = torch.randn(1, 6, F, requires_grad=True)
    model = small_model("h2h", n_layers=1, n_neighbors=2, positional_encoding="none")
    model.encoder.register_forward_hook(lambda m, i, o: captured.update(x=o[0]))
    captured = {}
    model(features, coords)
    captured["x"][0, P + 0].sum().backward()  # spot 0: neighbours 1, 2
    assert (features.grad[0].abs().sum(1) > 0).tolist() == [True, True, True, False, False, False]
    with pytest.raises(ValueError, match="n_neighbors"):
        small_model("p2p,p2h,h2p", n_neighbors=4)


def test_invalid_options_name_allowed_values():
    with pytest.raises(ValueError, match="sinusoidal, learned, none"):
        small_model(positional_encoding="rope")
    with pytest.raises(ValueError, match="dense, global"):
        small_model(output_mode="slide")
    with pytest.raises(ValueError, match="fast, reference, explicit"):
        small_model(attention_impl="flash")


# ---------------------------------------------------------------- baselines


SMALL = ModelConfig(num_pathways=P, token_dim=D, n_heads=2)  # what every torch model is built from here


def _slide_level(name: str) -> bool:
    return "slide mean" in MODELS[name].outputs


@pytest.mark.parametrize("name", TORCH_MODELS)
def test_torch_models_shapes_and_padding(name, batch):
    """Every registered torch model, built by name from one config: its registered output shape, and
    padding (even garbage in it) never changes a valid output."""
    features, coords, pad = batch
    torch.manual_seed(0)
    model = build_model(name, F, G, SMALL).eval()
    out = model(features, coords, pad)
    assert out.genes.shape == ((B, 1, G) if _slide_level(name) else (B, S, G))
    n = int((~pad[1]).sum())
    alone = model(features[1:, :n], coords[1:, :n]).genes
    f2 = features.clone()
    f2[pad] = 1e3
    keep = 1 if _slide_level(name) else n
    padded = model(f2, coords, pad).genes[1:, :keep]
    torch.testing.assert_close(padded, alone[:, :keep], rtol=1e-4, atol=1e-4)
    out.genes.sum().backward()


def test_abmil_attention_ignores_padding(batch):
    features, coords, pad = batch
    out = mil.ABMIL(F, G, hidden_dim=16, attention_dim=8)(features, coords, pad, return_attention=True)
    a = out.attention[0]  # (B,1,1,S)
    assert (a[1, 0, 0][pad[1]] == 0).all()
    torch.testing.assert_close(a.sum(-1), torch.ones(B, 1, 1))


def test_nystrom_is_exact_when_every_token_is_a_landmark():
    torch.manual_seed(0)
    q, k, v = torch.randn(3, 1, 2, 6, 4, dtype=torch.float64)
    valid = torch.ones(1, 6, dtype=torch.bool)
    approx = mil.nystrom_attention(q, k, v, valid, num_landmarks=6, pinv_iterations=20)
    exact = torch.softmax(q @ k.transpose(-1, -2) / 2, -1) @ v
    torch.testing.assert_close(approx, exact, rtol=1e-4, atol=1e-4)


def _hex_coords(rows, cols, pitch):
    pts = [((c + 0.5 * (r % 2)) * pitch, r * pitch * math.sqrt(3) / 2) for r in range(rows) for c in range(cols)]
    return torch.tensor(pts, dtype=torch.float64)


def test_visium_grid_maps_hex_spots_to_distinct_adjacent_cells():
    coords = _hex_coords(6, 8, 137.0)[torch.randperm(48)].unsqueeze(0)  # list order shuffled
    cells, h, w = mil.visium_grid(coords, torch.ones(1, 48, dtype=torch.bool))
    assert len({tuple(c) for c in cells[0].tolist()}) == 48 and (h, w) == (6, 16)
    # tissue neighbours (100 um apart) are grid neighbours: same row +-2 columns or adjacent row +-1
    d = torch.cdist(coords[0], coords[0])
    i, j = torch.nonzero((d > 1) & (d < 137 * 1.01), as_tuple=True)
    step = (cells[0, i] - cells[0, j]).abs()
    assert (((step[:, 0] == 0) & (step[:, 1] == 2)) | ((step[:, 0] == 1) & (step[:, 1] == 1))).all()


def test_visium_grid_on_real_visium_array():
    path = SHARED / "hest" / "visium-v1_coordinates.txt"
    if not path.exists():
        pytest.skip(f"reference data absent: {path}")
    arr = np.loadtxt(path, dtype=str)[:, 1:].astype(int)  # array_col, array_row
    pitch_px = 100 / 0.2738  # a typical full-res pixel size
    xy = np.stack([arr[:, 0] * pitch_px / 2, arr[:, 1] * pitch_px * math.sqrt(3) / 2], 1)
    xy += np.random.default_rng(0).normal(0, 2.0, xy.shape)  # registration jitter
    cells, _, _ = mil.visium_grid(torch.from_numpy(xy)[None], torch.ones(1, len(xy), dtype=torch.bool))
    expected = arr[:, ::-1] - arr[:, ::-1].min(0)  # (row, col)
    np.testing.assert_array_equal(cells[0].numpy(), expected)


def test_ppeg_follows_the_grid_not_list_order():
    torch.manual_seed(0)
    coords = _hex_coords(4, 5, 100.0).unsqueeze(0)
    x = torch.randn(1, 20, 8)
    valid = torch.ones(1, 20, dtype=torch.bool)
    ppeg = mil.PPEG(8)
    cells, h, w = mil.visium_grid(coords, valid)
    out = ppeg(x, cells, valid, h, w)
    perm = torch.randperm(20)
    cells_p, h, w = mil.visium_grid(coords[:, perm], valid)
    torch.testing.assert_close(ppeg(x[:, perm], cells_p, valid, h, w), out[:, perm])


def test_ridge_probe_matches_sklearn_pipeline():
    from sklearn.decomposition import PCA
    from sklearn.linear_model import Ridge
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(40, 30)), rng.normal(size=(40, 5))
    pred = baselines.RidgeProbe().fit(X, Y).predict(X[:7])
    scaler = StandardScaler().fit(X)
    pca = PCA(n_components=30, random_state=0).fit(scaler.transform(X))  # capped by features (30 < 256)
    A = pca.transform(scaler.transform(X))
    ridge = Ridge(alpha=100 / (30 * 5), solver="lsqr", fit_intercept=False, max_iter=1000).fit(A, Y)
    np.testing.assert_allclose(pred, ridge.predict(A[:7]), rtol=1e-4, atol=1e-5)
    assert baselines.RidgeProbe().fit(X[:10], Y[:10]).pipeline.named_steps["pca"].n_components == 10


def test_mean_expression_fit():
    X, Y = np.zeros((3, F)), np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 9.0]])
    model = baselines.MeanExpression().fit(X, Y)
    np.testing.assert_allclose(model.predict(np.zeros((2, F))), [[3.0, 5.0], [3.0, 5.0]])
    assert model.n_params == 2


# ---------------------------------------------------------------- registry


def test_registry_build_and_errors():
    model = build_model("interaction", F, G, num_pathways=P, token_dim=D, n_heads=2, interactions="p2p,p2h,h2p")
    assert isinstance(model, SpatialTranscriptFormer) and model.config.interactions == ("p2p", "p2h", "h2p")
    assert build_model("he2rna", F, G, output_mode="global").config.output_mode == "global"
    with pytest.raises(ValueError, match=rf"model: unknown 'gnn'; allowed: {', '.join(MODELS)}$"):
        build_model("gnn", F, G)
    with pytest.raises(ValueError, match="model: unknown 'gnn'"):
        MODELS.get("gnn")  # the registry's get raises too: a typo never reads as None
    with pytest.raises(TypeError, match=r"unknown field\(s\) tokn_dim; allowed: num_pathways, token_dim"):
        build_model("interaction", F, G, tokn_dim=3)
    with pytest.raises(TypeError, match="config: expected a ModelConfig, got int 5"):
        SpatialTranscriptFormer(F, G, 5)  # the third positional argument is the config, not num_pathways


def test_model_table_reads_the_registry():
    """The book's model zoo: one row per entry, what it sees and outputs read from its ModelSpec."""
    table = model_table().set_index("name")
    assert list(table.index) == list(MODELS)
    for name, spec in MODELS.items():
        row = table.loc[name]
        assert row["class"] == spec.cls.__name__ and row["kind"] == spec.kind and row["sees"] == spec.sees
        assert row["outputs"] == ", ".join(spec.outputs) and row["description"] and row["reference"]


def _depends_on_other_spots(model, features, coords) -> bool:
    """Does spot 0's prediction (or the slide's) change when another spot's features change?"""
    moved = features.clone()
    moved[:, 1:] += 3.0
    if isinstance(model, nn.Module):
        with torch.no_grad():
            return not torch.allclose(model(features, coords).genes[:, 0], model(moved, coords).genes[:, 0])
    return not np.allclose(model.predict(features[0].numpy())[0], model.predict(moved[0].numpy())[0])


@pytest.mark.parametrize("name", list(MODELS))
def test_every_registry_entry_is_what_it_says(name, batch):
    """Each ModelSpec's facts hold for its model: the kind, what one prediction sees, what it outputs,
    how n_neighbors reaches it."""
    spec = MODELS[name]
    features, coords, _ = batch
    features, coords = features[:1], coords[:1]
    torch.manual_seed(0)
    model = build_model(name, F, G, SMALL)
    assert type(model) is spec.cls and model.config == SMALL  # built from the config, kept whole
    if spec.kind == "torch":
        assert isinstance(model, nn.Module)
        with torch.no_grad():  # the zero-initialised gene heads would hide every dependence
            for p in model.parameters():
                p.add_(0.1 * torch.randn(p.shape, generator=torch.Generator().manual_seed(3)))
        out = model(features, coords)
        assert (out.pathway_scores is not None) == ("pathway scores" in spec.outputs)
    else:
        X, Y = np.random.default_rng(0).normal(size=(40, F)), np.random.default_rng(1).normal(size=(40, G))
        model.fit(X, Y)
        if spec.outputs == ("training mean",):
            np.testing.assert_allclose(model.predict(X[:3]), np.broadcast_to(Y.mean(0), (3, G)), rtol=1e-6)
    if spec.sees != "nothing":
        assert _depends_on_other_spots(model, features, coords) == (spec.sees == "the whole slide"), name
    if spec.neighbourhood == "attention":  # the model restricts its own attention: whole slides go in
        assert build_model(name, F, G, SMALL, n_neighbors=3).n_neighbors == 3 and spec.window_k(3) == 0
    assert spec.window_k(3) == (3 if spec.neighbourhood == "windows" else 0)
    assert spec.context_features == (spec.neighbourhood == "features")


def test_keyword_form_builds_the_same_config_and_weights(batch):
    features, coords, pad = batch
    keywords = dict(num_pathways=P, token_dim=D, n_heads=2, interactions="p2p,p2h,h2p", n_neighbors=0)
    torch.manual_seed(0)
    by_keyword = SpatialTranscriptFormer(F, G, **keywords)
    torch.manual_seed(0)
    by_config = SpatialTranscriptFormer(F, G, ModelConfig(**keywords))
    assert by_keyword.config == by_config.config
    for (name, a), (other, b) in zip(by_keyword.state_dict().items(), by_config.state_dict().items()):
        assert name == other and torch.equal(a, b)
    assert torch.equal(by_keyword(features, coords, pad).genes, by_config(features, coords, pad).genes)
    # overrides on a config replace its fields; the config itself is frozen
    assert SpatialTranscriptFormer(F, G, by_config.config, n_layers=3).config.n_layers == 3
    with pytest.raises(AttributeError):
        by_config.config.token_dim = 8


def test_state_dict_names_are_the_checkpoints():
    """Parameter names are what finished checkpoints hold: renaming a module breaks loading them."""
    model = SpatialTranscriptFormer(F, G, num_pathways=P, token_dim=D, n_heads=2, zinb=True)
    top = {k.split(".")[0] for k in model.state_dict()}
    assert top == {"project", "position", "pathway_tokens", "encoder", "scorer", "score_norm", "reconstructor", "zinb_head"}
    assert {"encoder.layers.0.qkv.weight", "encoder.layers.1.h2p_logit", "encoder.norm.weight", "scorer.log_tau",
            "score_norm.norm.weight", "zinb_head.pi_logit", "position.gain"} <= set(model.state_dict())


def test_model_config_checks_and_names():
    with pytest.raises(ValueError, match="attention_impl: unknown 'flash'; allowed: fast, reference, explicit"):
        ModelConfig(attention_impl="flash")
    with pytest.raises(ValueError, match="token_dim: must be an integer >= 1, got 0"):
        ModelConfig(token_dim=0)
    with pytest.raises(ValueError, match="pathway_names has 2 names for num_pathways=3"):
        ModelConfig(num_pathways=3, pathway_names=["A", "B"])
    with pytest.raises(ValueError, match="interactions: unknown quadrant 'p2x'"):
        ModelConfig(interactions="p2x")
    assert ModelConfig(num_pathways=2, pathway_names=["A", "B"]).pathway_names == ("A", "B")
    assert ModelConfig(num_pathways=3).token_names() == ["pathway_0", "pathway_1", "pathway_2"]
    # baselines that do not use the STF rules are built from any config (a bottleneck with one layer)
    assert build_model("mlp", F, G, interactions="bottleneck", n_layers=1, n_neighbors=4).config.n_neighbors == 4


def test_a_model_name_registers_once_and_entries_are_checked():
    from stflib.models.registry import ModelSpec

    spec = MODELS["mlp"]
    with pytest.raises(ValueError, match="model 'mlp' is already registered"):
        MODELS.register("mlp", replace(spec, description="another"))
    with pytest.raises(ValueError, match="unknown kind 'jax'; allowed: torch, numpy"):
        replace(spec, kind="jax")
    with pytest.raises(ValueError, match="unknown sees 'two spots'; allowed: nothing, one spot, the whole slide"):
        ModelSpec("m:C", "torch", "two spots", ("per-spot genes",), "windows", "d", "r")
    assert MODELS["mlp"].context_features and MODELS["interaction"].zinb_head


def test_depth_rule():
    check_depth("all", 1)  # with h2h one layer is a complete model
    build_model("interaction", F, G, num_pathways=P, token_dim=D, n_heads=2, n_layers=1)
    with pytest.raises(ValueError, match="need n_layers >= 2"):
        check_depth("bottleneck", 1)
    with pytest.raises(ValueError, match="need n_layers >= 2"):
        build_model("interaction", F, G, num_pathways=P, token_dim=D, n_heads=2, n_layers=1, interactions="bottleneck")


def test_backbone_reexport_is_lazy():
    import stflib.models as models

    assert callable(models.get_backbone) and models.BACKBONES


@pytest.mark.parametrize("readout", stf.CosineScorer.READOUTS)
def test_pathway_readout_scores_against_the_chosen_tokens(readout, batch):
    """contextual: tau cos(encoded patch, encoded pathway token of that slide); shared: tau cos(encoded
    patch, the learnable pathway token), one direction for every slide."""
    features, coords, pad = batch
    model = small_model("all", pathway_readout=readout)
    encoded = {}
    model.encoder.register_forward_hook(lambda module, args, out: encoded.update(x=out[0]))  # returns None: output kept
    scores = model(features, coords, pad).pathway_scores
    x = encoded["x"]  # (B,T,D)
    pathways = x[:, :P] if readout == "contextual" else model.pathway_tokens.expand(B, -1, -1)
    cos = torch.nn.functional.normalize(x[:, P:], dim=-1) @ torch.nn.functional.normalize(pathways, dim=-1).transpose(1, 2)
    torch.testing.assert_close(scores[~pad], (model.scorer.temperature * cos)[~pad])


def test_shared_readout_directions_do_not_read_the_slide(batch):
    """With p2h the encoded pathway tokens depend on the slide's patches; the shared read-out's do not:
    changing another spot's features moves spot 0's contextual scores, never its shared ones,
    when only p2p and p2h carry information between spots."""
    features, coords, pad = batch
    moved = features.clone()
    moved[0, 3] += 5.0
    for readout, changes in (("contextual", True), ("shared", False)):
        torch.manual_seed(0)
        model = small_model("p2p,p2h", n_layers=2, pathway_readout=readout)
        before, after = (model(f, coords, pad).pathway_scores[0, 0] for f in (features, moved))
        assert (not torch.allclose(before, after)) == changes, readout


def test_pathway_readout_rejects_an_unknown_value():
    with pytest.raises(ValueError, match="pathway_readout: unknown 'encoded'; allowed: contextual, shared"):
        small_model(pathway_readout="encoded")


# ---------------------------------------------------------------- local context: graphs and kernels


def test_local_patch_attention_gradcheck():
    """The hand-written backward of the sparse neighbour attention against finite differences:
    two slides, one with unfilled slots, pathway keys with the per-head offset, and without them."""
    g = torch.Generator().manual_seed(5)
    coords = torch.rand(2, 6, 2, generator=g, dtype=torch.float64)
    valid = torch.ones(2, 6, dtype=torch.bool)
    valid[1, 3:] = False  # 3 valid spots for k = 3: slots left unfilled
    graphs = attention.neighbour_graphs(coords, valid, 3)
    Bn, H, Sn, Pn, d = 2, 2, 6, 3, 4
    q_h, k_h, v_h = (torch.randn(Bn, H, Sn, d, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(3))
    k_p, v_p = (torch.randn(Bn, H, Pn, d, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(2))
    offset = torch.randn(H, generator=g, dtype=torch.float64, requires_grad=True)
    f = attention.LocalPatchAttention.apply
    assert torch.autograd.gradcheck(lambda *t: f(*t, graphs, 0.5), (q_h, k_h, v_h, k_p, v_p, offset))
    assert torch.autograd.gradcheck(lambda q, k, v: f(q, k, v, None, None, None, graphs, 0.5), (q_h, k_h, v_h))


def test_neighbour_graphs_are_built_once_per_slide(monkeypatch, batch):
    """The k-NN search runs the first time a slide is seen; later forwards (other layers, steps, the same
    slide in another batch, garbage in the padding) reuse its graph; another k or other coords do not."""
    _, coords, pad = batch
    calls = []
    real = neighbours.knn_neighbours
    monkeypatch.setattr(neighbours, "knn_neighbours", lambda *a: calls.append(1) or real(*a))
    monkeypatch.setattr(neighbours, "_GRAPHS", type(neighbours._GRAPHS)())
    first = attention.neighbour_graphs(coords, ~pad, 3)
    assert len(calls) == 2
    c2 = coords.clone()
    c2[pad] = -1e6
    again = attention.neighbour_graphs(c2, ~pad, 3)
    assert len(calls) == 2 and all(a is b for a, b in zip(first, again))
    assert attention.neighbour_graphs(coords[1:], ~pad[1:], 3)[0] is first[1]
    attention.neighbour_graphs(coords, ~pad, 2)
    assert len(calls) == 4
    model = small_model("all", n_neighbors=3)
    features = torch.randn(B, S, F)
    for _ in range(3):
        model(features, coords + 1.0, pad)  # new coords: built once, then reused
    assert len(calls) == 6


def test_neighbour_graph_is_the_knn_index():
    """The CSR pattern holds exactly the valid slots (each row's keys ascending), its transpose the same
    edges by key, and ``pos`` each edge's slot."""
    g = torch.Generator().manual_seed(2)
    coords = torch.rand(1, 40, 2, generator=g)
    valid = torch.ones(1, 40, dtype=torch.bool)
    valid[0, 30:] = False
    (graph,) = attention.neighbour_graphs(coords, valid, 5)
    idx, ok = attention.knn_neighbours(coords, valid, 5)
    assert torch.equal(graph.index, idx[0]) and torch.equal(graph.valid, ok[0])
    dense = graph.matrix(torch.ones(graph.col.shape)).to_dense().bool()
    expected = torch.zeros(40, 40, dtype=torch.bool)
    for s_, slot in ok[0].nonzero().tolist():
        expected[s_, idx[0, s_, slot]] = True
    assert torch.equal(dense, expected)
    assert torch.equal(graph.matrix(torch.ones(graph.col.shape), transposed=True).to_dense().bool(), expected.T)
    assert torch.equal(idx[0].reshape(-1)[graph.pos], graph.col)


@pytest.mark.parametrize("quads", [q for q in SUBSETS if "h2h" in q], ids=lambda q: "+".join(sorted(q)))
def test_flex_kernel_forward_equals_sparse(quads, batch):
    """FlexAttention's block mask and offset give the sparse kernel's outputs (forward: FlexAttention
    has no CPU backward; the CUDA check compares the trained step)."""
    import warnings

    features, coords, pad = (t.double() if t.is_floating_point() else t for t in batch)
    torch.manual_seed(1)
    model = small_model(sorted(quads), n_neighbors=3).double().eval()
    with torch.no_grad():
        sparse = model(features, coords, pad)
        previous = attention.set_local_kernel("flex")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                flex = model(features, coords, pad)
        finally:
            attention.set_local_kernel(previous)
    valid = ~pad
    torch.testing.assert_close(flex.genes[valid], sparse.genes[valid], rtol=1e-9, atol=1e-10)


def test_local_kernel_choice_names_allowed_values():
    with pytest.raises(ValueError, match="unknown 'dense'; allowed: sparse, flex"):
        attention.set_local_kernel("dense")
    assert attention.local_kernel() == "sparse"


def test_local_attention_with_dropout_takes_the_written_out_path(batch):
    """Attention dropout is not in the sparse kernel: training with it runs (the gathered path)."""
    features, coords, pad = batch
    model = small_model("all", n_neighbors=3, dropout=0.5).train()
    out = model(features, coords, pad)
    out.genes.sum().backward()
    assert torch.isfinite(out.genes).all()


def test_local_attention_under_bf16_autocast(batch):
    """Half-precision inputs: the sparse kernel computes in float32 and returns the input dtype."""
    features, coords, pad = batch
    torch.manual_seed(0)
    model = small_model("all", n_neighbors=3)
    ref = model(features, coords, pad).genes
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(features, coords, pad)
    out.genes.float().sum().backward()
    valid = ~pad
    torch.testing.assert_close(out.genes.float()[valid], ref[valid], rtol=0.1, atol=0.1)


def test_local_context_output_depends_on_neighbours_only():
    """h2h only, one layer, k=2, through a random projection of the encoder output (the sum of a
    LayerNorm's outputs is constant, so its gradient is rounding noise): spot 0 reads spots 0, 1, 2."""
    coords = torch.tensor([[[0.0, 0], [1, 0], [2, 0], [10, 0], [11, 0], [30, 0]]])
    features = torch.randn(1, 6, F, requires_grad=True, generator=torch.Generator().manual_seed(0))
    model = small_model("h2h", n_layers=1, n_neighbors=2, positional_encoding="none")
    captured = {}
    model.encoder.register_forward_hook(lambda m, i, o: captured.update(x=o[0]))
    model(features, coords)
    (captured["x"][0, P + 0] * torch.randn(D, generator=torch.Generator().manual_seed(1))).sum().backward()
    assert (features.grad[0].abs().sum(1) > 0).tolist() == [True, True, True, False, False, False]
