"""Losses: exact against numpy/scipy references, masked, and finite in the hard cases."""
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
import torch

from stflib import losses
from stflib.pathways import pathway_targets


def _zinb_reference(y, mu, theta, pi):
    nb = scipy.stats.nbinom(n=theta, p=theta / (theta + mu))
    return -np.where(y == 0, np.log(pi + (1 - pi) * nb.pmf(0)), np.log1p(-pi) + nb.logpmf(y))


def test_zinb_nll_matches_scipy_nbinom():
    rng = np.random.default_rng(0)
    shape = (2, 6, 5)
    mu = rng.uniform(0.05, 50, shape)
    theta = rng.uniform(0.1, 20, shape)
    pi = rng.uniform(0.01, 0.9, shape)
    y = rng.poisson(mu) * (rng.random(shape) > pi)  # a mix of zeros and counts
    y[0, 0, :3] = [0, 7, 250]
    valid = np.ones(shape[:2], bool)
    valid[1, 4:] = False
    expected = _zinb_reference(y, mu, theta, pi)[valid].mean()
    t = lambda a: torch.tensor(a, dtype=torch.float64)  # noqa: E731
    got = losses.zinb_nll(t(y), t(mu), t(theta), t(pi), torch.tensor(valid))
    assert got.item() == pytest.approx(expected, rel=1e-10)


def test_zinb_nll_large_counts_and_extremes_are_finite():
    y = torch.tensor([[[0.0, 1e5, 1e5, 0.0, 3.0]]])
    mu = torch.tensor([[[1e-12, 1e5, 1.0, 1e5, 0.0]]], requires_grad=True)
    theta = torch.tensor([[[1e-6, 1e4, 0.5, 1e6, 1.0]]], requires_grad=True)
    pi = torch.tensor([[[0.0, 1.0, 0.5, 1e-9, 1.0]]], requires_grad=True)
    loss = losses.zinb_nll(y, mu, theta, pi)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in (mu, theta, pi))
    # float32 vs scipy at a large count
    ref = _zinb_reference(np.array([1e5]), np.array([9e4]), np.array([5.0]), np.array([0.1]))[0]
    got = losses.zinb_nll(torch.tensor([[[1e5]]]), torch.tensor([[[9e4]]]), torch.tensor([[[5.0]]]),
                          torch.tensor([[[0.1]]]))
    assert got.item() == pytest.approx(ref, rel=1e-5)


def test_zinb_ignores_padding_even_with_garbage():
    y = torch.tensor([[[2.0], [float("nan")]]])
    mu = torch.tensor([[[3.0], [float("inf")]]], requires_grad=True)
    valid = torch.tensor([[True, False]])
    loss = losses.zinb_nll(y, mu, torch.ones(1, 2, 1), torch.full((1, 2, 1), 0.1), valid)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(mu.grad).all() and mu.grad[0, 1] == 0
    assert losses.zinb_nll(y, mu, torch.ones(1, 2, 1), torch.zeros(1, 2, 1), torch.zeros(1, 2, dtype=torch.bool)) == 0


def _pcc_numpy(pred, target, valid):
    values = []
    for b in range(pred.shape[0]):
        p, t = pred[b][valid[b]], target[b][valid[b]]
        for g in range(pred.shape[2]):
            if len(t) > 1 and t[:, g].std() > 0:
                values.append(np.corrcoef(p[:, g], t[:, g])[0, 1])
    return float(np.mean(values))


def test_pcc_matches_numpy_per_slide_and_gene():
    rng = np.random.default_rng(1)
    pred, target = rng.normal(size=(3, 20, 6)), rng.normal(size=(3, 20, 6))
    pred += 0.5 * target
    valid = np.ones((3, 20), bool)
    valid[2, 12:] = False
    pred[2, 12:] = 1e6  # padding garbage must not count
    got = losses.pcc_loss(torch.tensor(pred), torch.tensor(target), torch.tensor(valid))
    assert got.item() == pytest.approx(1 - _pcc_numpy(pred, target, valid), abs=1e-9)
    pcc, defined = losses.pearson_per_gene(torch.tensor(pred), torch.tensor(target), torch.tensor(valid))
    assert defined.all()
    np.testing.assert_allclose(pcc[0, 0].item(), np.corrcoef(pred[0, :, 0], target[0, :, 0])[0, 1], rtol=1e-9)


