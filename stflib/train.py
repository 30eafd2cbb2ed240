"""Training and evaluation of one ablation arm.

``train_and_evaluate(config)`` is the whole run behind ``notebooks/ablation.ipynb``:

1. validate the parameters (``stflib.config``); load the cohort (``data_dir`` or the embedded
   simulated one) and split it by patient: ``fold`` of ``n_folds`` is the test set, and a
   ``val_fraction`` of the remaining *patients* is held out for early stopping;
2. choose the gene vocabulary and the 50 evaluation HVGs on the training fold only;
3. train (torch models: targets standardised per gene with the training fold's statistics
   (``StandardizedOutput``), a schedule counted in optimiser steps (AdamW, linear warm-up + cosine
   decay, gradient clipping), batches of slides cut to random spot subsets (``crop_spots``), a
   validation evaluation every ``eval_every`` steps, the checkpoint with the best median-smoothed
   validation PCC kept, mixed precision on CUDA, resumable checkpoints) or fit (the ridge probe,
   whose penalty is chosen on the same validation patients, and the mean predictor);
4. predict the held-out slides, bring every output to log1p(CP10k) and compute the metrics
   (``stflib.metrics``), the fit on the training slides (``train_pcc_hvg50``, ``train_mse_ratio``)
   and the pathway ceiling of the arm's inputs (``pathway_ceiling``); write ``metrics.json``, ``per_gene.csv``, ``history.csv`` and
   ``predictions.h5ad`` into ``output_dir``.

``fit``/``predict`` work on lists of slide items (the dicts of ``stflib.data.SlideDataset``) and on
any model with the ``SpatialTranscriptFormer.forward`` signature, so they are testable alone.
"""
from __future__ import annotations

import inspect
import json
import math
import os
import random
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from stflib import config as C
from stflib import metrics as M
from stflib.predictions import moran_metrics, predictions_anndata  # noqa: F401 - predictions_anndata: re-exported

WINDOW_BATCH = 256  # spot windows per step in n_neighbors mode (times batch_size / 2)


