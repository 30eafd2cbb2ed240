"""What ``import-visium`` reads (``stflib.data.visium``): a Space Ranger folder or an AnnData as a
``VisiumSection`` (counts, genes, barcodes, spot centres and the pixel size of their frame), and the
H&E image (``read_image``). Pixel sizes are checked against the 100 um Visium spot pitch measured on
the centres (``stflib.spatial.spot_pitch``); non-count expression is converted with a warning."""
from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp

from .. import spatial
from .hest import ENSEMBL, decode_barcodes, gene_symbols

SPACERANGER_SPOT_DIAMETER_UM = 65.0  # what spot_diameter_fullres measures (10x)
SPOT_PITCH_UM = 100.0  # Visium centre-to-centre distance
EXPRESSION_KINDS = ("counts", "log1p", "scaled")


@dataclass
class VisiumSection:
    """What an import needs, whatever the input: expression, spot centres and the image frame."""

    counts: sp.csr_matrix  # (N, G) float32
    genes: np.ndarray  # (G,) str: symbols when the input has them
    gene_ids: np.ndarray | None  # (G,) Ensembl ids, when the input has them
    barcodes: np.ndarray  # (N,) str
    centres: np.ndarray  # (N, 2) full-resolution pixels (x, y)
    um_per_px: float  # size of one full-resolution pixel
    expression: str  # "counts" or a note on what the values are
    source: str


def _check_expression(counts: sp.csr_matrix, expression: str, path: Path) -> tuple[sp.csr_matrix, str]:
    """Raw counts stay as they are; other kinds are converted, recorded and warned about."""
    if expression not in EXPRESSION_KINDS:
        raise ValueError(f"expression: unknown kind {expression!r}; allowed: {', '.join(EXPRESSION_KINDS)}")
    data = counts.data
    if not np.isfinite(data).all():
        raise ValueError(f"{path}: expression has {int((~np.isfinite(data)).sum())} NaN or infinite values")
    lowest = float(data.min()) if data.size else 0.0
    integral = bool(np.all(data == np.round(data)))
    if expression == "counts":
        if lowest < 0 or not integral:
            hint = ("negative values: looks z-scored or scaled (--expression scaled)" if lowest < 0 else
                    "non-integer values: looks normalised (--expression log1p if it is log1p of normalised counts)")
            example = data[(data < 0) | (data != np.round(data))][0]
            raise ValueError(
                f"{path}: expression is not raw UMI counts (e.g. value {example:g}; min {lowest:g}): {hint}. "
                "Give the raw counts (Space Ranger's filtered_feature_bc_matrix.h5, layers['counts'] or .raw), "
                f"or --expression one of {', '.join(EXPRESSION_KINDS)}")
        return counts, "counts"
    if expression == "log1p":
        if lowest < 0:
            raise ValueError(f"{path}: --expression log1p but values are negative (min {lowest:g}); "
                             "log1p of counts is >= 0 (try --expression scaled)")
        out = counts.copy()
        out.data = np.expm1(out.data).astype(np.float32)
        warnings.warn(f"{path}: expression is log1p-normalised, not raw counts: imported as expm1 (normalised "
                      "values); count models (loss zinb) and QC thresholds in UMIs do not apply", stacklevel=3)
        return out, "expm1 of log1p-normalised values (not raw counts)"
    # scaled: per-gene shift so each gene's minimum is 0; only the within-gene ordering survives
    dense = counts.toarray().astype(np.float64)
    dense -= dense.min(axis=0, keepdims=True)
    warnings.warn(f"{path}: expression is scaled (z-scores, min {lowest:g}), not counts: each gene is shifted to a "
                  "minimum of 0; the values keep only the within-gene ordering of spots (pipeline checks, not "
                  "biology)", stacklevel=3)
    return sp.csr_matrix(dense.astype(np.float32)), "scaled values shifted per gene to min 0 (not counts)"


