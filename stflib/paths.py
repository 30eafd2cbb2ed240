"""Where things live: the three locations the library reads, each one setting with a documented default.

- **Reference data** (the real Visium barcode grid, real sections, MSigDB files): ``$STFLIB_DATA``, by
  default ``$STFLIB_CACHE/data`` or ``~/.cache/stflib/data``. Everything read from it is optional: without
  it the simulator draws synthetic barcodes on the same grid and the checks that need real sections say so.
- **The project** (the run notebook ``notebooks/ablation.ipynb``, ``params/``, the book): ``$STFLIB_PROJECT``,
  by default the working folder or the first folder above it that holds ``notebooks/ablation.ipynb``.
- **Results** (``results/``: the grid's runs, summary tables, benchmarks): the ``results_dir`` argument the
  commands take (``--results``), else ``$STFLIB_RESULTS``, else ``<project>/results``.

The library never guesses a location from where its own files are, so it works installed outside a
checkout.
"""
from __future__ import annotations

import os
from pathlib import Path

DATA_ENV = "STFLIB_DATA"
PROJECT_ENV = "STFLIB_PROJECT"
RESULTS_ENV = "STFLIB_RESULTS"
NOTEBOOK = Path("notebooks") / "ablation.ipynb"


def cache_root() -> Path:
    """The stflib cache folder: ``$STFLIB_CACHE`` or ``~/.cache/stflib``."""
    env = os.environ.get("STFLIB_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "stflib"


def data_dir() -> Path:
    """The reference-data folder: ``$STFLIB_DATA``, else ``<cache>/data`` (it need not exist)."""
    env = os.environ.get(DATA_ENV)
    return Path(env).expanduser() if env else cache_root() / "data"


def project_root() -> Path:
    """``$STFLIB_PROJECT``, else the working folder or the first folder above it holding the run notebook,
    else the working folder."""
    env = os.environ.get(PROJECT_ENV)
    if env:
        return Path(env).expanduser()
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / NOTEBOOK).is_file():
            return folder
    return here


def default_notebook() -> Path:
    """The run notebook of the project (``<project>/notebooks/ablation.ipynb``)."""
    return project_root() / NOTEBOOK


def results_dir(results: str | os.PathLike | None = None) -> Path:
    """The results folder: ``results`` when given, else ``$STFLIB_RESULTS``, else ``<project>/results``."""
    if results:
        return Path(results)
    env = os.environ.get(RESULTS_ENV)
    return Path(env).expanduser() if env else project_root() / "results"


def measurement_dir(name: str, results: str | os.PathLike | None = None) -> Path:
    """``<results>/<name>`` for one of the project's own measurements (``chapters``, ``interpretability``,
    ``worlds``, ``bench``, ``ceilings``, ...) where that results folder has it, else the project's committed one.

    A results folder of runs on real data (``make book RESULTS=<dir>``) holds runs, not the simulator's
    measurements and benchmarks that the teaching chapters and the cost estimates read; those stay the
    project's unless the folder has its own. For reading only: the commands that write a measurement write
    into the results folder they are given."""
    own = results_dir(results) / name
    return own if own.exists() else project_root() / "results" / name