def test_pcc_zero_variance_all_zero_and_invalid_are_finite():
    rng = np.random.default_rng(2)
    target = torch.tensor(rng.poisson(2.0, size=(3, 10, 4)), dtype=torch.float32)
    target[:, :, 0] = 0.0  # a gene that is zero everywhere
    target[1, :, 1] = 5.0  # a constant gene on slide 1 (zero variance)
    target[0, 3] = 0.0  # an all-zero spot
    pred = torch.randn(3, 10, 4, requires_grad=True)
    valid = torch.ones(3, 10, dtype=torch.bool)
    valid[2] = False  # an all-invalid slide
    loss = losses.pcc_loss(pred, target, valid)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(pred.grad).all()
    _, defined = losses.pearson_per_gene(pred, target, valid)
    assert not defined[:, 0].any() and not defined[1, 1] and not defined[2].any()
    assert defined[0, 1:].all() and defined[1, 2:].all()
    # the constant gene and the invalid slide are skipped: same as numpy over the rest
    expected = 1 - _pcc_numpy(pred.detach().numpy(), target.numpy(), valid.numpy())
    assert loss.item() == pytest.approx(expected, abs=1e-5)
    # a constant prediction scores PCC 0 with a finite gradient; nothing valid at all -> loss 1
    flat = torch.ones(1, 10, 4, requires_grad=True)
    collapse = losses.pcc_loss(flat, target[:1], valid[:1])
    collapse.backward()
    assert collapse.item() == pytest.approx(1.0, abs=1e-5) and torch.isfinite(flat.grad).all()
    assert losses.pcc_loss(pred, target, torch.zeros(3, 10, dtype=torch.bool)).item() == 1.0


def test_mse_and_mse_pcc_are_masked():
    pred = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [float("nan"), 9.0]]])
    target = torch.tensor([[[0.0, 2.0], [3.0, 6.0], [0.0, 0.0]]])
    valid = torch.tensor([[True, True, False]])
    assert losses.mse_loss(pred, target, valid).item() == pytest.approx((1 + 0 + 0 + 4) / 4)
    combined = losses.mse_pcc_loss(pred, target, valid, alpha=0.5)
    expected = losses.mse_loss(pred, target, valid) + 0.5 * losses.pcc_loss(pred, target, valid)
    assert combined.item() == pytest.approx(expected.item())
    assert losses.mse_loss(pred, target, torch.zeros(1, 3, dtype=torch.bool)).item() == 0.0


def test_large_counts_stable():
    target = torch.rand(2, 50, 3) * 1e5
    pred = (target + torch.randn(2, 50, 3) * 1e3).requires_grad_()
    for fn in (losses.mse_loss, losses.pcc_loss, losses.mse_pcc_loss):
        loss = fn(pred, target)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(pred.grad).all()
    assert losses.pcc_loss(pred, target).item() < 0.01


def test_auxiliary_loss_on_pathway_targets_matches_direct_computation():
    """The auxiliary loss compares scores with the seed's targets; the targets are a direct z-score +
    mean over member genes, and the loss is weight * (1 - PCC) per (slide, pathway)."""
    rng = np.random.default_rng(3)
    expr = rng.poisson(3.0, size=(12, 8)).astype(float)
    expr[:, 5] = 2.0  # a constant gene contributes 0
    membership = (rng.random((4, 8)) < 0.5).astype(float)
    membership[:, 0] = 1
    valid = np.ones(12, bool)
    valid[10:] = False
    targets = pathway_targets(expr, membership, valid)
    # direct computation
    x = expr[valid]
    z = np.zeros_like(expr)
    std = x.std(0)
    z[valid] = np.where(std > 0, (x - x.mean(0)) / np.where(std > 0, std, 1), 0)
    direct = z @ membership.T / membership.sum(1)
    np.testing.assert_allclose(targets, direct, rtol=1e-5, atol=1e-6)

    scores = torch.tensor(rng.normal(size=(1, 12, 4)), requires_grad=True)
    tt = torch.tensor(targets, dtype=torch.float64)[None]
    loss = losses.auxiliary_pathway_loss(scores, tt, torch.tensor(valid)[None], weight=0.3)
    pccs = [np.corrcoef(scores.detach().numpy()[0, valid, p], targets[valid, p])[0, 1] for p in range(4)]
    assert loss.item() == pytest.approx(0.3 * (1 - np.mean(pccs)), abs=1e-9)
    loss.backward()
    assert torch.isfinite(scores.grad).all() and (scores.grad[0, ~valid] == 0).all()
    zero = losses.auxiliary_pathway_loss(scores, tt, None, weight=0.0)
    assert zero.item() == 0.0


