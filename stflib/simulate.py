"""A simulated colorectal-cancer Visium cohort in HEST-1k layout, with known ground truth.

Real HEST-1k cannot be downloaded here, so every notebook's default data is this simulator's output:
``python -m stflib simulate --out DIR [--preset tiny|default|full] [--seed N] [--world NAME]`` or,
from Python, ``default_cohort(preset, seed, world)`` (generated once into ``$STFLIB_CACHE`` or
``~/.cache/stflib``, one folder per world, ``cohort_name``).

Worlds (``WORLDS``): the named, frozen assumptions that decide what can be found. ``default`` is
calibrated against real anchors (HEST-Bench ridge-probe range; STFlow's +16-18 % relative gain of
spatial context over spot-only probes); ``pathway-misspecified`` puts most expression variance on
non-Hallmark programmes; ``no-context`` turns the context fields off; ``strong-patient`` makes patient
effects 2.5x larger. ``stflib.calibration.calibration_report`` measures each against its anchor.

What is simulated (per slide; all fields live on the real Visium v1 array, 100 um pitch, 55 um spots)
--------------------------------------------------------------------------------------------------
1. **Tissue**: a lobed outline on the 78 x 64 hex grid (the real barcode grid from
   ``../shared/data/hest/visium-v1_coordinates.txt`` when present, else the same grid with
   deterministic synthetic barcodes; the simulation itself is identical either way).
2. **Compartments** (``COMPARTMENTS``: tumour, stroma, immune aggregate, normal mucosa, muscle,
   necrosis) as a softmax of smooth Gaussian random fields: tumour masses with necrosis in their
   cores, mucosa away from tumour, a muscularis band along one edge, small lymphoid aggregates.
3. **Cell types** (``CELL_TYPES``, 10): each compartment is a mixture of cell types, with per-spot
   multiplicative noise -> per-spot composition (rows sum to 1).
4. **Spatial context** (``CONTEXTS``): Gaussian-smoothed neighbourhood fields - tumour-stroma
   interface, tumour depth, immune and necrosis proximity. They are NOT visible in a spot's own
   patch: only neighbouring spots reveal them.
5. **50 Hallmark pathway activities** = composition loadings + context loadings (EMT/TGF-beta at the
   interface, hypoxia/glycolysis deep in tumour and near necrosis, interferon/inflammatory around
   immune aggregates, E2F/G2M/MYC in tumour, ...) + patient and slide offsets + smooth noise
   (300 um) + a little spot noise.
6. **Expression** for ~5.7k real gene symbols (all Hallmark genes, compartment markers, 13 MT-
   genes, ribosomal RPL/RPS genes, background genes from real symbol families):
   rate[s, g] = sum_c composition[s, c] * exp(baseline[g] + celltype_loading[g, c])
   * exp(sum_p pathway_loading[g, p] * activity[s, p]); expected counts = library size[s] *
   rate / sum_g rate; counts ~ zero-inflated negative binomial (gene-wise theta and dropout).
   Library sizes: slide median 4k-14k UMIs, composition effects (necrosis, muscle low), smooth field.
7. **Patches**: 224 x 224 px at 0.5 um/px (112 um), rendered at 1 um/px and upsampled: nuclei
   splatted by cell type (large pale epithelial, small dark lymphocytes, spindle stromal/muscle,
   karyorrhectic debris), gland lumens, eosin by compartment, Beer-Lambert H&E colour with
   per-slide stain vectors and intensity.
8. **Stand-in features** per backbone name (``BACKBONES``): latent morphology of the spot's OWN
   patch = [composition, 8 morphologically visible pathways (proliferation: E2F and G2M, EMT,
   hypoxia, inflammation, apoptosis, angiogenesis, interferon-gamma)] + noise of scale
   ``BACKBONES[name].noise`` (the information level) made of three parts (``World``): i.i.d.
   per-spot noise (neighbour averaging removes it), spatially smooth fields (300 um) and one offset
   per slide (neighbour averaging keeps both; shared by all backbones of a slide, like stain and
   section effects), plus nuisance (slide stain 3 dims, spot
   focus/thickness 2 dims) -> a fixed random 2-layer tanh map -> width D, + output noise.
   Noise levels follow HEST-Bench's encoder ranking: gigapath ~ hibou-l < hibou-b ~ phikon ~
   ctranspath < resnet50. These are NOT real embeddings of the patches: they are stand-ins with a
   controlled information content. Real features come from ``stflib.features`` on the patches.

The "biology" (gene baselines and loadings, pathway rules, feature maps) is fixed
(``BIOLOGY_SEED``); ``seed`` draws the cohort (patients, tissues, noise, counts).

Files written (the HEST-1k layout, see docs_dev/CONTRACTS.md)
-------------------------------------------------------------
``metadata.csv`` (HEST columns, ids ``SIM000``...), ``metadata/<id>.json``, ``patches/<id>.h5``
(``img`` (N,224,224,3) uint8 gzip, ``coords`` (N,2) top-left corners, ``barcode`` (N,1) bytes),
``features/<backbone>/<id>.h5`` (``features`` (N,D) float32, ``barcodes`` (N,) bytes, ``coords``
(N,2) spot centres; attrs ``backbone``, ``feature_dim``, ``simulated``, ``latent_noise``) and
``st/<id>.h5ad``:

- ``X``: raw UMI counts, CSR float32 (integer valued); ``var_names`` gene symbols,
  ``var['gene_class']`` (hallmark / marker / mito / ribo / background); ``obs_names`` barcodes.
- ``obs``: ``in_tissue``, ``array_row``, ``array_col``, ``pxl_row_in_fullres``,
  ``pxl_col_in_fullres``, ``compartment`` (dominant compartment), ``true_library_size``.
- ``obsm['spatial']`` (N,2) spot centres in full-res pixels (x, y), 0.5 um/px.
- truth: ``obsm['true_pathway_activity']`` (N,50) + ``uns['true_pathway_names']`` (Hallmark
  names); ``layers['expected_counts']`` (N,G) dense float32, the ZINB mean before dropout
  (stored to ~4 significant digits); ``obsm['true_composition']`` (N,10) + ``uns['cell_types']``;
  ``obsm['true_compartments']`` (N,6) + ``uns['compartments']``; ``obsm['true_context']`` (N,5) +
  ``uns['contexts']``; ``obsm['true_latent_morphology']`` (N,18) the noise-free latent the stand-in
  features are made from (what a patch can tell at most); ``obsm['true_hidden_programme_activity']``
  (N,K) the non-Hallmark programmes (only in worlds that have them); ``uns['simulator']`` (version,
  preset, seed, world, patient, parameters);
  ``uns['thumbnail']`` (H,W,3) uint8 low-resolution image of the section,
  ``uns['thumbnail_um_per_px']``.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import time
import uuid
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from .spatial import gaussian_smoother as _smoother
from .spatial import hex_neighbours  # noqa: F401  (re-exported: stflib.simulate.hex_neighbours)

SIMULATOR_VERSION = "2"
BIOLOGY_SEED = 20240611
PIXEL_SIZE_UM = 0.5
SPOT_PITCH_UM = 100.0
SPOT_DIAMETER_UM = 55.0
PATCH_PX = 224
RENDER_PX = 112  # patches are rendered at 1 um/px, then upsampled 2x
N_ROWS, N_COLS = 78, 128  # Visium v1 array: array_row 0..77, array_col 0..127 with (row + col) even
MARGIN_PX = 1000
COMPLETE_MARKER = ".complete"

COMPARTMENTS = ["tumour", "stroma", "immune_aggregate", "normal_mucosa", "muscle", "necrosis"]
CELL_TYPES = ["tumour_epithelial", "normal_epithelial", "fibroblast", "smooth_muscle", "endothelial",
              "T_cell", "B_cell", "plasma_cell", "macrophage", "necrotic_debris"]
CONTEXTS = ["tumour_stroma_interface", "tumour_depth", "immune_proximity", "necrosis_proximity",
            "stroma_neighbourhood"]


@dataclass(frozen=True)
class Preset:
    n_patients: int
    n_slides: int
    spots: tuple[int, int]  # range of spots under tissue per slide
    gzip_level: int = 4


PRESETS: dict[str, Preset] = {
    "tiny": Preset(n_patients=3, n_slides=4, spots=(100, 150), gzip_level=1),
    "default": Preset(n_patients=12, n_slides=16, spots=(500, 700)),
    "full": Preset(n_patients=34, n_slides=55, spots=(2500, 3600)),
}


@dataclass(frozen=True)
class BackboneSpec:
    dim: int
    noise: float  # std of the Gaussian noise on the standardised latent morphology (information level)
    stain_sensitivity: float  # gain on slide stain / spot nuisance dims
    out_noise: float  # iid noise on the output features


# Information content ordered like HEST-Bench (Jaume et al. 2024): gigapath ~ hibou-l > hibou-b ~
# phikon ~ ctranspath > resnet50 (ImageNet). Calibrated on the default preset, see calibration.py.
BACKBONES: dict[str, BackboneSpec] = {
    "resnet50": BackboneSpec(2048, 1.60, 1.2, 0.30),
    "ctranspath": BackboneSpec(768, 1.00, 0.7, 0.20),
    "phikon": BackboneSpec(768, 0.95, 0.6, 0.20),
    "hibou-b": BackboneSpec(768, 0.95, 0.6, 0.20),
    "hibou-l": BackboneSpec(1024, 0.80, 0.5, 0.20),
    "gigapath": BackboneSpec(1536, 0.78, 0.5, 0.20),
}


@dataclass(frozen=True)
class World:
    """The simulator's named assumptions (frozen): what can be found in a cohort is decided here.

    Feature noise on the standardised latent morphology is ``BACKBONES[name].noise`` times the sum of
    three parts with these weights: ``noise_spot`` (i.i.d. per spot and per backbone: neighbour
    averaging removes it), ``noise_smooth`` (a Gaussian random field of correlation length
    ``noise_length_um`` per latent dimension, shared by all backbones: section thickness, fixation and
    staining gradients; neighbour averaging keeps it) and ``noise_slide`` (one offset per slide and
    latent dimension: batch/stain effects that no neighbourhood removes).
    """

    description: str
    noise_spot: float = 0.7
    noise_smooth: float = 0.5
    noise_slide: float = 0.25
    noise_length_um: float = 300.0
    context_scale: float = 1.0  # 0: the context fields (and so their pathway effects) are off
    patient_scale: float = 1.0  # multiplies the patient effects (tumour/immune bias, pathway offsets)
    hallmark_scale: float = 1.0  # multiplies the Hallmark pathway loadings of the genes
    hidden_programmes: int = 0  # programmes on non-Hallmark gene sets (not among the 50 named pathways)
    hidden_scale: float = 0.0  # loading scale of those programmes
    anchor: str = ""  # the real figure this world is calibrated against, with its source


WORLDS: dict[str, World] = {
    "default": World(
        "the calibrated world: structured feature noise so that a ridge probe on [own, mean of 6 nearest "
        "neighbours] gains +10-20 % relative over own features (resnet50 stand-in), as STFlow (ICML 2025) "
        "reports for spatial context over spot-only probes on HEST-Bench; own-feature probes in HEST-Bench's "
        "0.25-0.45 range",
        anchor="HEST-Bench (Jaume et al. 2024) ridge probes 0.25-0.45; STFlow (Huang et al., ICML 2025) about +18 %"),
    "pathway-misspecified": World(
        "most expression variance comes from 24 programmes on random non-Hallmark gene sets (composition-linked "
        "and spatially smooth); the Hallmark loadings are scaled by 0.4: a Hallmark prior names the wrong sets",
        hallmark_scale=0.4, hidden_programmes=24, hidden_scale=1.0,
        anchor="stress test without a real anchor: the 50 Hallmarks (4,383 genes) are a prior, not a measured fact"),
    "no-context": World(
        "the spatial context fields are zero: a spot's expression depends on its own composition, patient, "
        "slide and smooth noise only, so neighbourhood models can only denoise",
        context_scale=0.0, anchor="null world (no designed context biology)"),
    "strong-patient": World(
        "patient effects 2.5x the default (tumour and immune bias, pathway offsets): inter-patient variation "
        "dominates, as between real HEST-1k CRC patients",
        patient_scale=2.5, anchor="stress test without a measured anchor: real between-patient spread is not measured here"),
}


def _check_world(world: str) -> World:
    if world not in WORLDS:
        raise ValueError(f"unknown world {world!r}; allowed: {', '.join(WORLDS)}")
    return WORLDS[world]


def _check_preset(preset: str) -> Preset:
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; allowed: {', '.join(PRESETS)}")
    return PRESETS[preset]


# ------------------------------------------------------------------------------------------- genes
MARKERS: dict[str, list[str]] = {
    "tumour_epithelial": ["EPCAM", "KRT8", "KRT18", "KRT19", "KRT20", "CEACAM5", "CEACAM6", "CDX1", "CDX2",
                          "CDH17", "LGALS4", "ELF3", "CLDN4", "TSPAN8", "PHGR1", "OLFM4", "LGR5", "ASCL2",
                          "AXIN2", "MYC", "MMP7", "LCN2", "TFF3", "REG4", "SOX9", "CD44"],
    "normal_epithelial": ["EPCAM", "KRT20", "CDX2", "CDH17", "LGALS4", "VIL1", "MUC2", "TFF3", "PIGR", "FABP1",
                          "CA1", "CA2", "SLC26A3", "GUCA2A", "GUCA2B", "AQP8", "CEACAM7", "CLCA1", "ZG16",
                          "SPINK4", "KRT8", "PHGR1"],
    "fibroblast": ["COL1A1", "COL1A2", "COL3A1", "COL6A3", "COL6A1", "DCN", "LUM", "FAP", "PDGFRA", "PDGFRB",
                   "SPARC", "THBS2", "POSTN", "MGP", "VIM", "FN1", "SFRP2", "CTHRC1", "COL5A1", "IGFBP7"],
    "smooth_muscle": ["DES", "MYH11", "ACTA2", "ACTG2", "CNN1", "TAGLN", "SYNPO2", "LMOD1", "MYL9", "TPM2",
                      "SMTN", "PLN"],
    "endothelial": ["PECAM1", "VWF", "CDH5", "PLVAP", "CLDN5", "EMCN", "ENG", "KDR", "RAMP2", "AQP1", "SPARCL1"],
    "T_cell": ["PTPRC", "CD3E", "CD3D", "CD2", "CD8A", "CD4", "CD7", "IL7R", "TRAC", "CCL5", "GZMK", "GZMA",
               "NKG7", "CD52", "CXCR4", "LTB"],
    "B_cell": ["PTPRC", "MS4A1", "CD79A", "CD79B", "CD19", "CR2", "CXCL13", "CCL19", "CCL21", "LTB", "CD37",
               "BANK1", "FCER2", "PAX5", "CD52"],
    "plasma_cell": ["MZB1", "JCHAIN", "IGKC", "IGHA1", "IGHA2", "IGHG1", "IGHG3", "IGHM", "IGLC2", "IGLC1",
                    "XBP1", "SDC1", "DERL3", "PRDM1"],
    "macrophage": ["CD68", "CD163", "LYZ", "C1QA", "C1QB", "C1QC", "APOE", "SPP1", "CD14", "FCGR3A", "AIF1",
                   "TYROBP", "FCER1G", "MRC1", "CSF1R", "S100A8", "S100A9"],
    "necrotic_debris": ["S100A8", "S100A9", "HBB", "HBA1", "HBA2", "FTL"],
}
HIGH_GENES = {"IGKC": 2.5, "IGHA1": 2.0, "JCHAIN": 1.5, "IGLC2": 1.0, "PIGR": 1.0, "TFF3": 0.8, "COL1A1": 1.0,
              "COL3A1": 0.8, "MGP": 0.8, "DES": 0.8, "CEACAM5": 1.0, "LYZ": 0.5, "S100A9": 0.5, "HBB": 0.5}
MITO = ["MT-ND1", "MT-ND2", "MT-CO1", "MT-CO2", "MT-ATP8", "MT-ATP6", "MT-CO3", "MT-ND3", "MT-ND4L", "MT-ND4",
        "MT-ND5", "MT-ND6", "MT-CYB"]


def _family(prefix: str, items) -> list[str]:
    return [f"{prefix}{i}" for i in items]


def _ribosomal() -> list[str]:
    rpl = ("3 3L 4 5 6 7 7A 8 9 10 10A 11 12 13 13A 14 15 17 18 18A 19 21 22 23 23A 24 26 27 27A 28 29 30 31 "
           "32 34 35 35A 36 36A 37 37A 38 39 41").split()
    rps = "2 3 3A 4X 5 6 7 8 9 10 11 12 13 14 15 15A 16 17 18 19 20 21 23 24 25 26 27 27A 28 29".split()
    return _family("RPL", rpl) + ["RPLP0", "RPLP1", "RPLP2"] + _family("RPS", rps) + ["RPSA"]


def _background() -> list[str]:
    """Real human gene symbols outside the Hallmarks, from well-known families (low, unstructured)."""
    fam = []
    fam += _family("MRPL", list(range(1, 5)) + list(range(9, 25)) + [27, 28, 30] + list(range(32, 56)))
    fam += _family("MRPS", [2, 5, 6, 7, 9, 10, 11, 12, 14, 15, 16, 17, 18, 21, 22, 23, 24, 25, 26, 27, 28, 30, 31,
                            33, 34, 35])
    fam += _family("PCDHA", range(1, 14)) + _family("PCDHB", range(1, 17)) + _family("PCDHGA", range(1, 13))
    fam += _family("PCDHGB", range(1, 8))
    fam += _family("KRT", list(range(1, 11)) + list(range(12, 21)) + list(range(23, 29)) + list(range(31, 41))
                   + list(range(71, 87)))
    fam += _family("SLC25A", range(1, 54)) + _family("SLC2A", range(1, 15)) + _family("SLC6A", range(1, 21))
    fam += _family("SLC7A", range(1, 15)) + _family("SLC22A", range(1, 19)) + _family("SLC39A", range(1, 15))
    fam += _family("SLC30A", range(1, 11)) + _family("SLC38A", range(1, 12)) + _family("SLC16A", range(1, 15))
    fam += _family("TAS2R", [1, 3, 4, 5, 7, 8, 9, 10, 13, 14, 16, 19, 20, 30, 31, 38, 39, 40, 41, 42, 43, 46, 50, 60])
    fam += _family("SNHG", [1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 15, 16, 17, 18, 19, 20, 21, 22, 25, 26, 27, 28,
                            29, 32])
    fam += _family("EIF3", "ABCDEFGHIJKLM") + ["EIF1", "EIF1AX", "EIF2S1", "EIF2S2", "EIF2S3", "EIF4A1", "EIF4A2",
                                               "EIF4A3", "EIF4E", "EIF4G1", "EIF4G2", "EIF4G3", "EIF5", "EIF5A", "EIF6"]
    fam += _family("RBM", "3 4 5 6 8A 10 12 14 15 17 18 19 20 22 24 25 26 27 28 33 34 38 39 41 42 43 45 46 47 48"
                   .split())
    fam += _family("DDX", "1 3X 5 6 10 11 17 18 19A 20 21 23 24 27 28 31 39A 39B 41 42 46 47 49 50 51 52 54 55 56 "
                   "58 59 60".split())
    fam += _family("WDR", [1, 4, 5, 11, 12, 13, 18, 24, 26, 33, 36, 37, 41, 43, 45, 46, 48, 53, 54, 55, 59, 61, 70,
                           74, 75, 77, 81, 82, 83, 89, 91, 92])
    fam += _family("CD", "1A 1B 1C 1D 1E 2 5 6 7 9 22 24 27 33 34 36 37 38 40 47 53 59 63 69 74 81 82 83 86 93 99 "
                   "151 177 200 247 274 276".split())
    fam += _family("S100A", range(1, 17)) + ["S100B", "S100P"]
    fam += _family("MUC", "1 4 5AC 5B 6 12 13 16 17 20 21".split())
    fam += _family("CLDN", list(range(1, 13)) + list(range(14, 21)) + [22, 23, 24, 25])
    fam += _family("MMP", "1 2 3 8 9 10 11 12 13 14 15 16 17 19 20 21 23B 24 25 26 27 28".split())
    fam += _family("CCL", [1, 2, 3, 4, 7, 8, 11, 13, 14, 15, 16, 17, 18, 20, 22, 23, 24, 25, 26, 27, 28])
    fam += _family("CXCL", [1, 2, 3, 5, 6, 8, 9, 10, 11, 12, 14, 16, 17])
    fam += _family("HOXA", [1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 13]) + _family("HOXB", [1, 2, 3, 4, 5, 6, 7, 8, 9, 13])
    fam += _family("HOXC", [4, 5, 6, 8, 9, 10, 11, 12, 13]) + _family("HOXD", [1, 3, 4, 8, 9, 10, 11, 12, 13])
    fam += _family("SOX", [1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14, 15, 17, 18, 21, 30])
    fam += _family("FOX", "A1 A2 A3 C1 C2 D1 D2 D3 D4 F1 F2 J1 J2 J3 K1 K2 L1 L2 M1 N1 N2 N3 N4 O1 O3 O4 O6 P1 P2 P3 "
                   "P4 Q1 R1 R2".split())
    fam += _family("KLF", range(1, 18)) + _family("GATA", range(1, 7))
    fam += _family("TBX", [1, 2, 3, 4, 5, 6, 10, 15, 18, 19, 20, 21, 22])
    fam += _family("RAB", "1A 1B 2A 2B 3A 3B 3C 3D 4A 4B 5A 5B 5C 6A 6B 7A 8A 8B 9A 10 11A 11B 12 13 14 15 17 18 19 "
                   "20 21 22A 23 24 25 26 27A 27B 28 30 31 32 33A 34 35 36 37 38 39A 40A 42 43 44".split())
    fam += _family("COL", "4A1 4A2 4A3 4A4 4A5 4A6 5A3 6A5 6A6 8A1 8A2 9A1 9A2 9A3 10A1 11A2 13A1 14A1 15A1 19A1 "
                   "20A1 21A1 22A1 23A1 24A1 25A1 26A1 27A1 28A1".split())
    return fam


@lru_cache(maxsize=1)
def gene_catalogue() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(genes, gene_class): Hallmark genes, markers, MT-, ribosomal, background; deterministic order."""
    from .pathways import hallmarks

    classes: dict[str, str] = {}
    for g in MITO:
        classes.setdefault(g, "mito")
    for g in _ribosomal():
        classes.setdefault(g, "ribo")
    for genes in MARKERS.values():
        for g in genes:
            classes.setdefault(g, "marker")
    for genes in hallmarks().values():
        for g in genes:
            classes.setdefault(g, "hallmark")
    for g in _background():
        classes.setdefault(g, "background")
    genes = tuple(classes)
    return genes, tuple(classes[g] for g in genes)


