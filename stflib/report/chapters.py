"""What the teaching chapters show that takes more than a few seconds, computed once into results/chapters/.

``python -m stflib chapters [--chapter NAME]`` loads the simulated cohort (generating it on first
use), fits the chapter's demonstration models and writes small CSV/JSON files (and one PNG of
patches) into ``results/chapters/<chapter>/``; the chapters read those files with :func:`table`,
:func:`facts` and :func:`path`, so building the book trains nothing and generates no cohort.
Every file's numbers come from the code below; the chapters' own cells only plot and print them.

``CHAPTERS`` maps each chapter to its compute function. Each function returns
``{file name: DataFrame | dict}``; a DataFrame becomes a CSV, a dict a JSON file.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from stflib.report.chapter_data import (BACKBONE, SLIDE, _num, compute_baselines, compute_data,  # noqa: F401
                                         compute_losses, compute_model, compute_targets_and_pathways, qc_table)
from stflib.paths import measurement_dir, project_root
from stflib.report.results import results_root

def chapters_dir(results_dir: str | Path | None = None) -> Path:
    """``<results>/chapters`` (:func:`stflib.report.results.results_root`: ``results_dir``, else ``$STFLIB_RESULTS``,
    else the project's results/)."""
    return results_root(results_dir) / "chapters"


def path(chapter: str, name: str, results_dir: str | Path | None = None) -> Path:
    """The committed file ``name`` of ``chapter`` (the results folder's, else the project's:
    :func:`stflib.paths.measurement_dir`); a missing file names the command that writes it."""
    p = measurement_dir("chapters", results_dir) / chapter / name
    if not p.is_file():
        raise FileNotFoundError(f"{p} is missing: run python -m stflib chapters --chapter {chapter}")
    return p


def table(chapter: str, name: str, index_col: int | str | None = 0, results_dir: str | Path | None = None) -> pd.DataFrame:
    """A committed CSV of ``chapter`` (``name`` without ``.csv``)."""
    folder = measurement_dir("chapters", results_dir) / chapter
    name = f"{name}.csv.gz" if (folder / f"{name}.csv.gz").is_file() else f"{name}.csv"
    return pd.read_csv(path(chapter, name, results_dir), index_col=index_col)


def facts(chapter: str, name: str = "facts", results_dir: str | Path | None = None) -> dict:
    """A committed JSON of ``chapter`` (``name`` without ``.json``)."""
    return json.loads(path(chapter, f"{name}.json", results_dir).read_text())


# ---------------------------------------------------------------------------------------------
# the cohort and fold 0, as the chapters use them
# ---------------------------------------------------------------------------------------------


CHAPTERS: dict[str, Callable[[], dict]] = {
    "data": compute_data,
    "targets_and_pathways": compute_targets_and_pathways,
    "baselines": compute_baselines,
    "losses": compute_losses,
    "model": compute_model,
}


def write(chapter: str, outputs: dict, results_dir: str | Path | None = None) -> list[Path]:
    """Write one chapter's outputs: DataFrames as CSV (6 significant digits), dicts as JSON, arrays as PNG."""
    folder = chapters_dir(results_dir) / chapter
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, value in outputs.items():
        if isinstance(value, pd.DataFrame):
            p = folder / f"{name}.csv"
            compress = "gzip" if value.size > 20_000 else None
            if compress:
                p = folder / f"{name}.csv.gz"
            value.to_csv(p, float_format="%.6g", compression=compress and {"method": "gzip", "mtime": 0})
        elif isinstance(value, dict):
            p = folder / f"{name}.json"
            p.write_text(json.dumps(value, indent=1, default=_num) + "\n")
        elif isinstance(value, np.ndarray):
            import matplotlib.pyplot as plt

            p = folder / name
            plt.imsave(p, value, pil_kwargs={"optimize": True}, metadata={"Software": None})
        else:
            raise TypeError(f"{chapter}/{name}: cannot write a {type(value).__name__}")
        written.append(p)
    return written


def time_notebooks(notebooks: list[Path] | None = None, timeout: int = 900) -> pd.DataFrame:
    """Execute every notebook of the book (``book/**/*.ipynb``) one after the other, each in its own
    folder as the book build does, and return its wall time in seconds (index: the page's name
    relative to ``book/``, without suffix)."""
    import nbformat
    from nbclient import NotebookClient

    book = project_root() / "book"
    notebooks = notebooks or sorted(p for p in book.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
    rows = {}
    for nb_path in notebooks:
        nb = nbformat.read(nb_path, as_version=4)
        page = nb_path.relative_to(book).with_suffix("").as_posix()
        t0 = time.perf_counter()
        try:
            NotebookClient(nb, timeout=timeout, kernel_name="python3",
                           resources={"metadata": {"path": str(nb_path.parent)}}).execute()
        except Exception as err:  # a failing page is reported and left out, the others are still timed
            print(f"{page}: failed ({type(err).__name__}); not timed", flush=True)
            continue
        rows[page] = time.perf_counter() - t0
        print(f"{page}: {rows[page]:.1f} s", flush=True)
    return pd.DataFrame({"seconds": pd.Series(rows)}).rename_axis("page")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--chapter", action="append", choices=list(CHAPTERS),
                        help="a chapter to compute (repeatable; default: all of them)")
    parser.add_argument("--time-notebooks", action="store_true",
                        help="instead: execute every book notebook once and record its time "
                             "(results/chapters/timing/notebook_seconds.csv, which the chapters' run-time notes read)")
    parser.add_argument("--results", default=None, help="results folder (default: $STFLIB_RESULTS, else the project's results/)")


def run(args: argparse.Namespace) -> int:
    import torch

    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    timing = chapters_dir(args.results) / "timing"
    if args.time_notebooks:
        write("timing", {"notebook_seconds": time_notebooks().round(1)}, args.results)
        return 0
    for chapter in args.chapter or list(CHAPTERS):
        t0 = time.perf_counter()
        written = write(chapter, CHAPTERS[chapter](), args.results)
        seconds = time.perf_counter() - t0
        print(f"{chapter}: {len(written)} files in {written[0].parent} ({seconds:.0f} s)", flush=True)
        known = json.loads((timing / "compute_seconds.json").read_text()) if (timing / "compute_seconds.json").is_file() else {}
        write("timing", {"compute_seconds": {**known, chapter: round(seconds, 1)}}, args.results)
    return 0
