"""Is a flat map a collapse? The spread of a run's held-out predictions against what its accuracy allows.

``collapse_ratio`` (predicted / measured within-slide variance of the 50 HVGs) mixes two things: how
much of the measured pattern a model can predict, and whether it predicts that much at full scale.
A prediction that is *calibrated* (the truth's least-squares slope on it is 1, as for the
conditional mean that MSE estimates) of a gene it predicts with within-slide correlation rho has
variance rho^2 times the measured one. So a calibrated model's collapse ratio is the share of the
measured variance it explains, and it can show more spread than that only by overshooting. Per
held-out slide, on the HVGs of the run's ``predictions.h5ad``:

- ``collapse_ratio``: sum_g Var(pred_g) / sum_g Var(true_g), as the run's metric;
- ``explained_share``: sum_g max(rho_g, 0)^2 Var(true_g) / sum_g Var(true_g), the collapse ratio a
  calibrated prediction with the run's correlations would have;
- ``calibration_slope``: sum_g Cov(pred_g, true_g) / sum_g Var(pred_g), the truth's slope on the
  prediction pooled over genes: 1 calibrated, above 1 flatter than its accuracy warrants (a
  collapse), below 1 more spread than its accuracy warrants (an overshoot).

Each figure is the mean over the run's held-out slides.

The runs' ``predictions.h5ad`` are not committed, so ``python -m stflib spread AXIS ...`` writes
``results/ceilings/spread_<axis>.csv`` (one row per run) and the book reads that file.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from stflib.metrics import nanmean  # nan, without a warning, when every slide's figure is nan
from stflib.report.results import per_arm_means, results_root, run_predictions, write_results_csv

__all__ = ["SPREAD_COLUMNS", "CALIBRATED_WITHIN", "spread", "run_spread", "spread_path",
           "write_spread", "spread_table", "describe"]

SPREAD_COLUMNS = ("collapse_ratio", "explained_share", "calibration_slope")
# a slope within this of 1 is read as calibrated: one arm's runs differ by about this much between
# held-out folds, so a smaller departure is not a property of the arm
CALIBRATED_WITHIN = 0.15


def spread(pred: np.ndarray, truth: np.ndarray, slide_ids: np.ndarray) -> dict[str, float]:
    """:data:`SPREAD_COLUMNS` of predictions ``pred`` (spots, genes) against ``truth`` (same
    shape), within each slide of ``slide_ids`` (spots,), then the mean over slides with at least two
    spots and some measured variance."""
    pred, truth, slide_ids = np.asarray(pred, np.float64), np.asarray(truth, np.float64), np.asarray(slide_ids)
    if pred.shape != truth.shape or pred.ndim != 2 or len(slide_ids) != len(pred):
        raise ValueError(f"spread: pred {pred.shape} and truth {truth.shape} must be the same (spots, genes) "
                         f"with one slide id per spot (got {len(slide_ids)})")
    per_slide = []
    for s in np.unique(slide_ids):
        m = slide_ids == s
        if m.sum() < 2:
            continue
        p, t = pred[m] - pred[m].mean(0), truth[m] - truth[m].mean(0)  # (S, G) centred within the slide
        var_p, var_t, cov = (p * p).mean(0), (t * t).mean(0), (p * t).mean(0)  # (G,)
        if var_t.sum() <= 1e-12:
            continue
        rho = np.divide(cov, np.sqrt(var_p * var_t), out=np.zeros_like(cov), where=var_p * var_t > 0)
        per_slide.append({
            "collapse_ratio": var_p.sum() / var_t.sum(),
            "explained_share": (np.clip(rho, 0.0, None) ** 2 * var_t).sum() / var_t.sum(),
            # a constant prediction has no slope: nan, not infinity
            "calibration_slope": cov.sum() / var_p.sum() if var_p.sum() > 1e-12 else np.nan,
        })
    if not per_slide:
        raise ValueError("spread: no slide with two or more spots and within-slide variance in the truth")
    return {c: float(nanmean([r[c] for r in per_slide])) for c in SPREAD_COLUMNS}


def run_spread(predictions: str | Path) -> dict[str, float]:
    """:func:`spread` of one run's held-out predictions (``predictions.h5ad``: ``X`` the predicted
    log1p CP10k of the HVGs, ``layers['truth']`` the measured, valid spots only)."""
    import anndata as ad

    a = ad.read_h5ad(predictions)
    valid = np.asarray(a.obs["valid"], bool)
    pred = np.asarray(a.X, np.float64)[valid]
    truth = np.asarray(a.layers["truth"], np.float64)[valid]
    return spread(pred, truth, np.asarray(a.obs["sample_id"])[valid])


def spread_path(axis: str, results_dir: str | Path | None = None) -> Path:
    """``results/ceilings/spread_<axis>.csv``."""
    return results_root(results_dir) / "ceilings" / f"spread_{axis}.csv"


def write_spread(axis: str, results_dir: str | Path | None = None) -> Path:
    """:func:`run_spread` of every run of ``axis`` with its ``predictions.h5ad`` here, one row
    per run, to :func:`spread_path`."""
    rows = [{"arm": arm, "run": run, **run_spread(path)} for arm, run, path in run_predictions(axis, results_dir)]
    return write_results_csv(pd.DataFrame(rows), spread_path(axis, results_dir))


def spread_table(axis: str, results_dir: str | Path | None = None, arms: list[str] | None = None) -> pd.DataFrame:
    """Per arm of ``axis`` (or of ``arms``, in that order): the committed per-run figures
    (:func:`write_spread`) averaged over the arm's runs, with their number."""
    path = spread_path(axis, results_dir)
    table = per_arm_means(path, SPREAD_COLUMNS, f"python -m stflib spread {axis}")
    if arms is not None:
        absent = [a for a in arms if a not in table.index]
        if absent:
            raise ValueError(f"{path} has no runs of {', '.join(absent)}; arms there: {', '.join(table.index)}")
        table = table.loc[arms]
    return table


def describe(table: pd.DataFrame, arm: str, label: str) -> str:
    """One sentence on ``arm`` of a :func:`spread_table`: its spread against what its accuracy allows."""
    r = table.loc[arm]
    slope = r["calibration_slope"]
    verdict = ("flat: no within-slide spread to calibrate" if np.isnan(slope) else
               "calibrated" if abs(slope - 1.0) <= CALIBRATED_WITHIN else
               "flatter than its accuracy warrants (a collapse)" if slope > 1.0 else
               "more spread than its accuracy warrants (an overshoot)")
    return (f"{label} shows {r['collapse_ratio']:.3f} of the measured within-slide variance and explains "
            f"{r['explained_share']:.3f} of it; the truth's slope on its predictions is {slope:.2f}, so it is "
            f"{verdict} (mean over {int(r['runs'])} runs).")


# --------------------------------------------------------------------------------------------- command
def add_arguments(p: argparse.ArgumentParser) -> None:
    from stflib.grid.axes import ARMS

    p.add_argument("axes", nargs="+", metavar="AXIS", choices=list(ARMS),
                   help=f"grid axes whose runs' predictions.h5ad are here (allowed: {', '.join(ARMS)})")
    p.add_argument("--results", default=None, help="results folder (default: the repository's results/)")


def run(args: argparse.Namespace) -> int:
    for axis in args.axes:
        path = write_spread(axis, args.results)
        print(spread_table(axis, args.results).round(4).to_string())
        print(f"wrote {path}")
    return 0