# ----------------------------------------------------------------------------------------- biology
# Pathway rules: {short pathway name: ({cell type: weight}, {context: weight})}; other pathways get
# small random loadings. Visible pathways have a morphological correlate in the patch.
PATHWAY_RULES: dict[str, tuple[dict[str, float], dict[str, float]]] = {
    "E2F_TARGETS": ({"tumour_epithelial": 1.6, "normal_epithelial": 0.5, "B_cell": 0.6}, {"tumour_depth": -0.4}),
    "G2M_CHECKPOINT": ({"tumour_epithelial": 1.5, "normal_epithelial": 0.5, "B_cell": 0.6}, {"tumour_depth": -0.4}),
    "MITOTIC_SPINDLE": ({"tumour_epithelial": 1.1, "normal_epithelial": 0.3}, {}),
    "MYC_TARGETS_V1": ({"tumour_epithelial": 1.5, "normal_epithelial": 0.4, "B_cell": 0.4}, {}),
    "MYC_TARGETS_V2": ({"tumour_epithelial": 1.3, "normal_epithelial": 0.3}, {}),
    "WNT_BETA_CATENIN_SIGNALING": ({"tumour_epithelial": 1.4, "normal_epithelial": 0.5}, {}),
    "EPITHELIAL_MESENCHYMAL_TRANSITION": ({"fibroblast": 1.3, "smooth_muscle": 0.5},
                                          {"tumour_stroma_interface": 2.0}),
    "TGF_BETA_SIGNALING": ({"fibroblast": 0.7}, {"tumour_stroma_interface": 1.4}),
    "ANGIOGENESIS": ({"endothelial": 1.6, "fibroblast": 0.3}, {"tumour_stroma_interface": 0.8, "tumour_depth": 0.6}),
    "HYPOXIA": ({"tumour_epithelial": 0.3}, {"tumour_depth": 1.6, "necrosis_proximity": 2.0}),
    "GLYCOLYSIS": ({"tumour_epithelial": 0.5}, {"tumour_depth": 1.2, "necrosis_proximity": 1.2}),
    "INFLAMMATORY_RESPONSE": ({"macrophage": 1.2}, {"immune_proximity": 1.6, "necrosis_proximity": 0.8}),
    "INTERFERON_GAMMA_RESPONSE": ({"T_cell": 0.8, "macrophage": 0.6}, {"immune_proximity": 1.8}),
    "INTERFERON_ALPHA_RESPONSE": ({"T_cell": 0.5, "B_cell": 0.3}, {"immune_proximity": 1.6}),
    "TNFA_SIGNALING_VIA_NFKB": ({"macrophage": 0.9}, {"immune_proximity": 1.0, "tumour_stroma_interface": 0.8}),
    "IL6_JAK_STAT3_SIGNALING": ({"macrophage": 0.8, "fibroblast": 0.3}, {"immune_proximity": 1.0}),
    "IL2_STAT5_SIGNALING": ({"T_cell": 1.2}, {"immune_proximity": 0.8}),
    "ALLOGRAFT_REJECTION": ({"T_cell": 1.0, "B_cell": 0.8}, {"immune_proximity": 1.0}),
    "COMPLEMENT": ({"macrophage": 1.0, "fibroblast": 0.4}, {"immune_proximity": 0.6}),
    "COAGULATION": ({"fibroblast": 0.6, "endothelial": 0.5}, {"necrosis_proximity": 1.0}),
    "MYOGENESIS": ({"smooth_muscle": 2.2}, {}),
    "APICAL_JUNCTION": ({"normal_epithelial": 1.0, "tumour_epithelial": 0.6}, {"tumour_stroma_interface": -0.6}),
    "APICAL_SURFACE": ({"normal_epithelial": 1.1}, {}),
    "OXIDATIVE_PHOSPHORYLATION": ({"normal_epithelial": 0.8, "tumour_epithelial": 0.6},
                                  {"necrosis_proximity": -1.0, "tumour_depth": -0.6}),
    "FATTY_ACID_METABOLISM": ({"normal_epithelial": 1.0}, {}),
    "BILE_ACID_METABOLISM": ({"normal_epithelial": 0.9}, {}),
    "XENOBIOTIC_METABOLISM": ({"normal_epithelial": 0.9}, {}),
    "PEROXISOME": ({"normal_epithelial": 0.7}, {}),
    "UNFOLDED_PROTEIN_RESPONSE": ({"plasma_cell": 1.0}, {"tumour_depth": 0.5}),
    "PROTEIN_SECRETION": ({"plasma_cell": 0.8, "normal_epithelial": 0.4}, {}),
    "P53_PATHWAY": ({"tumour_epithelial": 0.2}, {"tumour_depth": 0.7, "necrosis_proximity": 0.8}),
    "APOPTOSIS": ({"necrotic_debris": 0.8}, {"necrosis_proximity": 1.2}),
    "REACTIVE_OXYGEN_SPECIES_PATHWAY": ({"macrophage": 0.3}, {"necrosis_proximity": 1.0}),
    "DNA_REPAIR": ({"tumour_epithelial": 0.8}, {}),
    "KRAS_SIGNALING_UP": ({"tumour_epithelial": 0.6, "macrophage": 0.3}, {"tumour_stroma_interface": 0.6}),
    "KRAS_SIGNALING_DN": ({"smooth_muscle": 0.4, "normal_epithelial": 0.3}, {}),
    "MTORC1_SIGNALING": ({"tumour_epithelial": 1.0}, {"tumour_depth": 0.4}),
    "PI3K_AKT_MTOR_SIGNALING": ({"tumour_epithelial": 0.5, "T_cell": 0.3}, {}),
    "HEDGEHOG_SIGNALING": ({"fibroblast": 0.5}, {"tumour_stroma_interface": 0.6}),
    "NOTCH_SIGNALING": ({"normal_epithelial": 0.6, "endothelial": 0.5}, {}),
    "UV_RESPONSE_UP": ({"tumour_epithelial": 0.3}, {"necrosis_proximity": 0.6}),
    "UV_RESPONSE_DN": ({"fibroblast": 0.5}, {"stroma_neighbourhood": 0.4}),
    "CHOLESTEROL_HOMEOSTASIS": ({"normal_epithelial": 0.5, "macrophage": 0.4}, {}),
    "ADIPOGENESIS": ({"fibroblast": 0.3, "smooth_muscle": 0.3, "normal_epithelial": 0.3}, {}),
    "HEME_METABOLISM": ({"necrotic_debris": 0.8, "endothelial": 0.3}, {}),
}
VISIBLE_PATHWAYS = ["G2M_CHECKPOINT", "E2F_TARGETS", "EPITHELIAL_MESENCHYMAL_TRANSITION", "HYPOXIA",
                    "INFLAMMATORY_RESPONSE", "APOPTOSIS", "ANGIOGENESIS", "INTERFERON_GAMMA_RESPONSE"]