# ------------------------------------------------------------------------------------- utilities
def set_seed(seed: int) -> None:
    """Seed python, numpy and torch; deterministic kernels where torch has them."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    if torch.backends.cudnn.is_available():
        torch.backends.cudnn.benchmark = False


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` -> cuda when available, then mps, else cpu."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(name)


def _get(out, name: str):
    """Field of a model output (dataclass, namedtuple or dict)."""
    if isinstance(out, dict):
        return out.get(name)
    return getattr(out, name, None)


def _to(batch: dict, device: torch.device) -> dict:
    return {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in batch.items()}


def count_parameters(model) -> int:
    if isinstance(model, torch.nn.Module):
        return int(sum(p.numel() for p in model.parameters() if p.requires_grad))
    return int(getattr(model, "n_params", 0))


def collate(items: list[dict]) -> dict:
    """Pad slide items to the largest slide (``stflib.data.collate_slides``)."""
    from stflib.data import collate_slides

    return collate_slides(items)


# ----------------------------------------------------------------------- neighbourhood windows
def neighbor_index(coords: np.ndarray, k: int) -> np.ndarray:
    """(S, k+1) indices of each spot and its k nearest spots (itself first)."""
    from scipy.spatial import cKDTree

    coords = np.asarray(coords, np.float64)
    kk = min(k + 1, len(coords))
    _, idx = cKDTree(coords).query(coords, k=kk)
    idx = idx.reshape(len(coords), kk)
    idx[:, 0] = np.arange(len(coords))  # itself first even with duplicate coordinates
    if kk < k + 1:  # tiny slide: repeat the last neighbour (masked as padding)
        idx = np.concatenate([idx, np.repeat(idx[:, -1:], k + 1 - kk, 1)], 1)
    return idx


def make_windows(item: dict, k: int) -> dict:
    """Turn one slide item into S windows of (1 + k) spots; the centre spot (position 0) is supervised."""
    idx = torch.as_tensor(neighbor_index(item["coords"].cpu().numpy(), k))
    s = idx.shape[0]
    pad = torch.zeros(idx.shape, dtype=torch.bool)
    if s < k + 1:
        pad[:, s:] = True
    w = {
        "features": item["features"][idx],
        "coords": item["coords"][idx],
        "pad_mask": pad,
    }
    for key in ("targets", "counts", "library_size", "valid", "pathway_targets"):
        if item.get(key) is not None:
            w[key] = item[key]
    if item.get("true_pathways") is not None:
        w["true_pathways"] = item["true_pathways"]
    return w


def _window_batches(windows: list[dict], batch: int, generator: torch.Generator | None) -> list[dict]:
    """Pool the windows of several slides and cut them into batches of ``batch`` windows."""
    keys = [k for k in windows[0] if torch.is_tensor(windows[0][k])]
    pooled = {k: torch.cat([w[k] for w in windows]) for k in keys}
    n = pooled["features"].shape[0]
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    out = []
    for start in range(0, n, batch):
        sel = order[start:start + batch]
        out.append({k: v[sel] for k, v in pooled.items()})
    return out


def _window_k(model, cfg: dict) -> int:
    """Neighbourhood windows are built here only for models that do not use ``n_neighbors`` themselves
    (SpatialTranscriptFormer restricts its h2h attention to the k nearest spots on whole slides)."""
    k = cfg["n_neighbors"]
    return 0 if (not k or hasattr(model, "n_neighbors")) else k


# ------------------------------------------------------------------------------ forward and loss
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


def _masked_mean(x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """(B,S,K), (B,S) -> (B,1,K) mean over valid spots."""
    w = valid.float().unsqueeze(-1)
    return (x * w).sum(1, keepdim=True) / w.sum(1, keepdim=True).clamp_min(1.0)


def forward(model, batch: dict, window: bool = False, return_attention: bool = False, autocast=None) -> Step:
    """Run ``model`` on a collated batch (or a batch of windows) and align outputs with targets."""
    kwargs = {"return_attention": return_attention}
    if batch.get("library_size") is not None:
        lib = batch["library_size"]
        if window:  # every window position needs a library size; only the centre is used
            lib = lib.unsqueeze(1).expand(batch["features"].shape[:2])
        kwargs["library_size"] = lib
    with autocast if autocast is not None else nullcontext():
        out = model(batch["features"], batch["coords"], batch["pad_mask"], **kwargs)
    genes = _get(out, "genes").float()
    scores, pi, theta = (_get(out, k) for k in ("pathway_scores", "pi", "theta"))
    scores = scores.float() if scores is not None else None
    pi = pi.float() if pi is not None else None
    theta = theta.float() if theta is not None else None
    targets, valid = batch["targets"], batch["valid"]
    counts, lib, ptar = batch.get("counts"), batch.get("library_size"), batch.get("pathway_targets")
    if ptar is not None and ptar.shape[-1] == 0:
        ptar = None
    attention = _get(out, "attention") if return_attention else None
    if window:  # windows (W, 1+k, .): the centre is the prediction; treat the batch as one "slide"
        centre = lambda t: None if t is None else t[:, 0].unsqueeze(0)  # noqa: E731
        if theta is not None and theta.dim() == 1:
            theta_c = theta
        else:
            theta_c = centre(theta)
        return Step(centre(genes), centre(scores), centre(pi), theta_c, valid.unsqueeze(0), targets.unsqueeze(0),
                    None if counts is None else counts.unsqueeze(0), None if lib is None else lib.unsqueeze(0),
                    None if ptar is None else ptar.unsqueeze(0), attention, "window")
    if genes.shape[1] == 1 and targets.shape[1] > 1:  # slide-level (global / MIL) output
        gv = valid
        tgt = _masked_mean(targets, gv)
        cnt = None if counts is None else _masked_mean(counts, gv)
        lib_g = None if lib is None else _masked_mean(lib.unsqueeze(-1), gv).squeeze(-1)
        one = lambda t: None if t is None else (t.transpose(0, 1) if t.dim() == 3 else t)  # noqa: E731
        # the slides of the batch become the "spots" of one slide, so PCC runs across slides
        return Step(genes.transpose(0, 1), None, one(pi), one(theta), valid.any(1, keepdim=True).T,
                    tgt.transpose(0, 1), one(cnt), None if lib_g is None else lib_g.T, None, attention, "global")
    return Step(genes, scores, pi, theta, valid, targets, counts, lib, ptar, attention, "dense")


def compute_loss(step: Step, cfg: dict, gene_sd: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """The configured gene loss (+ the auxiliary pathway loss), averaged over valid spots.

    ``gene_sd`` (G,): the training fold's per-gene sd of the targets. Given, the MSE compares
    predictions and targets divided by it, i.e. on per-gene standardised targets (with a
    ``StandardizedOutput`` model the offset cancels), so every gene weighs the same, the MSE of the
    mean predictor is ~1 and the PCC and auxiliary terms (both O(1)) act at their nominal weights.
    PCC is invariant to a per-gene affine map, so it is the same on either scale.
    """
    from stflib import losses as L

    valid = step.valid
    parts: dict[str, float] = {}
    name = cfg["loss"]
    if name == "zinb":
        if step.theta is None or step.pi is None or step.counts is None:
            raise RuntimeError("loss 'zinb' needs a model built with zinb=True (pi, theta) and raw counts")
        loss = L.zinb_nll(step.counts, step.genes, step.theta, step.pi, valid)
        parts["zinb"] = float(loss.detach())
    else:
        loss = torch.zeros((), device=step.genes.device)
        if name in ("mse", "mse_pcc"):
            if gene_sd is not None:
                sd = gene_sd.to(step.genes.device)
                mse = L.mse_loss(step.genes / sd, step.targets / sd, valid)
            else:
                mse = L.mse_loss(step.genes, step.targets, valid)
            parts["mse"] = float(mse.detach())
            loss = loss + mse
        if name in ("pcc", "mse_pcc"):
            pcc = L.pcc_loss(step.genes, step.targets, valid)
            parts["pcc"] = float(pcc.detach())
            loss = loss + (cfg["pcc_weight"] if name == "mse_pcc" else 1.0) * pcc
    w = cfg.get("pathway_loss_weight", 0.0)
    if w > 0 and step.pathway_scores is not None and step.pathway_targets is not None \
            and step.pathway_scores.shape[-1] == step.pathway_targets.shape[-1]:
        aux = L.auxiliary_pathway_loss(step.pathway_scores, step.pathway_targets, valid)
        parts["aux"] = float(aux.detach())
        loss = loss + w * aux
    return loss, parts


def output_space(cfg: dict) -> str:
    """Scale of a model's gene output: counts (ZINB mu), log (log1p CP10k) or cp10k."""
    if cfg["loss"] == "zinb":
        return "counts"
    return "log" if cfg["log_transform"] else "cp10k"


# ----------------------------------------------------------------------------------------- fit
@dataclass
class FitResult:
    history: list[dict] = field(default_factory=list)
    best_epoch: int = -1
    best_score: float = float("-inf")
    stopped_early: bool = False
    seconds: float = 0.0
    resumed_from: int | None = None
    loss_terms: dict = field(default_factory=dict)  # {"start": {term: value}, "end": ...} on the first training batch


