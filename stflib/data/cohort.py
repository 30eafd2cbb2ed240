"""Which HEST samples, and how they are split: metadata filters (``select_samples``), the gated
download (``download_hest``), patient groups and patient-grouped folds (``patient_groups``,
``patient_folds``, ``check_cohort_folds``, ``train_val_split``)."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from stflib.io import atomic_write


def select_samples(metadata_csv: str | Path, organ: str | Sequence[str] | None = "Bowel",
                   species: str | Sequence[str] | None = "Homo sapiens",
                   technology: str | Sequence[str] | None = "Visium",
                   oncotree: str | Sequence[str] | None = ("COAD", "READ", "COADREAD")) -> pd.DataFrame:
    """Rows of the HEST metadata CSV that pass every filter (None = no filter), in file order.

    On HEST_v1_1_0.csv the defaults give the 55 human Visium bowel COAD/READ/COADREAD samples
    (175,713 spots under tissue). ``technology`` matches ``st_technology`` exactly, so "Visium"
    excludes "Visium HD".
    """
    path = Path(metadata_csv)
    if not path.is_file():
        raise FileNotFoundError(f"metadata CSV not found: {path}")
    df = pd.read_csv(path)
    filters = {"organ": organ, "species": species, "st_technology": technology, "oncotree_code": oncotree}
    keep = np.ones(len(df), bool)
    for column, wanted in filters.items():
        if wanted is None:
            continue
        if column not in df.columns:
            raise ValueError(f"{path}: column {column!r} is missing; columns: {list(df.columns)}")
        wanted = [wanted] if isinstance(wanted, str) else list(wanted)
        keep &= df[column].isin(wanted).to_numpy()
    if not keep.any():
        allowed = {c: sorted(df[c].dropna().astype(str).unique())[:20] for c, w in filters.items()
                   if w is not None and c in df.columns}
        raise ValueError(f"no sample of {path} matches {filters}; values present: {allowed}")
    return df[keep].reset_index(drop=True)


def find_hest_metadata(*candidates: str | Path | None) -> Path | None:
    """The first existing HEST-1k metadata CSV among ``$STFLIB_HEST_METADATA`` and ``candidates``
    (e.g. a local copy of ``HEST_v1_1_0.csv``), or None when there is none."""
    for c in (os.environ.get("STFLIB_HEST_METADATA"), *candidates):
        if c and Path(c).is_file():
            return Path(c)
    return None


def download_hest(sample_ids: Iterable[str], local_dir: str | Path, token: str | None = None,
                  repo_id: str = "MahmoodLab/hest", metadata_file: str = "HEST_v1_1_0.csv") -> Path:
    """Download the st, patches and metadata files of ``sample_ids`` (plus the metadata CSV) from the
    gated HEST-1k dataset on Hugging Face into ``local_dir``, in the layout ``read_hest_sample`` reads.

    HEST's own CSV (``HEST_v1_1_0.csv``, all 1,229 samples) is kept as downloaded; ``metadata.csv``,
    the file the loader reads, is written next to it with the rows of the downloaded samples only, so
    the folder is ready for ``--set data_dir=local_dir``. Accept the dataset's terms on huggingface.co
    first; the token defaults to ``$HF_TOKEN``. Whole-slide images and other HEST folders are not
    downloaded (features come from the patches).
    """
    from huggingface_hub import snapshot_download

    ids = [sample_ids] if isinstance(sample_ids, str) else [str(s) for s in sample_ids]
    if not ids or any(not s or "/" in s or "*" in s for s in ids):
        raise ValueError(f"sample_ids must be a non-empty list of HEST ids such as 'TENX29'; got {ids}")
    patterns = [metadata_file]
    for s in ids:
        patterns += [f"st/{s}.h5ad", f"patches/{s}.h5", f"metadata/{s}.json"]
    local_dir = Path(local_dir)
    local_dir.mkdir(parents=True, exist_ok=True)
    snapshot_download(repo_id=repo_id, repo_type="dataset", local_dir=str(local_dir),
                      allow_patterns=patterns, token=token if token is not None else os.environ.get("HF_TOKEN"))
    write_downloaded_metadata(local_dir, ids, metadata_file)
    return local_dir


def write_downloaded_metadata(local_dir: str | Path, sample_ids: Sequence[str],
                              metadata_file: str = "HEST_v1_1_0.csv") -> Path:
    """``local_dir/metadata.csv``: the rows of HEST's CSV for ``sample_ids`` whose st file is present.

    Raises naming the ids that HEST's CSV does not list or whose ``st/<id>.h5ad`` is missing (a download
    that stopped part-way), so a folder never lists samples it does not hold.
    """
    local_dir = Path(local_dir)
    source = local_dir / metadata_file
    if not source.is_file():
        raise FileNotFoundError(f"HEST metadata {source} not found (the download should have fetched it)")
    full = pd.read_csv(source)
    if "id" not in full.columns:
        raise ValueError(f"{source}: no 'id' column; columns: {list(full.columns)}")
    ids = [str(s) for s in sample_ids]
    unknown = [s for s in ids if s not in set(full["id"].astype(str))]
    if unknown:
        raise ValueError(f"{source} does not list {unknown[:10]} ({len(unknown)} of {len(ids)} ids); "
                         f"e.g. it has {list(full['id'].astype(str)[:5])}")
    missing = [s for s in ids if not (local_dir / "st" / f"{s}.h5ad").is_file()]
    if missing:
        raise FileNotFoundError(f"download incomplete: no st file for {missing[:10]} under {local_dir / 'st'}; "
                                "run download_hest again (it resumes)")
    subset = full[full["id"].astype(str).isin(ids)].reset_index(drop=True)
    out = local_dir / "metadata.csv"
    atomic_write(out, lambda tmp: subset.to_csv(tmp, index=False))
    return out


# -------------------------------------------------------------------------------- patient splits
COLON_MAP_BLOCK = re.compile(r"^(\d+_[A-Za-z]+)_\d+$")  # COLON MAP subseries '8270_AS_6' -> block '8270_AS'


def _blank(value) -> bool:
    """True for None, NaN, pd.NA and empty strings (how HEST's CSV spells 'no patient')."""
    try:
        if pd.isna(value):
            return True
    except (TypeError, ValueError):  # array-like: not a blank scalar
        return False
    return not str(value).strip()


def patient_groups(df: pd.DataFrame) -> pd.Series:
    """Group label per sample (index = sample id): samples in one group never go to both sides of a split.

    Rules, in order:
    1. ``patient`` present: ``"<dataset_title> | <patient>"`` (HEST's patient labels such as
       "Patient 1" are only unique within a dataset);
    2. no patient, ``subseries`` shaped like COLON MAP's ``<specimen>_<initials>_<section>``
       (``8270_AS_6``): the block ``"<dataset_title> | 8270_AS"`` (sections of one specimen);
    3. no patient otherwise: the whole ``dataset_title`` (10x demo datasets such as the post-Xenium
       replicates are serial sections of one donor), or the sample's own id when there is no title;
    4. among samples without a patient, groups that share an image fingerprint (``fullres_px_width``,
       ``fullres_px_height``, ``spots_under_tissue``) are merged: TENX28/TENX29 are one section
       sequenced twice (whole transcriptome and targeted panel) under two dataset titles.
    On the 55-sample bowel cohort this gives 17 groups (6 COLON MAP blocks, 6 ZEN patients, 5 others).
    """
    if "id" not in df.columns:
        raise ValueError(f"metadata needs an 'id' column; columns: {list(df.columns)}")
    labels, has_patient = [], []
    for _, row in df.iterrows():
        has_patient.append(not _blank(row.get("patient")))
        title = "" if _blank(row.get("dataset_title")) else str(row["dataset_title"]).strip()
        if not _blank(row.get("patient")):
            labels.append(f"{title} | {str(row['patient']).strip()}")
            continue
        sub = "" if _blank(row.get("subseries")) else str(row["subseries"]).strip()
        block = COLON_MAP_BLOCK.match(sub)
        if block:
            labels.append(f"{title} | {block.group(1)}")
        else:
            labels.append(title or str(row["id"]))

    # merge groups that share an image fingerprint (union-find over labels)
    parent = {lab: lab for lab in labels}

    def find(x: str) -> str:
        while parent[x] != x:
            x = parent[x]
        return x

    fp_cols = ["fullres_px_width", "fullres_px_height", "spots_under_tissue"]
    if all(c in df.columns for c in fp_cols):
        seen: dict[tuple, str] = {}
        for lab, known, fp in zip(labels, has_patient, df[fp_cols].itertuples(index=False, name=None)):
            if known or any(_blank(v) for v in fp):
                continue
            if fp in seen:
                a, b = sorted((find(seen[fp]), find(lab)))
                parent[b] = a
            else:
                seen[fp] = lab
    return pd.Series([find(lab) for lab in labels], index=df["id"].astype(str).to_numpy(), name="group")


def patient_folds(metadata_df: pd.DataFrame, k: int, seed: int = 0) -> list[tuple[list[str], list[str]]]:
    """k patient-grouped folds: ``[(train_ids, test_ids)]``; every sample is tested exactly once.

    Groups (``patient_groups``) are shuffled by ``seed``, sorted by size (largest first, stable), and
    each is given to the fold with the fewest samples so far, so folds are balanced in samples.
    """
    groups = patient_groups(metadata_df)
    names = np.array(sorted(groups.unique()))
    if not isinstance(k, (int, np.integer)) or k < 2:
        raise ValueError(f"k must be an integer >= 2; got {k!r}")
    if k > len(names):
        raise ValueError(f"k={k} folds but only {len(names)} patient groups; use k <= {len(names)}")
    sizes = groups.value_counts()
    order = np.random.default_rng(seed).permutation(names)
    order = sorted(order, key=lambda g: -sizes[g])  # stable: ties keep the shuffled order
    fold_of, load = {}, np.zeros(k, int)
    for g in order:
        f = int(np.argmin(load))
        fold_of[g] = f
        load[f] += sizes[g]
    fold = groups.map(fold_of)
    ids = list(groups.index)
    return [([i for i in ids if fold[i] != f], [i for i in ids if fold[i] == f]) for f in range(k)]


def check_cohort_folds(metadata_df: pd.DataFrame, k: int, described: str = "the cohort") -> None:
    """Raise a ``ValueError`` naming what ``described`` matched when its patient groups cannot make ``k``
    folds in which every training part still has 2 groups (one is split off for validation)."""
    groups = patient_groups(metadata_df)
    n_groups = groups.nunique()
    matched = (f"{described} matched {len(metadata_df)} sample(s) ({', '.join(map(str, groups.index[:10]))}"
               f"{', ...' if len(groups) > 10 else ''}) of {n_groups} patient group(s)")
    if n_groups < 3:
        raise ValueError(f"{matched}; patient-grouped folds with a validation patient need >= 3 groups "
                         f"(one to test, one to validate, one to train): widen the cohort filter "
                         f"(organ, species, technology, oncotree) or add patients")
    if k > n_groups:
        raise ValueError(f"{matched}; n_folds={k} needs >= {k} groups: use n_folds <= {n_groups}")
    for f, (train, _test) in enumerate(patient_folds(metadata_df, k)):
        if groups.loc[list(train)].nunique() < 2:
            raise ValueError(f"{matched}; with n_folds={k}, fold {f} leaves {groups.loc[list(train)].nunique()} "
                             f"patient group to train and validate on: use n_folds={n_groups} (one group per fold) "
                             "or add patients")


# ---------------------------------------------------------------------------------- study splits
STUDY_COLUMN = "dataset_title"  # HEST-1k's study: one title per publication or 10x demo dataset


def study_labels(df: pd.DataFrame) -> pd.Series:
    """Study per sample (index = sample id): HEST's ``dataset_title``, with studies that share a patient
    group (``patient_groups``) merged into one ``"A + B"`` study, so that holding a study out never leaves
    one of its patients (or a section sequenced twice under two titles, as TENX28/TENX29) in training."""
    if STUDY_COLUMN not in df.columns:
        raise ValueError(f"split=study needs the study column {STUDY_COLUMN!r} (HEST's dataset title) in the "
                         f"metadata; columns: {list(df.columns)}")
    groups = patient_groups(df)
    titles = ["(no dataset_title)" if _blank(t) else str(t).strip() for t in df[STUDY_COLUMN]]
    parent = {t: t for t in titles}

    def find(x: str) -> str:
        while parent[x] != x:
            x = parent[x]
        return x

    first_title: dict[str, str] = {}
    for title, group in zip(titles, groups.to_numpy()):
        if group in first_title:
            a, b = sorted((find(first_title[group]), find(title)))
            parent[b] = a
        else:
            first_title[group] = title
    members: dict[str, set[str]] = {}
    for t in titles:
        members.setdefault(find(t), set()).add(t)
    names = {root: " + ".join(sorted(m)) for root, m in members.items()}
    return pd.Series([names[find(t)] for t in titles], index=groups.index, name="study")


def study_folds(metadata_df: pd.DataFrame) -> list[tuple[list[str], list[str]]]:
    """Leave-one-study-out folds ``[(train_ids, test_ids)]``: fold k holds out the k-th study of
    ``study_labels`` in sorted order; every sample is tested exactly once."""
    studies = study_labels(metadata_df)
    ids = list(studies.index)
    return [([i for i in ids if studies[i] != s], [i for i in ids if studies[i] == s])
            for s in sorted(studies.unique())]


def check_study_folds(metadata_df: pd.DataFrame, fold: int, described: str = "the cohort") -> None:
    """Raise a ``ValueError`` naming the studies found when leave-one-study-out fold ``fold`` cannot be
    made: one study only, ``fold`` past the last study, or a training part with fewer than 2 patient
    groups (one is split off for validation)."""
    studies = study_labels(metadata_df)
    names = sorted(studies.unique())
    found = "; ".join(f"{s!r} ({int((studies == s).sum())} sample(s))" for s in names)
    if len(names) < 2:
        raise ValueError(f"split=study: {described} holds one study ({found}); leaving a study out needs >= 2 "
                         "studies (HEST's dataset_title): widen the cohort filter or use split=patient")
    if not 0 <= fold < len(names):
        raise ValueError(f"split=study: fold={fold} but {described} holds {len(names)} studies ({found}); "
                         f"allowed: fold 0..{len(names) - 1}")
    groups = patient_groups(metadata_df)
    train, _test = study_folds(metadata_df)[fold]
    if groups.loc[list(train)].nunique() < 2:
        raise ValueError(f"split=study: holding out {names[fold]!r} leaves {groups.loc[list(train)].nunique()} "
                         f"patient group to train and validate on (studies: {found})")


def cohort_folds(metadata_df: pd.DataFrame, split: str, n_folds: int, fold: int,
                 described: str = "the cohort") -> tuple[list[str], list[str]]:
    """(train_ids, test_ids) of fold ``fold``: patient-grouped folds (``split='patient'``, ``n_folds`` of
    them) or leave-one-study-out (``split='study'``, one fold per study; ``n_folds`` is not used)."""
    if split == "patient":
        check_cohort_folds(metadata_df, n_folds, described)
        return patient_folds(metadata_df, n_folds, seed=0)[fold]
    if split == "study":
        check_study_folds(metadata_df, fold, described)
        return study_folds(metadata_df)[fold]
    raise ValueError(f"split: unknown value {split!r}; allowed: patient, study")


def train_val_split(train_ids: Sequence[str], metadata_df: pd.DataFrame, val_fraction: float = 0.2,
                    seed: int = 0) -> tuple[list[str], list[str]]:
    """Split ``train_ids`` into (train, val) by patient group, ~``val_fraction`` of the samples in val."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1); got {val_fraction}")
    groups = patient_groups(metadata_df)
    missing = [i for i in train_ids if i not in groups.index]
    if missing:
        raise ValueError(f"train_ids not in the metadata: {missing[:5]}")
    groups = groups.loc[list(train_ids)]
    names = np.random.default_rng(seed).permutation(np.array(sorted(groups.unique())))
    if len(names) < 2:
        raise ValueError(f"need >= 2 patient groups to split off a validation set; got {list(names)}")
    target = max(1, round(val_fraction * len(groups)))
    val_groups, n = set(), 0
    for g in names[:-1]:  # always leave at least one group for training
        if n >= target:
            break
        val_groups.add(g)
        n += int((groups == g).sum())
    val = [i for i in train_ids if groups[i] in val_groups]
    return [i for i in train_ids if groups[i] not in val_groups], val