VISIBLE_WEIGHT = 0.6  # how strongly those pathways show in morphology (relative to composition)

# compartment -> cell-type mixture (rows sum to 1)
_MIX = {
    "tumour": {"tumour_epithelial": .68, "fibroblast": .10, "endothelial": .05, "T_cell": .04, "macrophage": .06,
               "plasma_cell": .03, "necrotic_debris": .04},
    "stroma": {"fibroblast": .52, "endothelial": .12, "macrophage": .10, "T_cell": .08, "plasma_cell": .10,
               "B_cell": .02, "smooth_muscle": .06},
    "immune_aggregate": {"B_cell": .45, "T_cell": .35, "macrophage": .08, "fibroblast": .07, "endothelial": .05},
    "normal_mucosa": {"normal_epithelial": .60, "plasma_cell": .15, "fibroblast": .08, "T_cell": .05,
                      "macrophage": .07, "endothelial": .05},
    "muscle": {"smooth_muscle": .80, "fibroblast": .10, "endothelial": .07, "macrophage": .03},
    "necrosis": {"necrotic_debris": .75, "macrophage": .10, "tumour_epithelial": .10, "fibroblast": .05},
}
# log library-size effect of each cell type
_LIB_EFFECT = {"tumour_epithelial": 0.25, "normal_epithelial": 0.1, "fibroblast": -0.2, "smooth_muscle": -0.5,
               "endothelial": 0.0, "T_cell": 0.1, "B_cell": 0.1, "plasma_cell": 0.2, "macrophage": 0.0,
               "necrotic_debris": -1.0}


