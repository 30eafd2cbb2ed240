"""Running the grid: one task per (arm, fold, seed), resumed by run hash, executed through papermill and Dask.

``make_tasks`` turns params files into tasks; arms with identical parameters (the default STF appears
in several axes) share one task, computed once and copied. A task's ``run_hash`` is the hash of its
result-determining parameters and of the code it executes (its ``code_version``: the shared core plus
the registry entries it names, :mod:`stflib.grid.version`, so adding a loss, a backbone, a model or a
world leaves every other finished run complete): a run is skipped when its ``run.json`` says it
completed with the same hash. A run works in ``.fold<k>.partial`` (an interrupted
run resumes from its checkpoint) and is moved into place when done; a failure writes ``error.json`` and
the grid carries on. ``run_grid`` dispatches the tasks through Dask distributed: a LocalCluster of
worker processes, or any scheduler (e.g. dask-jobqueue on SLURM, :mod:`stflib.grid.cluster`).
``make_world_tasks`` plans the same runs in the other simulator worlds, under ``<results>/worlds/<world>/``.
A run on a data folder (``data_dir``) is filed under its plain axis in ``<results>/real/<source>/<axis>/<arm>/``
(``<source>``: the folder's cohort id, :mod:`stflib.data.source`) and records the cohort in its ``run.json``.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stflib.io import write_json
from stflib import config as C
from stflib.grid.axes import DEFAULT_WORLD, ROBUSTNESS_WORLDS
from stflib.paths import default_notebook
from stflib.grid.params import discover, load_params, plain_axis, robustness_params
from stflib.kernel import quiet_kernel_manager_class
from stflib.grid.version import CodeIndex, code_index, result_files  # noqa: F401  (result_files: part of this module's API)

DEFAULT_NOTEBOOK = default_notebook()  # the project's (stflib.paths), where the grid is started

def code_version(notebook: str | Path = DEFAULT_NOTEBOOK) -> str:
    """The version of the shared core every run executes (:class:`stflib.grid.version.CodeIndex`): tables
    computed beside the grid (ceilings, latent baselines) record it, and runs of one core may be compared."""
    return code_index(notebook).core_version


def run_version(params: dict[str, Any], notebook: str | Path = DEFAULT_NOTEBOOK, index: CodeIndex | None = None) -> str:
    """The code version of one run: the shared core and the registry entries its parameters name."""
    index = index or code_index(notebook)
    return index.run_version(C.validate(params, check_paths=False))


@dataclass
class Task:
    """One run of the grid: an arm's parameters on one fold and seed, and where and how it runs."""

    axis: str
    arm: str
    fold: int
    params: dict[str, Any]  # what papermill injects, besides output_dir and run_settings(task)
    out_dir: str
    run_hash: str
    notebook: str
    code_version: str  # this run's: the shared core and its registry entries
    cwd: str
    threads: int = 1
    timeout_s: float | None = None
    copies: list[tuple[str, str, str]] = field(default_factory=list)  # (axis, arm, out_dir) sharing this run
    seed: int = 0
    core_version: str = ""  # the shared core's alone: runs of one core are compared with each other
    data_source: dict[str, Any] | None = None  # a run on a data folder: its cohort (stflib.data.source)


def run_folder_name(fold: int, seed: int = 0) -> str:
    """``fold<k>`` for seed 0 (the first grid's folders stay valid), ``fold<k>-seed<s>`` otherwise."""
    return f"fold{fold}" if seed == 0 else f"fold{fold}-seed{seed}"


def parse_run_folder(name: str) -> tuple[int | None, int]:
    """(fold, seed) from a run folder's name (``fold2`` -> (2, 0), ``fold2-seed1`` -> (2, 1))."""
    fold, _, seed = name.partition("-seed")
    try:
        return int(fold.removeprefix("fold")), int(seed or 0)
    except ValueError:
        return None, 0


def parse_seeds(text: str) -> list[int]:
    """``"0,1"`` -> [0, 1]: distinct non-negative integers."""
    try:
        seeds = [int(s) for s in str(text).split(",") if s.strip()]
    except ValueError:
        raise ValueError(f"--seeds: expected comma-separated non-negative integers such as 0,1; got {text!r}") from None
    if not seeds or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds: expected distinct non-negative integers such as 0,1; got {text!r}")
    return seeds


