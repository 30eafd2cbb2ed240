"""Shared pytest fixtures."""
from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import pytest

# The reference data: $STFLIB_DATA (stflib.paths) when set, else ../shared/data next to the project (the
# layout of a checkout; tests that need it skip with a reason when it is absent). The library reads only
# STFLIB_DATA, so the tests set it to what they found.
SHARED = Path(os.environ.get("STFLIB_DATA") or os.environ.get("STFLIB_SHARED_DATA")
              or Path(__file__).resolve().parents[1].parent / "shared" / "data")
if SHARED.is_dir():
    os.environ.setdefault("STFLIB_DATA", str(SHARED))
HEST_CSV = SHARED / "hest" / "HEST_v1_1_0.csv"

FAKE_GENES = ["MT-CO1", "MT-ND1", "EPCAM", "VIM", "CD3E", "KRT20", "COL1A1", "PTPRC"] + [f"GENE{i}" for i in range(32)]


def write_fake_hest_sample(root: Path, sample_id: str = "FAKE1", n_spots: int = 20, genes: list[str] | None = None,
                           backbone: str | None = "resnet50", feature_dim: int = 8, seed: int = 0,
                           ensembl: bool = True, csc: bool = True, drop_patch: int = 3, drop_feature: int = 2,
                           truth: bool = False, counts: np.ndarray | None = None) -> dict:
    """Write one sample the way HEST's writer does and return what a correct reader must see.

    st/<id>.h5ad: counts (CSC when ``csc``), var_names Ensembl ids with symbols in var['gene_symbols']
    (when ``ensembl``), obsm['spatial'] spot centres. patches/<id>.h5: ``barcode`` (N, 1) bytes, rows
    shuffled and the first ``drop_patch`` spots missing; features/<backbone>/<id>.h5: barcodes (N,)
    bytes, shuffled differently, ``drop_feature`` other spots missing. Patch pixels and feature rows
    encode the spot index, so misalignment is detectable.
    """
    import anndata as ad
    import pandas as pd
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    genes = list(genes or FAKE_GENES)
    n_genes = len(genes)
    barcodes = np.array([f"{sample_id}-AAAC{i:04d}-1" for i in range(n_spots)])
    if counts is None:
        counts = rng.poisson(rng.gamma(1.0, 3.0, size=(n_spots, n_genes))).astype(np.float32)
        counts[:, 2] += np.arange(n_spots)  # EPCAM encodes the spot index
    counts = np.asarray(counts, np.float32)
    centres = np.stack([np.arange(n_spots) * 200.0 + 1000, np.arange(n_spots) * 50.0 + 2000], 1)

    X = sp.csc_matrix(counts) if csc else sp.csr_matrix(counts)
    var = pd.DataFrame({"gene_symbols": genes, "feature_types": "Gene Expression"})
    var.index = [f"ENSG{i:011d}" for i in range(n_genes)] if ensembl else genes
    adata = ad.AnnData(X=X, obs=pd.DataFrame(index=barcodes), var=var)
    adata.obsm["spatial"] = centres
    if truth:
        adata.obsm["true_pathway_activity"] = rng.normal(size=(n_spots, 50)).astype(np.float32)
        adata.uns["true_pathway_names"] = np.array([f"HALLMARK_P{i}" for i in range(50)])
        adata.layers["expected_counts"] = (counts + 0.5).astype(np.float32)
        adata.obsm["true_composition"] = rng.dirichlet(np.ones(3), size=n_spots).astype(np.float32)
        adata.uns["cell_types"] = np.array(["epithelium", "stroma", "immune"])
    for sub in ("st", "patches", "metadata"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    adata.write_h5ad(root / "st" / f"{sample_id}.h5ad")

    # patches: HEST keeps spots whose patch lies on tissue, in its own order
    patch_idx = rng.permutation(np.arange(drop_patch, n_spots))
    img = np.zeros((len(patch_idx), 224, 224, 3), np.uint8)
    img[:, 0, 0, 0] = patch_idx  # pixel (0,0) red = spot index
    with h5py.File(root / "patches" / f"{sample_id}.h5", "w") as f:
        f.create_dataset("img", data=img, chunks=(1, 224, 224, 3))
        f.create_dataset("coords", data=(centres[patch_idx] - 112).astype(np.int64))
        f.create_dataset("barcode", data=np.array([[b.encode()] for b in barcodes[patch_idx]], dtype="S"))

    feat_idx = np.arange(n_spots)
    if backbone is not None:
        feat_idx = rng.permutation(np.concatenate([np.arange(drop_patch), np.arange(drop_patch + drop_feature, n_spots)]))
        feats = np.tile(feat_idx[:, None].astype(np.float32), (1, feature_dim)) + np.arange(feature_dim, dtype=np.float32)
        (root / "features" / backbone).mkdir(parents=True, exist_ok=True)
        with h5py.File(root / "features" / backbone / f"{sample_id}.h5", "w") as f:
            f.create_dataset("features", data=feats)
            f.create_dataset("barcodes", data=np.array([b.encode() for b in barcodes[feat_idx]], dtype="S"))
            f.create_dataset("coords", data=centres[feat_idx])
            f.attrs["backbone"] = backbone
            f.attrs["feature_dim"] = feature_dim

    (root / "metadata" / f"{sample_id}.json").write_text(
        '{"id": "%s", "pixel_size_um_estimated": 0.5, "pixel_size_um_embedded": 0.55, "organ": "Bowel"}' % sample_id
    )
    kept = np.array([i for i in range(n_spots) if i in set(patch_idx) and i in set(feat_idx)])
    return {"root": root, "sample_id": sample_id, "barcodes": barcodes, "counts": counts, "genes": genes,
            "centres": centres, "kept": kept, "feature_dim": feature_dim, "backbone": backbone}


@pytest.fixture
def fake_hest(tmp_path: Path) -> dict:
    """A tiny fake HEST sample (see ``write_fake_hest_sample``) under ``tmp_path / 'hest'``."""
    return write_fake_hest_sample(tmp_path / "hest")