@dataclass
class Biology:
    genes: np.ndarray  # (G,) str
    gene_class: np.ndarray  # (G,) str
    pathway_names: list[str]  # 50 Hallmark names
    log_profiles: np.ndarray  # (G, C) baseline + cell-type loading (log scale)
    pathway_loadings: np.ndarray  # (G, P) only member genes non-zero
    theta: np.ndarray  # (G,) NB inverse dispersion
    dropout: np.ndarray  # (G,) zero-inflation probability
    w_comp: np.ndarray  # (C, P)
    w_ctx: np.ndarray  # (K, P)
    mix: np.ndarray  # (n_compartments, C)
    lib_effect: np.ndarray  # (C,)
    visible: np.ndarray  # (V,) pathway indices visible in morphology


@lru_cache(maxsize=1)
def biology() -> Biology:
    """The fixed 'biology' of the simulator (independent of the cohort seed)."""
    from .pathways import hallmarks, short_name

    rng = np.random.default_rng(BIOLOGY_SEED)
    genes, classes = gene_catalogue()
    genes, classes = np.array(genes), np.array(classes)
    sets = hallmarks()
    names = list(sets)
    G, C, P = len(genes), len(CELL_TYPES), len(names)
    gidx = {g: i for i, g in enumerate(genes)}
    cidx = {c: i for i, c in enumerate(CELL_TYPES)}

    base = np.select([classes == "mito", classes == "ribo", classes == "marker", classes == "hallmark"],
                     [rng.normal(3.0, 0.4, G), rng.normal(2.3, 0.5, G), rng.normal(0.6, 0.8, G),
                      rng.normal(-1.0, 1.3, G)], rng.normal(-1.8, 1.3, G))
    for g, b in HIGH_GENES.items():
        base[gidx[g]] += b
    load = rng.normal(0.0, 0.4, (G, C))
    for ct, markers in MARKERS.items():
        for g in markers:
            load[gidx[g], cidx[ct]] += rng.uniform(3.0, 5.0)
    load[classes == "mito", cidx["necrotic_debris"]] += 1.6  # dying tissue: high mitochondrial fraction
    load[classes == "ribo", cidx["necrotic_debris"]] -= 0.8
    load[classes == "ribo", cidx["tumour_epithelial"]] += 0.3
    log_profiles = (base[:, None] + load).astype(np.float64)

    member = np.zeros((G, P), bool)
    for p, n in enumerate(names):
        for g in sets[n]:
            if g in gidx:
                member[gidx[g], p] = True
    n_mem = np.maximum(member.sum(1), 1)
    beta = rng.normal(0.55, 0.2, (G, P)) * np.where(rng.random((G, P)) < 0.85, 1.0, -0.6)
    pathway_loadings = np.where(member, beta / np.sqrt(n_mem)[:, None], 0.0)

    theta = np.exp(rng.normal(np.log(8.0), 0.5, G))
    dropout = rng.beta(1.0, 14.0, G)

    w_comp = rng.normal(0, 0.15, (C, P))
    w_ctx = rng.normal(0, 0.1, (len(CONTEXTS), P))
    kidx = {k: i for i, k in enumerate(CONTEXTS)}
    for p, n in enumerate(names):
        rule = PATHWAY_RULES.get(short_name(n))
        if rule is None:
            w_comp[:, p] = rng.normal(0, 0.4, C)
            continue
        w_comp[:, p] *= 0.5
        w_ctx[:, p] *= 0.5
        for ct, w in rule[0].items():
            w_comp[cidx[ct], p] += w
        for k, w in rule[1].items():
            w_ctx[kidx[k], p] += w
    mix = np.zeros((len(COMPARTMENTS), C))
    for i, comp in enumerate(COMPARTMENTS):
        for ct, w in _MIX[comp].items():
            mix[i, cidx[ct]] = w
    mix /= mix.sum(1, keepdims=True)
    lib_effect = np.array([_LIB_EFFECT[c] for c in CELL_TYPES])
    visible = np.array([names.index("HALLMARK_" + v) for v in VISIBLE_PATHWAYS])
    return Biology(genes, classes, names, log_profiles, pathway_loadings, theta, dropout, w_comp, w_ctx, mix,
                   lib_effect, visible)