def lr_lambda(step: int, warmup: int, total: int, floor: float = 0.02) -> float:
    """Linear warm-up to 1 over ``warmup`` steps, then cosine decay to ``floor`` at ``total``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def _autocast(device: torch.device):
    if device.type != "cuda":
        return None, None
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    return torch.autocast("cuda", dtype=dtype), scaler


def _log_targets(cfg: dict, targets: torch.Tensor) -> torch.Tensor:
    return targets if cfg["log_transform"] else torch.log1p(targets.clamp_min(0))


def validation_score(model, items: list[dict], cfg: dict, device: torch.device,
                     score_columns: np.ndarray | None = None) -> tuple[float, float]:
    """(mean per-gene PCC over the validation spots on log1p CP10k, validation loss).

    ``score_columns``: the genes the PCC is averaged over (the training fold's HVGs, so model
    selection tracks the reported metric; None: all genes).
    """
    preds, trues, losses = [], [], []
    for p in predict(model, items, cfg, device):
        preds.append(p["pred"][p["valid"]])
        trues.append(p["true"][p["valid"]])
        losses.append(p["loss"])
    if not preds:
        return float("nan"), float("nan")
    pred, true = np.concatenate(preds), np.concatenate(trues)
    if score_columns is not None:
        pred, true = pred[:, score_columns], true[:, score_columns]
    r = M.pearson_columns(pred, true)
    return M.nanmean(r), float(np.nanmean(losses))


def _pass_order(n: int, seed: int, pass_index: int) -> torch.Tensor:
    """The shuffled order of pass ``pass_index``: a function of (seed, pass) only, so a resumed run
    draws exactly the batches the uninterrupted one would have drawn."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + pass_index))


def crop_item(item: dict, n_spots: int, generator: torch.Generator) -> dict:
    """A random subset of ``n_spots`` valid spots of one slide item (all spot-indexed tensors), in
    their original order; the slide's other keys are kept. Whole slides with fewer valid spots are
    returned unchanged. Training steps on crops are cheaper; evaluation always uses whole slides."""
    valid_idx = torch.nonzero(item["valid"], as_tuple=False).squeeze(1)
    if n_spots <= 0 or len(valid_idx) <= n_spots:
        return item
    keep = valid_idx[torch.randperm(len(valid_idx), generator=generator)[:n_spots]].sort().values
    s = item["features"].shape[0]
    return {k: (v[keep] if torch.is_tensor(v) and v.dim() >= 1 and v.shape[0] == s else v) for k, v in item.items()}


def median_smoothed(scores: list[float], window: int = 3) -> float:
    """Median of the last ``window`` validation scores: one noisy evaluation can neither select a
    checkpoint nor reset the patience counter on its own."""
    tail = [x for x in scores[-window:] if np.isfinite(x)]
    return float(np.median(tail)) if tail else float("nan")


