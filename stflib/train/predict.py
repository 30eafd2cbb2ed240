"""Predictions on whole slides, brought to log1p(CP10k): torch models and the numpy baselines alike.

Both ``predict`` (torch, one slide at a time, or its neighbourhood windows) and ``predict_numpy``
(per-spot numpy models such as ``RidgeProbe`` and ``MeanExpression``) return, per slide, a dict with
``sample_id``, ``pred`` and ``true`` (S, G) log1p CP10k (``pred`` NaN with ``target="pathways"``: no gene
is predicted), ``valid`` (S,), ``pathway_scores`` (S, P) or None, ``pathway_targets`` (S, P) or None,
``loss`` (the training loss on the slide; NaN for numpy models) and ``attention``.
"""
from __future__ import annotations

import numpy as np
import torch

from stflib import metrics as M
from stflib.config import RunConfig
from stflib.data import collate_slides
from stflib.models import MODELS
from stflib.train.step import Step, compute_loss, forward, log_targets, output_space, to_device
from stflib.train.windows import WINDOW_BATCH, make_windows, window_batches


def _window_step(model, item: dict, k: int, device: torch.device, return_attention: bool) -> tuple[Step, list | None]:
    """The windows of one slide, predicted in batches and concatenated into one window ``Step``."""
    w = to_device(make_windows(item, k), device)
    steps = [forward(model, b, window=True) for b in window_batches([w], 4 * WINDOW_BATCH)]
    cat = lambda name: None if getattr(steps[0], name) is None else torch.cat([getattr(s, name) for s in steps], 1)  # noqa: E731
    theta = steps[0].theta if steps[0].theta is not None and steps[0].theta.dim() == 1 else cat("theta")
    step = Step(cat("genes"), cat("pathway_scores"), cat("pi"), theta, cat("valid"), cat("targets"),
                cat("counts"), cat("library_size"), cat("pathway_targets"), None, "window")
    attention = None
    if return_attention:  # attention of the first window batch only
        attention = forward(model, window_batches([w], 64)[0], window=True, return_attention=True).attention
    return step, attention


@torch.no_grad()
def predict(model, items: list[dict], cfg: RunConfig, device: torch.device | str = "cpu",
            return_attention: bool = False) -> list[dict]:
    """Predict slide items one by one with a torch model (see the module docstring for the fields)."""
    device = torch.device(device)
    model.eval()
    k = MODELS[cfg.model].window_k(cfg.n_neighbors)
    space = output_space(cfg)
    zinb = space == "counts"
    out = []
    for item in items:
        if k:
            step, attention = _window_step(model, item, k, device, return_attention)
        else:
            step = forward(model, to_device(collate_slides([item]), device), return_attention=return_attention)
            attention = step.attention
        loss, _ = compute_loss(step, cfg, getattr(model, "gene_sd", None))
        s = item["features"].shape[0]
        genes = step.genes
        if step.pi is not None and zinb:  # the ZINB expectation (1 - pi) mu, not mu
            genes = (1.0 - step.pi) * genes
        if step.mode == "global":  # one profile per slide: broadcast to its spots
            genes = genes.reshape(1, 1, -1).expand(1, s, genes.shape[-1])
        pred = genes[0, :s].float().cpu().numpy()
        lib = item.get("library_size")
        pred = M.to_log_cp10k(pred, space, None if lib is None else lib.cpu().numpy()).astype(np.float32)
        scores = step.pathway_scores
        if getattr(cfg, "target", "genes") == "pathways":  # no gene is predicted: no map is made up for one
            pred = np.full_like(pred, np.nan)
        ptar = item.get("pathway_targets")
        out.append({
            "sample_id": item.get("sample_id"),
            "pred": pred,
            "true": log_targets(cfg, item["targets"]).cpu().numpy().astype(np.float32),
            "valid": item["valid"].cpu().numpy().astype(bool),
            "pathway_scores": None if scores is None or step.mode == "global" else scores[0, :s].float().cpu().numpy(),
            "pathway_targets": None if ptar is None or not ptar.shape[-1] else ptar.cpu().numpy().astype(np.float32),
            "loss": float(loss),
            "attention": None if attention is None else [a.float().cpu().numpy() for a in attention],
        })
    return out


def predict_numpy(model, items: list[dict], cfg: RunConfig) -> list[dict]:
    """Predict slide items with a per-spot numpy model (``predict(X (S, F)) -> (S, G)`` on log1p CP10k)."""
    out = []
    for it in items:
        X = it["features"].cpu().numpy()
        out.append({
            "sample_id": it.get("sample_id"),
            "pred": np.asarray(model.predict(X), np.float32),
            "true": log_targets(cfg, it["targets"]).cpu().numpy().astype(np.float32),
            "valid": it["valid"].cpu().numpy().astype(bool),
            "pathway_scores": None, "pathway_targets": None, "loss": float("nan"), "attention": None,
        })
    return out