# ---------------------------------------------------------------------------------------- geometry
def visium_grid(path: str | Path | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The Visium v1 array: (barcodes (4992,), array_row, array_col), sorted by (row, col).

    Uses the real barcode list ``../shared/data/hest/visium-v1_coordinates.txt`` when present
    (``barcode<TAB>array_col<TAB>array_row``), else deterministic synthetic 16-mers. The grid (and so
    the simulation) is the same either way; only the barcode strings differ.
    """
    rows, cols = np.meshgrid(np.arange(N_ROWS), np.arange(N_COLS), indexing="ij")
    keep = (rows + cols) % 2 == 0
    rows, cols = rows[keep], cols[keep]
    if path is None:
        path = Path(__file__).resolve().parents[2] / "shared" / "data" / "hest" / "visium-v1_coordinates.txt"
    path = Path(path)
    barcodes = None
    if path.is_file():
        table = {}
        for line in path.read_text().splitlines():
            parts = line.split("\t")
            if len(parts) >= 3:
                table[(int(parts[2]), int(parts[1]))] = parts[0]
        if len(table) == len(rows) and all((r, c) in table for r, c in zip(rows, cols)):
            barcodes = np.array([table[(r, c)] + "-1" for r, c in zip(rows, cols)])
    if barcodes is None:
        rng = np.random.default_rng(4992)
        letters = np.array(list("ACGT"))
        seqs = set()
        out = []
        while len(out) < len(rows):
            s = "".join(rng.choice(letters, 16))
            if s not in seqs:
                seqs.add(s)
                out.append(s + "-1")
        barcodes = np.array(out)
    return barcodes, rows, cols


def _grid_um(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Spot centres in um: x = col * 50, y = row * 100 * sqrt(3) / 2."""
    return np.stack([cols * SPOT_PITCH_UM / 2, rows * SPOT_PITCH_UM * np.sqrt(3) / 2], 1)


_FIELD_RES = 50.0  # um per cell of the random-field grid
_FIELD_SHAPE = (int(N_ROWS * 86.61 / _FIELD_RES) + 4, int(N_COLS * 50 / _FIELD_RES) + 4)


def _grf(rng: np.random.Generator, length_um: float, xy_um: np.ndarray) -> np.ndarray:
    """A unit-variance Gaussian random field with Gaussian correlation length ``length_um`` at ``xy_um``."""
    from scipy.ndimage import gaussian_filter

    field = gaussian_filter(rng.standard_normal(_FIELD_SHAPE), length_um / _FIELD_RES, mode="wrap")
    field /= field.std() + 1e-12
    iy = np.clip(np.round(xy_um[:, 1] / _FIELD_RES).astype(int), 0, _FIELD_SHAPE[0] - 1)
    ix = np.clip(np.round(xy_um[:, 0] / _FIELD_RES).astype(int), 0, _FIELD_SHAPE[1] - 1)
    return field[iy, ix]


def _tissue_mask(rng: np.random.Generator, xy_um: np.ndarray, n_target: int) -> np.ndarray:
    """A lobed tissue outline holding about ``n_target`` spots."""
    centre = np.array([N_COLS * 25.0, N_ROWS * 43.3]) + rng.normal(0, 250, 2)
    rel = xy_um - centre
    r, ang = np.hypot(rel[:, 0], rel[:, 1]), np.arctan2(rel[:, 1], rel[:, 0])
    wobble = np.zeros_like(ang)
    for k in (2, 3, 4, 5):
        wobble += rng.normal(0, 0.12 / k ** 0.5) * np.cos(k * ang + rng.uniform(0, 2 * np.pi))
    wobble += 0.05 * _grf(rng, 400, xy_um)
    radius = r / np.exp(wobble)
    order = np.argsort(radius)
    mask = np.zeros(len(xy_um), bool)
    mask[order[:n_target]] = True
    return mask


# ------------------------------------------------------------------------------------------ slides
def _softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    x = x - x.max(axis, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis, keepdims=True)


def _simulate_tissue(rng: np.random.Generator, bio: Biology, xy: np.ndarray, patient: dict,
                     world: World | None = None) -> dict:
    """Compartments, composition, context and pathway activities of one slide's spots."""
    n = len(xy)
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    centre = xy.mean(0)
    radius = np.sqrt(len(xy) * 8660.0 / np.pi)  # tissue radius (um)
    seed_pt = centre + rng.normal(0, 0.35 * radius, 2)
    bump = np.exp(-0.5 * np.sum((xy - seed_pt) ** 2, 1) / (0.55 * radius) ** 2)  # the main tumour mass
    tum = 1.2 * _grf(rng, 450, xy) + 3.0 * (bump - 0.45) + patient["tumour_bias"] + rng.normal(0, 0.3)
    phi = rng.uniform(0, 2 * np.pi)
    proj = xy @ np.array([np.cos(phi), np.sin(phi)])
    cut_mus, cut_muc = np.quantile(proj, rng.uniform(0.8, 0.95)), np.quantile(proj, rng.uniform(0.05, 0.3))
    mus = 2.5 * (proj - cut_mus) / 250.0 + 0.6 * _grf(rng, 400, xy)  # muscularis band along one edge
    muc = 2.0 * (cut_muc - proj) / 300.0 + 0.8 * _grf(rng, 400, xy) + 0.3 - 2.5 * sig(1.5 * tum)  # opposite edge
    stro = 0.7 * _grf(rng, 400, xy) + 0.4
    imm = 3.0 * (_grf(rng, 160, xy) - 1.25) + patient["immune_bias"]
    nec = 2.5 * (_grf(rng, 250, xy) - 0.9) + 2.0 * (tum - 1.6)
    logits = np.stack([tum, stro, imm, muc, mus, nec], 1)
    compart = _softmax(1.4 * logits)
    comp = compart @ bio.mix
    comp = comp * np.exp(rng.normal(0, 0.35, comp.shape))
    comp /= comp.sum(1, keepdims=True)

    s150, s250, s400 = _smoother(xy, 150), _smoother(xy, 250), _smoother(xy, 400)
    ci = {c: i for i, c in enumerate(CELL_TYPES)}
    tumour_frac = comp[:, ci["tumour_epithelial"]]
    stroma_frac = comp[:, ci["fibroblast"]] + comp[:, ci["endothelial"]]
    immune_frac = comp[:, ci["T_cell"]] + comp[:, ci["B_cell"]]
    necro_frac = comp[:, ci["necrotic_debris"]]
    nt, ns = s150 @ tumour_frac, s150 @ stroma_frac
    ctx = np.stack([
        4.0 * nt * ns,                       # interface: high where tumour and stroma meet
        s400 @ tumour_frac,                  # depth: tumour at large scale
        s250 @ immune_frac,                  # immune proximity
        s250 @ necro_frac,                   # necrosis proximity
        s250 @ stroma_frac,                  # stromal neighbourhood
    ], 1)
    world = world or WORLDS["default"]
    ctx = world.context_scale * ctx

    P = len(bio.pathway_names)
    smooth_noise = np.stack([_grf(rng, 300, xy) for _ in range(P)], 1)
    act = (comp @ bio.w_comp + ctx @ bio.w_ctx + patient["pathway_offset"] + rng.normal(0, 0.1, P)
           + 0.3 * smooth_noise + rng.normal(0, 0.08, (n, P)))
    out = dict(compartments=compart, composition=comp, context=ctx, activity=act)
    if world.hidden_programmes:
        out["hidden_activity"] = _hidden_activity(rng, bio, xy, comp, world.hidden_programmes)
    return out


def _hidden_programmes(n: int) -> tuple[np.ndarray, np.ndarray]:
    """(composition loadings (C, n), gene loadings (G, n)) of ``n`` programmes on random non-Hallmark
    gene sets of 40 genes (markers, ribosomal and background genes; fixed by ``BIOLOGY_SEED``)."""
    bio = biology()
    rng = np.random.default_rng([BIOLOGY_SEED, 7, n])
    pool = np.flatnonzero(np.isin(bio.gene_class, ["marker", "ribo", "background"]))
    w_comp = rng.normal(0, 1.0, (len(CELL_TYPES), n))
    load = np.zeros((len(bio.genes), n))
    for j in range(n):
        genes = rng.choice(pool, 40, replace=False)
        load[genes, j] = rng.normal(0.8, 0.2, 40) * np.where(rng.random(40) < 0.85, 1.0, -0.6)
    return w_comp, load


def _hidden_activity(rng: np.random.Generator, bio: Biology, xy: np.ndarray, comp: np.ndarray, n: int) -> np.ndarray:
    """Activities (N, n) of the non-Hallmark programmes: composition-linked plus 300 um smooth fields."""
    w_comp, _ = _hidden_programmes(n)
    typical = np.full(len(CELL_TYPES), 1.0 / len(CELL_TYPES))
    smooth = np.stack([_grf(rng, 300, xy) for _ in range(n)], 1)
    return (comp - typical) @ w_comp + 0.5 * smooth


def _expression(rng: np.random.Generator, bio: Biology, xy: np.ndarray, tissue: dict, slide_median: float,
                world: World | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(counts (N,G) float32, expected counts (N,G) float32, library sizes (N,))."""
    comp, act = tissue["composition"], tissue["activity"]
    profiles = np.exp(bio.log_profiles)  # (G, C)
    log_mod = programme_log_modulation(bio, tissue, world or WORLDS["default"])
    rate = (comp @ profiles.T) * np.exp(log_mod["hallmark"] + log_mod["hidden"])
    rate /= rate.sum(1, keepdims=True)
    log_lib = (np.log(slide_median) + comp @ bio.lib_effect + 0.25 * _grf(rng, 500, xy)
               + rng.normal(0, 0.2, len(xy)))
    lib = np.exp(log_lib)
    mu = (rate * lib[:, None]).astype(np.float32)
    theta = bio.theta[None, :]
    lam = rng.gamma(theta, 1.0 / theta, size=mu.shape) * mu
    counts = rng.poisson(lam).astype(np.float32)
    counts *= rng.random(mu.shape, dtype=np.float32) >= bio.dropout[None, :].astype(np.float32)
    return counts, mu, lib


def programme_log_modulation(bio: Biology, tissue: dict, world: World) -> dict[str, np.ndarray]:
    """Log-rate modulation (N, G) of each gene by the Hallmark pathways and by the hidden programmes."""
    act_c = tissue["activity"] - tissue["activity_ref"]  # modulation around a fixed typical activity
    hallmark = world.hallmark_scale * (act_c @ bio.pathway_loadings.T)
    hidden = np.zeros_like(hallmark)
    if world.hidden_programmes:
        _, load = _hidden_programmes(world.hidden_programmes)
        hidden = world.hidden_scale * (tissue["hidden_activity"] @ load.T)
    return {"hallmark": hallmark, "hidden": hidden}


# ---------------------------------------------------------------------------------------- features
def latent_morphology(bio: Biology, tissue: dict) -> np.ndarray:
    """The information a patch carries: standardised composition + visible pathway activities."""
    comp = (tissue["composition"] - 0.1) / 0.2
    vis = VISIBLE_WEIGHT * (tissue["activity"][:, bio.visible] - tissue["activity_ref"][bio.visible]) / 0.6
    return np.concatenate([comp, vis], 1)


def _feature_map(name: str, in_dim: int, hidden: int = 128):
    spec = BACKBONES[name]
    rng = np.random.default_rng([BIOLOGY_SEED, zlib.crc32(name.encode())])
    w1 = rng.normal(0, 1.3 / np.sqrt(in_dim), (in_dim, hidden))
    b1 = rng.normal(0, 0.3, hidden)
    w2 = rng.normal(0, 1.0 / np.sqrt(hidden), (hidden, spec.dim))
    b2 = rng.normal(0, 0.2, spec.dim)
    return w1, b1, w2, b2


def structured_noise(rng: np.random.Generator, xy_um: np.ndarray, dim: int, world: World) -> np.ndarray:
    """The image-level part of the feature noise (N, dim), shared by all backbones of a slide:
    ``noise_smooth`` x unit smooth fields (``noise_length_um``) + ``noise_slide`` x one offset per slide."""
    smooth = np.stack([_grf(rng, world.noise_length_um, xy_um) for _ in range(dim)], 1)
    return world.noise_smooth * smooth + world.noise_slide * rng.normal(0, 1, dim)[None, :]


def stand_in_features(rng: np.random.Generator, name: str, latent: np.ndarray, nuisance: np.ndarray,
                      image_noise: np.ndarray | None = None, noise_spot: float = 1.0) -> np.ndarray:
    """Stand-in embeddings of width ``BACKBONES[name].dim`` (see the module docstring): the latent plus
    ``noise`` x (``noise_spot`` x i.i.d. spot noise + ``image_noise``), with the nuisance dims, through a
    fixed random 2-layer tanh map, plus output noise."""
    spec = BACKBONES[name]
    noise = noise_spot * rng.standard_normal(latent.shape)
    if image_noise is not None:
        noise = noise + image_noise
    u = np.concatenate([latent + spec.noise * noise, spec.stain_sensitivity * nuisance], 1)
    w1, b1, w2, b2 = _feature_map(name, u.shape[1])
    h = np.tanh(u @ w1 + b1)
    out = h @ w2 + b2 + spec.out_noise * rng.standard_normal((len(u), spec.dim))
    if name == "resnet50":  # post-ReLU average pooling: non-negative
        out = np.logaddexp(0.0, 2.0 * out) / 2.0
    return out.astype(np.float32)


# ----------------------------------------------------------------------------------------- patches
_HE = np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11]])  # Ruifrok & Johnston H and E optical densities
# cell type -> (render class, nuclei per patch if pure, haematoxylin intensity, eosin of cytoplasm/matrix)
_CELL_LOOK = {
    "tumour_epithelial": ("large", 150, 0.75, 0.35), "normal_epithelial": ("large", 110, 0.85, 0.30),
    "fibroblast": ("spindle", 45, 0.90, 0.60), "smooth_muscle": ("spindle", 40, 0.70, 0.90),
    "endothelial": ("spindle", 60, 0.90, 0.45), "T_cell": ("small", 280, 1.20, 0.20),
    "B_cell": ("small", 300, 1.20, 0.20), "plasma_cell": ("small", 180, 1.00, 0.45),
    "macrophage": ("large", 80, 0.70, 0.50), "necrotic_debris": ("debris", 220, 1.00, 0.75),
}
_RENDER_CLASSES = {"large": (2.0, 2.0), "small": (1.2, 1.2), "spindle": (0.8, 2.8), "debris": (0.7, 0.7)}


@lru_cache(maxsize=1)
def _texture_bank() -> np.ndarray:
    """Smooth random textures (8, 256, 256) in [0, 1], used for gland lumens and fibre streaks."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(BIOLOGY_SEED + 1)
    bank = np.stack([gaussian_filter(rng.standard_normal((256, 256)), s, mode="wrap") for s in (5, 5, 7, 7, 9, 9,
                                                                                             6, 8)])
    bank = (bank - bank.mean((1, 2), keepdims=True)) / bank.std((1, 2), keepdims=True)
    return bank.astype(np.float32)


def _crops(rng: np.random.Generator, n: int) -> np.ndarray:
    bank = _texture_bank()
    k = rng.integers(0, len(bank), n)
    oy, ox = rng.integers(0, 256 - RENDER_PX, n), rng.integers(0, 256 - RENDER_PX, n)
    ar = np.arange(RENDER_PX)
    return bank[k[:, None, None], oy[:, None, None] + ar[None, :, None], ox[:, None, None] + ar[None, None, :]]


def render_patches(rng: np.random.Generator, comp: np.ndarray, stain: dict, orientation: np.ndarray,
                   batch: int = 256) -> np.ndarray:
    """H&E-like patches (N, 224, 224, 3) uint8 whose morphology follows the composition ``comp``."""
    from scipy.ndimage import gaussian_filter

    n, R = len(comp), RENDER_PX
    out = np.empty((n, PATCH_PX, PATCH_PX, 3), np.uint8)
    looks = [_CELL_LOOK[c] for c in CELL_TYPES]
    eosin_ct = np.array([lk[3] for lk in looks])
    he = _HE * stain["vectors"]
    for start in range(0, n, batch):
        sl = slice(start, min(n, start + batch))
        c = comp[sl]
        b = len(c)
        hmap = np.zeros((b, R, R), np.float32)
        for cls, (sy, sx) in _RENDER_CLASSES.items():
            splat = np.zeros((b, R, R), np.float32)
            for j, lk in enumerate(looks):
                if lk[0] != cls:
                    continue
                counts = rng.poisson(c[:, j] * lk[1])
                idx = np.repeat(np.arange(b), counts)
                if len(idx) == 0:
                    continue
                py, px = rng.integers(0, R, len(idx)), rng.integers(0, R, len(idx))
                np.add.at(splat, (idx, py, px), lk[2] * rng.uniform(0.7, 1.3, len(idx)))
            if cls == "spindle":
                vert = orientation[sl]
                splat[vert] = gaussian_filter(splat[vert], (0, sx, sy)) * (2 * np.pi * sx * sy)
                splat[~vert] = gaussian_filter(splat[~vert], (0, sy, sx)) * (2 * np.pi * sx * sy)
            else:
                splat = gaussian_filter(splat, (0, sy, sx)) * (2 * np.pi * sx * sy)
            hmap += splat
        epi = c[:, 0] + c[:, 1]
        tex = _crops(rng, b)
        lumen = tex > (2.2 - 1.8 * epi)[:, None, None]  # gland lumens where epithelium is abundant
        streak = _crops(rng, b)
        emap = 0.6 * (c @ eosin_ct)[:, None, None] * (0.85 + 0.15 * np.tanh(streak))
        tissue = ~lumen
        hmap = np.minimum(hmap, 1.6) * tissue
        emap = emap * tissue + 0.03
        od = (stain["h"] * hmap[..., None] * he[0] + stain["e"] * emap[..., None] * he[1]) + 0.02
        rgb = np.clip(255.0 * np.power(10.0, -od), 0, 255)
        rgb = (np.round(rgb / 4) * 4).clip(0, 255).astype(np.uint8)  # mild quantisation (compressible)
        out[sl] = rgb.repeat(2, axis=1).repeat(2, axis=2)
    return out


# ------------------------------------------------------------------------------------------ cohort
def _rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), *keys]))


