"""Pathway recovery and interpretability with known truth, per simulated world: the command behind
``results/interpretability/``.

Every arm of ``ARMS`` is trained on every patient fold of each world's cohort (``stflib.train.run.run``,
the notebook's run), then scored on its held-out patients: the pathway maps' metrics of ``metrics.json``
(PCC and Lin's CCC with the true activity, the within-slide PCC, the training-slide matched PCC, the PCC
with the measured targets) and each read-out of ``stflib.interpret.METHODS`` (PCC with the true activity
per pathway and held-out slide, then the mean). Beside them: the feature ceiling (the runs'
``pathway_ceiling``: a ridge from the same inputs fit to the true activities) and the reliability ceiling
(sqrt of the split-half reliability of the measured pathway scores, ``results/worlds/reliability.csv``,
which bounds the PCC with any *measured* map, not with the truth).

``python -m stflib interpretability --preset small --folds 3 --jobs 2`` writes

- ``runs.csv``: one row per (world, arm, fold);
- ``pathways.csv``: per (world, arm, method, pathway), the mean PCC over held-out slides and folds;
- ``summary.csv``: per (world, arm, metric), the mean over folds with a 95 % t interval over the held-out
  patient folds and the ceilings;
- ``depth.csv``: per world with depth arms, ``depth_correction`` regress minus none, fold-paired;
- ``reliability.csv``: each world's pathway reliability (raw, after depth) and depth's share of a score's
  variance beside the upstream's real figures.

Finished runs are cached by configuration hash under ``$STFLIB_CACHE/interpretability`` (a rerun only
trains what is missing; the cache key holds the code version of the interpretation too). The tables keep
the rows of every world the command did not run (``--worlds pathway-misspecified`` adds that world to the
committed ones and re-runs none of them); ``--only`` writes the command's worlds alone.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stflib import config as C
from stflib.report.results import results_root, write_results_csv

__all__ = ["ARMS", "DEPTH_ARMS", "RUN_METRICS", "interpretability_dir", "run_arm", "write_interpretability",
           "summary_table", "depth_table", "reliability_table", "recovery_by_world", "readings_by_world"]

# arm -> run parameters (the rest: the notebook's defaults). genes: the pathway scores are a bottleneck the
# genes are read from, tokens named after the Hallmarks with nothing tying them to their names; genes_aux:
# the Hallmark-initialised reconstructor plus the auxiliary pathway loss (the pathways page's named arm);
# pathways: the model predicts the pathway targets; *_permuted: the same with each Hallmark's members
# drawn at random (the negative control: a name carries nothing)
ARMS: dict[str, dict[str, Any]] = {
    "genes": {},
    "genes_aux": {"pathway_init": True, "pathway_loss_weight": 0.5},
    "pathways": {"target": "pathways"},
    "genes_aux_permuted": {"pathway_init": True, "pathway_loss_weight": 0.5, "pathway_sets": "permuted"},
    "pathways_permuted": {"target": "pathways", "pathway_sets": "permuted"},
}
# the arms that train on pathway targets, again with each slide's log depth regressed out of them
DEPTH_ARMS: dict[str, dict[str, Any]] = {
    "genes_aux_depth": {**ARMS["genes_aux"], "depth_correction": "regress"},
    "pathways_depth": {**ARMS["pathways"], "depth_correction": "regress"},
}
DEPTH_PAIRS = {"genes_aux_depth": "genes_aux", "pathways_depth": "pathways"}
RUN_METRICS = ("pathway_pcc_truth", "pathway_ccc_truth", "pathway_pcc_truth_within", "pathway_pcc_truth_matched",
               "pathway_pcc_target", "pathway_ceiling", "pcc_hvg50", "ccc_hvg50", "train_seconds")
DEFAULT_WORLDS = ("default", "pathway-visible", "depth-confounded")


def interpretability_dir(results_dir: str | Path | None = None) -> Path:
    """``results/interpretability``."""
    return results_root(results_dir) / "interpretability"


def _code_key() -> str:
    """The interpretation's own code (a cached run is stale when it changes)."""
    from stflib import interpret, metrics
    from stflib.grid.runner import code_version
    from stflib.train import evaluate, targets

    h = hashlib.blake2b(digest_size=8)
    for module in (interpret, metrics, evaluate, targets):
        h.update(Path(module.__file__).read_bytes())
    return f"{code_version()}-{h.hexdigest()}"


