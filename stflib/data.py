"""HEST-1k data: reader, cohort selection, patient-grouped folds, QC/normalisation, gene vocabulary,
and the whole-slide dataset.

One code path reads real HEST-1k samples and the simulator's cohort (same layout):

``root/st/<id>.h5ad`` raw counts, ``obsm['spatial']`` spot centres (full-res px);
``root/patches/<id>.h5`` ``img`` (N,224,224,3), ``coords`` (N,2) top-left corners, ``barcode`` (N,1) bytes;
``root/metadata/<id>.json``; ``root/features/<backbone>/<id>.h5`` ``features`` (N,D), ``barcodes`` (N,),
``coords`` (N,2), attrs ``backbone``, ``feature_dim``.
HEST drops spots whose patch is off-slide or has little tissue and does not promise any order, so
every join is **by barcode**; the spot order is always the st h5ad's.
"""
from __future__ import annotations

import json
import logging
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from torch.utils.data import Dataset

from .pathways import pathway_targets

log = logging.getLogger(__name__)

# var columns that may hold gene symbols when var_names are Ensembl ids (10x/scanpy, CELLxGENE, HEST).
SYMBOL_COLUMNS = ("gene_symbols", "gene_symbol", "symbol", "symbols", "feature_name", "gene_name",
                  "gene_names", "gene", "genes", "name", "gene_ids")
ENSEMBL = re.compile(r"^ENS[A-Z]*G\d{6,}")
MITO_PREFIX = "MT-"


@dataclass
class HestSample:
    """One HEST sample, spots aligned by barcode across st, patches and features (st order)."""

    sample_id: str
    counts: sp.csr_matrix  # (N, G) raw UMI counts, float32
    genes: np.ndarray  # (G,) str gene symbols
    barcodes: np.ndarray  # (N,) str
    coords: np.ndarray  # (N, 2) float64 spot centres, full-res pixels (x, y)
    pixel_size_um: float  # um per full-res pixel (nan when unknown)
    metadata: dict
    features: np.ndarray | None = None  # (N, D) float32
    patches: np.ndarray | None = None  # (N, 224, 224, 3) uint8
    truth: dict[str, np.ndarray] = field(default_factory=dict)  # simulator only
    truth_names: dict[str, list[str]] = field(default_factory=dict)

    @property
    def n_spots(self) -> int:
        return self.counts.shape[0]


# ----------------------------------------------------------------------------------------- reader
def _available_ids(folder: Path, suffix: str, limit: int = 8) -> str:
    ids = sorted(p.name[: -len(suffix)] for p in folder.glob(f"*{suffix}")) if folder.is_dir() else []
    if not ids:
        return "none"
    more = f", ... ({len(ids)} in all)" if len(ids) > limit else ""
    return ", ".join(ids[:limit]) + more


def _decode(values: np.ndarray) -> np.ndarray:
    """Bytes or str barcodes of shape (N,) or (N, 1) (HEST's writer) -> (N,) str."""
    values = np.asarray(values).reshape(-1)
    return np.array([v.decode() if isinstance(v, bytes) else str(v) for v in values], dtype=object).astype(str)


def _first_index(barcodes: np.ndarray) -> dict[str, int]:
    """barcode -> first row holding it."""
    index: dict[str, int] = {}
    for i, b in enumerate(barcodes):
        index.setdefault(b, i)
    return index