def _cohort_plan(preset: Preset, seed: int) -> list[dict]:
    """Slides: id, patient index, replicate index, spot count, oncotree code, library median."""
    rng = _rng(seed, 0)
    n_rep = preset.n_slides - preset.n_patients
    reps = [2 if i < n_rep else 1 for i in range(preset.n_patients)]
    while sum(reps) < preset.n_slides:  # more than 2 slides per patient when needed
        reps[sum(reps) % preset.n_patients] += 1
    plan, k = [], 0
    codes = rng.choice(["COAD", "READ"], size=preset.n_patients, p=[0.7, 0.3])
    for p, r in enumerate(reps):
        for j in range(r):
            plan.append(dict(id=f"SIM{k:03d}", patient=p, replicate=j, oncotree=str(codes[p]),
                             n_spots=int(rng.integers(preset.spots[0], preset.spots[1] + 1)),
                             lib_median=float(np.exp(rng.uniform(np.log(4000), np.log(14000))))))
            k += 1
    return plan


def _patient_effects(seed: int, p: int, n_pathways: int, scale: float = 1.0) -> dict:
    rng = _rng(seed, 1, p)
    return dict(tumour_bias=float(rng.normal(0.3, 0.4 * scale)), immune_bias=float(rng.normal(0.0, 0.6 * scale)),
                pathway_offset=rng.normal(0, 0.3 * scale, n_pathways))