def _symbols_from_10x(ids: np.ndarray, names: np.ndarray, path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """10x features: ``name`` holds symbols and ``id`` Ensembl ids; both kept (symbols as gene names)."""
    names_are_ids = np.mean([bool(ENSEMBL.match(n)) for n in names]) >= 0.5 if len(names) else False
    if names_are_ids:
        warnings.warn(f"{path}: the feature names are Ensembl ids (e.g. {str(names[0])!r}), no gene symbols: genes "
                      "are kept as Ensembl ids, so Hallmark pathways and other cohorts' genes will not match them",
                      stacklevel=3)
    return names, ids


# ------------------------------------------------------------------------------------ readers
def _read_10x_h5(path: Path) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray | None, np.ndarray]:
    """Space Ranger >= 3 ``filtered_feature_bc_matrix.h5`` (CSC genes x barcodes) -> spots x genes."""
    if not path.is_file():
        raise FileNotFoundError(f"10x matrix not found: {path}")
    with h5py.File(path, "r") as f:
        if "matrix" not in f:
            raise ValueError(f"{path}: not a 10x Genomics feature-barcode matrix (no 'matrix' group; has {list(f)})")
        m = f["matrix"]
        shape = tuple(int(v) for v in m["shape"][:])
        mat = sp.csc_matrix((m["data"][:], m["indices"][:], m["indptr"][:]), shape=shape)
        barcodes = decode_barcodes(m["barcodes"][:])
        feats = m["features"]
        ids = decode_barcodes(feats["id"][:])
        names = decode_barcodes(feats["name"][:]) if "name" in feats else ids
        if "feature_type" in feats:
            keep = decode_barcodes(feats["feature_type"][:]) == "Gene Expression"
            mat, ids, names = mat[keep], ids[keep], names[keep]
    genes, gene_ids = _symbols_from_10x(ids, names, path)
    return sp.csr_matrix(mat.T, dtype=np.float32), genes, gene_ids, barcodes


def _read_positions(spatial: Path) -> tuple[pd.DataFrame, Path]:
    """``tissue_positions.csv`` (Space Ranger >= 2, header) or ``tissue_positions_list.csv`` (1.x, none)."""
    cols = ["barcode", "in_tissue", "array_row", "array_col", "pxl_row_in_fullres", "pxl_col_in_fullres"]
    for name, header in (("tissue_positions.csv", 0), ("tissue_positions_list.csv", None)):
        p = spatial / name
        if p.is_file():
            df = pd.read_csv(p, header=header)
            if df.shape[1] != 6:
                raise ValueError(f"{p}: expected 6 columns ({', '.join(cols)}), found {df.shape[1]}")
            df.columns = cols
            return df.set_index(df["barcode"].astype(str)), p
    raise FileNotFoundError(f"no tissue_positions.csv or tissue_positions_list.csv in {spatial}")