def run_arm(world: str, arm: str, params: dict[str, Any], fold: int, preset: str, n_folds: int,
            cache: Path | None = None) -> tuple[dict, list[dict]]:
    """Train and interpret one (world, arm, fold) in this process: (its row, its per-pathway rows)."""
    import torch

    from stflib.interpret import interpret_run
    from stflib.train.run import run as train_run

    cfg = C.RunConfig.from_params({**params, "world": world, "preset": preset, "n_folds": n_folds, "fold": fold,
                                   "progress": False, "device": "cpu"})
    key = f"{C.config_hash(cfg)}-{_code_key()}"
    path = None if cache is None else cache / f"{world}_{arm}_fold{fold}_{key}.json"
    if path is not None and path.is_file():
        cached = json.loads(path.read_text())
        return cached["row"], cached["pathways"]
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    result = train_run(cfg, log=None, write=False)
    t1 = time.perf_counter()
    readouts = interpret_run(result)
    row = {"world": world, "arm": arm, "fold": fold, **{k: result.metrics.get(k) for k in RUN_METRICS}}
    for method, g in readouts.groupby("method"):
        # per slide the mean over pathways, then the mean over the fold's held-out slides
        row[f"readout_{method}"] = float(g.groupby("sample_id")["pcc"].mean().mean())
    row.update({"run_seconds": round(t1 - t0, 1), "interpret_seconds": round(time.perf_counter() - t1, 1),
                "n_pathways": int(readouts["pathway"].nunique()) if len(readouts) else 0,
                "config_hash": C.config_hash(cfg), "overrides": json.dumps(params, sort_keys=True)})
    per_pathway = (readouts.groupby(["method", "pathway"])["pcc"].mean().reset_index()
                   .assign(world=world, arm=arm, fold=fold).to_dict("records"))
    if path is not None:
        from stflib.io import write_json

        path.parent.mkdir(parents=True, exist_ok=True)
        write_json({"row": row, "pathways": per_pathway}, path)
    return row, per_pathway


def _job(args) -> tuple[dict, list[dict]]:
    return run_arm(*args)


def jobs_for(worlds, preset: str, n_folds: int, depth_worlds, cache: Path | None) -> list[tuple]:
    """(world, arm, params, fold, preset, n_folds, cache) for every arm of every world (``DEPTH_ARMS`` in
    ``depth_worlds`` only), fold by fold: an interrupted command leaves whole folds of every world done."""
    out = []
    for f in range(n_folds):
        for world in worlds:
            arms = {**ARMS, **(DEPTH_ARMS if world in depth_worlds else {})}
            out.extend((world, arm, params, f, preset, n_folds, cache) for arm, params in arms.items())
    return out


def _interval(values: np.ndarray) -> tuple[float, float, float]:
    """(mean, 95 % t interval low, high) over folds (NaN interval with fewer than 2 finite values)."""
    from scipy import stats

    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    if not len(v):
        return (float("nan"),) * 3
    if len(v) < 2 or np.ptp(v) <= 1e-12 * max(1.0, float(np.abs(v).max())):  # no spread (up to rounding)
        return float(v.mean()), float("nan"), float("nan")
    ci = stats.ttest_1samp(v, 0.0).confidence_interval(0.95)
    return float(v.mean()), float(ci.low), float(ci.high)


def reliability_table(path: str | Path | None = None) -> pd.DataFrame:
    """Per world: the pathway scores' split-half reliability (raw, after depth regression), its ceilings
    (sqrt) and depth's share of a score's variance (``results/worlds/reliability.csv``), with the
    upstream's real figures as the last row (depth's share there: not published as a figure, NaN)."""
    from stflib.sim.reliability import UPSTREAM_RELIABILITY

    path = Path(path) if path else results_root() / "worlds" / "reliability.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: run `python -m stflib reliability --world all` first")
    t = pd.read_csv(path)[["world", "pathway_reliability_raw", "pathway_reliability_depth", "pathway_ceiling_raw",
                           "pathway_ceiling_depth", "pathway_depth_r2"]]
    raw, depth = (UPSTREAM_RELIABILITY[k][0] for k in ("pathway_reliability_raw", "pathway_reliability_depth"))
    upstream = {"world": "upstream (73 real HEST-1k bowel slides)", "pathway_reliability_raw": raw,
                "pathway_reliability_depth": depth, "pathway_ceiling_raw": np.sqrt(raw),
                "pathway_ceiling_depth": np.sqrt(depth), "pathway_depth_r2": np.nan}
    return pd.concat([t, pd.DataFrame([upstream])], ignore_index=True)


