"""Which real data a run used: a data folder's cohort as a short id and a description.

A run on a data folder (``data_dir``, HEST-1k layout) is filed under ``<results>/real/<id>/`` and its
``run.json`` records :func:`describe_source`'s dict, so the book can say which cohort its real runs
read without the data folder at hand. The id is the folder's name and a short hash of the samples
the run's cohort filter selects: two subsets of one folder are two data sources, and a folder
renamed or moved keeps its runs apart only when its selection differs.
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import pandas as pd

from stflib.data.cohort import _blank, patient_groups, select_samples

METADATA_CSV = "metadata.csv"  # a HEST-layout folder's sample table (stflib.data.read_hest_sample reads beside it)
# what a description lists as sets of values, from these metadata columns
VALUE_COLUMNS = {"technology": "st_technology", "oncotree": "oncotree_code", "organ": "organ", "species": "species"}


def folder_slug(name: str) -> str:
    """A folder name as a path- and Markdown-safe word ('HEST 1k (bowel)' -> 'hest-1k-bowel')."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "data"


def source_id(data_dir: str | Path, sample_ids) -> str:
    """``<folder name>-<6 hex>``: the folder's name and a hash of the selected sample ids (order-free)."""
    digest = hashlib.sha256("\n".join(sorted(map(str, sample_ids))).encode()).hexdigest()[:6]
    return f"{folder_slug(Path(data_dir).resolve().name)}-{digest}"


def describe_metadata(metadata: pd.DataFrame) -> dict[str, Any]:
    """Counts and value sets of selected metadata rows: samples, patients (the split's groups,
    :func:`stflib.data.patient_groups`), samples without a ``patient`` label, spots under tissue, and the
    technology, oncotree codes, organs and species present (sorted)."""
    groups = patient_groups(metadata)
    out: dict[str, Any] = {"samples": int(len(metadata)), "patients": int(groups.nunique()),
                           "unlabelled_samples": int(sum(_blank(v) for v in metadata["patient"]))
                           if "patient" in metadata else int(len(metadata))}
    if "spots_under_tissue" in metadata:
        spots = pd.to_numeric(metadata["spots_under_tissue"], errors="coerce")
        out["spots"] = int(spots.sum()) if spots.notna().any() else None
    for key, column in VALUE_COLUMNS.items():
        values = metadata[column].dropna().astype(str).str.strip() if column in metadata else pd.Series(dtype=str)
        out[key] = sorted(v for v in values.unique() if v)
    return out


def describe_source(data_dir: str | Path, filters: dict[str, Any] | None = None) -> dict[str, Any]:
    """The cohort a run reads from ``data_dir``: its metadata CSV's rows that pass ``filters``
    (``select_samples`` keywords, e.g. :func:`stflib.config.cohort_filter` of the run's config; None: the
    function's defaults), described by :func:`describe_metadata`, with ``id`` (:func:`source_id`) and
    ``data_dir`` (the folder's name only: committed results carry no path of the machine that ran them).
    A missing metadata CSV or a filter that selects nothing raises, naming the file."""
    data_dir = Path(data_dir)
    selected = select_samples(data_dir / METADATA_CSV, **(filters or {}))
    return {"id": source_id(data_dir, selected["id"]), "data_dir": data_dir.resolve().name,
            **describe_metadata(selected)}


def _listing(values) -> str:
    return ", ".join(f"`{v}`" for v in values) if values else "not recorded"


def source_text(description: dict[str, Any]) -> str:
    """One sentence about a data source, for a results page's banner: the id and folder, samples,
    patients (and how many samples had no patient label), spots, technology, oncotree codes, organ and
    species."""
    d = description
    unlabelled = d.get("unlabelled_samples") or 0
    patients = f"{d.get('patients', '?')} patients"
    if unlabelled:
        patients += (f" ({unlabelled} of the samples {'has' if unlabelled == 1 else 'have'} no `patient` label and "
                     f"{'is' if unlabelled == 1 else 'are'} grouped by study and `subseries`, as the folds group them)")
    spots = f", {d['spots']:,} spots under tissue" if d.get("spots") else ""
    return (f"cohort `{d.get('id', '?')}` (data folder `{d.get('data_dir', '?')}`): {d.get('samples', '?')} samples "
            f"from {patients}{spots}; technology {_listing(d.get('technology'))}, oncotree "
            f"{_listing(d.get('oncotree'))}, organ {_listing(d.get('organ'))}, species {_listing(d.get('species'))}")