def _gene_symbols(var: pd.DataFrame, var_names: np.ndarray, path: Path) -> np.ndarray:
    """var_names as symbols; Ensembl ids are mapped through a var column that holds symbols."""
    names = np.asarray(var_names, dtype=str)
    if np.mean([bool(ENSEMBL.match(n)) for n in names[:2000]]) < 0.5:
        return names
    for col in SYMBOL_COLUMNS:
        if col not in var.columns:
            continue
        values = var[col].astype(str).to_numpy()
        looks_symbol = [bool(v) and v.lower() != "nan" and not ENSEMBL.match(v) for v in values[:2000]]
        if np.mean(looks_symbol) >= 0.5:
            # keep the Ensembl id where the symbol is empty, so no column is lost
            ok = np.array([bool(v) and v.lower() != "nan" for v in values])
            return np.where(ok, values, names)
    raise ValueError(
        f"{path}: var_names are Ensembl ids (e.g. {names[0]!r}) and no var column holds gene symbols; "
        f"looked for one of {list(SYMBOL_COLUMNS)}, var has {list(var.columns)}. "
        "Add a symbol column (e.g. var['gene_symbols']) to the h5ad."
    )


def _sum_duplicate_genes(counts: sp.csr_matrix, genes: np.ndarray) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray | None]:
    """Sum columns that share a symbol (several Ensembl ids can map to one symbol).

    Returns counts, unique genes (first-appearance order) and the (G_old, G_new) aggregation matrix
    (None when nothing was duplicated) so dense per-gene layers can be aggregated the same way.
    """
    uniq, first, inverse = np.unique(genes, return_index=True, return_inverse=True)
    if len(uniq) == len(genes):
        return counts, genes, None
    order = np.argsort(first)  # keep first-appearance order
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    agg = sp.csr_matrix((np.ones(len(genes), np.float32), (np.arange(len(genes)), rank[inverse])),
                        shape=(len(genes), len(uniq)))
    return (counts @ agg).tocsr().astype(np.float32), uniq[order], agg


def _pixel_size(metadata: dict) -> float:
    for key in ("pixel_size_um_estimated", "pixel_size_um_embedded", "pixel_size_um"):
        value = metadata.get(key)
        try:
            value = float(value)
        except (TypeError, ValueError):
            continue
        if np.isfinite(value) and value > 0:
            return value
    return float("nan")


