"""The grid's results as tables: ``results/summary.csv`` (one row per run) and ``summary_by_arm.csv``.

``collect`` reads every run folder (``results/<axis>/<arm>/fold<k>[-seed<s>]/``, and the other
simulator worlds' ``results/worlds/<world>/<axis>/<arm>/fold<k>/``: ``run.json`` written by the runner,
``metrics.json`` by the run; the world comes from the run's config); its metric columns are the
summarised metrics of :data:`stflib.metrics.METRICS`. ``summarise`` gives their mean and sd over folds and seeds per arm.
"""
from __future__ import annotations

import json
from pathlib import Path

from stflib.io import atomic_write
from stflib.grid.runner import WORLDS_FOLDER, parse_run_folder, read_run
from stflib.metrics import METRICS

# which run, and what the runner recorded of it
DESIGN_COLUMNS = ["axis", "arm", "world", "fold", "seed", "model", "status"]
RUN_COLUMNS = ["n_params", "total_seconds", "epochs_run", "best_epoch", "steps_run", "best_step", "hit_step_cap",
               "run_seconds", "config_hash", "run_hash", "error", "epochs_max", "data_dir", "code_version", "core_version",
               # what peak_memory_mb measured (cuda: GPU tensors, cpu_rss: the process) and its value once the
               # fold was loaded (stflib.train.run.peak_memory_mb)
               "peak_memory_kind", "peak_memory_before_train_mb"]
SUMMARY_COLUMNS = [*DESIGN_COLUMNS, *METRICS, *RUN_COLUMNS]


def folder_axis(run_dir: Path, results: Path) -> str:
    """The axis a run folder's path names (``<results>/[worlds/<world>/]<axis>/<arm>/fold<k>``), for a
    ``run.json`` that does not record it."""
    parts = run_dir.parent.parent.relative_to(results).parts
    if parts[:1] == (WORLDS_FOLDER,):
        parts = parts[2:]
    return "/".join(parts)


def collect(results: str | Path = "results"):
    """One row per run folder (results/<axis>/<arm>/fold<k>/run.json + metrics.json) -> DataFrame."""
    import pandas as pd

    results = Path(results)
    rows = []
    for run_json in sorted(results.rglob("run.json")):
        d = run_json.parent
        if any(part.startswith(".") for part in d.relative_to(results).parts):
            continue  # partial or temporary folders
        info = read_run(d) or {}
        folder_fold, folder_seed = parse_run_folder(d.name)
        params = info.get("params") or {}
        row = {"axis": info.get("axis", folder_axis(d, results)), "arm": info.get("arm", d.parent.name),
               "fold": info.get("fold", folder_fold), "seed": info.get("seed", params.get("seed", folder_seed)),
               "status": info.get("status"), "run_seconds": info.get("seconds"), "run_hash": info.get("run_hash"),
               "error": info.get("error", ""), "code_version": info.get("code_version"),
               "core_version": info.get("core_version"),
               "world": params.get("world"), "data_dir": params.get("data_dir")}
        mpath = d / "metrics.json"
        if mpath.is_file():
            m = json.loads(mpath.read_text())
            for k in SUMMARY_COLUMNS:
                if k in m and k not in row:
                    row[k] = m[k]
            row["model"] = m.get("model", (m.get("config") or {}).get("model"))
            config = m.get("config") or {}
            row["epochs_max"] = config.get("epochs")
            row["data_dir"] = config.get("data_dir", row["data_dir"])
            # runs on real data have no simulator world; runs from before worlds existed ran the default one
            row["world"] = "real" if config.get("data_dir") else config.get("world", "default")
        else:
            row["model"] = (info.get("params") or {}).get("model", "interaction")
        rows.append(row)
    df = pd.DataFrame(rows)
    for c in SUMMARY_COLUMNS:
        if c not in df:
            df[c] = None
    df["world"] = df["world"].fillna("default")  # runs made before simulator worlds existed
    extra = [c for c in df.columns if c not in SUMMARY_COLUMNS]
    return df[SUMMARY_COLUMNS + extra].sort_values(["world", "axis", "arm", "fold", "seed"], kind="stable").reset_index(drop=True)


def summarise(df):
    """Mean, sd and n over runs (folds x seeds) of each metric, per (world, axis, arm)."""
    import pandas as pd

    ok = df[df["status"] == "ok"].copy()
    if ok.empty:
        return pd.DataFrame(columns=["world", "axis", "arm", "model", "n_folds"])
    metrics = list(METRICS)
    for m in metrics:
        ok[m] = pd.to_numeric(ok[m], errors="coerce")
    g = ok.groupby(["world", "axis", "arm"], sort=True)
    out = g[metrics].agg(["mean", "std"])
    out.columns = [f"{a}_{b}" for a, b in out.columns]
    out.insert(0, "n_folds", g.size())
    out.insert(0, "model", g["model"].first())
    return out.reset_index()


def write_summary(df, results: str | Path) -> None:
    """Write ``summary.csv`` (the runs) and ``summary_by_arm.csv`` (:func:`summarise`) atomically."""
    results = Path(results)
    results.mkdir(parents=True, exist_ok=True)
    for name, frame in (("summary.csv", df), ("summary_by_arm.csv", summarise(df))):
        atomic_write(results / name, lambda tmp, frame=frame: frame.to_csv(tmp, index=False, float_format="%.5g"))