def read_spaceranger(folder: str | Path, expression: str = "counts", pixel_size_um: float | None = None
                     ) -> tuple[VisiumSection, dict]:
    """A Space Ranger output folder -> (section, scalefactors). ``pixel_size_um`` (um per full-resolution
    pixel) replaces the scale factors' estimate, 65 um / ``spot_diameter_fullres``, and its check against
    the spot pitch."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"Space Ranger folder not found: {folder}")
    matrix = folder / "filtered_feature_bc_matrix.h5"
    counts, genes, gene_ids, barcodes = _read_10x_h5(matrix)
    positions, pos_path = _read_positions(folder / "spatial")
    missing = [str(b) for b in barcodes if b not in positions.index]
    if missing:
        raise ValueError(f"{pos_path}: {len(missing)} of the {len(barcodes)} barcodes of {matrix} are missing "
                         f"(e.g. {missing[:3]}; the file has e.g. {list(positions.index[:3])}); "
                         "the positions file must come from the same Space Ranger run")
    pos = positions.loc[barcodes]
    centres = pos[["pxl_col_in_fullres", "pxl_row_in_fullres"]].to_numpy(np.float64)  # (x, y)
    sf_path = folder / "spatial" / "scalefactors_json.json"
    if not sf_path.is_file():
        raise FileNotFoundError(f"scale factors not found: {sf_path}")
    scalefactors = json.loads(sf_path.read_text())
    diameter = scalefactors.get("spot_diameter_fullres")
    if not isinstance(diameter, (int, float)) or not diameter > 0:
        raise ValueError(f"{sf_path}: spot_diameter_fullres must be a positive number, got {diameter!r}")
    counts, kind = _check_expression(counts, expression, matrix)
    if pixel_size_um is not None:
        if not pixel_size_um > 0:
            raise ValueError(f"pixel size must be > 0 um, got {pixel_size_um!r}")
        um_per_px = float(pixel_size_um)
    else:
        um_per_px = SPACERANGER_SPOT_DIAMETER_UM / float(diameter)
        _check_pitch(positions[["pxl_col_in_fullres", "pxl_row_in_fullres"]].to_numpy(np.float64), um_per_px,
                     f"{sf_path} (spot_diameter_fullres {diameter:g})")
    section = VisiumSection(counts, genes, gene_ids, barcodes, centres, um_per_px, kind, str(folder))
    return section, {**scalefactors, "_path": str(sf_path)}


def _check_pitch(centres: np.ndarray, um_per_px: float, where: str) -> None:
    """Stop when a pixel size disagrees (> 10 %) with the 100 um Visium spot pitch measured on the centres:
    patches cut at that scale would show the wrong amount of tissue, so nothing is written. ``--pixel-size``
    sets the pixel size explicitly (and skips this check) when the file's own scale is known to be wrong."""
    if len(centres) < 2:  # no pitch to measure
        return
    pitch = spatial.spot_pitch(centres)
    if pitch > 0:
        from_pitch = SPOT_PITCH_UM / pitch
        if abs(um_per_px / from_pitch - 1) > 0.10:
            raise ValueError(f"{where}: pixel size {um_per_px:.3f} um/px disagrees with the spot pitch ({pitch:.1f} px "
                             f"centre to centre = {from_pitch:.3f} um/px for Visium's 100 um): patches would be cut at "
                             "the wrong scale, so nothing was written; check the scale factors, or give "
                             f"--pixel-size UM (e.g. --pixel-size {from_pitch:.3f}) to set it yourself")


def read_anndata_section(path: str | Path, expression: str = "counts", pixel_size_um: float | None = None,
                         layer: str | None = None) -> tuple[VisiumSection, dict]:
    """An AnnData with ``obsm['spatial']`` -> (section, scale factors found in ``uns['spatial']``, or {}).

    Counts come from ``layer``, else ``layers['counts']``, else ``.raw``, else ``X``. The pixel size (um
    per ``obsm['spatial']`` unit) is ``pixel_size_um`` when given, else 100 um / the spot pitch measured
    on the coordinates. ``uns['spatial']``'s ``spot_diameter_fullres`` refers to the original
    full-resolution frame, which the coordinates of a cropped or rescaled image need not share (the
    squidpy crop's do not), so it is only compared.
    """
    import anndata as ad

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"AnnData file not found: {path}")
    try:
        adata = ad.read_h5ad(path)
    except Exception as exc:  # noqa: BLE001 - anndata raises many types on a foreign file
        raise ValueError(f"{path}: not an AnnData file ({type(exc).__name__}: {exc})") from exc
    if "spatial" not in adata.obsm:
        raise ValueError(f"{path}: obsm['spatial'] (spot centres in image pixels) is missing; obsm has {list(adata.obsm)}")
    if layer is not None:
        if layer not in adata.layers:
            raise ValueError(f"{path}: layer {layer!r} not found; layers: {list(adata.layers) or 'none'}")
        X, var = adata.layers[layer], adata.var
    elif "counts" in adata.layers:
        X, var = adata.layers["counts"], adata.var
    elif adata.raw is not None:
        X, var = adata.raw.X, adata.raw.var
    else:
        X, var = adata.X, adata.var
    counts = sp.csr_matrix(X, dtype=np.float32)
    names = np.asarray(var.index, dtype=str)
    try:
        genes = np.asarray(gene_symbols(var, names, path), dtype=str)
    except ValueError:
        warnings.warn(f"{path}: var_names are Ensembl ids with no symbol column: kept as Ensembl ids", stacklevel=2)
        genes = names
    gene_ids = var["gene_ids"].astype(str).to_numpy() if "gene_ids" in var.columns else None
    centres = np.asarray(adata.obsm["spatial"], np.float64)[:, :2]
    scalefactors: dict = {}
    spatial_uns = adata.uns.get("spatial")
    if isinstance(spatial_uns, dict) and len(spatial_uns) == 1:
        lib = next(iter(spatial_uns.values()))
        if isinstance(lib, dict) and isinstance(lib.get("scalefactors"), dict):
            scalefactors = {k: float(v) for k, v in lib["scalefactors"].items()}
    if pixel_size_um is None:
        pitch = spatial.spot_pitch(centres) if len(centres) >= 2 else 0.0
        if not pitch > 0:
            raise ValueError(f"{path}: cannot measure the spot pitch from obsm['spatial'] ({len(centres)} spots); "
                             "give --pixel-size (um per obsm['spatial'] unit)")
        pixel_size_um = SPOT_PITCH_UM / pitch
        if scalefactors.get("spot_diameter_fullres", 0) > 0:
            from_sf = SPACERANGER_SPOT_DIAMETER_UM / scalefactors["spot_diameter_fullres"]
            if abs(from_sf / pixel_size_um - 1) > 0.10:
                warnings.warn(f"{path}: uns['spatial'] scale factors imply {from_sf:.3f} um/px but the spot pitch in "
                              f"obsm['spatial'] gives {pixel_size_um:.3f} um/px: using the pitch (the coordinates "
                              "are not in the scale factors' full-resolution frame)", stacklevel=2)
    elif not pixel_size_um > 0:
        raise ValueError(f"pixel size must be > 0 um, got {pixel_size_um!r}")
    counts, kind = _check_expression(counts, expression, path)
    barcodes = np.asarray(adata.obs_names, dtype=str)
    return VisiumSection(counts, genes, gene_ids, barcodes, centres, float(pixel_size_um), kind, str(path)), scalefactors