def read_hest_sample(root: str | Path, sample_id: str, backbone: str | None = None,
                     load_patches: bool = False) -> HestSample:
    """Read one real or simulated HEST sample.

    Spots kept: st spots whose barcode also has a patch (when ``patches/<id>.h5`` exists) and a
    feature row (when ``backbone`` is given); order = the st h5ad's. Ensembl var_names are mapped to
    symbols; columns sharing a symbol are summed. ``patches`` are read only when ``load_patches``.
    """
    import anndata as ad

    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"HEST root folder not found: {root}")
    st_path = root / "st" / f"{sample_id}.h5ad"
    if not st_path.is_file():
        raise FileNotFoundError(
            f"unknown sample {sample_id!r}: no file {st_path}; available samples: "
            f"{_available_ids(root / 'st', '.h5ad')}"
        )

    adata = ad.read_h5ad(st_path)
    barcodes = np.asarray(adata.obs_names, dtype=str)
    if len(set(barcodes)) != len(barcodes):
        raise ValueError(f"{st_path}: obs_names (barcodes) are not unique")
    if "spatial" not in adata.obsm:
        raise ValueError(f"{st_path}: obsm['spatial'] (spot centres) is missing; obsm has {list(adata.obsm)}")
    coords = np.asarray(adata.obsm["spatial"], dtype=np.float64)[:, :2]

    counts = sp.csr_matrix(adata.X, dtype=np.float32) if sp.issparse(adata.X) else sp.csr_matrix(np.asarray(adata.X, np.float32))
    bad_nan = int((~np.isfinite(counts.data)).sum())
    bad_neg = int((counts.data < 0).sum())
    if bad_nan or bad_neg:
        raise ValueError(
            f"{st_path}: counts must be raw, finite, non-negative UMI counts; found {bad_nan} NaN or infinite and "
            f"{bad_neg} negative entries"
        )
    if adata.uns.get("gene_names") == "ensembl_ids":  # an imported section whose source had no symbols
        genes = np.asarray(adata.var_names, dtype=str)
        warnings.warn(f"{st_path}: genes are Ensembl ids (the source had no symbols); Hallmark pathways will not "
                      "match them", stacklevel=2)
    else:
        genes = _gene_symbols(adata.var, np.asarray(adata.var_names), st_path)
    counts, genes, gene_agg = _sum_duplicate_genes(counts, genes)

    # metadata json (HEST ships one per sample; tolerate its absence)
    meta_path = root / "metadata" / f"{sample_id}.json"
    metadata = json.loads(meta_path.read_text()) if meta_path.is_file() else {}

    keep = np.ones(len(barcodes), bool)
    patch_rows = feat_rows = None
    patch_path = root / "patches" / f"{sample_id}.h5"
    if patch_path.is_file():
        with h5py.File(patch_path, "r") as f:
            if "barcode" not in f:
                raise ValueError(f"{patch_path}: dataset 'barcode' is missing; has {list(f)}")
            patch_index = _first_index(_decode(f["barcode"][:]))
        patch_rows = np.array([patch_index.get(b, -1) for b in barcodes])
        keep &= patch_rows >= 0
        if not keep.any():
            raise ValueError(
                f"no barcode overlap between {st_path} (e.g. {list(barcodes[:3])}) and {patch_path} "
                f"(e.g. {list(patch_index)[:3]})"
            )
    elif load_patches:
        raise FileNotFoundError(f"load_patches=True but patch file not found: {patch_path}")

    features = None
    if backbone is not None:
        feat_path = root / "features" / backbone / f"{sample_id}.h5"
        if not feat_path.is_file():
            raise FileNotFoundError(
                f"feature file not found: {feat_path}; backbones with features under {root / 'features'}: "
                f"{', '.join(sorted(p.name for p in (root / 'features').glob('*') if p.is_dir())) or 'none'}"
            )
        with h5py.File(feat_path, "r") as f:
            feats = f["features"][:].astype(np.float32)
            feat_barcodes = _decode(f["barcodes"][:])
            dim = f.attrs.get("feature_dim")
        if feats.ndim != 2 or len(feats) != len(feat_barcodes):
            raise ValueError(
                f"{feat_path}: features must be (N, D) with one row per barcode; got features "
                f"{feats.shape} and {len(feat_barcodes)} barcodes"
            )
        feat_index = _first_index(feat_barcodes)
        if dim is not None and int(dim) != feats.shape[1]:
            raise ValueError(
                f"{feat_path}: features have dimension {feats.shape[1]} but attrs['feature_dim'] = {int(dim)}"
            )
        feat_rows = np.array([feat_index.get(b, -1) for b in barcodes])
        keep &= feat_rows >= 0
        if not keep.any():
            raise ValueError(
                f"no barcode overlap between {st_path} (e.g. {list(barcodes[:3])}) and {feat_path} "
                f"(e.g. {list(feat_index)[:3]}) after the patch join"
            )
        features = feats[feat_rows[keep]]

    patches = None
    if load_patches:
        rows = patch_rows[keep]
        order = np.argsort(rows)  # h5py fancy indexing needs increasing indices
        with h5py.File(patch_path, "r") as f:
            img = f["img"][np.sort(rows)] if len(rows) else np.zeros((0, 224, 224, 3), np.uint8)
        patches = np.empty_like(img)
        patches[order] = img

    if (~keep).any():
        log.info("%s: kept %d of %d spots (barcodes missing from patches/features)", sample_id, keep.sum(), len(keep))

    # simulator ground truth, when present
    truth: dict[str, np.ndarray] = {}
    truth_names: dict[str, list[str]] = {}
    if "true_pathway_activity" in adata.obsm:
        truth["pathway_activity"] = np.asarray(adata.obsm["true_pathway_activity"], np.float32)[keep]
        truth_names["pathway_activity"] = [str(n) for n in adata.uns.get("true_pathway_names", [])]
    if "expected_counts" in adata.layers:
        expected = adata.layers["expected_counts"]
        expected = expected.toarray() if sp.issparse(expected) else np.asarray(expected)
        expected = expected.astype(np.float32)[keep]
        truth["expected_counts"] = expected if gene_agg is None else np.asarray(expected @ gene_agg, np.float32)
    if "true_composition" in adata.obsm:
        truth["composition"] = np.asarray(adata.obsm["true_composition"], np.float32)[keep]
        truth_names["composition"] = [str(n) for n in adata.uns.get("cell_types", [])]

    return HestSample(
        sample_id=sample_id,
        counts=counts[keep],
        genes=np.asarray(genes, dtype=str),
        barcodes=barcodes[keep],
        coords=coords[keep],
        pixel_size_um=_pixel_size(metadata),
        metadata=metadata,
        features=features,
        patches=patches,
        truth=truth,
        truth_names=truth_names,
    )


