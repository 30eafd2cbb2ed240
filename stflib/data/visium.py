"""Import one's own Visium section into the HEST-1k layout: ``python -m stflib import-visium``.

Two inputs are accepted:

(a) a Space Ranger output folder (``filtered_feature_bc_matrix.h5``, ``spatial/tissue_positions*.csv``,
    ``spatial/scalefactors_json.json``) plus its H&E image: the full-resolution image (scale 1), or
    Space Ranger's ``tissue_hires_image.png`` / ``tissue_lowres_image.png`` (``--image-scale hires`` or
    ``lowres`` reads the factor from ``scalefactors_json.json``; a number is taken as is);
(b) an AnnData (``.h5ad``, or an AnnData ``.h5``) with spot centres in ``obsm['spatial']`` plus the
    image those coordinates index (``--image-scale`` when the image is a scaled copy of that frame).

One sample is written into ``--out`` exactly as HEST-1k lays it out, so every later step
(``extract-features``, ``ablate``, the notebook) reads it like a downloaded HEST sample:

* ``st/<id>.h5ad``: counts (spots x genes), ``obsm['spatial']`` spot centres in full-resolution pixels,
  gene symbols as var_names (10x Ensembl ids kept in ``var['gene_ids']``);
* ``metadata/<id>.json``: ``pixel_size_um_estimated`` (um per full-resolution pixel), the image's own
  pixel size and the upsampling. Visium spots are 55 um wide and 100 um apart; Space Ranger's
  ``spot_diameter_fullres`` is the diameter of a *65 um* circle (10x's definition, slightly larger than
  the spot), so the pixel size is 65 um / ``spot_diameter_fullres``; 55 um would make it 15 % too
  small. On the real sections of the reference data (``$STFLIB_DATA/real_st``) the ratio spot_diameter_fullres / spot pitch
  is 0.653 (Space Ranger 1.0.0 folder) and 0.650 (stLearn's scale factors), i.e. 65 / 100. An AnnData
  without Space Ranger's files takes its pixel size from the measured spot pitch (100 um);
* ``patches/<id>.h5``: ``img`` (N, 224, 224, 3) uint8 patches of 112 um (224 px at 0.5 um/px, HEST's
  patch) centred on each spot, ``barcode`` (N, 1) bytes, ``coords`` (N, 2) top-left corners in
  full-resolution pixels (HEST's convention: ``int(centre - patch_size_src // 2)``);
* one row in ``metadata.csv`` (HEST's columns), replaced when the id is imported again.

Images are read with Pillow (JPEG, PNG, TIFF; tifffile is used for TIFF when installed). An image much
coarser than 0.5 um/px is accepted with a warning that says by how much its patches are upsampled.
Bad input stops with a ``ValueError``/``FileNotFoundError`` naming the file and the value.
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from stflib.io import atomic_write

from .visium_read import (EXPRESSION_KINDS, VisiumSection, read_anndata_section, read_image, read_spaceranger,
                          resolve_image_scale)

__all__ = ["VisiumSection", "read_spaceranger", "read_anndata_section", "write_hest_sample", "import_visium",
           "read_image", "add_arguments", "run"]

PATCH_PX = 224  # HEST patch: 224 px at 0.5 um/px
TARGET_UM_PER_PX = 0.5
COARSE_UPSAMPLING = 2.0  # warn when patches are upsampled more than this
# patient groups are "dataset_title | patient": one title for all imports, so a patient's sections stay together
IMPORTED_TITLE = "imported Visium sections"


# ------------------------------------------------------------------------------------- writer
def _cut_patches(image: np.ndarray, centres_img: np.ndarray, window_img: float) -> np.ndarray:
    """(N, 224, 224, 3) patches of ``window_img`` image pixels centred on each spot (bilinear,
    off-image parts white, as on an empty slide)."""
    from PIL import Image

    pad = int(np.ceil(window_img / 2)) + 2
    padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)), constant_values=255)
    pil = Image.fromarray(padded)
    out = np.empty((len(centres_img), PATCH_PX, PATCH_PX, 3), np.uint8)
    half = window_img / 2
    for i, (x, y) in enumerate(centres_img):
        box = (x - half + pad, y - half + pad, x + half + pad, y + half + pad)
        out[i] = np.asarray(pil.resize((PATCH_PX, PATCH_PX), Image.Resampling.BILINEAR, box=box))
    return out


def write_hest_sample(section: VisiumSection, image: np.ndarray, image_scale: float, out: str | Path,
                      sample_id: str, patient: str, organ: str, oncotree: str, species: str = "Homo sapiens",
                      image_path: str | Path = "image", dataset_title: str | None = None) -> dict:
    """Write ``section`` as one HEST-1k sample under ``out``; returns its metadata row."""
    import anndata as ad

    out = Path(out)
    if not sample_id or any(c in sample_id for c in "/\\ ") or sample_id.startswith("."):
        raise ValueError(f"sample id must be a plain name (no '/', '\\\\', spaces or leading '.'), got {sample_id!r}")
    for name, value in (("patient", patient), ("organ", organ), ("oncotree", oncotree), ("species", species)):
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{name}: give a non-empty value (got {value!r})")
    n = len(section.barcodes)
    if n == 0:
        raise ValueError(f"{section.source}: no spots to import")
    if section.counts.shape != (n, len(section.genes)):
        raise ValueError(f"{section.source}: counts {section.counts.shape} do not match {n} barcodes x "
                         f"{len(section.genes)} genes")
    um_per_px = section.um_per_px
    image_um_per_px = um_per_px / image_scale
    height, width = image.shape[:2]
    centres_img = section.centres * image_scale
    outside = ((centres_img[:, 0] < 0) | (centres_img[:, 0] >= width) | (centres_img[:, 1] < 0)
               | (centres_img[:, 1] >= height))
    if outside.any():
        i = int(np.flatnonzero(outside)[0])
        raise ValueError(
            f"{image_path}: {int(outside.sum())} of {n} spot centres fall outside the image ({width} x {height} px) "
            f"with scale factor {image_scale:g} (e.g. {str(section.barcodes[i])} at ({centres_img[i, 0]:.0f}, "
            f"{centres_img[i, 1]:.0f}) px); check --image-scale: it must map the spot coordinates onto this image "
            "(hires/lowres images need their tissue_*_scalef)")
    if int(image.max()) == int(image.min()):
        warnings.warn(f"{image_path}: the image is uniform (every pixel = {int(image.min())}): no tissue is visible, so "
                      "every patch is blank and image features carry no information", stacklevel=2)
    upsampling = image_um_per_px / TARGET_UM_PER_PX
    if upsampling > COARSE_UPSAMPLING:
        warnings.warn(f"{image_path}: {image_um_per_px:.2f} um/px is much coarser than HEST's 0.5 um/px: each 112 um "
                      f"patch is {PATCH_PX / upsampling:.0f} image px upsampled {upsampling:.1f}x to {PATCH_PX} px "
                      "(features will see blurred tissue)", stacklevel=2)
    window_img = PATCH_PX * TARGET_UM_PER_PX / image_um_per_px
    patches = _cut_patches(image, centres_img, window_img)

    # HEST's patch coordinates: top-left corners in full-resolution px of a patch_size_src window
    patch_size_src = PATCH_PX * TARGET_UM_PER_PX / um_per_px
    top_left = (section.centres - patch_size_src // 2).astype(np.int64)

    for sub in ("st", "patches", "metadata"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    var = pd.DataFrame(index=pd.Index(section.genes.astype(str), name=None))
    if section.gene_ids is not None:
        var["gene_ids"] = section.gene_ids.astype(str)
    var.index = var.index.astype(str)
    if var.index.has_duplicates:  # anndata wants unique var_names; the reader sums columns sharing a symbol
        var["gene_symbols"] = var.index.to_numpy()
        ids = section.gene_ids
        unique_ids = ids is not None and len(set(ids)) == len(ids)
        var.index = pd.Index(ids.astype(str) if unique_ids else [f"{g}-{i}" for i, g in enumerate(var.index)])
    adata = ad.AnnData(X=section.counts.astype(np.float32), obs=pd.DataFrame(index=section.barcodes.astype(str)), var=var)
    adata.obsm["spatial"] = section.centres.astype(np.float64)
    adata.uns["expression"] = section.expression
    if all(g.startswith("ENS") for g in section.genes[:50]):
        adata.uns["gene_names"] = "ensembl_ids"  # read_hest_sample keeps them (with a warning)
    atomic_write(out / "st" / f"{sample_id}.h5ad", lambda p: adata.write_h5ad(p))

    def write_patches(p):
        with h5py.File(p, "w") as f:
            f.create_dataset("img", data=patches, chunks=(1, PATCH_PX, PATCH_PX, 3))
            f.create_dataset("coords", data=top_left)
            width_b = max(len(b.encode()) for b in section.barcodes)
            f.create_dataset("barcode", data=np.array([[b.encode()] for b in section.barcodes], dtype=f"S{width_b}"))
            f.attrs.update({"patch_size_um": PATCH_PX * TARGET_UM_PER_PX, "pixel_size_um": TARGET_UM_PER_PX,
                            "patch_size_src": patch_size_src, "upsampling": upsampling})
    atomic_write(out / "patches" / f"{sample_id}.h5", write_patches)

    fullres_w = int(round(width / image_scale))
    fullres_h = int(round(height / image_scale))
    row = {"id": sample_id, "organ": organ, "species": species, "oncotree_code": oncotree, "st_technology": "Visium",
           "patient": patient, "subseries": sample_id, "dataset_title": dataset_title or IMPORTED_TITLE,
           "spots_under_tissue": n, "pixel_size_um_estimated": um_per_px, "fullres_px_width": fullres_w,
           "fullres_px_height": fullres_h, "image_pixel_size_um": image_um_per_px, "patch_upsampling": upsampling,
           "expression": section.expression, "source": section.source}
    meta = {**row, "image": str(image_path),
            "image_scale": image_scale, "patch_size_src": patch_size_src, "imported_by": "stflib import-visium"}
    atomic_write(out / "metadata" / f"{sample_id}.json", lambda p: Path(p).write_text(json.dumps(meta, indent=2) + "\n"))
    _upsert_metadata_csv(out / "metadata.csv", row)
    return row




def _upsert_metadata_csv(path: Path, row: dict) -> None:
    new = pd.DataFrame([row])
    if path.is_file():
        old = pd.read_csv(path)
        if "id" not in old.columns:
            raise ValueError(f"{path}: has no 'id' column; columns: {list(old.columns)}")
        old = old[old["id"].astype(str) != row["id"]]
        new = pd.concat([old, new], ignore_index=True)
    atomic_write(path, lambda p: new.to_csv(p, index=False))


# ---------------------------------------------------------------------------------- entry point
def import_visium(out: str | Path, sample_id: str, patient: str, organ: str, oncotree: str, image: str | Path,
                  spaceranger: str | Path | None = None, adata: str | Path | None = None,
                  image_scale: str | float | None = None, species: str = "Homo sapiens", expression: str = "counts",
                  pixel_size_um: float | None = None, layer: str | None = None,
                  dataset_title: str | None = None, uppercase_genes: bool = False) -> dict:
    """Import one section (a Space Ranger folder or an AnnData, plus its image); returns its metadata row.

    ``uppercase_genes`` writes symbols in upper case (mouse -> human-style symbols, an approximation)."""
    if (spaceranger is None) == (adata is None):
        raise ValueError("give exactly one of a Space Ranger folder (--spaceranger) or an AnnData (--adata)")
    if spaceranger is not None:
        if layer is not None:
            raise ValueError("--layer applies to --adata; a Space Ranger folder has one count matrix")
        section, scalefactors = read_spaceranger(spaceranger, expression, pixel_size_um)
    else:
        section, scalefactors = read_anndata_section(adata, expression, pixel_size_um, layer)
    if uppercase_genes:
        section.genes = np.char.upper(section.genes.astype(str))
    image = Path(image)
    scale = resolve_image_scale(image_scale, scalefactors, image)
    pixels = read_image(image)
    return write_hest_sample(section, pixels, scale, out, sample_id, patient, organ, oncotree, species, image,
                             dataset_title)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--spaceranger", help="Space Ranger output folder (filtered_feature_bc_matrix.h5, spatial/)")
    src.add_argument("--adata", help="AnnData (.h5ad) with obsm['spatial'] in pixels of --image (times --image-scale)")
    parser.add_argument("--image", required=True, help="H&E image (TIFF, JPEG or PNG)")
    parser.add_argument("--image-scale", default=None,
                        help="image px per full-resolution px: hires, lowres (from the scale factors) or a number "
                             "(default 1: the full-resolution image, or the frame of obsm['spatial'])")
    parser.add_argument("--out", required=True, help="HEST-layout folder to write into (created if needed)")
    parser.add_argument("--id", required=True, dest="sample_id", help="sample id (file names and metadata.csv)")
    parser.add_argument("--patient", required=True, help="patient (donor) id: folds never split a patient")
    parser.add_argument("--organ", required=True, help="organ as HEST spells it (e.g. Bowel, Breast, Brain)")
    parser.add_argument("--oncotree", required=True, help="OncoTree code (e.g. COAD, IDC; 'healthy' if none)")
    parser.add_argument("--species", default="Homo sapiens", help="species as HEST spells it (default Homo sapiens)")
    parser.add_argument("--expression", default="counts", choices=EXPRESSION_KINDS,
                        help="what the matrix holds: raw counts (default), log1p-normalised, or scaled (z-scores)")
    parser.add_argument("--uppercase-genes", action="store_true",
                        help="write gene symbols in upper case (mouse Gabrd -> GABRD): the usual first approximation "
                             "to human orthologs, so a mouse section shares names with human sections and the "
                             "Hallmark sets (not an ortholog table)")
    parser.add_argument("--layer", default=None, help="AnnData layer with the counts (default: layers['counts'], .raw, X)")
    parser.add_argument("--pixel-size", type=float, default=None, dest="pixel_size_um",
                        help="um per full-resolution pixel (Space Ranger; default 65 um / spot_diameter_fullres) or per "
                             "obsm['spatial'] unit (AnnData; default 100 um / the measured spot pitch); given, it "
                             "replaces the file's scale and its check against the spot pitch")
    parser.add_argument("--title", default=None, dest="dataset_title", help="dataset title for metadata.csv (patients are grouped within a title; default: one title for all imports)")


def run(args: argparse.Namespace) -> int:
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            row = import_visium(args.out, args.sample_id, args.patient, args.organ, args.oncotree, args.image,
                                spaceranger=args.spaceranger, adata=args.adata, image_scale=args.image_scale,
                                species=args.species, expression=args.expression,
                                pixel_size_um=args.pixel_size_um, layer=args.layer,
                                dataset_title=args.dataset_title, uppercase_genes=args.uppercase_genes)
        for w in caught:
            print(f"import-visium: warning: {w.message}", file=sys.stderr)
    except (FileNotFoundError, ValueError) as exc:
        print(f"import-visium: error: {exc}", file=sys.stderr)
        return 2
    print(f"import-visium: {row['id']}: {row['spots_under_tissue']} spots, full-res {row['pixel_size_um_estimated']:.3f} "
          f"um/px, image {row['image_pixel_size_um']:.2f} um/px (patches upsampled {row['patch_upsampling']:.1f}x) "
          f"-> {args.out}")
    print(f"next: python -m stflib extract-features --data-dir {args.out} --backbone resnet50")
    return 0
