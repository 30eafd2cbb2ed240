"""Interpretability with known truth: which read-out of a trained SpatialTranscriptFormer shows where a
pathway is active?

The simulator knows every spot's true pathway activity, so each way of reading a pathway map out of a
model can be scored, per pathway and held-out slide, by its PCC over the slide's QC-passed spots with
``true_pathway_activity``. The read-outs (``METHODS``), each an (S, P) map for the P named tokens:

- ``scores``: the model's pathway scores (cosine x temperature), what the pathway tokens are for;
- ``rollout``: attention rollout (Abnar & Zuidema 2020) from each pathway token to the spots. Per layer
  the attention maps are averaged over heads, the identity is added for the residual stream and the rows
  renormalised (``(A + I) / 2``); the layers are multiplied (last x ... x first), and row p of the product,
  restricted to the spot columns, is how much of token p's final state flows from each spot. The maps are
  the ones the model returns with ``return_attention=True`` (one (B, H, T, T) tensor per layer, over
  [pathways | spots], rows summing to 1; in the k-NN mode the h2h block is zero outside each spot's
  neighbours, the p2h block is whole). With ``pathway_readout="shared"`` (the default) the scores are read
  against the shared tokens, not the encoded ones, so the rollout shows where the pathway tokens look,
  which is not what the scores are computed from;
- ``saliency``: for pathway p, the gradient of the slide's summed map sum_s score[s, p] with respect to
  every spot's input features (the standardised backbone features), its L2 norm per spot. Unsigned: how
  strongly each spot's features move the pathway's total, whether up or down;
- ``grad_x_input``: the same gradient times the input, summed over features per spot: the signed
  first-order share of each spot's features in the pathway's total (equal to the map itself for a model
  linear in its own spot's features).

``interpret_run`` scores every read-out on a run's held-out slides (``Run`` of ``stflib.train.run``);
``stflib.report.interpretability`` runs the arms and writes ``results/interpretability/``.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from stflib import metrics as M

__all__ = ["METHODS", "attention_rollout", "pathway_rollout", "gradient_attributions", "readout_maps",
           "score_maps", "interpret_run"]

METHODS = ("scores", "rollout", "saliency", "grad_x_input")


def attention_rollout(maps: list, residual: float = 0.5) -> np.ndarray:
    """Rollout of one slide's attention maps (a list per layer of (H, T, T) or (1, H, T, T) arrays):
    R = Ã_L ... Ã_1 with Ã_l = residual * I + (1 - residual) * mean_h(A_l), rows renormalised. (T, T).
    ``residual = 0.5`` is Abnar & Zuidema's (A + I) / 2."""
    if not maps:
        raise ValueError("attention_rollout: no attention maps (run the model with return_attention=True)")
    if not 0.0 <= residual < 1.0:
        raise ValueError(f"attention_rollout: residual must lie in [0, 1), got {residual}")
    rollout = None
    for layer, a in enumerate(maps):
        a = np.asarray(a.detach().float().cpu().numpy() if torch.is_tensor(a) else a, np.float64)
        if a.ndim == 4:
            if a.shape[0] != 1:
                raise ValueError(f"attention_rollout: one slide at a time, got a batch of {a.shape[0]} (layer {layer})")
            a = a[0]
        if a.ndim != 3 or a.shape[1] != a.shape[2]:
            raise ValueError(f"attention_rollout: layer {layer} must be (H, T, T), got {a.shape}")
        mixed = residual * np.eye(a.shape[1]) + (1.0 - residual) * a.mean(0)
        mixed /= np.maximum(mixed.sum(1, keepdims=True), 1e-12)
        rollout = mixed if rollout is None else mixed @ rollout
    return rollout


def pathway_rollout(maps: list, num_pathways: int, residual: float = 0.5) -> np.ndarray:
    """(S, P): column p is pathway token p's rollout row over the S spot columns (``attention_rollout``)."""
    r = attention_rollout(maps, residual)
    return r[:num_pathways, num_pathways:].T.copy()


def _forward(model, item: dict, device, return_attention: bool, features: torch.Tensor | None = None):
    f = item["features"].to(device).unsqueeze(0) if features is None else features
    coords = item["coords"].to(device).unsqueeze(0)
    pad = ~item["valid"].to(device).unsqueeze(0)
    return model(f, coords, pad, return_attention=return_attention)


