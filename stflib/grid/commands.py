"""The grid's commands: ``python -m stflib ablate [params/...] --folds 3`` and ``python -m stflib collect``.

``ablate`` runs every (arm, fold, seed) of the params files through papermill
(``notebooks/ablation.ipynb``) into ``results/<axis>/<arm>/fold<k>/`` (:mod:`stflib.grid.runner`), on a
Dask LocalCluster, a given scheduler or a SLURM cluster (:mod:`stflib.grid.cluster`); ``--dry-run``
runs nothing and reports what the grid needs (:mod:`stflib.grid.plan`). ``collect`` writes
``results/summary.csv``, ``results/summary_by_arm.csv`` and ``results/findings_by_unit.csv``
(:mod:`stflib.grid.collect`) and prints the folds per arm and seeds per fold, and every finding derived
over the held-out patient folds beside the earlier (fold, seed) pairs.
``ablate --world NAME`` runs the robustness subset (or the given params) in another simulator world,
into ``results/worlds/<world>/<axis>/<arm>/fold<k>/``.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path
from typing import Any

from stflib.grid.axes import GRID_FOLDS, GRID_SEEDS
from stflib.grid.collect import collect, write_summary
from stflib.paths import results_dir
from stflib.grid.params import write_params
from stflib.grid.runner import (DEFAULT_NOTEBOOK, is_complete, make_tasks, make_world_tasks, parse_seeds,
                                parse_worlds, run_grid)


def add_arguments_ablate(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="*", help="params YAML files or folders (default: params/ without params/hest/; "
                   "with --world: the robustness subset)")
    p.add_argument("--folds", type=int, default=GRID_FOLDS,
                   help=f"patient-grouped folds; every fold of every arm is run (default: the book's grid, {GRID_FOLDS})")
    p.add_argument("--seeds", default=",".join(map(str, GRID_SEEDS)), help="comma-separated training seeds, each run on every fold "
                   "(e.g. 0,1: folders fold<k> for seed 0, fold<k>-seed<s> for the others)")
    p.add_argument("--world", action="append", default=[], metavar="NAME",
                   help="run in this non-default simulator world (repeatable or comma-separated; 'all': every one) "
                        "into <results>/worlds/<world>/; without paths, the robustness subset "
                        "(stflib.grid.axes.ROBUSTNESS_ARMS). The default world is the grid without --world")
    p.add_argument("--scheduler", default=None, help="Dask scheduler address (default: a LocalCluster)")
    p.add_argument("--cluster", default=None, choices=["slurm"],
                   help="start a dask-jobqueue cluster of this kind (described by --cluster-config) and run the grid on it")
    p.add_argument("--cluster-config", default=None, metavar="YAML",
                   help="the cluster's jobs: queue, account, cores, memory, gpus, walltime, jobs (see stflib.grid.cluster)")
    p.add_argument("--workers", type=int, default=None, help="LocalCluster worker processes (default: CPU cores)")
    p.add_argument("--threads", type=int, default=None, help="torch threads per run (default: cores / workers)")
    p.add_argument("--results", default="", type=results_dir,
                   help="results folder (default: $STFLIB_RESULTS, else the project's results/)")
    p.add_argument("--notebook", default=str(DEFAULT_NOTEBOOK), help="the parameterised notebook")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a parameter in every run (e.g. --set data_dir=/data/hest --set device=cuda)")
    p.add_argument("--timeout", type=float, default=None, help="per-cell timeout in seconds")
    p.add_argument("--force", action="store_true", help="re-run complete runs too")
    p.add_argument("--dry-run", action="store_true",
                   help="run nothing: list the runs, check the data folder (cohort, folds, features per backbone, "
                        "weights), estimate the time from results/bench/ and print the command for each missing piece "
                        "(exit 3 when something is missing)")
    p.add_argument("--write-params", action="store_true", help="regenerate params/ from stflib.grid.axes.ARMS first")


def _parse_sets(items: list[str]) -> dict[str, Any]:
    import yaml

    out = {}
    for item in items:
        if "=" not in item:
            raise SystemExit(f"--set expects KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        out[k.strip()] = yaml.safe_load(v)
    return out


@contextlib.contextmanager
def _quiet_interrupt():
    """Ctrl-C: silence the cluster's shutdown chatter (distributed's logs and warnings about closed
    workers and comms), then raise KeyboardInterrupt so the caller can say how to resume."""
    import logging
    import signal
    import warnings

    def handler(signum, frame):
        for name in ("distributed", "tornado", "asyncio"):
            logging.getLogger(name).setLevel(logging.CRITICAL + 1)
        warnings.simplefilter("ignore")
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not break the clean-up
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def run_ablate(args) -> int:
    if args.write_params:
        write_params()
    overrides = _parse_sets(args.set)
    workers = args.workers or (os.cpu_count() or 2)
    threads = args.threads or max(1, (os.cpu_count() or 2) // (1 if args.scheduler else workers))
    cluster_cfg = None
    if args.cluster or args.cluster_config:
        from stflib.grid import cluster as K

        if not (args.cluster and args.cluster_config) or args.scheduler:
            print("error: --cluster and --cluster-config go together, without --scheduler", file=sys.stderr)
            return 2
        try:
            cluster_cfg = K.read_config(args.cluster_config)
        except (OSError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        threads = args.threads or K.run_threads(cluster_cfg)
    try:
        seeds = parse_seeds(getattr(args, "seeds", "0"))
        if args.world:
            tasks = make_world_tasks(parse_worlds(args.world), args.paths, args.folds, args.results, args.notebook,
                                     overrides, threads, args.timeout, seeds)
        else:
            tasks = make_tasks(args.paths, args.folds, args.results, args.notebook, overrides, threads, args.timeout,
                               seeds=seeds)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.dry_run:
        from stflib.grid.plan import plan

        complete = set()
        for t in tasks:
            state = "complete" if is_complete(t.out_dir, t.run_hash) else "to run"
            if state == "complete":
                complete.add(t.run_hash)
            print(f"{Path(os.path.relpath(t.out_dir, Path(args.results).resolve())).as_posix()} [{state}] {t.run_hash}" + (f" (+{len(t.copies)} copies)" if t.copies else ""))
        report = plan(tasks, complete=complete)
        print(report.text())
        if cluster_cfg is not None:
            print(f"\n{args.cluster} job script ({cluster_cfg['jobs']} jobs would be submitted):\n{K.job_script(cluster_cfg)}")
        return 0 if report.ready else 3
    t0 = time.perf_counter()
    try:
        with _quiet_interrupt():
            if cluster_cfg is not None:
                cluster = K.make_cluster(args.cluster, cluster_cfg)
                print(f"{args.cluster} cluster: scheduler {cluster.scheduler_address}, {cluster_cfg['jobs']} jobs "
                      f"requested; job script:\n{cluster.job_script()}")
                try:
                    infos = run_grid(tasks, cluster.scheduler_address, force=args.force,
                                     resources=K.run_resources(cluster_cfg))
                finally:
                    cluster.close()
            else:
                infos = run_grid(tasks, args.scheduler, args.workers, force=args.force)
    except KeyboardInterrupt:
        print("\ninterrupted; re-run the same command to resume (finished runs are kept, unfinished ones "
              "restart from their last finished epoch)", file=sys.stderr)
        return 130
    failed = [i for i in infos if i and i.get("status") != "ok"]
    print(f"grid done in {time.perf_counter() - t0:.0f} s: {len(infos) - len(failed)} ok, {len(failed)} failed")
    df = collect(args.results)
    write_summary(df, args.results)
    return 1 if failed else 0


def add_arguments_collect(p: argparse.ArgumentParser) -> None:
    p.add_argument("--results", default="", type=results_dir,
                   help="results folder (default: $STFLIB_RESULTS, else the project's results/)")


def run_collect(args) -> int:
    import pandas as pd

    from stflib.grid.collect import design_by_axis, write_findings_by_unit
    from stflib.report.results import is_real, load_summary, shown_summary

    superseded = []
    df = collect(args.results, superseded)
    write_summary(df, args.results)
    n_ok = int((df["status"] == "ok").sum()) if len(df) else 0
    print(f"{args.results}/summary.csv: {len(df)} runs ({n_ok} ok, {len(df) - n_ok} failed or incomplete)")
    if superseded:
        old = superseded[0]
        where = ", ".join(f"{w}/{a} ({n})" for (w, a), n in old.groupby(["world", "axis"]).size().items())
        designs = ", ".join(str(int(x)) if x == x else "unrecorded" for x in sorted(
            pd.to_numeric(old["design_folds"], errors="coerce").unique(), key=lambda v: (v != v, v)))
        print(f"left out: {len(old)} runs of another fold design ({designs} folds) than their axis reference's, "
              f"whose fold k holds out other patients: {where}")
    if not n_ok:
        return 0
    summary = load_summary(args.results)
    with pd.option_context("display.width", 200, "display.max_rows", 500, "display.max_columns", 30):
        print("\nFolds per arm and seeds per fold (the paired unit is the held-out patient fold, seeds averaged "
              "within it):")
        print(design_by_axis(summary).to_string(index=False))
        compared = shown_summary(summary)  # a results page's runs: one real cohort's when there are real runs
        data = "real data" if is_real(compared) else "default world"
        try:
            table = write_findings_by_unit(compared, args.results)
        except ValueError as e:  # no axis has its reference arm run yet: nothing to compare
            print(f"\nno paired comparison yet: {e}")
            return 0
        shown = table[table["fold_finding"] | table["pair_finding"]]
        print(f"\nEvery finding ({data}) over folds beside the earlier (fold, seed) pairs; all "
              f"{len(table)} comparisons in {args.results}/findings_by_unit.csv:")
        if len(shown):
            print(shown[["axis", "arm", "reference", "folds", "fold_mean_delta", "fold_ci_low", "fold_ci_high",
                         "fold_p_holm", "pairs", "pair_ci_low", "pair_ci_high", "pair_p_holm", "change"]]
                  .round(4).to_string(index=False))
        else:
            print("none: no comparison is a finding over folds or over pairs")
        print("\n" + "; ".join(f"{n} {c}" for c, n in table["change"].value_counts().items()))
    return 0