def _round_mantissa(a: np.ndarray, keep_bits: int) -> np.ndarray:
    """Round float32 values to ``keep_bits`` mantissa bits (so gzip+shuffle compresses them well)."""
    a = np.ascontiguousarray(a, np.float32)
    drop = 23 - keep_bits
    u = a.view(np.uint32).astype(np.uint64)
    u = ((u + (1 << (drop - 1))) >> drop) << drop
    return u.astype(np.uint32).view(np.float32)


def _thumbnail(xy_um: np.ndarray, colours: np.ndarray, um_per_px: float = 25.0) -> np.ndarray:
    h = int(N_ROWS * 86.61 / um_per_px) + 4
    w = int(N_COLS * 50 / um_per_px) + 4
    img = np.full((h, w, 3), 245, np.uint8)
    iy, ix = np.round(xy_um[:, 1] / um_per_px).astype(int) + 1, np.round(xy_um[:, 0] / um_per_px).astype(int) + 1
    for dy in (-2, -1, 0, 1, 2):
        for dx in (-2, -1, 0, 1, 2):
            if dy * dy + dx * dx <= 5:
                img[np.clip(iy + dy, 0, h - 1), np.clip(ix + dx, 0, w - 1)] = colours
    return img


HEST_COLUMNS = ["dataset_title", "id", "image_filename", "organ", "disease_state", "oncotree_code", "species",
                "patient", "st_technology", "data_publication_date", "license", "study_link", "download_page_link1",
                "inter_spot_dist", "spot_diameter", "spots_under_tissue", "preservation_method", "nb_genes",
                "treatment_comment", "pixel_size_um_embedded", "pixel_size_um_estimated", "magnification",
                "fullres_px_width", "fullres_px_height", "tissue", "disease_comment", "subseries",
                "hest_version_added"]


def simulate_slide(plan: dict, seed: int, preset_name: str, grid=None, with_patches: bool = True,
                   backbones: list[str] | None = None, world: str = "default") -> dict:
    """Simulate one slide in memory: AnnData, patches, features (by backbone) and its metadata row."""
    import anndata as ad
    import pandas as pd
    import scipy.sparse as sp

    spec_world = _check_world(world)
    bio = biology()
    barcodes_all, rows_all, cols_all = grid if grid is not None else visium_grid()
    k = int(plan["id"][3:])
    rng_t, rng_x, rng_p, rng_f = (_rng(seed, 2, k, i) for i in range(4))
    xy_all = _grid_um(rows_all, cols_all)
    mask = _tissue_mask(rng_t, xy_all, plan["n_spots"])
    xy, barcodes, rows, cols = xy_all[mask], barcodes_all[mask], rows_all[mask], cols_all[mask]
    patient = _patient_effects(seed, plan["patient"], len(bio.pathway_names), spec_world.patient_scale)
    tissue = _simulate_tissue(rng_t, bio, xy, patient, spec_world)
    tissue["activity_ref"] = _activity_reference()
    counts, mu, lib = _expression(rng_x, bio, xy, tissue, plan["lib_median"], spec_world)
    n, G = counts.shape

    centres_px = MARGIN_PX + xy / PIXEL_SIZE_UM
    obs = pd.DataFrame({
        "in_tissue": np.ones(n, np.int64), "array_row": rows.astype(np.int64), "array_col": cols.astype(np.int64),
        "pxl_row_in_fullres": centres_px[:, 1], "pxl_col_in_fullres": centres_px[:, 0],
        "compartment": pd.Categorical(np.array(COMPARTMENTS)[tissue["compartments"].argmax(1)],
                                      categories=COMPARTMENTS),
        "true_library_size": lib.astype(np.float32),
    }, index=pd.Index(barcodes, name=None))
    var = pd.DataFrame({"gene_class": pd.Categorical(bio.gene_class)}, index=pd.Index(bio.genes))
    adata = ad.AnnData(X=sp.csr_matrix(counts), obs=obs, var=var)
    adata.obsm["spatial"] = centres_px.astype(np.float64)
    adata.obsm["true_pathway_activity"] = tissue["activity"].astype(np.float32)
    adata.obsm["true_composition"] = tissue["composition"].astype(np.float32)
    adata.obsm["true_compartments"] = tissue["compartments"].astype(np.float32)
    adata.obsm["true_context"] = tissue["context"].astype(np.float32)
    if "hidden_activity" in tissue:
        adata.obsm["true_hidden_programme_activity"] = tissue["hidden_activity"].astype(np.float32)
    adata.uns["true_pathway_names"] = np.array(bio.pathway_names)
    adata.uns["cell_types"] = np.array(CELL_TYPES)
    adata.uns["compartments"] = np.array(COMPARTMENTS)
    adata.uns["contexts"] = np.array(CONTEXTS)
    adata.uns["simulator"] = {"version": SIMULATOR_VERSION, "preset": preset_name, "seed": int(seed), "world": world,
                              "patient": int(plan["patient"]), "replicate": int(plan["replicate"]),
                              "library_median": float(plan["lib_median"]),
                              "biology_seed": BIOLOGY_SEED, "pixel_size_um": PIXEL_SIZE_UM}

    # nuisance seen by the feature extractors: slide stain (3) + spot focus/thickness (2)
    stain_latent = rng_f.normal(0, 1, 3)
    nuisance = np.concatenate([np.tile(stain_latent, (n, 1)), rng_f.normal(0, 1, (n, 2))], 1)
    stain = {"vectors": np.clip(1 + 0.08 * np.stack([stain_latent, np.roll(stain_latent, 1)]), 0.7, 1.3),
             "h": float(np.exp(0.15 * stain_latent[0])), "e": float(np.exp(0.15 * stain_latent[1]))}
    latent = latent_morphology(bio, tissue)
    adata.obsm["true_latent_morphology"] = latent.astype(np.float32)
    image_noise = structured_noise(_rng(seed, 4, k), xy, latent.shape[1], spec_world)
    features = {name: stand_in_features(_rng(seed, 3, k, zlib.crc32(name.encode())), name, latent, nuisance,
                                        image_noise, spec_world.noise_spot)
                for name in (backbones if backbones is not None else BACKBONES)}

    patches = None
    if with_patches:
        orient = _grf(rng_p, 300, xy) > 0
        patches = render_patches(rng_p, tissue["composition"], stain, orient)
        colours = patches.reshape(n, -1, 3).mean(1).astype(np.uint8)
    else:
        colours = np.full((n, 3), 180, np.uint8)
    adata.uns["thumbnail"] = _thumbnail(xy, colours)
    adata.uns["thumbnail_um_per_px"] = 25.0

    width, height = int(2 * MARGIN_PX + N_COLS * 50 / PIXEL_SIZE_UM), int(2 * MARGIN_PX + N_ROWS * 86.61 / PIXEL_SIZE_UM)
    meta = {
        "dataset_title": "stflib simulated colorectal cancer Visium cohort", "id": plan["id"],
        "image_filename": "", "organ": "Bowel", "disease_state": "Cancer", "oncotree_code": plan["oncotree"],
        "species": "Homo sapiens", "patient": f"SIM Patient {plan['patient'] + 1:02d}", "st_technology": "Visium",
        "data_publication_date": "", "license": "MIT (simulated data)", "study_link": "",
        "download_page_link1": "", "inter_spot_dist": SPOT_PITCH_UM, "spot_diameter": SPOT_DIAMETER_UM,
        "spots_under_tissue": int(n), "preservation_method": "FFPE", "nb_genes": int(G), "treatment_comment": "",
        "pixel_size_um_embedded": PIXEL_SIZE_UM, "pixel_size_um_estimated": PIXEL_SIZE_UM, "magnification": "20x",
        "fullres_px_width": width, "fullres_px_height": height,
        "tissue": "Colon" if plan["oncotree"] == "COAD" else "Rectum", "disease_comment": "simulated",
        "subseries": f"sim-{preset_name}-{world}-seed{seed}-P{plan['patient'] + 1:02d}-S{plan['replicate'] + 1}",
        "hest_version_added": f"stflib-sim-v{SIMULATOR_VERSION}",
    }
    return dict(adata=adata, expected=mu, patches=patches, features=features, meta=meta, barcodes=barcodes,
                centres_px=centres_px, latent=latent)