def test_every_loss_has_terms_a_formula_and_a_params_file():
    """Properties of every registered loss, read from the registry: its terms are callables weighted by 1.0
    or by a run parameter, its book entries are filled, and the grid has its params file."""
    from stflib import config as C

    root = Path(__file__).resolve().parents[1]
    for name, spec in losses.LOSSES.items():
        assert spec.terms and all(callable(term) and (w == 1.0 or w in C.PARAM_BY_NAME) for _, term, w in spec.terms), name
        assert callable(spec.function) and spec.formula and spec.measures and spec.on, name
        assert (root / "params" / "losses" / f"{name}.yaml").is_file(), f"params/losses/{name}.yaml"
    assert losses.LOSSES["mse_pcc"].weight_parameters == ("pcc_weight",)
    table = losses.loss_table()
    assert list(table["name"]) == [*losses.LOSSES, "auxiliary"]
    assert list(table["function"][:-1]) == [spec.function.__name__ for spec in losses.LOSSES.values()]


def test_unknown_loss_names_exactly_the_registered_values():
    for read in (lambda: losses.LOSSES["l1"], lambda: losses.LOSSES.get("l1")):
        with pytest.raises(ValueError) as err:
            read()
        assert str(err.value) == "loss: unknown 'l1'; allowed: " + ", ".join(losses.LOSSES)


def test_registry_losses_are_their_terms():
    torch.manual_seed(0)
    pred, target = torch.randn(2, 6, 4), torch.randn(2, 6, 4)
    valid = torch.ones(2, 6, dtype=torch.bool)
    valid[1, 4:] = False
    x = losses.LossInputs(pred, target, valid)
    loss, parts = losses.LOSSES["mse_pcc"](x, {"pcc_weight": 0.5})
    torch.testing.assert_close(loss, losses.mse_pcc_loss(pred, target, valid, alpha=0.5))
    assert set(parts) == {"mse", "pcc"} and parts["mse"] == pytest.approx(float(losses.mse_loss(pred, target, valid)))
    sd = torch.full((4,), 2.0)  # per-gene sd: the MSE on standardised targets
    scaled, _ = losses.LOSSES["mse"](losses.LossInputs(pred, target, valid, gene_sd=sd))
    torch.testing.assert_close(scaled, losses.mse_loss(pred, target, valid) / 4)
    with pytest.raises(RuntimeError, match="zinb=True"):
        losses.LOSSES["zinb"](x)


def test_losses_reject_wrong_valid_shape():
    with pytest.raises(ValueError, match=r"valid must be \(B, S\)"):
        losses.mse_loss(torch.zeros(2, 3, 4), torch.zeros(2, 3, 4), torch.ones(3, 2, dtype=torch.bool))


# ---------------------------------------------------------------- concordance, robust and count losses


def _ccc_numpy(pred, target, valid):
    """Lin's CCC per (slide, gene) over valid spots, population moments, constant targets skipped."""
    values = []
    for b in range(pred.shape[0]):
        p, t = pred[b][valid[b]], target[b][valid[b]]
        for g in range(pred.shape[2]):
            if len(t) > 1 and t[:, g].std() > 0:
                cov = np.mean((p[:, g] - p[:, g].mean()) * (t[:, g] - t[:, g].mean()))
                values.append(2 * cov / (p[:, g].var() + t[:, g].var() + (p[:, g].mean() - t[:, g].mean()) ** 2))
    return float(np.mean(values))


def _masked_case(seed=4):
    rng = np.random.default_rng(seed)
    pred, target = rng.normal(size=(3, 15, 5)), rng.normal(size=(3, 15, 5))
    pred = 0.6 * target + 0.3 + 0.5 * pred  # correlated, shifted and shrunk: CCC < PCC
    valid = np.ones((3, 15), bool)
    valid[1, 9:] = False
    pred[1, 9:] = np.nan  # padding garbage must not count
    target[1, 9:] = 1e6
    return pred, target, valid