def summary_table(runs: pd.DataFrame, reliability: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per (world, arm, metric): the mean over folds, its 95 % t interval, the number of folds, and the
    world's ceilings (feature: the mean ``pathway_ceiling`` of the world's runs; reliability: sqrt of the
    raw and depth-corrected pathway reliability)."""
    metrics = [c for c in runs.columns if c.startswith("readout_") or c in RUN_METRICS and c != "train_seconds"]
    rows = []
    for (world, arm), g in runs.groupby(["world", "arm"], sort=False):
        feature = float(runs[runs["world"] == world]["pathway_ceiling"].astype(float).mean())
        rel = None
        if reliability is not None and (reliability["world"] == world).any():
            rel = reliability[reliability["world"] == world].iloc[0]
        for metric in metrics:
            mean, low, high = _interval(g[metric].astype(float).to_numpy())
            rows.append({"world": world, "arm": arm, "metric": metric, "mean": mean, "ci_low": low, "ci_high": high,
                         "n_folds": int(g[metric].notna().sum()), "feature_ceiling": feature,
                         "reliability_ceiling_raw": np.nan if rel is None else float(rel["pathway_ceiling_raw"]),
                         "reliability_ceiling_depth": np.nan if rel is None else float(rel["pathway_ceiling_depth"])})
    return pd.DataFrame(rows)


def depth_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per world and depth arm: ``depth_correction`` regress minus none (``DEPTH_PAIRS``), fold-paired:
    both arms' means, the mean difference and its 95 % t interval over the held-out patient folds."""
    rows = []
    for world, g in runs.groupby("world", sort=False):
        for arm, base in DEPTH_PAIRS.items():
            a = g[g["arm"] == arm].set_index("fold")
            b = g[g["arm"] == base].set_index("fold")
            folds = sorted(set(a.index) & set(b.index))
            if not folds:
                continue
            for metric in ("pathway_pcc_truth", "pathway_ccc_truth", "pathway_pcc_truth_within", "pathway_pcc_target",
                           "readout_scores"):
                if metric not in a or metric not in b:
                    continue
                d = a.loc[folds, metric].astype(float).to_numpy() - b.loc[folds, metric].astype(float).to_numpy()
                mean, low, high = _interval(d)
                rows.append({"world": world, "arm": arm, "versus": base, "metric": metric,
                             "regress": float(a.loc[folds, metric].astype(float).mean()),
                             "none": float(b.loc[folds, metric].astype(float).mean()),
                             "difference": mean, "ci_low": low, "ci_high": high, "n_folds": len(folds)})
    return pd.DataFrame(rows, columns=["world", "arm", "versus", "metric", "regress", "none", "difference", "ci_low",
                                       "ci_high", "n_folds"])


def cached_results(todo: list[tuple], log=print) -> list[tuple[dict, list[dict]]]:
    """The newest cached result of every job of ``todo`` whatever code version wrote it (jobs never run
    are left out and listed): the tables of an interrupted command, or of runs the code has moved past."""
    results, missing = [], []
    for world, arm, params, fold, preset, n_folds, cache in todo:
        cfg = C.RunConfig.from_params({**params, "world": world, "preset": preset, "n_folds": n_folds, "fold": fold,
                                       "progress": False, "device": "cpu"})
        found = sorted(cache.glob(f"{world}_{arm}_fold{fold}_{C.config_hash(cfg)}-*.json"), key=lambda f: f.stat().st_mtime)
        if found:
            cached = json.loads(found[-1].read_text())
            results.append((cached["row"], cached["pathways"]))
        else:
            missing.append(f"{world}/{arm}/fold{fold}")
    if missing and log:
        log(f"not run (left out of the tables): {', '.join(missing)}")
    return results


