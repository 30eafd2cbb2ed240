"""Reading ``results/``: the runs' summary table, run folders, their figures and training histories.

``load_summary`` reads ``results/summary.csv`` (written by :mod:`stflib.grid.collect`) with the
design columns (world, seed) filled for older grids; ``axis_rows`` selects one axis's runs;
``metric_info`` gives a summarised metric's label and direction from :data:`stflib.metrics.METRICS`.

The results pages show :func:`page_summary`: the simulated default world's runs (and the other worlds')
when the folder has no real runs, else the real runs of one data source, which then take the default
world's place in every table (:func:`shown_summary`); their run folders are under :func:`runs_root`.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from stflib.metrics import METRICS, Metric
from stflib.paths import project_root

# the project's root (stflib.paths): the name stays importable for the modules that used it
repo_root = project_root


def results_root(results_dir: str | Path | None = None) -> Path:
    """The results folder: ``results_dir`` when given, else ``$STFLIB_RESULTS``, else ``<project>/results``
    (:func:`stflib.paths.results_dir`)."""
    from stflib.paths import results_dir as default_results

    return default_results(results_dir)


def write_results_csv(table: pd.DataFrame, path: str | Path) -> Path:
    """Write a results table (no index, 6 significant digits) to ``path`` atomically, creating its folder."""
    from stflib.io import atomic_write

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: table.to_csv(tmp, index=False, float_format="%.6g"))
    return path


def load_summary(results_dir: str | Path | None = None) -> pd.DataFrame:
    """Read ``results/summary.csv`` (one row per run), keeping only completed runs."""
    results_dir = results_root(results_dir)
    path = results_dir / "summary.csv"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run `python -m stflib ablate params` then `python -m stflib collect`")
    summary = pd.read_csv(path)
    if "status" in summary:
        summary = summary[summary["status"].fillna("ok") == "ok"]
    return with_design_columns(summary)


DEFAULT_WORLD = "default"
REAL_WORLD = "real"  # stflib.grid.collect's world of a run on a data folder
REAL_FOLDER = "real"  # <results>/real/<source>/<axis>/<arm>/fold<k> (stflib.grid.runner.REAL_FOLDER)


def real_mask(summary: pd.DataFrame) -> pd.Series:
    """Which runs read real data: world ``real`` (a collected run with a ``data_dir``)."""
    return with_design_columns(summary)["world"] == REAL_WORLD


def data_sources(summary: pd.DataFrame) -> pd.Series:
    """Runs per data source (cohort id, :mod:`stflib.data.source`) of the real runs, most first; a real run
    without a recorded source (made before sources were recorded) counts under its data folder's name."""
    real = summary[real_mask(summary).to_numpy()]
    if real.empty:
        return pd.Series(dtype=int, name="runs")
    return _source_column(real).value_counts().rename("runs")


def _source_column(rows: pd.DataFrame) -> pd.Series:
    folder = rows["data_dir"].map(lambda d: Path(str(d)).name) if "data_dir" in rows else pd.Series("?", index=rows.index)
    return rows["data_source"].fillna(folder) if "data_source" in rows else folder


def shown_source(summary: pd.DataFrame, data_source: str | None = None) -> str | None:
    """The data source the pages show: ``data_source`` when given (an unknown one raises, naming those
    present), else the one with the most real runs; None when the summary has no real runs."""
    sources = data_sources(summary)
    if data_source is not None:
        if data_source not in sources.index:
            raise ValueError(f"data source {data_source!r} has no real runs here; present: "
                             f"{', '.join(sources.index) or 'none (only simulated runs)'}")
        return data_source
    return str(sources.index[0]) if len(sources) else None