def test_ccc_matches_numpy_and_penalises_shift_and_scale():
    pred, target, valid = _masked_case()
    t = torch.tensor
    got = losses.ccc_loss(t(pred), t(target), t(valid))
    assert got.item() == pytest.approx(1 - _ccc_numpy(pred, target, valid), abs=1e-9)
    # a perfect prediction scores CCC 1; a shifted or rescaled copy keeps PCC 1 and loses concordance
    clean = np.where(valid[..., None], target, 0.0)
    assert losses.ccc_loss(t(clean), t(clean), t(valid)).item() == pytest.approx(0.0, abs=1e-12)
    for moved in (clean + 1.0, 2.0 * clean):
        assert losses.pcc_loss(t(moved), t(clean), t(valid)).item() == pytest.approx(0.0, abs=1e-9)
        assert losses.ccc_loss(t(moved), t(clean), t(valid)).item() > 0.05
    # mse_ccc is mse + (1 - ccc), the registry entry weighting its CCC term by 1
    x = losses.LossInputs(t(pred), t(target), t(valid))
    combined, parts = losses.LOSSES["mse_ccc"](x)
    expected = losses.mse_loss(t(pred), t(target), t(valid)) + got
    assert combined.item() == pytest.approx(expected.item(), rel=1e-12) and set(parts) == {"mse", "ccc"}
    assert losses.mse_ccc_loss(t(pred), t(target), t(valid), alpha=0.5).item() == pytest.approx(
        (losses.mse_loss(t(pred), t(target), t(valid)) + 0.5 * got).item(), rel=1e-12)


def test_ccc_skips_constant_targets_and_stays_finite():
    target = torch.tensor(np.random.default_rng(5).poisson(2.0, size=(2, 8, 3)), dtype=torch.float32)
    target[:, :, 0] = 4.0  # a constant gene: undefined, skipped
    pred = torch.zeros(2, 8, 3, requires_grad=True)  # a collapsed prediction
    loss = losses.ccc_loss(pred, target, torch.ones(2, 8, dtype=torch.bool))
    loss.backward()
    assert loss.item() == pytest.approx(1.0, abs=1e-6) and torch.isfinite(pred.grad).all()
    _, defined = losses.concordance_per_gene(pred, target)
    assert not defined[:, 0].any() and defined[:, 1:].all()
    assert losses.ccc_loss(pred, target, torch.zeros(2, 8, dtype=torch.bool)).item() == 1.0


def _huber_numpy(d, delta):
    a = np.abs(d)
    return np.where(a <= delta, 0.5 * a**2, delta * (a - 0.5 * delta))


def test_huber_and_log_cosh_match_numpy_on_valid_spots():
    pred, target, valid = _masked_case(6)
    pred[0, 0, 0] = target[0, 0, 0] + 40.0  # an outlier: linear in Huber, |d| - log 2 in log-cosh
    d = (pred - target)[valid]
    t = torch.tensor
    for delta in (losses.HUBER_DELTA, 0.3):
        got = losses.huber_loss(t(pred), t(target), t(valid), delta=delta)
        assert got.item() == pytest.approx(_huber_numpy(d, delta).mean(), rel=1e-12)
    got = losses.log_cosh_loss(t(pred), t(target), t(valid))
    assert got.item() == pytest.approx(np.log(np.cosh(d)).mean(), rel=1e-12)
    # far beyond float32's cosh range the log-cosh stays finite and linear
    big = losses.log_cosh_loss(torch.tensor([[[500.0]]]), torch.zeros(1, 1, 1))
    assert big.item() == pytest.approx(500.0 - np.log(2.0), rel=1e-6)
    with pytest.raises(ValueError, match="delta must be > 0, got 0"):
        losses.huber_loss(t(pred), t(target), t(valid), delta=0)


def test_huber_and_log_cosh_entries_use_the_mse_scale():
    """With the training fold's gene sd, the entries compare pred / sd with target / sd, as the MSE term."""
    pred, target, valid = _masked_case(7)
    sd = np.array([0.5, 1.0, 2.0, 4.0, 8.0])
    t = torch.tensor
    x = losses.LossInputs(t(pred), t(target), t(valid), gene_sd=t(sd))
    huber, _ = losses.LOSSES["huber"](x)
    assert huber.item() == pytest.approx(losses.huber_loss(t(pred / sd), t(target / sd), t(valid)).item(), rel=1e-12)
    log_cosh, _ = losses.LOSSES["log_cosh"](x)
    assert log_cosh.item() == pytest.approx(
        np.log(np.cosh(((pred - target) / sd)[valid])).mean(), rel=1e-12)


