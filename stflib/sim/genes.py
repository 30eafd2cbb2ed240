"""The simulator's gene catalogue: ~5.7k real human symbols (all Hallmark genes, compartment
markers, 13 MT- genes, ribosomal RPL/RPS genes and background genes from real symbol families)."""
from __future__ import annotations

from functools import lru_cache

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
    from ..pathways import hallmarks

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