def read_image(path: str | Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB from a JPEG, PNG or TIFF (alpha dropped, 16-bit scaled to 8-bit)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    if path.suffix.lower() in (".tif", ".tiff"):
        try:
            import tifffile

            arr = np.asarray(tifffile.imread(path))
        except ImportError:
            arr = None
    else:
        arr = None
    if arr is None:
        from PIL import Image

        Image.MAX_IMAGE_PIXELS = None  # full-resolution H&E scans are ~0.5-1 gigapixel
        try:
            with Image.open(path) as im:
                arr = np.asarray(im.convert("RGB"))
        except Exception as exc:  # noqa: BLE001
            raise ValueError(f"{path}: not a readable image ({type(exc).__name__}: {exc})") from exc
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] < 3:
        raise ValueError(f"{path}: expected an RGB image, got an array of shape {arr.shape}")
    arr = arr[..., :3]
    if arr.dtype != np.uint8:
        top = float(arr.max()) or 1.0
        arr = np.clip(arr.astype(np.float64) * (255.0 / (65535.0 if top > 255 else 255.0)), 0, 255).astype(np.uint8)
    return arr


def resolve_image_scale(image_scale: str | float | None, scalefactors: dict, image_path: Path) -> float:
    if image_scale is None:
        return 1.0
    if isinstance(image_scale, str) and image_scale.lower() in ("hires", "lowres"):
        key = f"tissue_{image_scale.lower()}_scalef"
        if key not in scalefactors:
            raise ValueError(f"--image-scale {image_scale}: no {key!r} in the scale factors "
                             f"({scalefactors.get('_path', 'none found')}); give the factor as a number")
        return float(scalefactors[key])
    try:
        value = float(image_scale)
    except (TypeError, ValueError):
        raise ValueError(f"--image-scale: expected hires, lowres or a number (image px per full-res px), "
                         f"got {image_scale!r}") from None
    if not 0 < value <= 1.0 + 1e-9:
        raise ValueError(f"--image-scale for {image_path}: must be in (0, 1] (image px per full-resolution px), "
                         f"got {value!r}")
    return value