def test_poisson_nll_matches_scipy_and_ignores_padding():
    rng = np.random.default_rng(8)
    shape = (2, 6, 4)
    rate = rng.uniform(0.05, 80, shape)
    y = rng.poisson(rate).astype(float)
    y[0, 0, :2] = [0, 3000]
    valid = np.ones(shape[:2], bool)
    valid[1, 4:] = False
    expected = -scipy.stats.poisson.logpmf(y, rate)[valid].mean()
    y[1, 4:] = np.nan  # garbage in the padding
    t = lambda a: torch.tensor(a, dtype=torch.float64)  # noqa: E731
    got = losses.poisson_nll(t(y), t(rate), torch.tensor(valid))
    assert got.item() == pytest.approx(expected, rel=1e-10)
    # the entry's rate is the count head's expectation (1 - pi) mu, theta unused
    pi = rng.uniform(0.01, 0.5, shape)
    mu = rate / (1 - pi)
    x = losses.LossInputs(t(mu), t(np.zeros(shape)), torch.tensor(valid), counts=t(y), theta=t(np.full(shape, 9.0)), pi=t(pi))
    entry, parts = losses.LOSSES["poisson"](x)
    assert entry.item() == pytest.approx(expected, rel=1e-10) and set(parts) == {"poisson"}
    assert losses.LOSSES["poisson"].needs_counts
    with pytest.raises(RuntimeError, match="loss 'poisson' needs raw counts"):
        losses.LOSSES["poisson"](losses.LossInputs(t(mu), t(mu), torch.tensor(valid)))
    # float32 at a large count and a vanishing rate: finite value and gradient
    r32 = torch.tensor([[[9e4, 1e-12]]], requires_grad=True)
    loss = losses.poisson_nll(torch.tensor([[[1e5, 0.0]]]), r32)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(r32.grad).all()


def _garbage_case():
    """LossInputs for every registered loss (positive genes serve as a count mean), with NaN and huge
    values on the invalid spots."""
    g = torch.Generator().manual_seed(9)
    B, S, G = 2, 10, 4
    counts = torch.poisson(torch.full((B, S, G), 5.0), generator=g)
    genes = torch.exp(torch.randn(B, S, G, generator=g))
    targets = torch.log1p(counts) + 0.1 * torch.randn(B, S, G, generator=g)
    valid = torch.ones(B, S, dtype=torch.bool)
    valid[1, 6:] = False
    pi, theta = torch.full((B, S, G), 0.1), torch.full((B, S, G), 3.0)
    return genes, targets, counts, valid, pi, theta, torch.full((G,), 1.5)


@pytest.mark.parametrize("name", list(losses.LOSSES))
def test_every_loss_is_finite_masked_and_differentiable(name):
    """Every registered loss: a finite value and gradient, no gradient on invalid spots, and what the
    invalid spots hold (NaN, 1e6) changes neither the value nor the valid spots' gradient."""
    genes, targets, counts, valid, pi, theta, sd = _garbage_case()
    spec = losses.LOSSES[name]
    weights = {w: 0.7 for w in spec.weight_parameters}
    results = []
    for fill in (None, float("nan"), 1e6):
        g, t, c = genes.clone(), targets.clone(), counts.clone()
        if fill is not None:
            g[~valid], t[~valid], c[~valid] = fill, fill, fill
        g.requires_grad_(True)
        loss, parts = spec(losses.LossInputs(g, t, valid, c, theta, pi, sd), weights)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(g.grad).all(), (name, fill)
        assert (g.grad[~valid] == 0).all() and g.grad[valid].abs().sum() > 0, (name, fill)
        assert set(parts) == {term for term, _, _ in spec.terms}
        results.append((loss.item(), g.grad[valid]))
    for value, grad in results[1:]:
        assert value == pytest.approx(results[0][0], rel=1e-6), name
        torch.testing.assert_close(grad, results[0][1])
