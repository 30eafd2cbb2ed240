"""Training losses, all mask-aware and numerically stable.

Every loss takes (B, S, G) tensors and ``valid`` (B, S) bool, True = a spot that counts (None: all).
Padding and QC-failed spots contribute nothing, not even NaN through a 0 * NaN product: values
are selected with ``torch.where`` before any arithmetic that could overflow.

- ``mse_loss``                masked mean squared error
- ``pcc_loss``                1 - mean over (slide, gene) of the PCC across the slide's valid spots
- ``mse_pcc_loss``            mse + alpha * (1 - pcc)
- ``zinb_nll``                zero-inflated negative binomial NLL on raw counts
- ``ccc_loss``                1 - mean over (slide, gene) of Lin's concordance correlation coefficient
- ``mse_ccc_loss``            mse + alpha * (1 - ccc)
- ``huber_loss``              masked Huber loss (quadratic below ``delta``, linear above)
- ``log_cosh_loss``           masked mean of log(cosh(pred - target))
- ``poisson_nll``             Poisson NLL on raw counts (the count head's expectation as the rate)
- ``auxiliary_pathway_loss``  weight * (1 - PCC(pathway scores, pathway targets))

``LOSSES`` (a :class:`~stflib.registry.Registry`) holds the gene losses training dispatches through
(``GeneLoss``: weighted terms over ``LossInputs``). Adding one is a primitive and one
``LOSSES.register`` here; the grid's losses axis, its params file and the tests of every entry follow.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import torch
from torch import Tensor

from stflib.registry import Registry


def _valid(pred: Tensor, valid: Tensor | None) -> Tensor:
    if valid is None:
        return torch.ones(pred.shape[:2], dtype=torch.bool, device=pred.device)
    valid = valid.bool()
    if valid.shape != pred.shape[:2]:
        raise ValueError(f"valid must be (B, S) = {tuple(pred.shape[:2])}, got {tuple(valid.shape)}")
    return valid


def mse_loss(pred: Tensor, target: Tensor, valid: Tensor | None = None) -> Tensor:
    """Mean of (pred - target)^2 over valid spots and all genes; 0 when nothing is valid."""
    v = _valid(pred, valid).unsqueeze(-1)  # (B,S,1)
    sq = torch.where(v, pred - target, torch.zeros_like(pred)) ** 2
    n = v.sum() * pred.shape[-1]
    return sq.sum() / n.clamp_min(1)


def pearson_per_gene(pred: Tensor, target: Tensor, valid: Tensor | None = None, std_floor: float = 1e-6,
                     rel_tol: float = 1e-5):
    """PCC of every (slide, gene) across the slide's valid spots.

    Returns ``(pcc (B, G), defined (B, G) bool)``. A (slide, gene) is undefined when the slide has
    fewer than 2 valid spots or the *target* is constant there (std <= rel_tol x its largest value:
    float32 leaves a ~1e-7 relative residue when centring a constant): those get pcc = 0 and are left
    out of means. A constant *prediction* against a varying target is defined and scores ~0 (the
    seed's "spatial collapse" penalty); ``std_floor`` (added in quadrature to both standard deviations)
    keeps its gradient finite.
    """
    v = _valid(pred, valid).unsqueeze(-1)  # (B,S,1) bool
    w = v.to(pred.dtype)
    n = w.sum(1)  # (B,1)
    pred = torch.where(v, pred, torch.zeros_like(pred))
    target = torch.where(v, target, torch.zeros_like(target))
    pc = (pred - pred.sum(1, keepdim=True) / n.clamp_min(1).unsqueeze(1)) * w  # (B,S,G) centred, 0 off-mask
    tc = (target - target.sum(1, keepdim=True) / n.clamp_min(1).unsqueeze(1)) * w
    cov = (pc * tc).sum(1)  # (B,G)
    p_ss, t_ss = (pc * pc).sum(1), (tc * tc).sum(1)
    floor = n * std_floor**2
    pcc = cov / ((p_ss + floor).sqrt() * (t_ss + floor).sqrt())
    t_scale = target.abs().amax(1)  # (B,G)
    defined = (t_ss > n * (rel_tol * t_scale) ** 2) & (t_ss > floor) & (n > 1)
    return torch.where(defined, pcc, torch.zeros_like(pcc)), defined


def pcc_loss(pred: Tensor, target: Tensor, valid: Tensor | None = None) -> Tensor:
    """1 - mean over slides and genes of the PCC across each slide's valid spots.

    Undefined (slide, gene) pairs (constant target, < 2 valid spots) are skipped; if none is defined
    the loss is 1 (PCC 0) with zero gradient.
    """
    pcc, defined = pearson_per_gene(pred, target, valid)
    return 1.0 - (pcc * defined).sum() / defined.sum().clamp_min(1)


def mse_pcc_loss(pred: Tensor, target: Tensor, valid: Tensor | None = None, alpha: float = 1.0) -> Tensor:
    """mse + alpha * (1 - pcc): magnitude and spatial shape together (the seed's mse_pcc, alpha = --pcc-weight)."""
    return mse_loss(pred, target, valid) + alpha * pcc_loss(pred, target, valid)


def zinb_nll(y: Tensor, mu: Tensor, theta: Tensor, pi: Tensor, valid: Tensor | None = None,
             eps: float = 1e-8) -> Tensor:
    """Zero-inflated negative binomial NLL of counts ``y``, mean over valid (spot, gene) entries.

    NB(y; mu, theta): P(y) = Gamma(y+theta) / (Gamma(theta) y!) (theta/(theta+mu))^theta (mu/(theta+mu))^y.
    ZINB: P(0) = pi + (1-pi) NB(0), P(y>0) = (1-pi) NB(y). Computed in log space: log(theta+mu) is
    shared, log NB(0) = theta (log theta - log(theta+mu)), and log(pi + (1-pi) NB(0)) uses logaddexp,
    so large counts (1e5), mu -> 0, and pi -> 0 or 1 stay finite.
    """
    v = _valid(y, valid).unsqueeze(-1).expand_as(y)
    out_dtype = mu.dtype
    # float64 inside: lgamma(y + theta) - lgamma(y + 1) cancels ~1e6 - 1e6 at y = 1e5, which float32
    # gets wrong in the second decimal; elementwise float64 is cheap next to the model
    y, mu, theta, pi = (t.double() for t in (y, mu, theta, pi))
    one = torch.ones_like(mu)
    # evaluate on safe placeholders where not valid (padding may hold anything)
    y = torch.where(v, y, torch.zeros_like(y))
    mu = torch.where(v, mu, one).clamp_min(eps)
    theta = torch.where(v, theta, one).clamp_min(eps)
    eps_pi = max(eps, 4 * torch.finfo(out_dtype).eps)  # pi = 1 - eps must survive the model's dtype
    pi = torch.where(v, pi, 0.5 * one).clamp(eps_pi, 1 - eps_pi)

    log_theta_mu = torch.log(theta + mu)
    log_nb0 = theta * (torch.log(theta) - log_theta_mu)  # log NB(0)
    log_nb = (
        torch.lgamma(y + theta) - torch.lgamma(theta) - torch.lgamma(y + 1)
        + log_nb0 + y * (torch.log(mu) - log_theta_mu)
    )
    log_zero = torch.logaddexp(torch.log(pi), torch.log1p(-pi) + log_nb0)  # y == 0
    log_pos = torch.log1p(-pi) + log_nb  # y > 0
    nll = -torch.where(y < 0.5, log_zero, log_pos)
    nll = torch.where(v, nll, torch.zeros_like(nll))
    return (nll.sum() / v.sum().clamp_min(1)).to(out_dtype)


def auxiliary_pathway_loss(scores: Tensor, targets: Tensor, valid: Tensor | None = None,
                           weight: float = 1.0) -> Tensor:
    """weight * (1 - PCC(pathway scores, pathway targets)), per (slide, pathway) across valid spots.

    ``scores`` (B,S,P) from the model; ``targets`` (B,S,P) the seed's z-scored, mean-aggregated
    Hallmark activities (``stflib.pathways.pathway_targets``, computed per slide by the dataset).
    """
    if weight == 0:
        return scores.sum() * 0.0
    return weight * pcc_loss(scores, targets, valid)


@dataclass(frozen=True)
class LossInputs:
    """What a gene loss reads: the model's outputs aligned with their targets.

    ``genes``/``targets``/``counts`` (B, S, G), ``valid`` (B, S); ``theta``/``pi`` the ZINB head's
    dispersion and dropout (None without one); ``gene_sd`` (G,) the training fold's per-gene sd of
    the targets: given, the MSE compares predictions and targets divided by it (per-gene standardised
    targets, so every gene weighs the same and the MSE of the mean predictor is ~1). PCC is invariant
    to a per-gene affine map, so it is the same on either scale.
    """

    genes: Tensor
    targets: Tensor
    valid: Tensor
    counts: Tensor | None = None
    theta: Tensor | None = None
    pi: Tensor | None = None
    gene_sd: Tensor | None = None


def _mse_term(x: LossInputs) -> Tensor:
    if x.gene_sd is None:
        return mse_loss(x.genes, x.targets, x.valid)
    sd = x.gene_sd.to(x.genes.device)
    return mse_loss(x.genes / sd, x.targets / sd, x.valid)


def _pcc_term(x: LossInputs) -> Tensor:
    return pcc_loss(x.genes, x.targets, x.valid)


def _zinb_term(x: LossInputs) -> Tensor:
    if x.theta is None or x.pi is None or x.counts is None:
        raise RuntimeError("loss 'zinb' needs a model built with zinb=True (pi, theta) and raw counts")
    return zinb_nll(x.counts, x.genes, x.theta, x.pi, x.valid)


@dataclass(frozen=True)
class GeneLoss:
    """One entry of ``LOSSES``: the training objective on the genes as a weighted sum of terms.

    ``terms``: (term name, term(LossInputs) -> scalar, weight) with the weight either 1.0 or the name
    of the run parameter that holds it (read from ``weights`` when the loss is called).
    ``needs_counts``: the loss models raw counts (a ZINB head, ``log_transform=False``).
    ``scale_free``: the loss is unchanged when a gene's prediction on a slide is rescaled or shifted (1 - PCC
    alone), so nothing sets the prediction's spread and the collapse ratio against the noise-free truth
    (``collapse_ratio_noise_free``) is left out (NaN). The CCC is not: it asks for the truth's level and spread.
    ``function``, ``formula``, ``measures``, ``on``: the book's loss table.
    """

    terms: tuple[tuple[str, Callable[[LossInputs], Tensor], float | str], ...]
    function: Callable[..., Tensor]
    formula: str
    measures: str
    on: str
    needs_counts: bool = False
    scale_free: bool = False

    @property
    def weight_parameters(self) -> tuple[str, ...]:
        """The run parameters this loss reads its weights from."""
        return tuple(w for _, _, w in self.terms if isinstance(w, str))

    def __call__(self, x: LossInputs, weights: Mapping[str, float] | None = None) -> tuple[Tensor, dict[str, float]]:
        """(the loss, {term: its unweighted value})."""
        loss = torch.zeros((), device=x.genes.device)
        parts: dict[str, float] = {}
        for name, term, weight in self.terms:
            value = term(x)
            parts[name] = float(value.detach())
            loss = loss + (weights[weight] if isinstance(weight, str) else weight) * value
        return loss, parts


# the gene losses by name: the only list of loss names (the config's allowed values, the grid's losses
# axis, the book's table); one register statement per loss, so a run's code version reads its own
LOSSES: Registry[GeneLoss] = Registry("loss")
LOSSES.register("mse", GeneLoss((("mse", _mse_term, 1.0),), mse_loss, "Masked MSE", "magnitude accuracy at each spot",
                                "targets (CP10k or log1p)"))
LOSSES.register("pcc", GeneLoss((("pcc", _pcc_term, 1.0),), pcc_loss, "1 - PCC",
                                "spatial pattern of each gene across a slide (scale-invariant)", "targets",
                                scale_free=True))
LOSSES.register("mse_pcc", GeneLoss((("mse", _mse_term, 1.0), ("pcc", _pcc_term, "pcc_weight")), mse_pcc_loss,
                                    "MSE + alpha (1 - PCC)", "magnitude and spatial shape", "targets"))
LOSSES.register("zinb", GeneLoss((("zinb", _zinb_term, 1.0),), zinb_nll, "ZINB negative log-likelihood",
                                 "dispersed, zero-inflated raw counts (library size as offset)", "raw counts",
                                 needs_counts=True))
# --- agreement, robust and count losses -------------------------------------------------------
# Each is a primitive on (B, S, G) tensors and a term over LossInputs, reached only from its own
# LOSSES entry (so adding them changes no other run's code version, stflib.grid.version).


def concordance_per_gene(pred: Tensor, target: Tensor, valid: Tensor | None = None, std_floor: float = 1e-6,
                         rel_tol: float = 1e-5):
    """Lin's concordance correlation coefficient of every (slide, gene) across the slide's valid spots.

    CCC = 2 cov(p, t) / (var(p) + var(t) + (mean(p) - mean(t))^2), moments over the valid spots with
    1/n (Lin 1989). Unlike the PCC it is 1 only for p = t: a shift or a rescaling of the prediction
    costs concordance, so it asks for the right level and spread as well as the right pattern.
    Returns ``(ccc (B, G), defined (B, G) bool)`` with the definedness of :func:`pearson_per_gene`
    (at least 2 valid spots and a non-constant target); undefined pairs get 0 and are left out of
    means. With a varying target the denominator is at least var(t) > 0, so the value and its
    gradient are finite for any prediction, a constant one included (CCC 0).
    """
    v = _valid(pred, valid).unsqueeze(-1)  # (B,S,1)
    w = v.to(pred.dtype)
    n = w.sum(1)  # (B,1)
    pred = torch.where(v, pred, torch.zeros_like(pred))
    target = torch.where(v, target, torch.zeros_like(target))
    inv_n = 1.0 / n.clamp_min(1)
    p_mean, t_mean = pred.sum(1) * inv_n, target.sum(1) * inv_n  # (B,G)
    pc = (pred - p_mean.unsqueeze(1)) * w  # centred, 0 off-mask
    tc = (target - t_mean.unsqueeze(1)) * w
    cov = (pc * tc).sum(1) * inv_n
    p_var, t_var = (pc * pc).sum(1) * inv_n, (tc * tc).sum(1) * inv_n
    t_scale = target.abs().amax(1)
    defined = (t_var > (rel_tol * t_scale) ** 2) & (t_var > std_floor**2) & (n > 1)
    denom = p_var + t_var + (p_mean - t_mean) ** 2
    ccc = 2 * cov / torch.where(defined, denom, torch.ones_like(denom))
    return torch.where(defined, ccc, torch.zeros_like(ccc)), defined


def ccc_loss(pred: Tensor, target: Tensor, valid: Tensor | None = None) -> Tensor:
    """1 - mean over slides and genes of the CCC across each slide's valid spots (as :func:`pcc_loss`:
    undefined pairs skipped; none defined gives 1 with zero gradient)."""
    ccc, defined = concordance_per_gene(pred, target, valid)
    return 1.0 - (ccc * defined).sum() / defined.sum().clamp_min(1)


def mse_ccc_loss(pred: Tensor, target: Tensor, valid: Tensor | None = None, alpha: float = 1.0) -> Tensor:
    """mse + alpha * (1 - ccc): the MSE's per-spot magnitude with the CCC's per-slide agreement."""
    return mse_loss(pred, target, valid) + alpha * ccc_loss(pred, target, valid)


def _masked_elementwise_mean(values: Tensor, valid: Tensor) -> Tensor:
    """Mean of (B,S,G) ``values`` over valid spots and all genes (0 where nothing is valid)."""
    v = valid.unsqueeze(-1)
    return torch.where(v, values, torch.zeros_like(values)).sum() / (v.sum() * values.shape[-1]).clamp_min(1)


# Huber's threshold on the per-gene standardised scale the MSE term uses (targets / the training fold's
# gene sd): residuals under one sd are squared as in the MSE, larger ones (outlier spots, dropouts)
# weigh linearly
HUBER_DELTA = 1.0


def huber_loss(pred: Tensor, target: Tensor, valid: Tensor | None = None, delta: float = HUBER_DELTA) -> Tensor:
    """Mean over valid spots and genes of 0.5 d^2 (|d| <= delta) or delta (|d| - 0.5 delta), d = pred - target."""
    if not delta > 0:
        raise ValueError(f"huber_loss: delta must be > 0, got {delta!r}")
    v = _valid(pred, valid)
    d = torch.where(v.unsqueeze(-1), pred - target, torch.zeros_like(pred)).abs()
    per = torch.where(d <= delta, 0.5 * d**2, delta * (d - 0.5 * delta))
    return _masked_elementwise_mean(per, v)


def log_cosh_loss(pred: Tensor, target: Tensor, valid: Tensor | None = None) -> Tensor:
    """Mean over valid spots and genes of log(cosh(pred - target)): ~d^2/2 for small residuals, ~|d| - log 2
    for large ones, smooth everywhere. Computed as |d| + softplus(-2|d|) - log 2, finite for any |d|
    (cosh overflows float32 beyond |d| ~ 89)."""
    import math  # here, not at the top: a module-level import would be shared (core) code

    v = _valid(pred, valid)
    d = torch.where(v.unsqueeze(-1), pred - target, torch.zeros_like(pred)).abs()
    per = d + torch.nn.functional.softplus(-2 * d) - math.log(2.0)
    return _masked_elementwise_mean(per, v)


def poisson_nll(y: Tensor, rate: Tensor, valid: Tensor | None = None, eps: float = 1e-8) -> Tensor:
    """Poisson NLL of counts ``y`` at ``rate``, mean over valid (spot, gene) entries:
    rate - y log(rate) + log(y!). The log(y!) term does not depend on the model; it makes the value
    the negative log-likelihood itself, comparable with the ZINB arm's. Float64 inside, as ``zinb_nll``."""
    v = _valid(y, valid).unsqueeze(-1).expand_as(y)
    out_dtype = rate.dtype
    y = torch.where(v, y.double(), torch.zeros_like(y, dtype=torch.float64))
    rate = torch.where(v, rate.double(), torch.ones_like(rate, dtype=torch.float64)).clamp_min(eps)
    nll = rate - y * torch.log(rate) + torch.lgamma(y + 1)
    nll = torch.where(v, nll, torch.zeros_like(nll))
    return (nll.sum() / v.sum().clamp_min(1)).to(out_dtype)


def _ccc_term(x: LossInputs) -> Tensor:
    return ccc_loss(x.genes, x.targets, x.valid)  # CCC is unchanged by a common per-gene affine map


def _per_gene_scaled(x: LossInputs) -> tuple[Tensor, Tensor]:
    """Predictions and targets on the MSE term's scale: divided by the training fold's gene sd when given."""
    if x.gene_sd is None:
        return x.genes, x.targets
    sd = x.gene_sd.to(x.genes.device)
    return x.genes / sd, x.targets / sd


def _huber_term(x: LossInputs) -> Tensor:
    return huber_loss(*_per_gene_scaled(x), x.valid)


def _log_cosh_term(x: LossInputs) -> Tensor:
    return log_cosh_loss(*_per_gene_scaled(x), x.valid)


def _poisson_term(x: LossInputs) -> Tensor:
    """The rate is the count head's expectation, (1 - pi) mu, which is what the run predicts from it
    (``stflib.train.predict``): pi, one value per gene, is then a gene-wise factor of the rate next to the
    rate bias, and theta is unused."""
    if x.counts is None:
        raise RuntimeError("loss 'poisson' needs raw counts and a model with a count head (built with zinb=True)")
    rate = x.genes if x.pi is None else (1.0 - x.pi) * x.genes
    return poisson_nll(x.counts, rate, x.valid)


LOSSES.register("ccc", GeneLoss((("ccc", _ccc_term, 1.0),), ccc_loss, "1 - CCC",
                                "agreement of each gene's map with the truth across a slide: pattern, level "
                                "and spread (Lin's concordance)", "targets"))
# the CCC term's weight is fixed at 1 (mse_pcc's default pcc_weight): on standardised targets the mean
# predictor's MSE is ~1 and 1 - CCC lies in [0, 2], so the two terms start at one scale
LOSSES.register("mse_ccc", GeneLoss((("mse", _mse_term, 1.0), ("ccc", _ccc_term, 1.0)), mse_ccc_loss,
                                    "MSE + (1 - CCC)", "magnitude at each spot and agreement across the slide",
                                    "targets"))
LOSSES.register("huber", GeneLoss((("huber", _huber_term, 1.0),), huber_loss, f"Huber (delta = {HUBER_DELTA:g} gene sd)",
                                  "magnitude accuracy, outlying spots weighed linearly",
                                  "targets on the MSE's per-gene standardised scale"))
LOSSES.register("log_cosh", GeneLoss((("log_cosh", _log_cosh_term, 1.0),), log_cosh_loss, "mean log cosh(pred - target)",
                                     "magnitude accuracy, smooth between squared and absolute error",
                                     "targets on the MSE's per-gene standardised scale"))
LOSSES.register("poisson", GeneLoss((("poisson", _poisson_term, 1.0),), poisson_nll, "Poisson negative log-likelihood",
                                    "raw counts with no overdispersion (library size as offset)", "raw counts",
                                    needs_counts=True))

AUXILIARY = ("auxiliary", auxiliary_pathway_loss, "lambda (1 - PCC(scores, pathway targets))",
             "pathway tokens track Hallmark activity", "z-scored, mean-aggregated Hallmark targets")



def loss_table():
    """pandas DataFrame of the losses (name, function, formula, what it measures, on what) for the book."""
    import pandas as pd

    table = LOSSES.table({"function": lambda v: v.function.__name__, "formula": lambda v: v.formula,
                          "measures": lambda v: v.measures, "on": lambda v: v.on})
    name, fn, formula, measures, on = AUXILIARY
    extra = {"name": name, "function": fn.__name__, "formula": formula, "measures": measures, "on": on}
    return pd.concat([table, pd.DataFrame([extra])], ignore_index=True)
