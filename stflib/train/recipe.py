"""The training recipe's evidence: the reference search and the must-show measurements.

``python -m stflib recipe check --folds 3 --out results/recipe --jobs 2`` trains the arms the
training-recipe issue asks about (reference STF, MLP, ridge probe, mean, the seed's defaults, mse vs
mse_pcc, Hallmark init with aux 0 and 0.5, log_transform off, ZINB) on every patient fold of the
default simulated cohort, writes one row per (arm, fold) to ``OUT/check_runs.csv`` and the
fold-paired comparisons with their 95 % t intervals (scipy.stats) to ``OUT/check.csv``, and prints
them. Finished runs are cached in ``OUT/runs/`` so a re-run only trains what is missing (delete the
folder after the simulator changes).

``python -m stflib recipe search --out results/recipe`` scores a small grid of training settings
on the *validation* patients of every fold (never the test patients) and writes
``OUT/search.csv``; the defaults in ``stflib.config.PARAMETERS`` are its best row.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from stflib import config as C
from stflib.io import write_json

# arm -> parameter overrides of the reference configuration (the defaults)
CHECK_ARMS: dict[str, dict[str, Any]] = {
    "reference": {},
    "mlp": {"model": "mlp"},
    "ridge_probe": {"model": "ridge_probe"},
    # context-matched simple models: [own features, mean of the k nearest spots' features]; k = 18 is
    # the reference's own neighbourhood (the per-spot models above default to n_neighbors 0)
    "ridge_probe_k6": {"model": "ridge_probe", "n_neighbors": 6},
    "mlp_k6": {"model": "mlp", "n_neighbors": 6},
    "ridge_probe_k18": {"model": "ridge_probe", "n_neighbors": 18},
    "mlp_k18": {"model": "mlp", "n_neighbors": 18},
    "mean": {"model": "mean"},
    "seed_defaults": "seed",  # filled from config.seed_flag_overrides() at run time
    "mse": {"loss": "mse"},
    "mse_pcc": {"loss": "mse_pcc", "pcc_weight": 1.0},
    "init-on_aux-0": {"pathway_init": True, "pathway_loss_weight": 0.0},
    "init-on_aux-0.5": {"pathway_init": True, "pathway_loss_weight": 0.5},
    "log_transform-off": {"log_transform": False},
    "log_transform-on": {"log_transform": True},
    "zinb": {"loss": "zinb", "log_transform": False},
}

RUN_COLUMNS = ["arm", "fold", "pcc_hvg50", "pcc_all", "mse", "collapse_ratio", "train_pcc_hvg50", "train_mse_ratio",
               "pathway_pcc_truth", "pathway_ceiling", "best_val_pcc", "best_step", "steps_run", "train_seconds",
               "config_hash"]


def arm_overrides(arm: str) -> dict[str, Any]:
    """Parameter overrides of one check arm (the seed's defaults are read from ``stflib.config``)."""
    if arm not in CHECK_ARMS:
        raise ValueError(f"recipe arm: unknown {arm!r}; allowed: {', '.join(CHECK_ARMS)}")
    over = CHECK_ARMS[arm]
    return dict(C.seed_flag_overrides()) if over == "seed" else dict(over)


def _run_one(job: tuple[str, dict, int, str]) -> dict:
    """Train and evaluate one (name, overrides, fold) in this process (one torch thread); cache its row."""
    import torch

    from stflib.train.run import run as run_arm

    name, over, fold, cache = job
    torch.set_num_threads(1)
    path = Path(cache) / f"{name}_fold{fold}.json"
    cfg = C.validate({**over, "fold": fold, "progress": False})
    if path.is_file():
        row = json.loads(path.read_text())
        if row.get("config_hash") == C.config_hash(cfg):
            return row
    t0 = time.perf_counter()
    m = run_arm(cfg, log=None, write=False).metrics
    row = {"arm": name, "fold": fold, **{k: m.get(k) for k in RUN_COLUMNS if k not in ("arm", "fold")}}
    row["run_seconds"] = round(time.perf_counter() - t0, 1)
    row["overrides"] = json.dumps(over, sort_keys=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(row, path)
    return row


def run_jobs(jobs: list[tuple[str, dict, int, str]], n_jobs: int, log=print) -> list[dict]:
    """Run (name, overrides, fold, cache) jobs in ``n_jobs`` processes of one thread each."""
    rows = []
    if n_jobs <= 1:
        for j in jobs:
            rows.append(_run_one(j))
            if log:
                log(f"{j[0]} fold {j[2]}: pcc_hvg50 {rows[-1]['pcc_hvg50']:.4f}")
        return rows
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with ProcessPoolExecutor(max_workers=n_jobs) as pool:
        for j, row in zip(jobs, pool.map(_run_one, jobs)):
            rows.append(row)
            if log:
                log(f"{j[0]} fold {j[2]}: pcc_hvg50 {row['pcc_hvg50']:.4f} ({row.get('run_seconds', 0)} s)")
    return rows


# ---------------------------------------------------------------------------------- comparisons
def paired(df, metric: str, arm: str, reference: str) -> dict[str, float]:
    """Fold-paired difference ``arm - reference`` of ``metric``: mean, 95 % t interval, worst fold."""
    from scipy import stats

    a = df[df["arm"] == arm].set_index("fold")[metric].astype(float)
    b = df[df["arm"] == reference].set_index("fold")[metric].astype(float)
    folds = sorted(set(a.index) & set(b.index))
    d = np.array([a[f] - b[f] for f in folds])
    out = {"n_pairs": len(d), "mean": float(d.mean()) if len(d) else float("nan"),
           "ci_low": float("nan"), "ci_high": float("nan"), "min": float(d.min()) if len(d) else float("nan")}
    if len(d) >= 2 and np.ptp(d) > 0:
        ci = stats.ttest_1samp(d, 0.0).confidence_interval(0.95)
        out["ci_low"], out["ci_high"] = float(ci.low), float(ci.high)
    return out


def check_table(df):
    """The must-show table: one row per claim, with its figures and whether it holds."""
    import pandas as pd

    def mean(arm, metric):
        return float(df[df["arm"] == arm][metric].astype(float).mean())

    def sd(arm, metric):
        return float(df[df["arm"] == arm][metric].astype(float).std(ddof=1))

    rows = []

    def add(claim, figure, p=None, holds=None):
        r = {"claim": claim, "figure": figure}
        if p is not None:
            r.update({"paired_mean": p["mean"], "ci_low": p["ci_low"], "ci_high": p["ci_high"], "worst_fold": p["min"],
                      "n_pairs": p["n_pairs"]})
        r["holds"] = holds
        rows.append(r)

    p = paired(df, "train_pcc_hvg50", "reference", "mlp")
    add("reference train_pcc_hvg50 >= MLP's (same loop)",
        f"reference {mean('reference', 'train_pcc_hvg50'):.3f} vs MLP {mean('mlp', 'train_pcc_hvg50'):.3f}",
        p, p["mean"] >= 0)
    add("reference train_mse_ratio < 1 (fits better than the training mean)",
        f"reference {mean('reference', 'train_mse_ratio'):.3f}, MLP {mean('mlp', 'train_mse_ratio'):.3f}", None,
        mean("reference", "train_mse_ratio") < 1)
    cr = df[df["arm"] == "reference"]["collapse_ratio"].astype(float)
    add("reference collapse_ratio >= 0.5", f"mean {cr.mean():.3f}, min over folds {cr.min():.3f}", None,
        bool(cr.mean() >= 0.5))
    p = paired(df, "pcc_hvg50", "reference", "ridge_probe")
    add("reference pcc_hvg50 >= ridge probe + 0.03 on average and >= the probe in every fold",
        f"reference {mean('reference', 'pcc_hvg50'):.3f} vs ridge {mean('ridge_probe', 'pcc_hvg50'):.3f}", p,
        p["mean"] >= 0.03 and p["min"] >= 0)
    if (df["arm"] == "ridge_probe_k18").any():  # the same bar against the probe with the reference's neighbourhood
        p = paired(df, "pcc_hvg50", "reference", "ridge_probe_k18")
        add("reference pcc_hvg50 >= ridge probe on [own, 18-NN mean] (its own neighbourhood) + 0.03, every fold",
            f"reference {mean('reference', 'pcc_hvg50'):.3f} vs {mean('ridge_probe_k18', 'pcc_hvg50'):.3f}", p,
            p["mean"] >= 0.03 and p["min"] >= 0)
    for simple, label in (("mlp", "MLP"), ("ridge_probe_k6", "ridge probe on [own, 6-NN mean]"),
                          ("mlp_k6", "MLP on [own, 6-NN mean]"), ("mlp_k18", "MLP on [own, 18-NN mean]")):
        if (df["arm"] == simple).any():  # held-out comparison with the other simple models (no threshold)
            p = paired(df, "pcc_hvg50", "reference", simple)
            add(f"reference pcc_hvg50 vs {label}",
                f"reference {mean('reference', 'pcc_hvg50'):.3f} vs {mean(simple, 'pcc_hvg50'):.3f}", p, None)
    p = paired(df, "pcc_hvg50", "mse_pcc", "mse")
    add("mse_pcc (pcc_weight 1) differs measurably from mse (pcc_hvg50)",
        f"mse_pcc {mean('mse_pcc', 'pcc_hvg50'):.3f} vs mse {mean('mse', 'pcc_hvg50'):.3f}", p,
        bool(p["ci_low"] > 0 or p["ci_high"] < 0))
    p = paired(df, "collapse_ratio", "mse_pcc", "mse")
    add("mse_pcc vs mse (collapse_ratio)",
        f"mse_pcc {mean('mse_pcc', 'collapse_ratio'):.3f} vs mse {mean('mse', 'collapse_ratio'):.3f}", p,
        bool(p["ci_low"] > 0 or p["ci_high"] < 0))
    ratio = (df[df["arm"] == "init-on_aux-0.5"]["pathway_pcc_truth"].astype(float).to_numpy()
             / df[df["arm"] == "init-on_aux-0.5"]["pathway_ceiling"].astype(float).to_numpy())
    add("Hallmark init + aux 0.5 reaches >= 70 % of the pathway ceiling",
        f"pathway_pcc_truth {mean('init-on_aux-0.5', 'pathway_pcc_truth'):.3f} / ceiling "
        f"{mean('init-on_aux-0.5', 'pathway_ceiling'):.3f} = {np.nanmean(ratio):.2f}", None,
        bool(np.nanmean(ratio) >= 0.7))
    p = paired(df, "pathway_pcc_truth", "init-on_aux-0.5", "init-on_aux-0")
    add("aux 0.5 vs aux 0 (Hallmark init) raises pathway_pcc_truth by >= 0.05",
        f"aux 0.5 {mean('init-on_aux-0.5', 'pathway_pcc_truth'):.3f} vs aux 0 "
        f"{mean('init-on_aux-0', 'pathway_pcc_truth'):.3f}", p, p["mean"] >= 0.05)
    s_on, s_off = sd("log_transform-on", "pcc_hvg50"), sd("log_transform-off", "pcc_hvg50")
    add("log_transform on and off both train stably (sd of pcc_hvg50 over folds <= 0.05)",
        f"on {mean('log_transform-on', 'pcc_hvg50'):.3f} (sd {s_on:.3f}), off "
        f"{mean('log_transform-off', 'pcc_hvg50'):.3f} (sd {s_off:.3f})", paired(df, "pcc_hvg50", "log_transform-off",
                                                                                 "log_transform-on"),
        bool(s_on <= 0.05 and s_off <= 0.05))
    p = paired(df, "pcc_hvg50", "zinb", "mse")
    add("ZINB within 0.03 of the MSE arm's pcc_hvg50",
        f"zinb {mean('zinb', 'pcc_hvg50'):.3f} vs mse {mean('mse', 'pcc_hvg50'):.3f}", p, abs(p["mean"]) <= 0.03)
    p = paired(df, "pcc_hvg50", "reference", "seed_defaults")
    add("reference vs the seed's command-line defaults (same loop)",
        f"reference {mean('reference', 'pcc_hvg50'):.3f} vs seed defaults {mean('seed_defaults', 'pcc_hvg50'):.3f}",
        p, None)
    return pd.DataFrame(rows)


def arm_means(df):
    """Mean and sd over folds of every metric, per arm."""
    metrics = [c for c in RUN_COLUMNS if c not in ("arm", "fold", "config_hash")]
    g = df.groupby("arm", sort=False)[metrics].agg(["mean", "std"])
    g.columns = [f"{a}_{b}" for a, b in g.columns]
    return g.reset_index()


def run_check(folds: int = 3, out: str | Path = "results/recipe", jobs: int = 2, arms: list[str] | None = None,
              log=print):
    import pandas as pd

    out = Path(out)
    arms = arms or list(CHECK_ARMS)
    # arms whose configuration equals another's (e.g. `mse` when the reference loss is mse) run once
    first: dict[str, str] = {}
    for a in arms:
        first.setdefault(C.config_hash(C.validate(arm_overrides(a))), a)
    unique = list(dict.fromkeys(first.values()))
    todo = [(a, arm_overrides(a), f, str(out / "runs")) for a in unique for f in range(folds)]
    # the slow arms first, so the pool stays busy
    todo.sort(key=lambda j: j[1].get("model") in ("ridge_probe", "mean", "mlp"))
    t0 = time.perf_counter()
    done = {(r["arm"], r["fold"]): r for r in run_jobs(todo, jobs, log)}
    rows = [{**done[(first[C.config_hash(C.validate(arm_overrides(a)))], f)], "arm": a}
            for a in arms for f in range(folds)]
    df = pd.DataFrame(rows)[RUN_COLUMNS + ["run_seconds"]].sort_values(["arm", "fold"]).reset_index(drop=True)
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "check_runs.csv", index=False, float_format="%.5f")
    arm_means(df).to_csv(out / "check_arms.csv", index=False, float_format="%.5f")
    table = check_table(df)
    table.to_csv(out / "check.csv", index=False, float_format="%.4f")
    if log:
        with pd.option_context("display.width", 250, "display.max_colwidth", 90, "display.max_columns", 20):
            log(arm_means(df)[["arm", "pcc_hvg50_mean", "pcc_hvg50_std", "train_pcc_hvg50_mean",
                               "train_mse_ratio_mean", "collapse_ratio_mean", "pathway_pcc_truth_mean",
                               "pathway_ceiling_mean", "train_seconds_mean"]].round(3).to_string(index=False))
            log(table.round(3).to_string(index=False))
            log(f"wall time {time.perf_counter() - t0:.0f} s")
    return df, table


# ------------------------------------------------------------------------------------- search
# a small grid around the search's starting point (h2h restricted to the 18 nearest spots, width 256),
# one axis at a time: the neighbourhood (the whole slide, 6 spots), the width and the learning rate.
# SEARCH_BASE pins what the starting point was, so the search re-runs the same configurations after
# its outcome became the default (width 128: the same validation PCC as 256 in half the training time)
SEARCH_BASE: dict[str, Any] = {"token_dim": 256}
SEARCH: list[dict[str, Any]] = [
    {}, {"n_neighbors": 0}, {"n_neighbors": 6},
    {"token_dim": 128},
    {"lr": 3e-4},
    # the seed's plain softmax for h2p: 50 pathway keys beside 19 patch keys take 72 % of a patch's
    # attention at the start (the default offsets them by -log P)
    {"balance_h2p": False},
    # the seed's read-out: patches scored against the encoder's output pathway tokens, which differ
    # from slide to slide (the default scores them against the shared learnable tokens)
    {"pathway_readout": "contextual"},
]


def run_search(folds: int = 3, out: str | Path = "results/recipe", jobs: int = 2, log=print):
    """Each setting of ``SEARCH`` on every fold, scored by its best smoothed validation PCC (the
    validation patients of each fold only); writes ``OUT/search.csv`` (mean over folds)."""
    import pandas as pd

    out = Path(out)
    names = [json.dumps(s, sort_keys=True) for s in SEARCH]
    todo = [(f"search{i}", {**SEARCH_BASE, **s}, f, str(out / "search_runs")) for i, s in enumerate(SEARCH)
            for f in range(folds)]
    rows = run_jobs(todo, jobs, log)
    df = pd.DataFrame(rows)
    df["setting"] = [names[int(a.removeprefix("search"))] for a in df["arm"]]
    g = df.groupby("setting", sort=False).agg(val_pcc=("best_val_pcc", "mean"), val_pcc_sd=("best_val_pcc", "std"),
                                              train_pcc_hvg50=("train_pcc_hvg50", "mean"),
                                              best_step=("best_step", "mean"), train_seconds=("train_seconds", "mean"))
    g = g.reset_index().sort_values("val_pcc", ascending=False)
    out.mkdir(parents=True, exist_ok=True)
    g.to_csv(out / "search.csv", index=False, float_format="%.4f")
    if log:
        log(g.round(4).to_string(index=False))
    return g


# ---------------------------------------------------------------------------------------- CLI
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("what", choices=("check", "search"), help="check: the must-show measurements; search: the "
                                                            "reference search on validation patients")
    p.add_argument("--folds", type=int, default=3, help="patient folds (each arm runs on every fold)")
    p.add_argument("--out", default="results/recipe", help="output folder")
    p.add_argument("--jobs", type=int, default=2, help="parallel runs (one torch thread each)")
    p.add_argument("--arms", default=None, help=f"comma-separated subset of {', '.join(CHECK_ARMS)} (check only)")


def run(args) -> int:
    if args.what == "check":
        run_check(args.folds, args.out, args.jobs, args.arms.split(",") if args.arms else None)
    else:
        run_search(args.folds, args.out, args.jobs)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m stflib.train.recipe", description=__doc__.splitlines()[0])
    add_arguments(parser)
    raise SystemExit(run(parser.parse_args()))