def shown_summary(summary: pd.DataFrame, data_source: str | None = None) -> pd.DataFrame:
    """The runs the results pages show. Without real runs: ``summary`` itself (the simulated default
    world, with the other worlds for the robustness checks). With real runs: only those of one data
    source (:func:`shown_source`), with ``world`` set to :data:`DEFAULT_WORLD`, the world every table of
    :mod:`stflib.report.tables` and :mod:`stflib.report.findings` reads as the page's own; the column
    ``data_source`` says which cohort (and ``data_dir`` keeps the notes saying "real data"). The simulated
    runs are left out: a page is about one cohort, and the simulation-against-reality comparison reads the
    whole summary (:func:`load_summary`)."""
    summary = with_design_columns(summary)
    source = shown_source(summary, data_source)
    if source is None:
        return summary
    real = summary[real_mask(summary).to_numpy()]
    real = real.assign(data_source=_source_column(real))
    return real[real["data_source"] == source].assign(world=DEFAULT_WORLD)


def page_summary(results_dir: str | Path | None = None, data_source: str | None = None) -> pd.DataFrame:
    """:func:`shown_summary` of the results folder's summary: what a results page shows."""
    return shown_summary(load_summary(results_dir), data_source)


def is_real(summary: pd.DataFrame) -> bool:
    """True when ``summary`` (a :func:`shown_summary`) holds runs on real data."""
    return bool(real_mask(summary).any()) or ("data_source" in summary and summary["data_source"].notna().any())


def runs_root(summary: pd.DataFrame, results_dir: str | Path | None = None) -> Path:
    """The folder that holds the run folders (``<axis>/<arm>/fold<k>``) of the runs ``summary`` shows:
    ``<results>/real/<source>`` for the real runs of one data source, else the results folder. The
    commands that compute a page's tables from run folders (``spread``, ``pathway-bounds``, ...) take it
    as their ``--results`` for real runs."""
    root = results_root(results_dir)
    if "data_source" in summary and is_real(summary):
        sources = summary["data_source"].dropna().unique()
        if len(sources) == 1:
            return root / REAL_FOLDER / str(sources[0])
    return root


def source_description(source: str, results_dir: str | Path | None = None) -> dict:
    """The description of a data source that its runs' ``run.json`` records (:func:`stflib.data.source.describe_source`,
    written when the grid planned them); only ``id`` when no run records it (older runs)."""
    import json

    for path in sorted((results_root(results_dir) / REAL_FOLDER / source).glob("*/*/fold*/run.json")):
        described = json.loads(path.read_text()).get("data_source")
        if described:
            return described
    return {"id": source}


# a pair is one (fold, seed): the arm and its reference saw the same test patients and the same seed
PAIR_COLUMNS = ["fold", "seed"]


def version_column(rows: pd.DataFrame, complete: bool = False) -> str | None:
    """The column that says which shared code made each run: ``core_version`` (the code every run executes,
    ``stflib.grid.version``; two arms' runs differ in their own ``code_version`` by the entries they name)
    where recorded, else ``code_version`` (older grids, where it hashed the whole library); None when
    neither is recorded (``complete``: for every row)."""
    for column in ("core_version", "code_version"):
        if column in rows and (rows[column].notna().all() if complete else rows[column].notna().any()):
            return column
    return None


def pair_index(rows: pd.DataFrame) -> list[str]:
    """The columns that make two runs a pair: the same fold and seed, and the same shared code
    (:func:`version_column`, where recorded). While a grid is being re-run, a new run is never paired with
    an earlier version's run of the same fold and seed: that difference would mix two codes."""
    column = version_column(rows, complete=True)
    return [*PAIR_COLUMNS, column] if column else list(PAIR_COLUMNS)


def runs_of_reference_version(rows: pd.DataFrame, reference: pd.Series) -> pd.DataFrame:
    """The ``rows`` made by the shared code (:func:`version_column`) of most of the ``reference`` runs
    (a boolean mask over ``rows``); all ``rows`` where no version is recorded or the reference has no run.
    A contrast over many arms (a factorial effect, a table of claims) then never mixes two codes."""
    column = version_column(rows)
    if column is None:
        return rows
    versions = rows.loc[reference, column].dropna()
    return rows if versions.empty else rows[rows[column] == versions.mode().iloc[0]]


