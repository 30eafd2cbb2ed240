"""One ablation arm from parameters to artefacts: ``run(cfg)`` is the whole run behind
``notebooks/ablation.ipynb``.

1. validate the parameters once (``stflib.config``); load the fold (``stflib.train.fold``) and
   prepare the arm's inputs;
2. torch models: build from the registry, predict per-gene standardised targets
   (``StandardizedOutput``), train with ``stflib.train.loop.fit``; numpy baselines: fit in closed
   form (the ridge probe's penalty chosen on the same validation patients);
3. predict the held-out and the training slides, evaluate (``stflib.train.evaluate``), and write
   ``metrics.json``, ``per_gene.csv``, ``history.csv`` and ``predictions.h5ad`` into ``output_dir``.

``metrics.json`` records the run's peak memory (:func:`peak_memory_mb`): ``peak_memory_mb`` with
``peak_memory_kind`` ``cuda`` (the most GPU memory torch's allocator held for tensors during training and
prediction) or ``cpu_rss`` (the process's peak resident set), and ``peak_memory_before_train_mb``, the
same figure once the fold is loaded, so what training and prediction added can be told apart.
"""
from __future__ import annotations

import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from stflib import config as C
from stflib.config import RunConfig
from stflib.device import keep_freed_memory, resolve_device
from stflib.losses import LOSSES
from stflib.models import MODELS
from stflib.predictions import moran_metrics, predictions_anndata
from stflib.train.artefacts import write_artefacts
from stflib.train.evaluate import evaluate_predictions
from stflib.train.fold import FoldData, load_fold, log_mean_fractions, prepare_features, target_statistics
from stflib.train.loop import FitResult, fit
from stflib.train.model import StandardizedOutput, build_torch_model, count_parameters, fit_numpy
from stflib.train.predict import predict, predict_numpy
from stflib.train.targets import prepare_targets


@dataclass
class Run:
    """Everything a run produced (the notebook plots from it)."""

    config: RunConfig
    metrics: dict
    history: list[dict]
    predictions: list[dict]
    fold: FoldData
    model: Any
    per_gene: Any  # pandas DataFrame
    adata: Any = None


