"""The pathway targets of a run: which named pathways, their depth correction and, when the model predicts
them directly (``target="pathways"``), their scale.

The dataset computes each slide's targets with the upstream recipe (``stflib.pathways.pathway_targets``:
log1p CP10k, every gene z-scored over the slide's QC-passed spots, the mean over each pathway's member
genes). ``prepare_targets`` then applies the run's choices to every slide item of a fold, in place,
before any model is built:

1. ``pathway_subset``: keep the rows of the named subset (``stflib.pathways.PATHWAY_SUBSETS``) in the
   fold's membership and the matching columns of the targets, so the model has one named token per
   kept pathway;
2. ``depth_correction="regress"``: per slide, the least-squares residual of every target on
   [1, log total UMIs] over the QC-passed spots (``stflib.sim.reliability.regress_out``, the correction
   the reliability figures use). Depth is shared by every pathway of a spot, so without it the targets
   carry one common, technical component (a quarter of a score's variance in the depth-confounded world,
   about half on the upstream's real slides);
3. ``target="pathways"``: each pathway's targets divided by their sd over the training slides' QC-passed
   spots. The targets are already centred within every slide (a mean of z-scores); this puts every
   pathway on unit variance, so the MSE weighs the pathways equally and the mean predictor scores ~1, as
   the genes' standardised targets do.

Why MSE on this z-scale is the pathway loss (the ``loss`` parameter, ``mse`` by default): the targets
have mean 0 on every slide by construction, so a squared error ties the predicted map's level to 0 and
its amplitude to the target's on each slide. A per-slide PCC alone (``loss="pcc"``) leaves each slide's
offset and scale free, and a map with slide offsets loses pooled PCC on held-out patients; ``mse_pcc``
adds it as the gene loss does.
"""
from __future__ import annotations

import numpy as np
import torch

from stflib import pathways as P
from stflib.config import RunConfig
from stflib.sim.reliability import regress_out

__all__ = ["prepare_targets", "depth_regressed", "pathway_target_sd"]


def depth_regressed(targets: np.ndarray, library_size: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(S, P) targets with log(total UMIs) regressed out over the ``valid`` spots of one slide; invalid
    spots stay 0 (as the dataset leaves them). A slide with fewer than 3 valid spots is returned as is:
    a line through two points leaves no residual to keep."""
    targets = np.asarray(targets, np.float64)
    valid = np.asarray(valid, bool)
    out = np.zeros_like(targets)
    if valid.sum() < 3:
        return targets.astype(np.float32)
    depth = np.log(np.maximum(np.asarray(library_size, np.float64)[valid], 1.0))
    out[valid] = regress_out(targets[valid], depth)
    return out.astype(np.float32)


def pathway_target_sd(items: list[dict], floor: float = 1e-6) -> np.ndarray:
    """(P,) sd of each pathway's targets over the valid spots of ``items`` (floored: a pathway constant on
    the training slides is left unscaled rather than blown up)."""
    t = torch.cat([it["pathway_targets"][it["valid"]] for it in items]).double()
    sd = (t - t.mean(0)).pow(2).mean(0).sqrt()
    return torch.where(sd > floor, sd, torch.ones_like(sd)).float().numpy()


def prepare_targets(fold, cfg: RunConfig) -> None:
    """Apply ``pathway_subset``, ``depth_correction`` and (``target="pathways"``) the training-slide scale to
    ``fold.membership`` and every item's ``pathway_targets``, in place (module doc). The defaults
    (``all``, ``none``, ``genes``) leave the fold exactly as loaded."""
    if fold.membership is None:
        return
    kept = P.subset_membership(fold.membership, cfg.pathway_subset)
    if kept is not fold.membership:
        rows = [fold.membership.names.index(n) for n in kept.names]
        for it in fold.items.values():
            it["pathway_targets"] = it["pathway_targets"][:, rows].contiguous()
        fold.membership = kept
    if cfg.depth_correction == "regress":
        for it in fold.items.values():
            it["pathway_targets"] = torch.as_tensor(depth_regressed(
                it["pathway_targets"].numpy(), it["library_size"].numpy(), it["valid"].numpy()))
    elif cfg.depth_correction != "none":
        raise ValueError(f"depth_correction: unknown value {cfg.depth_correction!r}; allowed: none, regress")
    if cfg.target == "pathways":
        sd = torch.as_tensor(pathway_target_sd(fold.slides("train")))
        for it in fold.items.values():
            it["pathway_targets"] = it["pathway_targets"] / sd