def with_design_columns(summary: pd.DataFrame) -> pd.DataFrame:
    """Fill the design columns older summaries lack: ``seed`` 0 and ``world`` 'default'.

    Runs of the first grid were one seed (0) on the default simulated world; their rows keep
    pairing with the seed-0 runs of later grids.
    """
    summary = summary.copy()
    summary["seed"] = pd.to_numeric(summary["seed"], errors="coerce").fillna(0).astype(int) if "seed" in summary else 0
    summary["world"] = summary["world"].fillna(DEFAULT_WORLD).astype(str) if "world" in summary else DEFAULT_WORLD
    return summary


def metric_info(name: str) -> Metric:
    """A summarised metric's label, direction and description: ``METRICS[name]`` (an unknown name raises,
    naming the summarised metrics)."""
    return METRICS[name]


def axis_rows(summary: pd.DataFrame, axis: str, world: str | None = DEFAULT_WORLD) -> pd.DataFrame:
    """The runs of one axis (of one simulator world; ``world=None``: all worlds)."""
    summary = with_design_columns(summary)
    if world is not None:
        summary = summary[summary["world"] == world]
    rows = summary[summary["axis"] == axis]
    if rows.empty:
        known = sorted(summary["axis"].unique())
        raise ValueError(f"axis {axis!r} has no completed runs in the summary; axes present: {known}")
    return rows


def run_dir(axis: str, arm: str, fold: int = 0, results_dir: str | Path | None = None) -> Path:
    """Folder of one run: ``results/<axis>/<arm>/fold<k>``."""
    results_dir = results_root(results_dir)
    return results_dir / axis / arm / f"fold{fold}"


def run_predictions(axis: str, results_dir: str | Path | None = None) -> list[tuple[str, str, Path]]:
    """(arm, run folder name, path) of every ``predictions.h5ad`` of ``axis`` here
    (``results/<axis>/<arm>/fold*/``), arms in the axis' order; a clear error when there is none
    (the grid commits each run's metrics, not its predictions)."""
    from stflib.grid.axes import ARMS

    if axis not in ARMS:
        raise ValueError(f"axis {axis!r} unknown; allowed: {', '.join(ARMS)}")
    root = results_root(results_dir) / axis
    runs = [(arm, path.parent.name, path) for arm in ARMS[axis].arms
            for path in sorted((root / arm).glob("fold*/predictions.h5ad"))]
    if not runs:
        raise FileNotFoundError(f"no predictions.h5ad under {root}: run `python -m stflib ablate params/{axis}`")
    return runs


