"""Held-out predictions as AnnData in scanpy/squidpy's Visium conventions.

``predictions.h5ad`` holds one row per held-out spot and reads like a real Visium AnnData:

- ``X`` predicted log1p(CP10k), ``layers['truth']`` the measurement on the same scale;
- ``obs['library_id']`` (categorical, one category per held-out slide; ``obs['sample_id']`` is the
  same), ``obs['barcode']``, ``obs['valid']``;
- ``obsm['spatial']`` spot centres in each slide's own full-resolution pixels;
- ``uns['spatial'][library_id]`` with ``images['lowres']`` (an RGB thumbnail of the slide) and
  ``scalefactors`` (``tissue_lowres_scalef``: thumbnail pixels per full-resolution pixel;
  ``spot_diameter_fullres``: the 55 um Visium spot in full-resolution pixels).

So ``sc.pl.spatial(adata[adata.obs.library_id == lib], library_id=lib, color=gene)`` draws the spots
on the slide at their true size and ``squidpy.gr.spatial_neighbors`` / ``spatial_autocorr`` run on it.

The thumbnail is HEST's ``thumbnails/<id>_downscaled_fullres.jpeg`` when the data folder has it,
otherwise a mosaic of the slide's own H&E patches (``patches/<id>.h5``), each shrunk and put back
where it was cut from.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np


class HeldOutRun(Protocol):
    """What ``predictions_anndata`` reads of a finished run (``stflib.train.Run`` is one): the fold
    (genes, HVGs, samples, items, data folder), the per-slide predictions, the per-gene table, the model
    (for its pathway names) and the metrics (for the config hash). Declared here so that this module
    depends on no training code."""

    fold: Any
    predictions: list[dict]
    per_gene: Any
    model: Any
    metrics: dict

VISIUM_SPOT_DIAMETER_UM = 55.0
VISIUM_SPOT_PITCH_UM = 100.0
THUMBNAIL_MAX_PX = 600  # longest side of the stored thumbnail (Space Ranger's lowres image is 600 px)
MOSAIC_READ_CHUNK = 64  # patches decompressed at a time while building the mosaic


def spot_diameter_fullres(coords: np.ndarray, pixel_size_um: float, metadata: dict | None = None) -> float:
    """Visium spot diameter in full-resolution pixels.

    From the pixel size (``metadata['spot_diameter']`` um, else 55 um); without a pixel size, from the
    spot pitch (``stflib.spatial.spot_pitch``), the 100 um centre-to-centre distance.
    """
    diameter_um = VISIUM_SPOT_DIAMETER_UM
    try:
        value = float((metadata or {}).get("spot_diameter", diameter_um))
        if np.isfinite(value) and value > 0:
            diameter_um = value
    except (TypeError, ValueError):
        pass
    if np.isfinite(pixel_size_um) and pixel_size_um > 0:
        return diameter_um / pixel_size_um
    coords = np.asarray(coords, np.float64)
    if len(coords) < 2:
        raise ValueError("spot diameter: no pixel size and fewer than 2 spots to measure the spot pitch from")
    from stflib import spatial

    return float(spatial.spot_pitch(coords) * diameter_um / VISIUM_SPOT_PITCH_UM)


def patch_mosaic(patches_h5: str | Path, max_px: int = THUMBNAIL_MAX_PX) -> tuple[np.ndarray, float]:
    """RGB thumbnail (H, W, 3) uint8 of a slide rebuilt from its HEST patch file; returns (image, scalef).

    ``scalef`` maps full-resolution pixels to thumbnail pixels. Each patch is placed at its
    top-left corner (the file's ``coords``) after nearest-neighbour shrinking; uncovered glass is white.
    """
    import h5py

    with h5py.File(patches_h5, "r") as f:
        if "img" not in f or "coords" not in f:
            raise ValueError(f"{patches_h5}: a HEST patch file needs datasets 'img' and 'coords'; it has {sorted(f)}")
        corners = np.asarray(f["coords"], np.float64).reshape(len(f["coords"]), -1)[:, :2]
        images = f["img"]
        patch_px = int(images.shape[1])
        extent = corners.max(0) + patch_px  # (width, height) in full-resolution pixels
        scalef = min(1.0, max_px / float(extent.max()))
        size = max(1, int(round(patch_px * scalef)))
        pick = ((np.arange(size) + 0.5) * patch_px / size).astype(int)
        width, height = np.ceil(extent * scalef - 1e-9).astype(int).tolist()
        canvas = np.full((height, width, 3), 255, np.uint8)
        for start in range(0, len(corners), MOSAIC_READ_CHUNK):
            small = np.asarray(images[start:start + MOSAIC_READ_CHUNK])[:, pick][:, :, pick, :3]
            for tile, (x, y) in zip(small, np.round(corners[start:start + MOSAIC_READ_CHUNK] * scalef).astype(int)):
                canvas[max(y, 0):y + size, max(x, 0):x + size] = tile[max(-y, 0):, max(-x, 0):][:height - y, :width - x]
    return canvas, scalef


def hest_thumbnail(root: str | Path, sample_id: str, metadata: dict, max_px: int = THUMBNAIL_MAX_PX):
    """HEST's downscaled whole-slide image and its scale factor, or None when absent or unscalable."""
    path = Path(root) / "thumbnails" / f"{sample_id}_downscaled_fullres.jpeg"
    try:
        full_width = float(metadata.get("fullres_px_width"))
    except (TypeError, ValueError):
        return None
    if not path.is_file() or not np.isfinite(full_width) or full_width <= 0:
        return None
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        shrink = min(1.0, max_px / max(im.size))
        if shrink < 1.0:
            im = im.resize((max(1, round(im.width * shrink)), max(1, round(im.height * shrink))))
        return np.asarray(im, np.uint8), im.width / full_width


def slide_spatial_uns(root: str | Path, sample, coords: np.ndarray, max_px: int = THUMBNAIL_MAX_PX) -> dict:
    """``uns['spatial'][library_id]`` for one slide: thumbnail image, scale factors and provenance."""
    meta = dict(sample.metadata or {})
    thumb = hest_thumbnail(root, sample.sample_id, meta, max_px)
    source = "HEST thumbnail"
    if thumb is None:
        patches = Path(root) / "patches" / f"{sample.sample_id}.h5"
        if patches.is_file():
            from stflib.data.decoded import memo

            # rebuilding a mosaic decodes every gzip'd patch of the slide: once per patch file and max_px
            thumb = memo("mosaic", lambda: patch_mosaic(patches, max_px), (str(patches.resolve()), max_px), [patches],
                         ["stflib.predictions"])
            source = "mosaic of the slide's H&E patches"
    scalefactors = {"spot_diameter_fullres": spot_diameter_fullres(coords, sample.pixel_size_um, meta)}
    entry: dict = {"scalefactors": scalefactors, "metadata": {"source_image": "none", "library_id": sample.sample_id}}
    if thumb is not None:
        image, scalef = thumb
        entry["images"] = {"lowres": image}
        scalefactors["tissue_lowres_scalef"] = float(scalef)
        entry["metadata"]["source_image"] = source
    if np.isfinite(sample.pixel_size_um):
        entry["metadata"]["pixel_size_um"] = float(sample.pixel_size_um)
    return entry


def predictions_anndata(result: HeldOutRun, genes: list[str] | None = None, images: bool = True):
    """Held-out predictions as a Visium-style AnnData (see the module docstring).

    ``genes``: a subset of the fold's genes (default all); ``images``: build the thumbnails.
    """
    import anndata as ad
    import pandas as pd

    fold = result.fold
    cols = np.arange(len(fold.genes)) if genes is None else np.array([fold.genes.index(g) for g in genes])
    var = pd.DataFrame(index=[fold.genes[i] for i in cols])
    var["is_hvg"] = np.isin(var.index, fold.hvg)
    if len(result.per_gene):
        var["pcc"] = result.per_gene["pcc"].to_numpy()[cols]
    obs, X, T, xy, sc, tp = [], [], [], [], [], []
    spatial = {}
    for p in result.predictions:
        s = fold.samples[p["sample_id"]]
        n = len(p["pred"])
        obs.append(pd.DataFrame({"sample_id": p["sample_id"], "barcode": np.asarray(s.barcodes)[:n], "valid": p["valid"]}))
        X.append(p["pred"][:, cols])
        T.append(p["true"][:, cols])
        xy.append(np.asarray(s.coords)[:n])
        sc.append(p["pathway_scores"])
        tp.append(fold.items[p["sample_id"]].get("true_pathways"))
        if images:
            spatial[str(p["sample_id"])] = slide_spatial_uns(fold.root, s, xy[-1])
    obs = pd.concat(obs, ignore_index=True)
    obs.index = (obs["sample_id"].astype(str) + ":" + obs["barcode"].astype(str)).to_numpy()
    obs["sample_id"] = obs["sample_id"].astype(str).astype("category")
    obs["library_id"] = obs["sample_id"].copy()
    a = ad.AnnData(X=np.concatenate(X).astype(np.float32), obs=obs, var=var)
    a.layers["truth"] = np.concatenate(T).astype(np.float32)
    a.obsm["spatial"] = np.concatenate(xy).astype(np.float64)
    if spatial:
        a.uns["spatial"] = spatial
    if all(s is not None for s in sc):
        a.obsm["pathway_scores"] = np.concatenate(sc).astype(np.float32)
        names = result.model.config.pathway_names
        a.uns["pathway_names"] = list(names) if names and len(names) == a.obsm["pathway_scores"].shape[1] else \
            [f"token_{i}" for i in range(a.obsm["pathway_scores"].shape[1])]
    if all(t is not None for t in tp) and fold.truth_pathway_names:
        a.obsm["true_pathway_activity"] = np.concatenate([t.cpu().numpy() for t in tp]).astype(np.float32)
        a.uns["true_pathway_names"] = list(fold.truth_pathway_names)
    a.uns["hvg50"] = list(fold.hvg)
    a.uns["scale"] = "log1p(CP10k)"
    a.uns["config_hash"] = result.metrics.get("config_hash", "")
    return a


def moran_metrics(adata, genes: list[str] | None = None, k: int = 6) -> dict[str, float]:
    """Moran's I of predicted and measured maps (valid spots, per slide) for ``genes`` (default the HVG50).

    See ``stflib.metrics.moran_summary``: returns ``moran_i_pred_median``, ``moran_i_true_median`` and
    ``moran_rank_spearman``.
    """
    from stflib import metrics as M

    genes = list(adata.uns["hvg50"]) if genes is None else list(genes)
    valid = np.asarray(adata.obs["valid"], bool)
    columns = adata.var_names.get_indexer(genes)
    if (columns < 0).any():
        missing = [g for g, c in zip(genes, columns) if c < 0]
        raise ValueError(f"moran_metrics: genes not in the predictions: {missing[:5]}")
    truth = adata.layers["truth"]
    return M.moran_summary(np.asarray(adata.X)[valid][:, columns], np.asarray(truth)[valid][:, columns],
                           np.asarray(adata.obsm["spatial"])[valid], np.asarray(adata.obs["library_id"].astype(str))[valid],
                           k=k)
