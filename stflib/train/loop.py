"""The training loop of every torch model: schedule, batches, checkpoints, model selection.

``fit`` trains for ``max_steps`` optimiser steps (AdamW, linear warm-up + cosine decay, gradient
clipping, mixed precision on CUDA), evaluates on validation slides every ``eval_every`` steps, keeps
the weights with the best median-smoothed validation PCC, stops after ``patience`` evaluations
without improvement and resumes an interrupted run from its checkpoint.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from stflib import config as C
from stflib import metrics as M
from stflib.config import RunConfig
from stflib.data import collate_slides
from stflib.device import autocast_dtype
from stflib.io import atomic_write
from stflib.kernel import progress_stream
from stflib.models import MODELS
from stflib.train.predict import predict
from stflib.train.step import compute_loss, forward, to_device
from stflib.train.windows import WINDOW_BATCH, make_windows, pool_windows


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


def validation_score(model, items: list[dict], cfg: RunConfig, device: torch.device,
                     score_columns: np.ndarray | None = None) -> tuple[float, float]:
    """(mean per-gene PCC over the validation spots on log1p CP10k, validation loss).

    ``score_columns``: the genes the PCC is averaged over (the training fold's HVGs, so model
    selection tracks the reported metric; None: all genes). With ``target="pathways"`` the PCC is the
    mean per-pathway PCC of the pathway scores with the pathway targets (``score_columns`` unused).
    """
    preds, trues, losses = [], [], []
    # target "pathways": the model predicts the pathway targets, so they are what selection tracks
    pathways = getattr(cfg, "target", "genes") == "pathways"
    for p in predict(model, items, cfg, device):
        preds.append((p["pathway_scores"] if pathways else p["pred"])[p["valid"]])
        trues.append((p["pathway_targets"] if pathways else p["true"])[p["valid"]])
        losses.append(p["loss"])
    if not preds:
        return float("nan"), float("nan")
    pred, true = np.concatenate(preds), np.concatenate(trues)
    if score_columns is not None and not pathways:
        pred, true = pred[:, score_columns], true[:, score_columns]
    r = M.pearson_columns(pred, true)
    return M.nanmean(r), float(np.nanmean(losses))


def pass_order(n: int, seed: int, pass_index: int) -> torch.Tensor:
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


def save_checkpoint(obj: dict, path: Path) -> None:
    """``torch.save`` atomically (an interrupted save leaves the previous checkpoint intact)."""
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def fit(
    model: torch.nn.Module,
    train_items: list[dict],
    val_items: list[dict],
    cfg: RunConfig,
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

    device = torch.device(device)
    progress = cfg.progress if progress is None else progress
    k = MODELS[cfg.model].window_k(cfg.n_neighbors)
    model.to(device)
    n_train = len(train_items)
    if n_train == 0:
        raise ValueError("fit: no training slides")
    if k:
        pooled = pool_windows([make_windows(it, k) for it in train_items])
        n_units = pooled["features"].shape[0]
        per_step = max(1, WINDOW_BATCH * cfg.batch_size // 2)
    else:
        n_units, per_step = n_train, cfg.batch_size
    steps_per_pass = math.ceil(n_units / per_step)
    total = cfg.max_steps if cfg.epochs is None else min(cfg.max_steps, cfg.epochs * steps_per_pass)
    warmup = min(cfg.warmup_steps, total // 2)
    gene_sd = getattr(model, "gene_sd", None)

    def batch_at(step: int) -> dict:
        order = pass_order(n_units, cfg.seed, step // steps_per_pass)
        j = step % steps_per_pass
        sel = order[j * per_step:(j + 1) * per_step]
        if k:
            return {key: v[sel] for key, v in pooled.items()}
        items = [train_items[i] for i in sel.tolist()]
        if cfg.crop_spots:
            g = torch.Generator().manual_seed(cfg.seed * 7_919 + step)
            items = [crop_item(it, cfg.crop_spots, g) for it in items]
        return collate_slides(items)

    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_lambda(s, warmup, total))
    scaler = torch.amp.GradScaler("cuda") if autocast_dtype(device) == torch.float16 else None
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
    # in a kernel started by plain papermill the bar also reaches the terminal (stflib.kernel.progress_stream)
    bar = tqdm(total=total, desc="steps", disable=not progress, leave=False, initial=start_step,
               file=progress_stream() if progress else None)
    bad_evals = len(res.history) - 1 - res.best_epoch if res.history else 0
    losses, parts_sum = [], {}
    step = start_step

    def terms() -> dict[str, float]:
        """Each loss term on the first training batch (same batch at the start and the end)."""
        was_training = model.training
        model.eval()
        with torch.no_grad():
            _, parts = compute_loss(forward(model, to_device(batch_at(0), device), window=bool(k)), cfg, gene_sd)
        model.train(was_training)
        return parts

    if start_step == 0:
        res.loss_terms["start"] = terms()
    model.train()
    while step < total:
        batch = to_device(batch_at(step), device)
        out = forward(model, batch, window=bool(k))
        loss, parts = compute_loss(out, cfg, gene_sd)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite training loss at step {step}: {parts}")
        opt.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
        else:
            loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
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
        if step % cfg.eval_every and step < total:
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
                save_checkpoint({"model": best_state, "step": step, "val_pcc": score, "config": cfg.as_dict()}, best_path)
        else:
            bad_evals += 1
        bar.set_postfix(loss=f"{row['train_loss']:.4f}", val_pcc=f"{score:.3f}", best=res.history[res.best_epoch]["step"])
        stop = bad_evals >= cfg.patience > 0
        out_of_time = cfg.time_limit_s > 0 and row["seconds"] > cfg.time_limit_s
        if ckpt_path is not None:
            save_checkpoint({
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