def per_arm_means(path: str | Path, columns, command: str) -> pd.DataFrame:
    """Per arm (in file order): the mean of ``columns`` over the per-run rows of a committed results
    CSV (columns ``arm``, ``run``, ...), with the number of runs first; when the file is absent, an
    error naming ``command``, which writes it from the runs' ``predictions.h5ad``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run `{command}` where the axis' runs (their predictions.h5ad) are")
    runs = pd.read_csv(path)
    table = runs.groupby("arm", sort=False)[list(columns)].mean()
    table.insert(0, "runs", runs.groupby("arm", sort=False).size())
    return table


def run_figure(axis: str, arm: str, name: str, fold: int = 0, results_dir: str | Path | None = None) -> Path:
    """A figure saved by one run (``results/<axis>/<arm>/fold<k>/<name>``); a clear error when absent."""
    path = run_dir(axis, arm, fold, results_dir) / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run `python -m stflib ablate params/{axis}` (fold {fold})")
    return path


def histories(axis: str, arms: list[str], fold: int = 0, results_dir: str | Path | None = None) -> pd.DataFrame:
    """Training histories (``history.csv``: epoch, train_loss, val_loss, val_pcc) of several arms, long format."""
    frames = []
    for arm in arms:
        path = run_dir(axis, arm, fold, results_dir) / "history.csv"
        if path.is_file():
            frames.append(pd.read_csv(path).assign(arm=arm))
    if not frames:
        raise FileNotFoundError(f"no history.csv for {arms} in results/{axis}/*/fold{fold}")
    return pd.concat(frames, ignore_index=True)


def loss_terms(axis: str, arms: list[str], fold: int = 0, epoch: int = 0,
               results_dir: str | Path | None = None) -> pd.DataFrame:
    """The size of each training-loss term (``train_<term>`` columns of ``history.csv``) at one epoch.

    Weights such as ``pcc_weight`` and ``pathway_loss_weight`` only mean something relative to the
    other terms: this shows the terms' magnitudes side by side.
    """
    history = histories(axis, arms, fold, results_dir)
    terms = [c for c in history.columns if c.startswith("train_") and c != "train_loss"]
    rows = history[history["epoch"] == epoch].set_index("arm")[["train_loss", *terms]]
    return rows.rename(columns=lambda c: c.removeprefix("train_"))


def grid_runs(results_dir: str | Path | None = None, earlier_designs: bool = False) -> pd.DataFrame:
    """One row per run folder from its ``run.json`` (status, seconds, start and finish times, the
    versions of the code that produced it, its parameters), the runs of each (world, axis)'s current fold
    design only (``stflib.grid.collect.current_design``; ``earlier_designs``: every run on disk).

    Runs shared between arms (identical parameters) are executed once and copied; copies are
    marked ``copied`` so the grid's cost counts each execution once. ``malloc_trim``: the run's
    kernel inherited Dask's ``MALLOC_TRIM_THRESHOLD_`` (``stflib.grid.runner.kernel_environment``
    removes it now); a ``run.json`` without ``kernel_environment`` predates that record, and every
    grid before it ran with the setting.
    """
    import json

    results_dir = results_root(results_dir)
    rows = []
    # results/<axis>/<arm>/fold*/, for the other simulator worlds results/worlds/<world>/<axis>/<arm>/fold*/, and
    # for real data results/real/<source>/<axis>/<arm>/fold*/
    paths = [*results_dir.glob("*/*/fold*/run.json"), *results_dir.glob("worlds/*/*/*/fold*/run.json"),
             *results_dir.glob(f"{REAL_FOLDER}/*/*/*/fold*/run.json")]
    for path in sorted(paths):
        info = json.loads(path.read_text())
        params = info.get("params") or {}
        metrics_path = path.with_name("metrics.json")
        timing = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
        rows.append({"axis": info.get("axis"), "arm": info.get("arm"), "fold": info.get("fold"),
                     "seed": info.get("seed", params.get("seed", 0)),
                     "world": REAL_WORLD if params.get("data_dir") else info.get("world", params.get("world", DEFAULT_WORLD)),
                     "data_source": (info.get("data_source") or {}).get("id"),
                     "status": info.get("status"), "seconds": info.get("seconds"),
                     "started": pd.to_datetime(info.get("started")), "finished": pd.to_datetime(info.get("finished")),
                     "copied": "copied_from" in info, "code_version": info.get("code_version"),
                     "core_version": info.get("core_version"), "params": params,
                     "malloc_trim": "kernel_environment" not in info
                     or info["kernel_environment"].get("MALLOC_TRIM_THRESHOLD_") is not None,
                     "folder": str(path.parent.relative_to(results_dir)),
                     # what the run's own clock gave training and evaluation (metrics.json; eval_seconds only
                     # in runs made since it is recorded)
                     "train_seconds": timing.get("train_seconds"), "eval_seconds": timing.get("eval_seconds"),
                     "design_folds": params.get("n_folds")})
    runs = pd.DataFrame(rows, columns=["axis", "arm", "fold", "seed", "world", "data_source", "status", "seconds", "started",
                                       "finished", "copied", "code_version", "core_version", "params", "malloc_trim",
                                       "folder", "train_seconds", "eval_seconds", "design_folds"])
    if earlier_designs or runs.empty:
        return runs
    from stflib.grid.collect import current_design

    return current_design(runs)[0]