def fit(
    model: torch.nn.Module,
    train_items: list[dict],
    val_items: list[dict],
    cfg: dict,
    device: torch.device | str = "cpu",
    checkpoint_dir: str | Path | None = None,
    progress: bool | None = None,
    log: Callable[[str], None] | None = None,
    score_columns: np.ndarray | None = None,
) -> FitResult:
    """Train ``model`` for ``max_steps`` optimiser steps with early stopping on ``val_items``;
    restores the best weights.

    The schedule counts optimiser steps: linear warm-up over ``warmup_steps``, cosine decay to 2 %
    at the last step, a validation evaluation every ``eval_every`` steps. A step draws
    ``batch_size`` training slides (each pass over the slides in a fresh order), optionally cropped
    to ``crop_spots`` random spots. Model selection follows the *median of the last three*
    validation PCCs over ``score_columns`` (the training fold's 50 HVGs in ``run``): a checkpoint is
    kept when that smoothed score improves, and ``patience`` evaluations without improvement stop
    the run. ``epochs`` (optional) caps the number of passes.

    Resumes from ``checkpoint_dir/checkpoint.pt`` when it holds a checkpoint of the same run (same
    configuration hash); writes it after every evaluation and ``best.pt`` at every improvement.
    """
    from tqdm.auto import tqdm

    cfg = C.validate(cfg, check_paths=False)
    device = torch.device(device)
    progress = cfg["progress"] if progress is None else progress
    k = _window_k(model, cfg)
    model.to(device)
    n_train = len(train_items)
    if n_train == 0:
        raise ValueError("fit: no training slides")
    if k:
        windows = [make_windows(it, k) for it in train_items]
        wkeys = [key for key in windows[0] if torch.is_tensor(windows[0][key])]
        pooled = {key: torch.cat([w[key] for w in windows]) for key in wkeys}
        n_units = pooled["features"].shape[0]
        per_step = max(1, WINDOW_BATCH * cfg["batch_size"] // 2)
    else:
        n_units, per_step = n_train, cfg["batch_size"]
    steps_per_pass = math.ceil(n_units / per_step)
    total = cfg["max_steps"] if cfg["epochs"] is None else min(cfg["max_steps"], cfg["epochs"] * steps_per_pass)
    warmup = min(cfg["warmup_steps"], total // 2)
    gene_sd = getattr(model, "gene_sd", None)

    def batch_at(step: int) -> dict:
        order = _pass_order(n_units, cfg["seed"], step // steps_per_pass)
        j = step % steps_per_pass
        sel = order[j * per_step:(j + 1) * per_step]
        if k:
            return {key: v[sel] for key, v in pooled.items()}
        items = [train_items[i] for i in sel.tolist()]
        if cfg["crop_spots"]:
            g = torch.Generator().manual_seed(cfg["seed"] * 7_919 + step)
            items = [crop_item(it, cfg["crop_spots"], g) for it in items]
        return collate(items)

    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_lambda(s, warmup, total))
    autocast, scaler = _autocast(device)
    res = FitResult()
    best_state = None
    start_step = 0
    run_hash = C.config_hash(cfg)
    ckpt_path = best_path = None
    if checkpoint_dir is not None:
        checkpoint_dir = Path(checkpoint_dir)
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
        ckpt_path, best_path = checkpoint_dir / "checkpoint.pt", checkpoint_dir / "best.pt"
        if ckpt_path.is_file():
            state = torch.load(ckpt_path, map_location=device, weights_only=False)
            if state.get("config_hash") == run_hash and not state.get("finished"):
                model.load_state_dict(state["model"])
                opt.load_state_dict(state["optimizer"])
                sched.load_state_dict(state["scheduler"])
                if scaler is not None and state.get("scaler"):
                    scaler.load_state_dict(state["scaler"])
                torch.set_rng_state(state["torch_rng"])
                res.history, res.best_epoch, res.best_score = state["history"], state["best_epoch"], state["best_score"]
                best_state = state["best_state"]
                start_step = state["step"]
                res.resumed_from = len(res.history) - 1
                if log:
                    log(f"resumed from step {start_step} ({ckpt_path})")
    t0 = time.perf_counter() - (res.history[-1]["seconds"] if res.history else 0.0)
    bar = tqdm(total=total, desc="steps", disable=not progress, leave=False, initial=start_step)
    bad_evals = len(res.history) - 1 - res.best_epoch if res.history else 0
    losses, parts_sum = [], {}
    step = start_step

    def terms() -> dict[str, float]:
        """Each loss term on the first training batch (same batch at the start and the end)."""
        was_training = model.training
        model.eval()
        with torch.no_grad():
            _, parts = compute_loss(forward(model, _to(batch_at(0), device), window=bool(k), autocast=autocast), cfg, gene_sd)
        model.train(was_training)
        return parts

    if start_step == 0:
        res.loss_terms["start"] = terms()
    model.train()
    while step < total:
        batch = _to(batch_at(step), device)
        out = forward(model, batch, window=bool(k), autocast=autocast)
        loss, parts = compute_loss(out, cfg, gene_sd)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite training loss at step {step}: {parts}")
        opt.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
        else:
            loss.backward()
        if cfg["grad_clip"] > 0:
            torch.nn.utils.clip_grad_norm_(params, cfg["grad_clip"])
        if scaler is not None:
            scaler.step(opt)
            scaler.update()
        else:
            opt.step()
        sched.step()
        step += 1
        bar.update(1)
        losses.append(float(loss.detach()))
        for kname, v in parts.items():
            parts_sum[kname] = parts_sum.get(kname, 0.0) + v
        if step % cfg["eval_every"] and step < total:
            continue
        # ---- evaluation: every eval_every steps and at the last step
        score, val_loss = validation_score(model, val_items, cfg, device, score_columns)
        model.train()
        n_eval = len(res.history)
        row = {"epoch": n_eval, "step": step, "passes": step / steps_per_pass, "train_loss": float(np.mean(losses)),
               "val_loss": val_loss, "val_pcc": score, "lr": float(opt.param_groups[0]["lr"]),
               "seconds": time.perf_counter() - t0}
        row.update({f"train_{kname}": v / len(losses) for kname, v in parts_sum.items()})
        res.history.append(row)
        row["val_pcc_smoothed"] = smoothed = median_smoothed([h["val_pcc"] for h in res.history])
        losses, parts_sum = [], {}
        improved = np.isfinite(smoothed) and smoothed > res.best_score
        if improved or best_state is None:
            res.best_score = smoothed if np.isfinite(smoothed) else res.best_score
            res.best_epoch = n_eval
            best_state = {kname: v.detach().clone() for kname, v in model.state_dict().items()}
            bad_evals = 0
            if best_path is not None:
                _atomic_torch_save({"model": best_state, "step": step, "val_pcc": score, "config": cfg}, best_path)
        else:
            bad_evals += 1
        bar.set_postfix(loss=f"{row['train_loss']:.4f}", val_pcc=f"{score:.3f}", best=res.history[res.best_epoch]["step"])
        stop = bad_evals >= cfg["patience"] > 0
        out_of_time = cfg["time_limit_s"] > 0 and row["seconds"] > cfg["time_limit_s"]
        if ckpt_path is not None:
            _atomic_torch_save({
                "model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                "scaler": scaler.state_dict() if scaler is not None else None,
                "torch_rng": torch.get_rng_state(), "history": res.history, "best_epoch": res.best_epoch,
                "best_score": res.best_score, "best_state": best_state, "step": step, "config_hash": run_hash,
                "finished": bool(stop or out_of_time or step >= total),
            }, ckpt_path)
        if stop or out_of_time:
            res.stopped_early = True
            if log:
                why = "no validation improvement" if stop else "time limit"
                log(f"stopped at step {step} ({why}); best step {res.history[res.best_epoch]['step']} "
                    f"(smoothed val PCC {res.best_score:.4f})")
            break
    bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    res.loss_terms["end"] = terms()
    res.seconds = time.perf_counter() - t0
    return res


def _atomic_torch_save(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


# ------------------------------------------------------------------------------------- predict
@torch.no_grad()
def predict(model, items: list[dict], cfg: dict, device: torch.device | str = "cpu",
            return_attention: bool = False) -> list[dict]:
    """Predict slide items one by one. Per slide: ``pred`` and ``true`` (S, G) log1p CP10k numpy,
    ``valid`` (S,), ``pathway_scores`` (S, P) or None, ``loss`` (the training loss on the slide),
    ``attention`` (list per layer, numpy) when asked."""
    device = torch.device(device)
    model.eval()
    autocast, _ = _autocast(device)
    k = _window_k(model, cfg)
    space = output_space(cfg)
    out = []
    for item in items:
        if k:
            w = _to(make_windows(item, k), device)
            steps = [forward(model, b, window=True, autocast=autocast)
                     for b in _window_batches([w], 4 * WINDOW_BATCH, None)]
            cat = lambda name: None if getattr(steps[0], name) is None else torch.cat([getattr(s, name) for s in steps], 1)  # noqa: E731
            theta = steps[0].theta if steps[0].theta is not None and steps[0].theta.dim() == 1 else cat("theta")
            step = Step(cat("genes"), cat("pathway_scores"), cat("pi"), theta, cat("valid"), cat("targets"),
                        cat("counts"), cat("library_size"), cat("pathway_targets"), None, "window")
            attention = None
            if return_attention:  # attention of the first window batch only
                attention = forward(model, _window_batches([w], 64, None)[0], window=True,
                                    return_attention=True, autocast=autocast).attention
        else:
            batch = _to(collate([item]), device)
            step = forward(model, batch, return_attention=return_attention, autocast=autocast)
            attention = step.attention
        loss, _ = compute_loss(step, cfg, getattr(model, "gene_sd", None))
        s = item["features"].shape[0]
        genes = step.genes
        if step.pi is not None and cfg["loss"] == "zinb":  # the ZINB expectation (1 - pi) mu, not mu
            genes = (1.0 - step.pi) * genes
        if step.mode == "global":  # one profile per slide: broadcast to its spots
            genes = genes.reshape(1, 1, -1).expand(1, s, genes.shape[-1])
        pred = genes[0, :s].float().cpu().numpy()
        lib = item.get("library_size")
        pred = M.to_log_cp10k(pred, space, None if lib is None else lib.cpu().numpy()).astype(np.float32)
        true = _log_targets(cfg, item["targets"]).cpu().numpy().astype(np.float32)
        scores = step.pathway_scores
        out.append({
            "sample_id": item.get("sample_id"),
            "pred": pred,
            "true": true,
            "valid": item["valid"].cpu().numpy().astype(bool),
            "pathway_scores": None if scores is None or step.mode == "global" else scores[0, :s].float().cpu().numpy(),
            "loss": float(loss),
            "attention": None if attention is None else [a.float().cpu().numpy() for a in attention],
        })
    return out


# ------------------------------------------------------------------------- non-torch baselines
class MeanPredictor:
    """Predicts the training fold's mean log1p(CP10k) profile everywhere (PCC 0 by construction)."""

    n_params = 0

    def fit(self, X, Y):
        self.mean_ = np.asarray(Y, np.float64).mean(0)
        self.n_params = int(self.mean_.size)
        return self

    def predict(self, X):
        return np.broadcast_to(self.mean_, (len(X), len(self.mean_))).astype(np.float32)


def _stack_valid(items: list[dict], cfg: dict) -> tuple[np.ndarray, np.ndarray]:
    X, Y = [], []
    for it in items:
        v = it["valid"].cpu().numpy().astype(bool)
        X.append(it["features"].cpu().numpy()[v])
        Y.append(_log_targets(cfg, it["targets"]).cpu().numpy()[v])
    return np.concatenate(X), np.concatenate(Y)


def fit_sklearn(name: str, train_items: list[dict], cfg: dict, seed: int = 0, val_items: list[dict] | None = None,
                score_columns: np.ndarray | None = None):
    """Fit the non-torch baselines on the log1p(CP10k) targets of the valid training spots.

    The protocol of the torch models: fit on ``train_items`` only; with ``val_items`` the ridge
    probe's penalty is chosen on them (mean PCC over ``score_columns``), as the torch models choose
    their checkpoint. The mean predictor has nothing to select."""
    X, Y = _stack_valid(train_items, cfg)
    if name == "mean":
        return MeanPredictor().fit(X, Y)
    from stflib.models.baselines import RidgeProbe

    probe = RidgeProbe(random_state=seed)
    if val_items:
        Xv, Yv = _stack_valid(val_items, cfg)
        return probe.fit_select(X, Y, Xv, Yv, score_columns=score_columns)
    return probe.fit(X, Y)


def predict_sklearn(model, items: list[dict], cfg: dict) -> list[dict]:
    out = []
    for it in items:
        X = it["features"].cpu().numpy()
        out.append({
            "sample_id": it.get("sample_id"),
            "pred": np.asarray(model.predict(X), np.float32),
            "true": _log_targets(cfg, it["targets"]).cpu().numpy().astype(np.float32),
            "valid": it["valid"].cpu().numpy().astype(bool),
            "pathway_scores": None, "loss": float("nan"), "attention": None,
        })
    return out


# ----------------------------------------------------------------------------------- the run
@dataclass
class FoldData:
    root: Path
    metadata: Any
    train_ids: list[str]
    val_ids: list[str]
    test_ids: list[str]
    samples: dict
    genes: list[str]
    hvg: list[str]
    membership: Any
    items: dict  # sample_id -> slide item
    feature_dim: int
    truth_pathway_names: list[str] | None


def load_fold(cfg: dict, log: Callable[[str], None] | None = None) -> FoldData:
    """Read the cohort, split it by patient, choose genes on the training fold, build slide items."""
    from stflib import data as D
    from stflib import pathways as P

    if cfg["data_dir"] is None:
        from stflib.simulate import default_cohort

        root = Path(default_cohort(cfg["preset"], world=cfg["world"]))
    else:
        root = Path(cfg["data_dir"])
    from stflib import config as C

    meta = D.select_samples(root / "metadata.csv", **C.cohort_filter(cfg))
    D.check_cohort_folds(meta, cfg["n_folds"], f"the cohort filter {C.describe_cohort(cfg)} on {root / 'metadata.csv'}")
    qc = {"min_umis": cfg["qc_min_umis"], "min_genes": cfg["qc_min_genes"]}
    folds = D.patient_folds(meta, cfg["n_folds"], seed=0)
    train_all, test_ids = folds[cfg["fold"]]
    train_ids, val_ids = D.train_val_split(train_all, meta, cfg["val_fraction"], seed=0)
    ids = list(train_ids) + list(val_ids) + list(test_ids)
    samples = {i: D.read_hest_sample(root, i, backbone=cfg["backbone"]) for i in ids}
    genes, hvg = D.select_genes([samples[i] for i in list(train_ids) + list(val_ids)], n_genes=cfg["n_genes"], n_hvg=50,
                                qc=qc)
    membership = P.membership_matrix(P.hallmarks(), genes)
    ds = D.SlideDataset([samples[i] for i in ids], genes, membership=membership.matrix,
                        log_transform=cfg["log_transform"], qc=qc)
    items = {}
    for j in range(len(ds)):
        it = ds[j]
        items[it["sample_id"]] = {k: (torch.as_tensor(v) if isinstance(v, np.ndarray) else v) for k, v in it.items()}
    feature_dim = int(next(iter(items.values()))["features"].shape[1])
    first = samples[ids[0]]
    names = first.truth_names.get("pathway_activity") if first.truth else None
    if log:
        log(f"{root}: {len(train_ids)} train / {len(val_ids)} val / {len(test_ids)} test slides; "
            f"{len(genes)} genes, {len(membership.names)} pathways, features {cfg['backbone']} ({feature_dim}-d)")
    return FoldData(root, meta, list(train_ids), list(val_ids), list(test_ids), samples, genes, hvg, membership,
                    items, feature_dim, names)


def build_model(cfg: dict, feature_dim: int, num_genes: int, membership=None):
    """Build the configured torch model; keyword arguments a builder does not take are dropped."""
    from stflib import models

    named = cfg["pathway_init"] or cfg["pathway_loss_weight"] > 0 or cfg["num_pathways"] == 50
    num_pathways = len(membership.names) if (membership is not None and named) else cfg["num_pathways"]
    params = dict(
        num_pathways=num_pathways, token_dim=cfg["token_dim"], n_heads=cfg["n_heads"], n_layers=cfg["n_layers"],
        interactions=cfg["interactions"], positional_encoding=cfg["positional_encoding"],
        pathway_init=membership.matrix if (cfg["pathway_init"] and membership is not None) else None,
        pathway_names=list(membership.names) if (membership is not None and named) else None,
        output_mode=cfg["output_mode"], zinb=cfg["loss"] == "zinb", dropout=cfg["dropout"],
        n_neighbors=cfg["n_neighbors"],
    )
    builder = models.MODELS[cfg["model"]]
    target = getattr(builder, "__init__", builder) if inspect.isclass(builder) else builder
    sig = inspect.signature(target)
    if not any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values()):
        params = {k: v for k, v in params.items() if k in sig.parameters}
    model = models.build_model(cfg["model"], feature_dim, num_genes, **params)
    model.pathway_names_ = params.get("pathway_names") or (list(membership.names) if named and membership is not None else None)
    return model


class StandardizedOutput(torch.nn.Module):
    """``genes = model(...).genes * gene_sd + gene_mean``: the wrapped model predicts per-gene
    standardised targets; ``gene_mean`` and ``gene_sd`` (G,) are fixed buffers holding the training
    fold's per-gene mean and sd of the targets (log1p CP10k or CP10k).

    A model whose gene head starts at zero therefore starts at the training mean profile (MSE ratio
    1, not the ~2 of a random head), and ``compute_loss`` divides by ``gene_sd`` again, so the loss is
    the MSE on standardised targets: genes with sd 3 and sd 215 CP10k weigh the same, and the PCC and
    auxiliary terms are not drowned by a loss in the hundreds. Not used with ZINB (``mu`` is in counts).
    """

    def __init__(self, model: torch.nn.Module, gene_mean, gene_sd):
        super().__init__()
        self.model = model
        self.register_buffer("gene_mean", torch.as_tensor(np.asarray(gene_mean), dtype=torch.float32))
        sd = torch.as_tensor(np.asarray(gene_sd), dtype=torch.float32)
        if sd.shape != self.gene_mean.shape:
            raise ValueError(f"gene_sd must have the shape of gene_mean {tuple(self.gene_mean.shape)}, got {tuple(sd.shape)}")
        self.register_buffer("gene_sd", sd)
        for name in ("n_neighbors", "pathway_names_", "num_pathways", "pathway_names"):
            if hasattr(model, name):
                setattr(self, name, getattr(model, name))

    def forward(self, features, coords, pad_mask=None, **kwargs):
        out = self.model(features, coords, pad_mask, **kwargs)
        genes = _get(out, "genes") * self.gene_sd + self.gene_mean
        if isinstance(out, dict):
            return {**out, "genes": genes}
        from dataclasses import replace

        return replace(out, genes=genes)


def standardize_features(items: dict, reference: list[dict]) -> None:
    """z-score the features of every item (in place) with the mean and sd of ``reference``'s valid spots."""
    x = torch.cat([it["features"][it["valid"]] for it in reference]).double()
    mean, sd = x.mean(0), x.std(0).clamp_min(1e-6)
    for it in items.values():
        it["features"] = ((it["features"].double() - mean) / sd).float()


def target_statistics(items: list[dict], floor: float = 1e-2) -> tuple[np.ndarray, np.ndarray]:
    """Per-gene mean (G,) and sd (G,) of the targets over the valid spots of ``items``.

    The sd is floored at ``floor`` x the median gene's sd, so a gene (almost) constant on the
    training slides is not blown up into a loss term of its own."""
    t = torch.cat([it["targets"][it["valid"]] for it in items]).double()
    mean = t.mean(0)
    sd = (t - mean).pow(2).mean(0).sqrt()
    sd = sd.clamp_min(max(float(sd.median()) * floor, 1e-6))
    return mean.float().numpy(), sd.float().numpy()


def log_mean_fractions(items: list[dict]) -> np.ndarray:
    """log(sum of a gene's counts / sum of the library sizes) over the valid spots of ``items``: the
    ZINB rate bias that makes ``mu`` start at each gene's mean expression (as scVI initialises it)."""
    counts = torch.cat([it["counts"][it["valid"]] for it in items]).double()
    lib = torch.cat([it["library_size"][it["valid"]] for it in items]).double()
    frac = counts.sum(0) / lib.sum().clamp_min(1.0)
    return frac.clamp_min(0.5 / float(lib.sum().clamp_min(1.0))).log().float().numpy()


def _ridge_path(X: np.ndarray, Y: np.ndarray, alphas) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Ridge coefficients for several penalties from one eigendecomposition of the centred Gram
    matrix X'X (F x F; cheaper than an SVD of X when spots outnumber features): (x_mean, y_mean, [W])."""
    from scipy.linalg import eigh

    xm, ym = X.mean(0), Y.mean(0)
    Xc = X - xm
    evals, V = eigh(Xc.T @ Xc)
    VtXtY = V.T @ (Xc.T @ (Y - ym))
    return xm, ym, [V @ (VtXtY / (np.clip(evals, 0, None) + a)[:, None]) for a in alphas]


def pathway_ceiling(fold: FoldData, cfg: dict, alphas=tuple(10.0 ** np.arange(-1, 6))) -> float:
    """How much of the simulator's true pathway activity the arm's inputs hold: a ridge from the same
    (standardised) features, plus the mean of the k nearest spots' features when the arm uses
    ``n_neighbors``, fit directly to the true activities on the training slides, its penalty chosen on
    the validation slides, scored on the test slides (mean over pathways of the PCC over spots).
    The reference for ``pathway_pcc_truth``; NaN without simulator truth."""
    from stflib.spatial import with_neighbour_mean

    if not fold.truth_pathway_names:
        return float("nan")
    # per-spot baselines with n_neighbors already carry [own, neighbour mean] in their features
    k = 0 if cfg["model"] in C.CONTEXT_FEATURE_MODELS else cfg.get("n_neighbors", 0)

    def stack(ids):
        X, A = [], []
        for i in ids:
            it = fold.items[i]
            if it.get("true_pathways") is None:
                return None, None
            v = it["valid"].cpu().numpy().astype(bool)
            f = it["features"].cpu().numpy().astype(np.float64)
            if k:
                f = with_neighbour_mean(f, it["coords"].cpu().numpy(), k)
            X.append(f[v])
            A.append(it["true_pathways"].cpu().numpy().astype(np.float64)[v])
        return np.concatenate(X), np.concatenate(A)

    (X, A), (Xv, Av), (Xt, At) = stack(fold.train_ids), stack(fold.val_ids), stack(fold.test_ids)
    if X is None or Xv is None or Xt is None:
        return float("nan")
    xm, am, Ws = _ridge_path(X, A, alphas)
    val = [M.nanmean(M.pearson_columns((Xv - xm) @ W + am, Av)) for W in Ws]
    W = Ws[int(np.nanargmax(val))]
    return M.nanmean(M.pearson_columns((Xt - xm) @ W + am, At))


@dataclass
class Run:
    """Everything a run produced (the notebook plots from it)."""

    config: dict
    metrics: dict
    history: list[dict]
    predictions: list[dict]
    fold: FoldData
    model: Any
    per_gene: Any  # pandas DataFrame
    adata: Any = None


def _expected_log(sample, genes: list[str]) -> np.ndarray | None:
    exp = sample.truth.get("expected_counts") if sample.truth else None
    if exp is None:
        return None
    exp = np.asarray(exp, np.float64)
    index = {str(g): i for i, g in enumerate(sample.genes)}
    cols = np.array([index.get(g, -1) for g in genes])
    sub = np.where(cols >= 0, exp[:, np.maximum(cols, 0)], 0.0)
    lib = np.maximum(exp.sum(1, keepdims=True), 1e-9)
    return np.log1p(sub / lib * 1e4)


def run(cfg: dict | None = None, log: Callable[[str], None] | None = print, write: bool = True, **overrides) -> Run:
    """Train and evaluate one arm; write the artefacts into ``output_dir`` when ``write``."""
    import pandas as pd

    import stflib

    cfg = C.validate(cfg, **overrides)
    if os.environ.get("STFLIB_TORCH_THREADS"):  # set by the grid runner: one run per core
        torch.set_num_threads(int(os.environ["STFLIB_TORCH_THREADS"]))
    set_seed(cfg["seed"])
    device = resolve_device(cfg["device"])
    out_dir = Path(cfg["output_dir"])
    t_start = time.perf_counter()
    fold = load_fold(cfg, log)
    train_items = [fold.items[i] for i in fold.train_ids]
    val_items = [fold.items[i] for i in fold.val_ids]
    test_items = [fold.items[i] for i in fold.test_ids]
    context_features = bool(cfg["n_neighbors"]) and cfg["model"] in C.CONTEXT_FEATURE_MODELS
    if context_features:  # per-spot baselines: n_neighbors=k means the input [own, mean of the k nearest spots']
        from stflib.spatial import with_neighbour_mean

        for it in fold.items.values():
            it["features"] = torch.as_tensor(with_neighbour_mean(it["features"].numpy(), it["coords"].numpy(),
                                                                 cfg["n_neighbors"]), dtype=torch.float32)
        fold.feature_dim *= 2
    if cfg["standardize_features"]:
        standardize_features(fold.items, train_items)
    set_seed(cfg["seed"])
    t0 = time.perf_counter()
    fitres = FitResult()
    hvg_columns = np.array([fold.genes.index(g) for g in fold.hvg])
    if cfg["model"] in ("ridge_probe", "mean"):  # same patients as the torch models: fit on train, select on val
        model = fit_sklearn(cfg["model"], train_items, cfg, seed=cfg["seed"], val_items=val_items,
                            score_columns=hvg_columns)
        train_seconds = time.perf_counter() - t0
        preds = predict_sklearn(model, test_items, cfg)
        train_preds = predict_sklearn(model, train_items, cfg)
    else:
        model = build_model(cfg, fold.feature_dim, len(fold.genes), fold.membership)
        if context_features:  # the features already carry the neighbourhood: no spot windows
            model.n_neighbors = cfg["n_neighbors"]
        if cfg["center_targets"] and cfg["loss"] != "zinb":
            model = StandardizedOutput(model, *target_statistics(train_items))
        if cfg["loss"] == "zinb" and hasattr(model, "init_rate_bias"):
            model.init_rate_bias(log_mean_fractions(train_items))
        if log:
            log(f"{cfg['model']}: {count_parameters(model):,} trainable parameters on {device}")
        fitres = fit(model, train_items, val_items, cfg, device, checkpoint_dir=out_dir if write else None, log=log,
                     score_columns=hvg_columns)
        train_seconds = time.perf_counter() - t0
        preds = predict(model, test_items, cfg, device, return_attention=cfg["return_attention"])
        train_preds = predict(model, train_items, cfg, device)
    # ---- evaluation on valid held-out spots
    v = [p["valid"] for p in preds]
    pred = np.concatenate([p["pred"][m] for p, m in zip(preds, v)])
    true = np.concatenate([p["true"][m] for p, m in zip(preds, v)])
    slide_ids = np.concatenate([np.full(m.sum(), p["sample_id"], dtype=object) for p, m in zip(preds, v)])
    scores = truth = None
    names = getattr(model, "pathway_names_", None)
    if fold.truth_pathway_names and all(p["pathway_scores"] is not None for p in preds):
        scores = np.concatenate([p["pathway_scores"][m] for p, m in zip(preds, v)])
        tp = np.concatenate([fold.items[p["sample_id"]]["true_pathways"].cpu().numpy()[m] for p, m in zip(preds, v)])
        tindex = {n: i for i, n in enumerate(fold.truth_pathway_names)}
        if names and len(names) == scores.shape[1] and all(n in tindex for n in names):
            truth = tp[:, [tindex[n] for n in names]]
        else:  # unnamed tokens: only the name-free (best-match) diagnostic
            truth = tp
    expected = None
    exp_parts = [_expected_log(fold.samples[p["sample_id"]], fold.genes) for p in preds]
    if all(e is not None for e in exp_parts):
        expected = np.concatenate([e[m] for e, m in zip(exp_parts, v)])
    metrics, arrays = M.evaluate(pred, true, fold.genes, fold.hvg, slide_ids, scores, truth, expected)
    metrics.update(M.training_fit([p["pred"][p["valid"]] for p in train_preds],
                                  [p["true"][p["valid"]] for p in train_preds], hvg_columns))
    metrics["pathway_ceiling"] = pathway_ceiling(fold, cfg)
    metrics.update({
        "n_params": count_parameters(model),
        "train_seconds": round(train_seconds, 2),
        "total_seconds": round(time.perf_counter() - t_start, 2),
        "epochs_run": round(fitres.history[-1]["passes"], 2) if fitres.history else 0,
        "best_epoch": round(fitres.history[fitres.best_epoch]["passes"], 2) if fitres.history else -1,
        "steps_run": fitres.history[-1]["step"] if fitres.history else 0,
        "best_step": fitres.history[fitres.best_epoch]["step"] if fitres.history else -1,
        "hit_step_cap": bool(fitres.history and not fitres.stopped_early),
        "best_val_pcc": fitres.best_score if fitres.history else float("nan"),
        "loss_terms": fitres.loss_terms,
        "device": str(device),
        "model": cfg["model"],
        "fold": cfg["fold"],
        "train_ids": fold.train_ids, "val_ids": fold.val_ids, "test_ids": fold.test_ids,
        "hvg50": fold.hvg,
        "config": {k: v for k, v in cfg.items()},
        "config_hash": C.config_hash(cfg),
        "stflib_version": stflib.__version__,
        "torch_version": torch.__version__,
    })
    per_gene = pd.DataFrame({"gene": fold.genes, "pcc": arrays["pcc"], "mse": arrays["mse"], "is_hvg": arrays["is_hvg"]})
    if "ceiling" in arrays:
        per_gene["noise_ceiling"] = arrays["ceiling"]
    result = Run(cfg, metrics, fitres.history, preds, fold, model, per_gene)
    result.adata = predictions_anndata(result)
    metrics.update(moran_metrics(result.adata))
    if write:
        write_artefacts(result, out_dir)
        (out_dir / "checkpoint.pt").unlink(missing_ok=True)  # finished: only best.pt is worth keeping
    if log:
        log(f"test: pcc_hvg50 {metrics['pcc_hvg50']:.4f}  pcc_all {metrics['pcc_all']:.4f}  mse {metrics['mse']:.4f}  "
            f"pathway_pcc_truth {metrics['pathway_pcc_truth']:.4f}  ({train_seconds:.1f} s training)")
    return result


def train_and_evaluate(config: dict | None = None, **overrides) -> dict:
    """Train and evaluate one arm; returns the metrics dict (also written to ``output_dir/metrics.json``)."""
    return run(config, **overrides).metrics


def _json_safe(x):
    if isinstance(x, dict):
        return {str(k): _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return None if not np.isfinite(x) else float(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


def write_json(obj, path: Path) -> None:
    """Write JSON atomically (NaN -> null)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(_json_safe(obj), indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)


def write_artefacts(result: Run, out_dir: str | Path) -> None:
    """metrics.json, per_gene.csv, history.csv, predictions.h5ad (prediction_genes: all or hvg50)."""
    import pandas as pd

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    result.per_gene.to_csv(out_dir / "per_gene.csv", index=False, float_format="%.5f")
    pd.DataFrame(result.history).to_csv(out_dir / "history.csv", index=False, float_format="%.6g")
    genes = None if os.environ.get("STFLIB_PREDICTION_GENES", "all") == "all" else result.fold.hvg
    a = result.adata if genes is None else result.adata[:, genes].copy()  # no second pass over the thumbnails
    tmp = out_dir / "predictions.h5ad.tmp"
    a.write_h5ad(tmp, compression="gzip")
    os.replace(tmp, out_dir / "predictions.h5ad")
    write_json(result.metrics, out_dir / "metrics.json")  # last: its presence marks a complete run