# ------------------------------------------------------------------------------ cohort and download
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
    tmp = out.with_name(".metadata.csv.tmp")
    subset.to_csv(tmp, index=False)
    os.replace(tmp, out)
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


# --------------------------------------------------------------------------- QC and normalisation
def library_size(counts: sp.spmatrix | np.ndarray) -> np.ndarray:
    """Total UMIs per spot over all genes, (N,) float64."""
    return np.asarray(counts.sum(1), dtype=np.float64).reshape(-1)


def qc_mask(counts: sp.spmatrix | np.ndarray, genes: Sequence[str], min_umis: float = 200, min_genes: int = 100,
            max_mito_fraction: float = 0.3) -> np.ndarray:
    """(N,) bool, True = the spot passes QC: >= ``min_umis`` UMIs, >= ``min_genes`` detected genes and
    a mitochondrial (``MT-`` genes) UMI fraction <= ``max_mito_fraction``.

    Defaults are mild (Visium CRC medians are 3k-20k UMIs): they drop empty or damaged spots only.
    """
    counts = sp.csr_matrix(counts)
    genes = np.asarray(genes, dtype=str)
    if counts.shape[1] != len(genes):
        raise ValueError(f"counts have {counts.shape[1]} genes but {len(genes)} gene names were given")
    total = library_size(counts)
    detected = np.diff((counts > 0).tocsr().indptr) if counts.nnz else np.zeros(counts.shape[0], int)
    mito = np.char.startswith(np.char.upper(genes), MITO_PREFIX)
    mito_umis = library_size(counts[:, np.flatnonzero(mito)]) if mito.any() else np.zeros_like(total)
    mito_fraction = np.divide(mito_umis, total, out=np.zeros_like(total), where=total > 0)
    return (total >= min_umis) & (detected >= min_genes) & (mito_fraction <= max_mito_fraction)


def normalize_cp10k(counts: sp.spmatrix | np.ndarray, library: np.ndarray | None = None,
                    log1p: bool = False) -> sp.csr_matrix | np.ndarray:
    """Counts per 10,000: ``counts / library * 1e4`` (then ``log1p`` when asked).

    ``library`` is each spot's total UMIs over ALL genes (pass it when ``counts`` is a gene subset);
    spots with zero library get 0. Sparse in, sparse out.
    """
    library = library_size(counts) if library is None else np.asarray(library, np.float64).reshape(-1)
    scale = np.divide(1e4, library, out=np.zeros_like(library), where=library > 0)
    if sp.issparse(counts):
        out = sp.csr_matrix(sp.diags(scale) @ counts, dtype=np.float32)
        if log1p:
            out.data = np.log1p(out.data)
        return out
    out = np.asarray(counts, np.float64) * scale[:, None]
    return (np.log1p(out) if log1p else out).astype(np.float32)


