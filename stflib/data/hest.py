"""The HEST-1k sample reader: ``read_hest_sample`` and the ``HestSample`` it returns.

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
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp

log = logging.getLogger(__name__)

# var columns that may hold gene symbols when var_names are Ensembl ids (10x/scanpy, CELLxGENE, HEST).
SYMBOL_COLUMNS = ("gene_symbols", "gene_symbol", "symbol", "symbols", "feature_name", "gene_name",
                  "gene_names", "gene", "genes", "name", "gene_ids")
ENSEMBL = re.compile(r"^ENS[A-Z]*G\d{6,}")


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


def decode_barcodes(values: np.ndarray) -> np.ndarray:
    """Bytes or str barcodes of shape (N,) or (N, 1) (HEST's writer) -> (N,) str."""
    values = np.asarray(values).reshape(-1)
    return np.array([v.decode() if isinstance(v, bytes) else str(v) for v in values], dtype=object).astype(str)


def _join_by_barcode(barcodes: np.ndarray, keep: np.ndarray, other: np.ndarray, st_name: str, other_name: str,
                     after: str = "") -> np.ndarray:
    """Row of ``other`` holding each st barcode (its first occurrence; -1 where absent). Raises when no
    spot still kept (``keep``) has a row, naming both files and example barcodes of each."""
    index: dict[str, int] = {}
    for i, b in enumerate(other):
        index.setdefault(b, i)
    rows = np.array([index.get(b, -1) for b in barcodes], dtype=np.int64)
    if not (keep & (rows >= 0)).any():
        raise ValueError(
            f"no barcode overlap between {st_name} (e.g. {list(barcodes[:3])}) and {other_name} "
            f"(e.g. {list(index)[:3]}){after}"
        )
    return rows


def gene_symbols(var: pd.DataFrame, var_names: np.ndarray, path: Path) -> np.ndarray:
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
        genes = gene_symbols(adata.var, np.asarray(adata.var_names), st_path)
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
            patch_barcodes = decode_barcodes(f["barcode"][:])
        patch_rows = _join_by_barcode(barcodes, keep, patch_barcodes, f"{st_path}", f"{patch_path}")
        keep &= patch_rows >= 0
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
            feat_barcodes = decode_barcodes(f["barcodes"][:])
            dim = f.attrs.get("feature_dim")
        if feats.ndim != 2 or len(feats) != len(feat_barcodes):
            raise ValueError(
                f"{feat_path}: features must be (N, D) with one row per barcode; got features "
                f"{feats.shape} and {len(feat_barcodes)} barcodes"
            )
        if dim is not None and int(dim) != feats.shape[1]:
            raise ValueError(
                f"{feat_path}: features have dimension {feats.shape[1]} but attrs['feature_dim'] = {int(dim)}"
            )
        feat_rows = _join_by_barcode(barcodes, keep, feat_barcodes, f"{st_path}", f"{feat_path}",
                                     " after the patch join")
        keep &= feat_rows >= 0
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