def _with_other_worlds(out: Path, worlds, runs: pd.DataFrame, per_pathway: pd.DataFrame,
                       log=print) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``runs`` and ``per_pathway`` with the rows of ``out``'s ``runs.csv`` and ``pathways.csv`` of every world
    not in ``worlds`` put first: adding a world re-runs none of the others (their rows are used as written)."""
    kept = []
    frames = {"runs.csv": runs, "pathways.csv": per_pathway}
    for name, new in frames.items():
        path = out / name
        if not path.is_file():
            continue
        old = pd.read_csv(path)
        if "world" not in old.columns:
            raise ValueError(f"{path}: no 'world' column; not a table this command wrote (move it away or use --only)")
        old = old[~old["world"].isin(list(worlds))]
        if len(old):
            frames[name] = pd.concat([old, new], ignore_index=True)
            if name == "runs.csv":
                kept = list(dict.fromkeys(old["world"]))
    if kept and log:
        log(f"kept the rows already written for {', '.join(kept)} (not run by this command)")
    return frames["runs.csv"], frames["pathways.csv"]


def write_interpretability(worlds=DEFAULT_WORLDS, preset: str = "small", n_folds: int = 3, jobs: int = 1,
                           depth_worlds=("depth-confounded",), results_dir: str | Path | None = None,
                           cache: bool = True, log=print, from_cache: bool = False,
                           keep_other_worlds: bool = True) -> dict[str, Path]:
    """Run every job of ``jobs_for`` (``jobs`` processes of one torch thread) and write the tables of the
    module doc to ``results/interpretability/``; returns {table: path}. ``from_cache``: train nothing, write
    the tables from the cached runs (``cached_results``). ``keep_other_worlds``: the tables also hold the
    rows already there of every world not in ``worlds`` (``_with_other_worlds``)."""
    from stflib.sim.cohort import cache_dir

    for w in worlds:
        if w not in C.WORLDS:
            raise ValueError(f"interpretability: unknown world {w!r}; allowed: {', '.join(C.WORLDS)}")
    if preset not in C.PRESETS:
        raise ValueError(f"interpretability: unknown preset {preset!r}; allowed: {', '.join(C.PRESETS)}")
    cache_path = cache_dir() / "interpretability" if cache or from_cache else None
    todo = jobs_for(worlds, preset, n_folds, depth_worlds, cache_path)
    t0 = time.perf_counter()
    results = []
    if not from_cache:  # simulate each world's cohort once, here, not in every worker at the same time
        from stflib.simulate import default_cohort

        for w in worlds:
            default_cohort(preset, world=w)
    if from_cache:
        results = cached_results(todo, log)
        if not results:
            raise FileNotFoundError(f"no cached interpretability runs under {cache_path}")
    elif jobs <= 1:
        for j in todo:
            results.append(_job(j))
            if log:
                log(f"{j[0]} {j[1]} fold {j[3]}: pathway_pcc_truth {results[-1][0]['pathway_pcc_truth']:.3f} "
                    f"({results[-1][0]['run_seconds']} s)")
    else:
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            for j, res in zip(todo, pool.map(_job, todo)):
                results.append(res)
                if log:
                    log(f"{j[0]} {j[1]} fold {j[3]}: pathway_pcc_truth {res[0]['pathway_pcc_truth']:.3f} "
                        f"({res[0]['run_seconds']} s)")
    runs = pd.DataFrame([r for r, _ in results])
    pathways = pd.DataFrame([p for _, ps in results for p in ps])
    per_pathway = (pathways.groupby(["world", "arm", "method", "pathway"], sort=False)["pcc"].agg(["mean", "count"])
                   .reset_index().rename(columns={"count": "n"}))
    out = interpretability_dir(results_dir)
    if keep_other_worlds:
        runs, per_pathway = _with_other_worlds(out, worlds, runs, per_pathway, log)
    reliability = reliability_table()
    paths = {"runs": write_results_csv(runs, out / "runs.csv"),
             "pathways": write_results_csv(per_pathway, out / "pathways.csv"),
             "summary": write_results_csv(summary_table(runs, reliability), out / "summary.csv"),
             "depth": write_results_csv(depth_table(runs), out / "depth.csv"),
             "reliability": write_results_csv(reliability, out / "reliability.csv")}
    if log:
        log(f"{len(results)} runs in {time.perf_counter() - t0:.0f} s (preset {preset}, {n_folds} folds, {jobs} jobs; "
            f"training and interpretation {runs['run_seconds'].sum() + runs['interpret_seconds'].sum():.0f} s of CPU)")
    return paths


def wide_table(summary: pd.DataFrame, world: str) -> pd.DataFrame:
    """One world's summary as arms x metrics (means), the book's table."""
    s = summary[summary["world"] == world]
    return s.pivot(index="arm", columns="metric", values="mean").reindex(
        [a for a in [*ARMS, *DEPTH_ARMS] if a in set(s["arm"])])


def _worlds_in_order(summary: pd.DataFrame) -> list[str]:
    present = list(dict.fromkeys(summary["world"]))
    return [w for w in C.WORLDS if w in present] + [w for w in present if w not in C.WORLDS]


def recovery_by_world(summary: pd.DataFrame, metric: str = "pathway_pcc_truth",
                      arms: tuple[str, ...] = tuple(ARMS)) -> pd.DataFrame:
    """Worlds x arms: ``metric``'s mean over folds and its 95 % t interval (``"0.135 [0.129, 0.142]"``), each
    world's role (``stflib.sim.worlds``) and its two ceilings; worlds in the simulator's order."""
    from stflib.sim.worlds import WORLDS

    rows = []
    for world in _worlds_in_order(summary):
        s = summary[(summary["world"] == world) & (summary["metric"] == metric)].set_index("arm")
        if s.empty:
            continue
        row = {"world": world, "role": WORLDS[world].role if world in WORLDS else ""}
        for arm in arms:
            if arm in s.index:
                r = s.loc[arm]
                row[arm] = (f"{r['mean']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}]" if np.isfinite(r["ci_low"])
                            else f"{r['mean']:.3f}")
            else:
                row[arm] = "not run"
        first = s.iloc[0]
        row["feature ceiling"] = round(float(first["feature_ceiling"]), 3)
        row["reliability ceiling"] = round(float(first["reliability_ceiling_raw"]), 3)
        rows.append(row)
    return pd.DataFrame(rows).set_index("world")


def _above_zero(summary: pd.DataFrame, arm: str, metric: str) -> tuple[list[str], list[str]]:
    """(worlds where ``arm``'s interval lies above zero, worlds where it was run) for ``metric``."""
    s = summary[(summary["arm"] == arm) & (summary["metric"] == metric)]
    run = [w for w in _worlds_in_order(summary) if (s["world"] == w).any()]
    above = [w for w in run if float(s.loc[s["world"] == w, "ci_low"].iloc[0]) > 0]
    return above, run


def _worlds_text(worlds: list[str], of: list[str]) -> str:
    if not worlds:
        return f"in none of the {len(of)} worlds"
    if len(worlds) == len(of):
        return f"in all {len(of)} worlds"
    return f"in {len(worlds)} of {len(of)} worlds ({', '.join(f'`{w}`' for w in worlds)})"


def readings_by_world(summary: pd.DataFrame, metric: str = "pathway_pcc_truth") -> list[str]:
    """What the recovery table lets a reader conclude, read through the controls, one sentence per arm or
    read-out: in which worlds its 95 % interval over folds lies above zero. The permuted gene sets are the
    negative control in every world (a name carries nothing); ``pathway-visible`` is the positive control
    (activity has a morphological correlate); ``pathway-misspecified`` the negative control of the Hallmark
    prior (most variance on non-Hallmark sets)."""
    lines = []
    labels = {"genes": "the original STF, pathway names unsupervised (`genes`)",
              "genes_aux": "the original STF with the Hallmark initialisation and auxiliary loss (`genes_aux`)",
              "pathways": "pathways as targets (`pathways`)",
              "genes_aux_permuted": "the permuted-set control of `genes_aux`",
              "pathways_permuted": "the permuted-set control of `pathways`"}
    for arm, label in labels.items():
        above, run = _above_zero(summary, arm, metric)
        if not run:
            continue
        control = arm.endswith("_permuted")
        verdict = ((" (a name that carries nothing should stay at zero: a world listed here leaks signal through "
                    "the set sizes or the features, not the names)" if above else ": the control holds")
                   if control else "")
        lines.append(f"- The pathway maps of {label} correlate with the true activity above zero "
                     f"{_worlds_text(above, run)}{verdict}.")
    positive, negative = "pathway-visible", "pathway-misspecified"
    s = summary[summary["metric"] == metric].set_index(["world", "arm"])
    for arm in ("genes_aux", "pathways"):
        if (positive, arm) in s.index and (negative, arm) in s.index:
            p, n = s.loc[(positive, arm)], s.loc[(negative, arm)]
            lines.append(f"- `{arm}`: {p['mean']:.3f} [{p['ci_low']:.3f}, {p['ci_high']:.3f}] where activity is visible "
                         f"(`{positive}`, feature ceiling {p['feature_ceiling']:.3f}) against {n['mean']:.3f} "
                         f"[{n['ci_low']:.3f}, {n['ci_high']:.3f}] where the Hallmarks name the wrong sets (`{negative}`).")
    for method in ("rollout", "saliency", "grad_x_input"):  # the attribution read-outs of the supervised arms
        found, cells = [], 0
        for arm in ("genes_aux", "pathways"):
            a, r = _above_zero(summary, arm, f"readout_{method}")
            found += [(w, arm) for w in a]
            cells += len(r)
        if not cells:
            continue
        where = ", ".join(f"`{w}` ({arm})" for w, arm in found)
        in_positive = any(w == positive for w, _ in found)
        reading = ("including the positive control" if in_positive else
                   f"not in the positive control `{positive}`: no evidence it finds where a programme is active")
        # one-sided: a 95 % interval lies above zero by chance for about 2.5 % of cells without an effect
        lines.append(f"- The {method.replace('_', ' ')} read-out of the supervised arms (`genes_aux`, `pathways`) lies "
                     f"above zero in {len(found)} of {cells} (world, arm) cells{': ' + where if found else ''}; "
                     f"{reading} ({cells} unadjusted intervals: about {0.025 * cells:.1f} above zero by chance).")
    return lines


# --------------------------------------------------------------------------------------------- command
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--worlds", default=",".join(DEFAULT_WORLDS), help="comma-separated worlds, or 'all'")
    p.add_argument("--depth-worlds", default="depth-confounded",
                   help="worlds that also run the depth-corrected arms (comma-separated, 'all' or 'none')")
    p.add_argument("--preset", default="small", help="cohort preset (default: small)")
    p.add_argument("--folds", type=int, default=3, help="patient folds (every arm runs on each)")
    p.add_argument("--jobs", type=int, default=1, help="parallel runs (one torch thread each)")
    p.add_argument("--results", default=None, help="results folder (default: the project's results/)")
    p.add_argument("--no-cache", action="store_true", help="retrain every run (default: reuse cached runs)")
    p.add_argument("--from-cache", action="store_true",
                   help="train nothing: write the tables from the cached runs (an interrupted command's)")
    p.add_argument("--only", action="store_true",
                   help="write the tables from this command's worlds alone (default: keep the other worlds' rows)")


def _names(value: str, default: tuple[str, ...]) -> tuple[str, ...]:
    if value == "all":
        return tuple(C.WORLDS)
    if value == "none":
        return ()
    return tuple(v.strip() for v in value.split(",") if v.strip()) or default


def run(args: argparse.Namespace) -> int:
    worlds = _names(args.worlds, DEFAULT_WORLDS)
    paths = write_interpretability(worlds, args.preset, args.folds, args.jobs, _names(args.depth_worlds, ()),
                                   args.results, cache=not args.no_cache, from_cache=args.from_cache,
                                   keep_other_worlds=not args.only)
    summary = pd.read_csv(paths["summary"])
    with pd.option_context("display.width", 250, "display.max_columns", 30):
        for world in worlds:
            print(f"\n{world}")
            print(wide_table(summary, world).round(3).to_string())
        print(pd.read_csv(paths["depth"]).round(3).to_string(index=False))
    for name, path in paths.items():
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m stflib.report.interpretability", description=__doc__.splitlines()[0])
    add_arguments(parser)
    raise SystemExit(run(parser.parse_args()))