# -------------------------------------------------------------------------------- gene vocabulary
def select_genes(samples_train: Sequence[HestSample], n_genes: int = 1000, n_hvg: int = 50, qc: dict | None = None,
                 exclude_prefixes: tuple[str, ...] = (MITO_PREFIX,)) -> tuple[list[str], list[str]]:
    """Gene vocabulary and evaluation HVGs, from the training fold only (HEST-Bench's all-sample HVGs leak).

    Pool the QC-passed spots of all training samples (a gene a sample lacks counts as 0 there).
    vocabulary: the ``n_genes`` genes with the highest mean CP10k, excluding ``exclude_prefixes``
    (mitochondrial genes are a QC signal, not biology), ties by name; ordered by mean, descending.
    hvg: the ``n_hvg`` vocabulary genes with the highest variance of log1p(CP10k) over the pooled
    spots (population variance), ties by name; ordered by variance, descending.
    """
    if not samples_train:
        raise ValueError("select_genes needs at least one training sample")
    index: dict[str, int] = {}
    for s in samples_train:
        for g in s.genes:
            index.setdefault(str(g), len(index))
    total, log_sum, log_sq = np.zeros(len(index)), np.zeros(len(index)), np.zeros(len(index))
    n = 0
    for s in samples_train:
        mask = qc_mask(s.counts, s.genes, **(qc or {}))
        cols = np.array([index[str(g)] for g in s.genes])
        cp = normalize_cp10k(s.counts, log1p=False)[mask]
        lg = cp.copy()
        lg.data = np.log1p(lg.data)
        total[cols] += np.asarray(cp.sum(0)).reshape(-1)
        log_sum[cols] += np.asarray(lg.sum(0)).reshape(-1)
        log_sq[cols] += np.asarray(lg.multiply(lg).sum(0)).reshape(-1)
        n += int(mask.sum())
    if n == 0:
        raise ValueError(f"no spot of the {len(samples_train)} training samples passes QC ({qc or 'defaults'})")
    names = np.array(list(index), dtype=str)
    eligible = ~np.array([g.upper().startswith(tuple(p.upper() for p in exclude_prefixes)) for g in names]) \
        if exclude_prefixes else np.ones(len(names), bool)
    mean = total / n
    cand = np.flatnonzero(eligible)
    if len(cand) < n_genes:
        warnings.warn(f"only {len(cand)} genes available for a vocabulary of n_genes={n_genes}", stacklevel=2)
    ranked = cand[np.lexsort((names[cand], -mean[cand]))][:n_genes]
    var = log_sq / n - (log_sum / n) ** 2
    if n_hvg > len(ranked):
        raise ValueError(f"n_hvg={n_hvg} exceeds the vocabulary size {len(ranked)}")
    hvg = ranked[np.lexsort((names[ranked], -var[ranked]))][:n_hvg]
    return names[ranked].tolist(), names[hvg].tolist()