def make_tasks(paths, folds: int, results: str | Path, notebook: str | Path = DEFAULT_NOTEBOOK,
               overrides: dict[str, Any] | None = None, threads: int = 1, timeout_s: float | None = None,
               seeds: list[int] | tuple[int, ...] = (0,)) -> list[Task]:
    """One task per (arm, fold, seed); arms with identical parameters share one task (``copies``).

    A params file or ``--set`` that fixes ``seed`` itself wins over ``seeds``: one run per fold, in
    ``fold<k>`` (the seed is then part of the arm's definition, not a replicate).
    """
    results = Path(results).resolve()
    index = CodeIndex(notebook=notebook)
    tasks: dict[str, Task] = {}
    sources: dict[tuple, dict[str, Any]] = {}  # (data_dir, cohort filter) -> its description, read once
    for axis, arm, path in discover(paths):
        base = {**load_params(path), **(overrides or {})}
        source, root = None, results
        if base.get("data_dir") is not None:  # real data: the plain axis, in the data source's own folder
            source = data_source(base, sources)
            axis, root = plain_axis(axis), results / REAL_FOLDER / source["id"]
        fixed_seed = "seed" in base
        arm_seeds = [int(base["seed"])] if fixed_seed else list(seeds)
        for k in range(folds):
            for seed in arm_seeds:
                params = {**base, "n_folds": folds, "fold": k}
                if seed != 0:  # seed 0 is the default: its runs keep the first grid's parameters and hashes
                    params["seed"] = seed
                cfg = C.validate(params, check_paths=False)  # fail here, not in a worker
                version = index.run_version(cfg)
                run_hash = hashlib.sha256(f"{C.config_hash(cfg)}:{version}".encode()).hexdigest()[:16]
                out_dir = str(root / axis / arm / run_folder_name(k, 0 if fixed_seed else seed))
                if run_hash in tasks:
                    tasks[run_hash].copies.append((axis, arm, out_dir))
                    continue
                tasks[run_hash] = Task(axis, arm, k, {**params, "progress": False}, out_dir, run_hash,
                                       str(Path(notebook).resolve()), version, os.getcwd(), threads, timeout_s,
                                       seed=seed, core_version=index.core_version, data_source=source)
    return list(tasks.values())


REAL_FOLDER = "real"  # <results>/real/<source>/<axis>/<arm>/fold<k>: the runs on a data folder