def set_seed(seed: int) -> None:
    """Seed python, numpy and torch; deterministic kernels where torch has them."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    deterministic_kernels()
    if torch.backends.cudnn.is_available():
        torch.backends.cudnn.benchmark = False


def deterministic_kernels() -> None:
    """Deterministic kernels where torch has them (warn where it has none).

    ``torch.use_deterministic_algorithms`` also sets the flag of torch's compiler, importing
    ``torch._inductor`` and ``torch._dynamo`` (1.5-3 s, once per run process). Nothing in a run compiles,
    so only the kernels' flag is set unless the compiler is already loaded (then both are, as torch does).
    """
    if "torch._inductor.config" in sys.modules:
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        torch._C._set_deterministic_algorithms(True, warn_only=True)


def peak_memory_mb(device: torch.device) -> tuple[float, str]:
    """(peak memory in MiB, its kind) of this process on ``device``.

    ``cuda``: ``torch.cuda.max_memory_allocated``, the peak of the tensors torch allocated on the GPU
    since the last ``torch.cuda.reset_peak_memory_stats`` (``run`` resets it before training; the
    allocator's cache and the CUDA context are not counted). Otherwise ``cpu_rss``: ``ru_maxrss``, the
    largest resident set of the whole process since it started: the interpreter, the libraries, the
    loaded fold and every tensor, torch's included (``tracemalloc`` would miss torch's allocations). It
    never decreases, so it is the run's own peak when the run has its process to itself
    (``python -m stflib run``, a papermill kernel, the grid runner's workers); NaN where the platform
    has no ``resource`` module.
    """
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda"
    try:
        import resource
    except ImportError:  # Windows
        return float("nan"), "cpu_rss"
    import sys

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (2**20 if sys.platform == "darwin" else 2**10), "cpu_rss"  # bytes on macOS, KiB on Linux


def run(cfg: RunConfig | dict | None = None, log: Callable[[str], None] | None = print, write: bool = True,
        **overrides) -> Run:
    """Train and evaluate one arm (a ``RunConfig``, or parameters to build one from, with ``overrides``);
    write the artefacts into ``output_dir`` when ``write``."""
    import pandas as pd

    import stflib

    cfg = RunConfig.from_params(cfg, **overrides)
    C.check_data_dir(cfg.data_dir)
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    set_seed(cfg.seed)
    device = resolve_device(cfg.device)
    if device.type == "cpu":  # large slides re-allocate the same activations every step (stflib.device)
        keep_freed_memory()
    out_dir = Path(cfg.output_dir)
    t_start = time.perf_counter()
    fold = load_fold(cfg, log)
    prepare_features(fold, cfg)
    prepare_targets(fold, cfg)  # pathway subset, depth correction, the pathway target's scale
    load_seconds = time.perf_counter() - t_start
    train_items, val_items, test_items = fold.slides("train"), fold.slides("val"), fold.slides("test")
    set_seed(cfg.seed)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    memory_before, _ = peak_memory_mb(device)
    t0 = time.perf_counter()
    fitres = FitResult()
    if MODELS[cfg.model].kind == "numpy":  # same patients as the torch models: fit on train, select on val
        model = fit_numpy(train_items, cfg, val_items=val_items, score_columns=fold.hvg_columns)
        train_seconds = time.perf_counter() - t0
        t_eval = time.perf_counter()
        preds = predict_numpy(model, test_items, cfg)
        train_preds = predict_numpy(model, train_items, cfg)
        pathway_names = None
    else:
        model = build_torch_model(cfg, fold.feature_dim, len(fold.genes), fold.membership)
        pathway_names = model.config.pathway_names
        counts = LOSSES[cfg.loss].needs_counts  # the model's output is a count rate, not a target
        if cfg.center_targets and not counts:
            model = StandardizedOutput(model, *target_statistics(train_items))
        if counts and hasattr(model, "init_rate_bias"):
            model.init_rate_bias(log_mean_fractions(train_items))
        if log:
            log(f"{cfg.model}: {count_parameters(model):,} trainable parameters on {device}")
        fitres = fit(model, train_items, val_items, cfg, device, checkpoint_dir=out_dir if write else None, log=log,
                     score_columns=fold.hvg_columns)
        train_seconds = time.perf_counter() - t0
        t_eval = time.perf_counter()
        preds = predict(model, test_items, cfg, device, return_attention=cfg.return_attention)
        train_preds = predict(model, train_items, cfg, device)
    memory_peak, memory_kind = peak_memory_mb(device)  # training and prediction, before evaluation
    metrics, arrays = evaluate_predictions(fold, cfg, preds, train_preds, pathway_names)
    eval_seconds = time.perf_counter() - t_eval
    h = fitres.history
    metrics.update({
        "n_params": count_parameters(model),
        "train_seconds": round(train_seconds, 2),
        # what else the run's wall time went to: reading and preparing the fold; predicting and scoring
        "load_seconds": round(load_seconds, 2),
        "peak_memory_mb": round(memory_peak, 1),
        "peak_memory_kind": memory_kind,
        "peak_memory_before_train_mb": round(memory_before, 1),
        "total_seconds": round(time.perf_counter() - t_start, 2),
        "epochs_run": round(h[-1]["passes"], 2) if h else 0,
        "best_epoch": round(h[fitres.best_epoch]["passes"], 2) if h else -1,
        "steps_run": h[-1]["step"] if h else 0,
        "best_step": h[fitres.best_epoch]["step"] if h else -1,
        "hit_step_cap": bool(h and not fitres.stopped_early),
        "best_val_pcc": fitres.best_score if h else float("nan"),
        "loss_terms": fitres.loss_terms,
        "device": str(device),
        "model": cfg.model,
        "fold": cfg.fold,
        "train_ids": fold.train_ids, "val_ids": fold.val_ids, "test_ids": fold.test_ids,
        "hvg50": fold.hvg,
        "config": cfg.as_dict(),
        "config_hash": C.config_hash(cfg),
        "stflib_version": stflib.__version__,
        "torch_version": torch.__version__,
    })
    per_gene = pd.DataFrame({"gene": fold.genes, "pcc": arrays["pcc"], "mse": arrays["mse"], "is_hvg": arrays["is_hvg"]})
    if "ceiling" in arrays:
        per_gene["noise_ceiling"] = arrays["ceiling"]
    result = Run(cfg, metrics, fitres.history, preds, fold, model, per_gene)
    result.adata = predictions_anndata(result)
    t_moran = time.perf_counter()
    metrics.update(moran_metrics(result.adata))
    metrics["eval_seconds"] = round(eval_seconds + time.perf_counter() - t_moran, 2)
    if write:
        write_artefacts(result, out_dir)
        (out_dir / "checkpoint.pt").unlink(missing_ok=True)  # finished: only best.pt is worth keeping
    if log:
        log(f"test: pcc_hvg50 {metrics['pcc_hvg50']:.4f}  pcc_all {metrics['pcc_all']:.4f}  mse {metrics['mse']:.4f}  "
            f"pathway_pcc_truth {metrics['pathway_pcc_truth']:.4f}  ({train_seconds:.1f} s training)")
    return result
