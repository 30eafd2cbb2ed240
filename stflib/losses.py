"""Training losses, all mask-aware and numerically stable.

Every loss takes (B, S, G) tensors and ``valid`` (B, S) bool, True = a spot that counts (None: all).
Padding and QC-failed spots contribute nothing, not even NaN through a 0 * NaN product: values
are selected with ``torch.where`` before any arithmetic that could overflow.

- ``mse_loss``                masked mean squared error
- ``pcc_loss``                1 - mean over (slide, gene) of the PCC across the slide's valid spots
- ``mse_pcc_loss``            mse + alpha * (1 - pcc)
- ``zinb_nll``                zero-inflated negative binomial NLL on raw counts
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
    ``function``, ``formula``, ``measures``, ``on``: the book's loss table.
    """

    terms: tuple[tuple[str, Callable[[LossInputs], Tensor], float | str], ...]
    function: Callable[..., Tensor]
    formula: str
    measures: str
    on: str
    needs_counts: bool = False

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
                                "spatial pattern of each gene across a slide (scale-invariant)", "targets"))
LOSSES.register("mse_pcc", GeneLoss((("mse", _mse_term, 1.0), ("pcc", _pcc_term, "pcc_weight")), mse_pcc_loss,
                                    "MSE + alpha (1 - PCC)", "magnitude and spatial shape", "targets"))
LOSSES.register("zinb", GeneLoss((("zinb", _zinb_term, 1.0),), zinb_nll, "ZINB negative log-likelihood",
                                 "dispersed, zero-inflated raw counts (library size as offset)", "raw counts",
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