def data_source(params: dict[str, Any], cache: dict[tuple, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The cohort that ``params`` (with a ``data_dir``) select: :func:`stflib.data.source.describe_source`
    under the run's cohort filter. Where the folder's metadata cannot be read (a dry run before the
    download), the folder's name alone, with the reason under ``missing``: the run itself will stop there."""
    from stflib.data import source as S

    filters = C.cohort_filter(C.validate(params, check_paths=False))
    key = (str(Path(params["data_dir"]).resolve()), tuple((k, tuple(v or ())) for k, v in filters.items()))
    cache = {} if cache is None else cache
    if key not in cache:
        try:
            cache[key] = S.describe_source(params["data_dir"], filters)
        except (OSError, ValueError) as e:
            name = Path(params["data_dir"]).resolve().name
            cache[key] = {"id": S.folder_slug(name), "data_dir": name, "missing": str(e)}
    return cache[key]


WORLDS_FOLDER = "worlds"  # <results>/worlds/<world>/<axis>/<arm>/fold<k>: the runs of a non-default world


def parse_worlds(items: list[str] | str) -> list[str]:
    """``--world`` values (repeated or comma-separated; ``all``: every non-default world) -> world names.

    The default world is not one of them: its runs are the full grid, ``ablate`` without ``--world``.
    """
    names = [w.strip() for item in ([items] if isinstance(items, str) else items) for w in item.split(",") if w.strip()]
    if not names:
        raise ValueError(f"--world: expected a world name or 'all'; allowed: all, {', '.join(ROBUSTNESS_WORLDS)}")
    worlds = []
    for name in names:
        if name == DEFAULT_WORLD:
            raise ValueError(f"--world {name}: the {DEFAULT_WORLD!r} world's runs are the full grid in "
                             "<results>/<axis>/<arm>/; run `python -m stflib ablate params` without --world")
        if name != "all" and name not in ROBUSTNESS_WORLDS:
            raise ValueError(f"--world: unknown world {name!r}; allowed: all, {', '.join(ROBUSTNESS_WORLDS)}")
        worlds += [w for w in (ROBUSTNESS_WORLDS if name == "all" else [name]) if w not in worlds]
    return worlds


def make_world_tasks(worlds: list[str], paths=None, folds: int = 3, results: str | Path = "results",
                     notebook: str | Path = DEFAULT_NOTEBOOK, overrides: dict[str, Any] | None = None,
                     threads: int = 1, timeout_s: float | None = None,
                     seeds: list[int] | tuple[int, ...] = (0,)) -> list[Task]:
    """:func:`make_tasks` in each simulator world of ``worlds``, into ``<results>/worlds/<world>/``.

    ``paths``: params files or folders (default: the robustness subset, :func:`robustness_params`).
    Every run sets ``world``, so it is part of the run hash and of the run's recorded config.
    """
    overrides = dict(overrides or {})
    if "world" in overrides:
        raise ValueError(f"--set world={overrides['world']} and --world together: give the worlds with --world only")
    if overrides.get("data_dir") is not None:
        raise ValueError(f"--world with data_dir={overrides['data_dir']}: a world is a simulated cohort, "
                         "real data has none; drop --world or data_dir")
    paths = list(paths or []) or robustness_params()
    tasks = []
    for world in worlds:
        tasks += make_tasks(paths, folds, Path(results) / WORLDS_FOLDER / world, notebook,
                            {**overrides, "world": world}, threads, timeout_s, seeds)
    return tasks


def read_run(out_dir: str | Path) -> dict | None:
    """A run folder's ``run.json`` (None when it is absent or unreadable)."""
    p = Path(out_dir) / "run.json"
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None


def is_complete(out_dir: str | Path, run_hash: str) -> bool:
    """Whether the run in ``out_dir`` finished with this hash (same parameters, same code) and wrote its metrics."""
    info = read_run(out_dir)
    return bool(info and info.get("status") == "ok" and info.get("run_hash") == run_hash
                and (Path(out_dir) / "metrics.json").is_file())


def _replace_dir(src: Path, dst: Path) -> None:
    """Move ``src`` to ``dst``, replacing it (the old one is renamed away first, then deleted)."""
    old = None
    if dst.exists():
        old = dst.with_name(f".{dst.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(dst, old)
    os.replace(src, dst)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)




def run_settings(task: Task) -> dict[str, Any]:
    """Parameters the runner gives every run unless its params fix them: torch threads (one run per
    core), ``predictions.h5ad`` of the 50 HVGs only (the grid writes one per run; a run on its own
    keeps every gene) and only the figure the book shows (the others took 5 % of a reference run's wall
    time and were never committed). None of them changes a run's metrics or its hash."""
    return {"torch_threads": max(1, task.threads), "prediction_genes": "hvg50", "figures": "book"}


# what a run's kernel inherits from the runner, recorded in run.json (the grid's cost depends on it)
KERNEL_ENVIRONMENT = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "MALLOC_TRIM_THRESHOLD_")


def kernel_environment(threads: int) -> None:
    """Set the environment the run's kernel inherits (in this worker process).

    - ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS``: the BLAS libraries read them when the kernel starts.
    - ``MALLOC_TRIM_THRESHOLD_`` is removed: Dask's nanny sets it to 65536 in its workers
      (``distributed.nanny.pre-spawn-environ``), glibc then hands memory back to the system after
      nearly every training step and half of a run's CPU time went to system calls (an STF run took
      170 s under the grid against 86 s from papermill alone, with identical metrics).
    """
    threads = max(1, threads)
    os.environ.update({"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)})
    os.environ.pop("MALLOC_TRIM_THRESHOLD_", None)


def execute(task: Task) -> dict:
    """Run one task through papermill (in a Dask worker or inline). Never raises: returns run.json."""
    import papermill as pm

    final = Path(task.out_dir)
    final.parent.mkdir(parents=True, exist_ok=True)
    work = final.with_name(f".{final.name}.partial")  # kept on interruption: the run resumes from its checkpoint
    work.mkdir(parents=True, exist_ok=True)
    for name in ("error.json", "run.json", "metrics.json"):
        (work / name).unlink(missing_ok=True)
    kernel_environment(task.threads)
    info = {"axis": task.axis, "arm": task.arm, "fold": task.fold, "seed": task.seed, "run_hash": task.run_hash,
            "code_version": task.code_version, "core_version": task.core_version, "params": task.params,
            **({"data_source": task.data_source} if task.data_source else {}),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "host": os.uname().nodename,
            "kernel_environment": {name: os.environ.get(name) for name in KERNEL_ENVIRONMENT}}
    now = run_version(task.params, task.notebook)
    if now != task.code_version:  # the code changed after the grid was planned: the run is not what was asked
        info["code_version_at_run"] = now
    t0 = time.perf_counter()
    try:
        pm.execute_notebook(task.notebook, str(work / "executed.ipynb"),
                            parameters={**run_settings(task), **task.params, "output_dir": str(work)},
                            kernel_name="python3", progress_bar=False, cwd=task.cwd,
                            execution_timeout=task.timeout_s, log_output=False,
                            # IPC sockets, no SIGINT at shutdown; the kernel's own warnings (e.g. "parent
                            # appears to have exited" on Ctrl-C) stay out of the grid's terminal
                            kernel_manager_class=quiet_kernel_manager_class(),
                            extra_arguments=["--IPKernelApp.log_level=ERROR"],
                            # every output and file of the run is written once its last cell has replied: a
                            # graceful exit of a kernel that holds torch took 1.3 s more of every run's wall time
                            shutdown_kernel="immediate")
        if not (work / "metrics.json").is_file():
            raise RuntimeError("the notebook finished without writing metrics.json")
        record_output_dir(work / "metrics.json", final, Path(task.cwd))
        info["status"] = "ok"
        if run_version(task.params, task.notebook) != task.code_version or "code_version_at_run" in info:
            info["status"] = "stale"  # re-run by the next `ablate` (is_complete needs status ok)
            info["error"] = "the library or notebook changed while the grid ran; re-run `python -m stflib ablate`"
    except BaseException as e:  # noqa: BLE001 - a failed run is recorded, the grid carries on
        info["status"] = "failed"
        err = {"type": type(e).__name__, "message": str(e)[-4000:], "traceback": traceback.format_exc()[-8000:]}
        ename, evalue = getattr(e, "ename", None), getattr(e, "evalue", None)
        if ename:
            err.update({"type": ename, "message": str(evalue)[-4000:]})
        info["error"] = f"{err['type']}: {err['message'].strip().splitlines()[-1] if err['message'].strip() else ''}"
        write_json(err, work / "error.json")
        if isinstance(e, KeyboardInterrupt):
            raise
    info["seconds"] = round(time.perf_counter() - t0, 2)
    info["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    if info["status"] == "ok":
        (work / "checkpoint.pt").unlink(missing_ok=True)  # the optimiser state is not needed any more
    write_json(info, work / "run.json")
    _replace_dir(work, final)
    for axis, arm, out_dir in task.copies:
        copy_run(final, Path(out_dir), axis, arm)
    return info


def record_output_dir(metrics_json: Path, final: Path, root: Path) -> None:
    """Record in ``metrics.json`` the run's final folder relative to ``root`` (the grid's working folder,
    the repository), not the absolute temporary folder the notebook wrote into: committed results carry
    no path of the machine that ran them."""
    metrics = json.loads(metrics_json.read_text())
    config = metrics.get("config") or {}
    if "output_dir" in config:
        config["output_dir"] = Path(os.path.relpath(final.resolve(), root.resolve())).as_posix()
        write_json(metrics, metrics_json)


def copy_run(src: Path, dst: Path, axis: str, arm: str) -> None:
    """Copy a finished run into another arm's folder (identical parameters), atomically."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.copy-{uuid.uuid4().hex[:8]}")
    shutil.copytree(src, tmp)
    info = read_run(tmp) or {}
    # <axis>/<arm>/fold<k> of the source, relative to the results folder both live in: committed runs
    # record no path of the machine that ran them
    info.update({"axis": axis, "arm": arm, "copied_from": Path(os.path.relpath(src, dst.parents[2])).as_posix()})
    write_json(info, tmp / "run.json")
    _replace_dir(tmp, dst)


def complete_run_elsewhere(task: Task, finished: dict[Path, dict[str, Path]]) -> Path | None:
    """A complete run folder with ``task``'s run hash anywhere in its results folder (the folder three
    levels above ``task.out_dir``), or None. ``finished`` caches each results folder's index."""
    root = Path(task.out_dir).parents[2]
    if root not in finished:
        index: dict[str, Path] = {}
        for path in sorted(root.rglob("run.json")) if root.is_dir() else []:
            folder = path.parent
            if any(part.startswith(".") for part in folder.relative_to(root).parts):
                continue  # partial, old or temporary folders
            info = read_run(folder) or {}
            if info.get("run_hash") and is_complete(folder, info["run_hash"]):
                index.setdefault(info["run_hash"], folder)
        finished[root] = index
    return finished[root].get(task.run_hash)


def _cost_estimate(t: Task) -> float:
    """Rough relative run time, to start the long runs first."""
    model = t.params.get("model", "interaction")
    if model == "ridge_probe":
        return 1e6  # PCA + ridge over 1000 genes: minutes on one core
    if model != "interaction":
        return 1.0
    return t.params.get("n_layers", 2) * t.params.get("token_dim", 256) ** 2


def run_grid(tasks: list[Task], scheduler: str | None = None, workers: int | None = None, log=print,
             force: bool = False, resources: dict[str, int] | None = None) -> list[dict]:
    """Run the tasks that are not complete through Dask; returns the run.json of each task.

    ``resources``: what each run asks of a worker (e.g. ``{"GPU": 1}`` on a SLURM GPU cluster)."""
    todo, done = [], []
    finished: dict[Path, dict[str, Path]] = {}  # results folder -> run hash -> a complete run in it
    for t in tasks:
        targets = [t.out_dir] + [c[2] for c in t.copies]
        if not force and all(is_complete(d, t.run_hash) for d in targets):
            done.append(read_run(t.out_dir))
            continue
        src = None if force else complete_run_elsewhere(t, finished)
        if src is not None and not any(is_complete(d, t.run_hash) for d in targets):
            # the same run (same hash) finished in another axis's folder, e.g. the default STF when the
            # grid is run one axis at a time: copy it instead of training it again
            for axis, arm, out_dir in [(t.axis, t.arm, t.out_dir), *t.copies]:
                copy_run(src, Path(out_dir), axis, arm)
            done.append(read_run(t.out_dir))
            continue
        if not force and is_complete(t.out_dir, t.run_hash):  # only some copies missing
            for axis, arm, out_dir in t.copies:
                if not is_complete(out_dir, t.run_hash):
                    copy_run(Path(t.out_dir), Path(out_dir), axis, arm)
            done.append(read_run(t.out_dir))
            continue
        todo.append(t)
    n_runs = sum(1 + len(t.copies) for t in tasks)
    log(f"{len(tasks)} distinct runs ({n_runs} arm x fold folders): {len(done)} complete, {len(todo)} to run")
    if not todo:
        return done
    # longest first (bigger models, more layers), so the grid's tail is short
    todo.sort(key=_cost_estimate, reverse=True)
    import logging

    from dask.distributed import Client, LocalCluster, as_completed

    cluster = None
    if scheduler:
        client = Client(scheduler)
    else:
        n = workers or max(1, min(len(todo), (os.cpu_count() or 2)))
        # silence_logs: the workers' warnings (tasks cancelled by Ctrl-C, closed comms) are noise here;
        # their errors still show, and a failed run is recorded in its run.json
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0",
                               silence_logs=logging.ERROR)
        client = Client(cluster)
    t0 = time.perf_counter()
    results = list(done)
    try:
        futures = client.map(execute, todo, pure=False, resources=resources,
                             key=[f"run-{t.axis.replace('/', '.')}-{t.arm}-{run_folder_name(t.fold, t.seed)}-{t.run_hash}"
                                  for t in todo])
        for i, fut in enumerate(as_completed(futures), 1):
            try:
                info = fut.result()
            except Exception as e:  # noqa: BLE001 - a lost worker: record and carry on
                info = {"status": "failed", "error": f"{type(e).__name__}: {e}"}
            results.append(info)
            world = (info.get("params") or {}).get("world")
            where = f"{WORLDS_FOLDER}/{world}/" if world and world != DEFAULT_WORLD else ""
            if info.get("data_source"):
                where = f"{REAL_FOLDER}/{info['data_source'].get('id')}/"
            log(f"[{i}/{len(todo)} {time.perf_counter() - t0:6.0f}s] {where}{info.get('axis')}/{info.get('arm')}/"
                f"{run_folder_name(info.get('fold'), info.get('seed') or 0)}: "
                f"{info.get('status')} ({info.get('seconds', '?')} s){' ' + info['error'] if info.get('error') else ''}")
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return results