@lru_cache(maxsize=1)
def _activity_reference() -> np.ndarray:
    """A fixed typical pathway-activity level (cohort-independent), used to centre modulations."""
    bio = biology()
    typical = np.full(len(CELL_TYPES), 1.0 / len(CELL_TYPES))
    return typical @ bio.w_comp + np.array([0.1, 0.3, 0.05, 0.03, 0.2]) @ bio.w_ctx


def write_slide(out: Path, sim: dict, gzip_level: int = 4) -> None:
    """Write one simulated slide into the HEST layout under ``out``."""
    import anndata as ad
    import h5py

    sid = sim["meta"]["id"]
    for sub in ("st", "patches", "metadata"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    st_path = out / "st" / f"{sid}.h5ad"
    sim["adata"].write_h5ad(st_path, compression="gzip", compression_opts=gzip_level)
    expected = _round_mantissa(sim["expected"], 12)
    with h5py.File(st_path, "a") as f:
        ad.io.write_elem(f["layers"], "expected_counts", expected,
                         dataset_kwargs=dict(compression="gzip", compression_opts=gzip_level, shuffle=True,
                                             chunks=(min(256, len(expected)), expected.shape[1])))
    bc_bytes = np.array([b.encode() for b in sim["barcodes"]], dtype="S")
    if sim["patches"] is not None:
        with h5py.File(out / "patches" / f"{sid}.h5", "w") as f:
            f.create_dataset("img", data=sim["patches"], chunks=(1, PATCH_PX, PATCH_PX, 3), compression="gzip",
                             compression_opts=gzip_level)
            f.create_dataset("coords", data=np.round(sim["centres_px"] - PATCH_PX / 2).astype(np.int64))
            f.create_dataset("barcode", data=bc_bytes.reshape(-1, 1))
    for name, feats in sim["features"].items():
        folder = out / "features" / name
        folder.mkdir(parents=True, exist_ok=True)
        with h5py.File(folder / f"{sid}.h5", "w") as f:
            f.create_dataset("features", data=_round_mantissa(feats, 10), compression="gzip",
                             compression_opts=gzip_level, shuffle=True, chunks=(min(256, len(feats)), feats.shape[1]))
            f.create_dataset("barcodes", data=bc_bytes)
            f.create_dataset("coords", data=sim["centres_px"])
            f.attrs["backbone"] = name
            f.attrs["feature_dim"] = int(feats.shape[1])
            f.attrs["simulated"] = True
            f.attrs["latent_noise"] = float(BACKBONES[name].noise)
    meta = dict(sim["meta"])
    meta["simulator"] = dict(sim["adata"].uns["simulator"])
    (out / "metadata" / f"{sid}.json").write_text(json.dumps(meta, indent=1, default=float))


def simulate_cohort(out: str | Path, preset: str = "default", seed: int = 0, with_patches: bool = True,
                    backbones: list[str] | None = None, verbose: bool = False, world: str = "default") -> Path:
    """Simulate a whole cohort of ``world`` into ``out`` (HEST layout); returns ``out``. Deterministic by ``seed``."""
    import pandas as pd

    spec = _check_preset(preset)
    _check_world(world)
    if backbones is not None:
        unknown = [b for b in backbones if b not in BACKBONES]
        if unknown:
            raise ValueError(f"unknown backbone(s) {unknown}; allowed: {', '.join(BACKBONES)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    grid = visium_grid()
    rows = []
    t0 = time.time()
    for plan in _cohort_plan(spec, seed):
        sim = simulate_slide(plan, seed, preset, grid=grid, with_patches=with_patches, backbones=backbones,
                             world=world)
        write_slide(out, sim, spec.gzip_level)
        rows.append(sim["meta"])
        if verbose:
            print(f"  {plan['id']}: {sim['meta']['spots_under_tissue']} spots, patient {plan['patient'] + 1}, "
                  f"median UMIs {np.median(np.asarray(sim['adata'].X.sum(1)).ravel()):.0f} ({time.time() - t0:.1f}s)", flush=True)
    pd.DataFrame(rows, columns=HEST_COLUMNS).to_csv(out / "metadata.csv", index=False)
    return out


def cache_dir() -> Path:
    """The stflib cache folder: ``$STFLIB_CACHE`` or ``~/.cache/stflib``."""
    env = os.environ.get("STFLIB_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "stflib"


def simulator_fingerprint() -> str:
    """Version plus a hash of this module's source: a cached cohort is reused only by the code that wrote it."""
    digest = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]
    return f"{SIMULATOR_VERSION}-{digest}"


def _cached_fingerprint(folder: Path) -> str | None:
    marker = folder / COMPLETE_MARKER
    try:
        return json.loads(marker.read_text()).get("fingerprint")
    except (OSError, ValueError, AttributeError):
        return None


def cohort_name(preset: str = "default", seed: int = 0, world: str = "default") -> str:
    """Cache folder name of a cohort: ``sim-<preset>-seed<seed>`` for the default world (the name
    other parts of the project already know), ``sim-<preset>-<world>-seed<seed>`` for the others."""
    return f"sim-{preset}-seed{int(seed)}" if world == "default" else f"sim-{preset}-{world}-seed{int(seed)}"


def default_cohort(preset: str = "default", seed: int = 0, world: str = "default") -> Path:
    """The simulated cohort of ``world`` (``cohort_name``) in the cache, generated on first use.

    Generation writes into a temporary sibling folder and renames it into place when complete, so
    an interrupted run never leaves a half-written cohort that looks usable. A cached cohort written
    by a different version of this module (``simulator_fingerprint``) is regenerated, never reused.
    """
    _check_preset(preset)
    _check_world(world)
    root = cache_dir()
    target = root / cohort_name(preset, seed, world)
    fingerprint = simulator_fingerprint()
    if _cached_fingerprint(target) == fingerprint:
        return target
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        print(f"simulating the {preset!r} cohort, world {world!r} (seed {seed}) into {target}: first use only, "
              "cached afterwards", flush=True)
        t0 = time.time()
        if world == "default":  # keeps the call the same for code that replaces simulate_cohort
            simulate_cohort(tmp, preset=preset, seed=seed)
        else:
            simulate_cohort(tmp, preset=preset, seed=seed, world=world)
        print(f"simulated cohort ready in {time.time() - t0:.0f} s", flush=True)
        (tmp / COMPLETE_MARKER).write_text(json.dumps({"preset": preset, "seed": int(seed), "world": world,
                                                       "version": SIMULATOR_VERSION,
                                                       "fingerprint": fingerprint}))
        if target.exists() and _cached_fingerprint(target) != fingerprint:
            # incomplete, or written by another version of the simulator: move it out of the way
            stale = root / f".stale-{target.name}-{uuid.uuid4().hex[:8]}"
            os.rename(target, stale)
            shutil.rmtree(stale, ignore_errors=True)
        try:
            os.rename(tmp, target)
        except OSError:
            if _cached_fingerprint(target) != fingerprint:  # someone else finished first: use theirs
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


# --------------------------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output folder (HEST-1k layout)")
    parser.add_argument("--preset", default="default",
                        help=f"cohort size: {', '.join(f'{k} ({v.n_slides} slides)' for k, v in PRESETS.items())}")
    parser.add_argument("--seed", type=int, default=0, help="cohort seed (deterministic)")
    parser.add_argument("--world", default="default",
                        help=f"simulator world (named assumptions, see stflib.simulate.WORLDS): {', '.join(WORLDS)}")
    parser.add_argument("--no-patches", action="store_true", help="skip rendering patches (faster, smaller)")


def run(args: argparse.Namespace) -> int:
    t0 = time.time()
    try:
        _check_preset(args.preset)
        _check_world(args.world)
    except ValueError as err:
        print(f"error: {err}")
        return 2
    print(f"simulating preset {args.preset!r}, world {args.world!r}, seed {args.seed} into {args.out}", flush=True)
    out = simulate_cohort(args.out, preset=args.preset, seed=args.seed, with_patches=not args.no_patches,
                          verbose=True, world=args.world)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"done in {time.time() - t0:.1f}s; {size / 1e6:.1f} MB in {out}")
    return 0