def gradient_attributions(model, item: dict, device="cpu") -> tuple[np.ndarray, np.ndarray]:
    """(saliency, grad_x_input), each (S, P), of one slide item (module doc); invalid spots excluded from
    the summed maps (their rows are still returned)."""
    device = torch.device(device)
    features = item["features"].to(device).unsqueeze(0).clone().requires_grad_(True)
    valid = item["valid"].to(device)
    out = _forward(model, item, device, False, features)
    scores = out["pathway_scores"] if isinstance(out, dict) else out.pathway_scores
    if scores is None:
        raise ValueError("gradient_attributions: the model returns no pathway scores")
    totals = scores[0][valid].float().sum(0)  # (P,)
    saliency, gxi = [], []
    for p in range(totals.shape[0]):
        (grad,) = torch.autograd.grad(totals[p], features, retain_graph=p < totals.shape[0] - 1)
        saliency.append(grad[0].norm(dim=-1))
        gxi.append((grad[0] * features[0]).sum(-1))
    return (torch.stack(saliency, 1).detach().cpu().numpy().astype(np.float64),
            torch.stack(gxi, 1).detach().cpu().numpy().astype(np.float64))


def readout_maps(model, item: dict, device="cpu", methods=METHODS) -> dict[str, np.ndarray]:
    """Every read-out of ``methods`` for one slide item: {method: (S, P)} over all its spots."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"readout_maps: unknown method(s) {unknown}; allowed: {', '.join(METHODS)}")
    device = torch.device(device)
    model.eval()
    out: dict[str, np.ndarray] = {}
    with torch.no_grad():
        res = _forward(model, item, device, "rollout" in methods)
    scores = res["pathway_scores"]
    if scores is None:
        raise ValueError("readout_maps: the model returns no pathway scores")
    num_pathways = scores.shape[-1]
    if "scores" in methods:
        out["scores"] = scores[0].float().cpu().numpy().astype(np.float64)
    if "rollout" in methods:
        if not res["attention"]:
            raise ValueError("readout_maps: the model returned no attention maps for 'rollout'")
        out["rollout"] = pathway_rollout(res["attention"], num_pathways)
    if "saliency" in methods or "grad_x_input" in methods:
        with torch.enable_grad():
            saliency, gxi = gradient_attributions(model, item, device)
        if "saliency" in methods:
            out["saliency"] = saliency
        if "grad_x_input" in methods:
            out["grad_x_input"] = gxi
    return out


def score_maps(maps: dict[str, np.ndarray], truth: np.ndarray, valid: np.ndarray) -> dict[str, np.ndarray]:
    """{method: (P,) PCC over the ``valid`` spots of each map's column with the same column of ``truth``}."""
    valid = np.asarray(valid, bool)
    return {m: M.pearson_columns(x[valid], np.asarray(truth, np.float64)[valid]) for m, x in maps.items()}


def interpret_run(run, slides: str = "test", methods=METHODS, device="cpu") -> pd.DataFrame:
    """One row per (method, held-out slide, named pathway) of a trained torch ``run``
    (``stflib.train.run.Run``): the read-out's PCC with the true activity (``pcc``). Pathways are the
    model's named tokens matched to the simulator's by name; tokens without a true counterpart are
    left out. Empty for a model without named tokens or a cohort without truth."""
    fold, model = run.fold, run.model
    config = getattr(model, "config", None)
    names = None if config is None else config.pathway_names
    columns = ["method", "sample_id", "pathway", "pcc"]
    if not names or not fold.truth_pathway_names:
        return pd.DataFrame(columns=columns)
    tindex = {n: i for i, n in enumerate(fold.truth_pathway_names)}
    keep = [j for j, n in enumerate(names) if n in tindex]
    truth_cols = [tindex[names[j]] for j in keep]
    rows = []
    model.to(torch.device(device))
    for item in fold.slides(slides):
        if item.get("true_pathways") is None:
            continue
        maps = readout_maps(model, item, device, methods)
        truth = item["true_pathways"].cpu().numpy()[:, truth_cols]
        valid = item["valid"].cpu().numpy()
        for method, r in score_maps({m: x[:, keep] for m, x in maps.items()}, truth, valid).items():
            rows.extend({"method": method, "sample_id": item["sample_id"], "pathway": names[j], "pcc": float(v)}
                        for j, v in zip(keep, r))
    return pd.DataFrame(rows, columns=columns)