# ------------------------------------------------------------------------------ dataset and collate
class SlideDataset(Dataset):
    """Whole-slide items for dense training: one item per sample, all its spots.

    item: ``sample_id``; ``features`` (S, D); ``coords`` (S, 2) spot centres; ``targets`` (S, G) CP10k
    of the vocabulary ``genes`` (log1p when ``log_transform``); ``counts`` (S, G) raw; ``library_size``
    (S,) total UMIs over ALL genes; ``valid`` (S,) QC passed (False = masked out of losses and
    metrics, never a zero target); ``pathway_targets`` (S, P) from ``stflib.pathways.pathway_targets``
    on log1p CP10k over valid spots ((S, 0) without ``membership``); ``true_pathways`` (S, 50) or None.
    Vocabulary genes a sample lacks are zero-filled and listed in ``missing_genes[sample_id]``.
    """

    def __init__(self, samples: Sequence[HestSample], genes: Sequence[str], membership=None,
                 log_transform: bool = False, qc: dict | None = None):
        self.samples = list(samples)
        self.genes = [str(g) for g in genes]
        self.log_transform = log_transform
        matrix = getattr(membership, "matrix", membership)  # accept a pathways.Membership or an array
        self.membership = None if matrix is None else np.asarray(matrix, np.float32)
        if self.membership is not None and (self.membership.ndim != 2 or self.membership.shape[1] != len(self.genes)):
            raise ValueError(f"membership must be (P, {len(self.genes)}) over the vocabulary; got {self.membership.shape}")
        self.columns: list[np.ndarray] = []
        self.valid: list[np.ndarray] = []
        self.missing_genes: dict[str, list[str]] = {}
        for s in self.samples:
            if s.features is None:
                raise ValueError(f"sample {s.sample_id!r} has no features: read it with read_hest_sample(..., backbone=...)")
            where = {g: i for i, g in enumerate(s.genes)}
            cols = np.array([where.get(g, -1) for g in self.genes])
            if not (cols >= 0).any():
                raise ValueError(
                    f"sample {s.sample_id!r}: none of its {len(s.genes)} genes (e.g. {list(s.genes[:3])}) is in the "
                    f"vocabulary of {len(self.genes)} genes (e.g. {self.genes[:3]}); are both gene symbols?"
                )
            missing = [g for g, c in zip(self.genes, cols) if c < 0]
            if missing:
                self.missing_genes[s.sample_id] = missing
                warnings.warn(f"sample {s.sample_id!r}: {len(missing)} of {len(self.genes)} vocabulary genes "
                              f"absent, zero-filled (e.g. {missing[:5]})", stacklevel=2)
            self.columns.append(cols)
            self.valid.append(qc_mask(s.counts, s.genes, **(qc or {})))

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict:
        s, cols, valid = self.samples[i], self.columns[i], self.valid[i]
        library = library_size(s.counts)
        present = cols >= 0
        counts = np.zeros((s.n_spots, len(self.genes)), np.float32)
        counts[:, present] = s.counts[:, cols[present]].toarray()
        log_cp = normalize_cp10k(counts, library, log1p=True)
        targets = log_cp if self.log_transform else normalize_cp10k(counts, library)
        if self.membership is None:
            pathways = np.zeros((s.n_spots, 0), np.float32)
        else:
            pathways = pathway_targets(log_cp, self.membership, valid)
        truth = s.truth.get("pathway_activity")
        return {
            "sample_id": s.sample_id,
            "features": torch.as_tensor(s.features, dtype=torch.float32),
            "coords": torch.as_tensor(s.coords, dtype=torch.float32),
            "targets": torch.as_tensor(targets, dtype=torch.float32),
            "counts": torch.as_tensor(counts),
            "library_size": torch.as_tensor(library, dtype=torch.float32),
            "valid": torch.as_tensor(valid, dtype=torch.bool),
            "pathway_targets": torch.as_tensor(pathways, dtype=torch.float32),
            "true_pathways": None if truth is None else torch.as_tensor(truth, dtype=torch.float32),
        }


_PADDED = ("features", "coords", "targets", "counts", "library_size", "valid", "pathway_targets")


def collate_slides(items: Sequence[dict]) -> dict:
    """Pad slides to the largest one: same keys as the items (batched), plus ``pad_mask`` (B, S) True =
    padding, ``valid`` False on padding, ``sample_ids``; ``true_pathways`` None if any item lacks it."""
    if not items:
        raise ValueError("collate_slides got an empty batch")
    sizes = [len(it["features"]) for it in items]
    s_max = max(sizes)

    def pad(values: list) -> torch.Tensor:
        values = [torch.as_tensor(v) for v in values]
        out = torch.zeros((len(values), s_max) + tuple(values[0].shape[1:]), dtype=values[0].dtype)
        for b, v in enumerate(values):
            out[b, : len(v)] = v
        return out

    batch = {key: pad([it[key] for it in items]) for key in _PADDED}
    batch["pad_mask"] = torch.arange(s_max)[None, :] >= torch.tensor(sizes)[:, None]
    truths = [it.get("true_pathways") for it in items]
    batch["true_pathways"] = None if any(t is None for t in truths) else pad(truths)
    batch["sample_ids"] = [it["sample_id"] for it in items]
    batch["sample_id"] = batch["sample_ids"]
    return batch
