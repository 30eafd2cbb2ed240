"""One forward pass and its loss: model outputs aligned with their targets in three modes.

``forward`` runs a model with the ``SpatialTranscriptFormer.forward`` signature on a collated batch
and returns a ``Step`` whose dim 1 holds the supervised spots:

- ``dense``: one prediction per spot, as the batch is;
- ``window``: a batch of neighbourhood windows (``stflib.train.windows``); the centre of each window
  is its prediction and the windows become the spots of one "slide";
- ``global``: one prediction per slide (MIL models); targets are averaged over the slide's valid
  spots and the slides become the spots of one "slide", so PCC runs across slides.

``compute_loss`` applies the configured gene loss of ``stflib.losses.LOSSES`` plus the auxiliary
pathway loss.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from stflib import losses as L
from stflib.config import RunConfig
from stflib.device import autocast


@dataclass
class Step:
    """What one forward pass gives, reshaped so that dim 1 holds the supervised spots."""

    genes: torch.Tensor  # (B', S', G)
    pathway_scores: torch.Tensor | None
    pi: torch.Tensor | None
    theta: torch.Tensor | None
    valid: torch.Tensor  # (B', S') bool
    targets: torch.Tensor  # (B', S', G)
    counts: torch.Tensor | None
    library_size: torch.Tensor | None
    pathway_targets: torch.Tensor | None
    attention: Any = None
    mode: str = "dense"  # dense, global, window


def output_field(out, name: str):
    """Field of a model output (dataclass, namedtuple or dict)."""
    if isinstance(out, dict):
        return out.get(name)
    return getattr(out, name, None)


def to_device(batch: dict, device: torch.device) -> dict:
    """The batch with its tensors on ``device``."""
    return {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in batch.items()}


def _masked_mean(x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """(B,S,K), (B,S) -> (B,1,K) mean over valid spots."""
    w = valid.float().unsqueeze(-1)
    return (x * w).sum(1, keepdim=True) / w.sum(1, keepdim=True).clamp_min(1.0)


def forward(model, batch: dict, window: bool = False, return_attention: bool = False) -> Step:
    """Run ``model`` on a collated batch (or a batch of windows) and align outputs with targets
    (under autocast on CUDA, ``stflib.device``)."""
    kwargs = {"return_attention": return_attention}
    if batch.get("library_size") is not None:
        lib = batch["library_size"]
        if window:  # every window position needs a library size; only the centre is used
            lib = lib.unsqueeze(1).expand(batch["features"].shape[:2])
        kwargs["library_size"] = lib
    with autocast(batch["features"].device):
        out = model(batch["features"], batch["coords"], batch["pad_mask"], **kwargs)
    genes = output_field(out, "genes").float()
    scores, pi, theta = (output_field(out, k) for k in ("pathway_scores", "pi", "theta"))
    scores = scores.float() if scores is not None else None
    pi = pi.float() if pi is not None else None
    theta = theta.float() if theta is not None else None
    targets, valid = batch["targets"], batch["valid"]
    counts, lib, ptar = batch.get("counts"), batch.get("library_size"), batch.get("pathway_targets")
    if ptar is not None and ptar.shape[-1] == 0:
        ptar = None
    attention = output_field(out, "attention") if return_attention else None
    if window:  # windows (W, 1+k, .): the centre is the prediction; treat the batch as one "slide"
        centre = lambda t: None if t is None else t[:, 0].unsqueeze(0)  # noqa: E731
        theta_c = theta if theta is not None and theta.dim() == 1 else centre(theta)
        return Step(centre(genes), centre(scores), centre(pi), theta_c, valid.unsqueeze(0), targets.unsqueeze(0),
                    None if counts is None else counts.unsqueeze(0), None if lib is None else lib.unsqueeze(0),
                    None if ptar is None else ptar.unsqueeze(0), attention, "window")
    if genes.shape[1] == 1 and targets.shape[1] > 1:  # slide-level (global / MIL) output
        tgt = _masked_mean(targets, valid)
        cnt = None if counts is None else _masked_mean(counts, valid)
        lib_g = None if lib is None else _masked_mean(lib.unsqueeze(-1), valid).squeeze(-1)
        one = lambda t: None if t is None else (t.transpose(0, 1) if t.dim() == 3 else t)  # noqa: E731
        # the slides of the batch become the "spots" of one slide, so PCC runs across slides
        return Step(genes.transpose(0, 1), None, one(pi), one(theta), valid.any(1, keepdim=True).T,
                    tgt.transpose(0, 1), one(cnt), None if lib_g is None else lib_g.T, None, attention, "global")
    return Step(genes, scores, pi, theta, valid, targets, counts, lib, ptar, attention, "dense")


def compute_loss(step: Step, cfg: RunConfig, gene_sd: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """The configured gene loss (``LOSSES[cfg.loss]``, its weights read from ``cfg``) plus the
    auxiliary pathway loss, averaged over valid spots; returns (loss, {term: value}).

    ``gene_sd`` (G,): the training fold's per-gene sd of the targets (``stflib.losses.LossInputs``);
    with a ``StandardizedOutput`` model the offset cancels, so the MSE is the one on standardised
    targets and the PCC and auxiliary terms (both O(1)) act at their nominal weights.
    """
    gene_loss = L.LOSSES[cfg.loss]
    if getattr(cfg, "target", "genes") == "pathways":
        return pathway_target_loss(step, cfg)
    inputs = L.LossInputs(step.genes, step.targets, step.valid, step.counts, step.theta, step.pi, gene_sd)
    loss, parts = gene_loss(inputs, {name: getattr(cfg, name) for name in gene_loss.weight_parameters})
    w = cfg.pathway_loss_weight
    if w > 0 and step.pathway_scores is not None and step.pathway_targets is not None \
            and step.pathway_scores.shape[-1] == step.pathway_targets.shape[-1]:
        aux = L.auxiliary_pathway_loss(step.pathway_scores, step.pathway_targets, step.valid)
        parts["aux"] = float(aux.detach())
        loss = loss + w * aux
    return loss, parts


def pathway_target_loss(step: Step, cfg: RunConfig) -> tuple[torch.Tensor, dict[str, float]]:
    """``target="pathways"``: the terms of ``LOSSES[cfg.loss]`` on the pathway scores against the pathway
    targets (already on the z-scale, ``stflib.train.targets``); no gene term. Returns (loss, {term: value})."""
    if step.pathway_scores is None or step.pathway_targets is None:
        raise ValueError(f"target 'pathways': the model gives no pathway scores or the batch no pathway targets "
                         f"(mode {step.mode!r}); allowed models output 'pathway scores'")
    if step.pathway_scores.shape[-1] != step.pathway_targets.shape[-1]:
        raise ValueError(f"target 'pathways': {step.pathway_scores.shape[-1]} pathway tokens for "
                         f"{step.pathway_targets.shape[-1]} pathway targets; the tokens must be the named pathways")
    inputs = L.LossInputs(step.pathway_scores, step.pathway_targets, step.valid, None, None, None, None)
    loss_fn = L.LOSSES[cfg.loss]
    return loss_fn(inputs, {name: getattr(cfg, name) for name in loss_fn.weight_parameters})


def output_space(cfg: RunConfig) -> str:
    """Scale of a model's gene output: counts (ZINB mu), log (log1p CP10k) or cp10k."""
    if L.LOSSES[cfg.loss].needs_counts:
        return "counts"
    return "log" if cfg.log_transform else "cp10k"


def log_targets(cfg: RunConfig, targets: torch.Tensor) -> torch.Tensor:
    """The targets on log1p(CP10k), the scale every metric uses."""
    return targets if cfg.log_transform else torch.log1p(targets.clamp_min(0))
