"""The simulator's fixed "biology", independent of the cohort seed (``BIOLOGY_SEED``): compartments,
cell types and context fields, the pathway rules, and the gene loadings, dispersions and dropout
that turn composition and pathway activity into expression (``biology()``); the non-Hallmark
programmes of the ``pathway-misspecified`` world; the typical activity that modulations centre on."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .genes import HIGH_GENES, MARKERS, gene_catalogue

BIOLOGY_SEED = 20240611

COMPARTMENTS = ["tumour", "stroma", "immune_aggregate", "normal_mucosa", "muscle", "necrosis"]
CELL_TYPES = ["tumour_epithelial", "normal_epithelial", "fibroblast", "smooth_muscle", "endothelial",
              "T_cell", "B_cell", "plasma_cell", "macrophage", "necrotic_debris"]
CONTEXTS = ["tumour_stroma_interface", "tumour_depth", "immune_proximity", "necrosis_proximity",
            "stroma_neighbourhood"]
# Long-range context fields (the ``long-range-context`` world): biology that a mean over a spot's local
# neighbourhood (6-60 nearest spots, up to ~450 um) cannot form. Each is scaled to about [0, 1].
LONG_RANGE_CONTEXTS = [
    "tumour_core_depth",   # inside tumour: distance to the tumour-stroma boundary, saturating at 1.5 mm
    "stromal_reach",       # outside tumour: 1 at the boundary, falling to 0 at 1.5 mm into the stroma
    "tls_ifng_field",      # sum over tertiary lymphoid structures of exp(-distance / lambda), lambda 300-800 um
    "tumour_x_immune",     # own tumour content x immune density within 0.5 mm (a product: not linear in a mean)
    "immune_hot_slide",    # 1 on an immune-hot slide, 0 on a cold one: seen only as slide-wide composition
]
LONG_RANGE_REFERENCE = np.array([0.25, 0.25, 0.3, 0.1, 0.5])  # typical values: modulations centre on them
# {long-range field: {pathway short name: weight on the activity}}
LONG_RANGE_RULES: dict[str, dict[str, float]] = {
    "tumour_core_depth": {"HYPOXIA": 3.0, "GLYCOLYSIS": 2.0, "P53_PATHWAY": 1.0},
    "stromal_reach": {"EPITHELIAL_MESENCHYMAL_TRANSITION": 3.0, "TGF_BETA_SIGNALING": 2.5, "ANGIOGENESIS": 1.0},
    "tls_ifng_field": {"INTERFERON_GAMMA_RESPONSE": 2.5, "INTERFERON_ALPHA_RESPONSE": 2.0, "ALLOGRAFT_REJECTION": 1.5},
    "tumour_x_immune": {"INTERFERON_GAMMA_RESPONSE": 6.0, "ALLOGRAFT_REJECTION": 5.0, "IL2_STAT5_SIGNALING": 2.0},
    "immune_hot_slide": {"INFLAMMATORY_RESPONSE": 1.2, "TNFA_SIGNALING_VIA_NFKB": 1.0, "IL6_JAK_STAT3_SIGNALING": 1.0,
                         "COMPLEMENT": 0.8},
}


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
    w_long: np.ndarray  # (L, P) weights of the long-range context fields (LONG_RANGE_RULES)


@lru_cache(maxsize=1)
def biology() -> Biology:
    """The fixed 'biology' of the simulator (independent of the cohort seed)."""
    from ..pathways import hallmarks, short_name

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
    w_long = np.zeros((len(LONG_RANGE_CONTEXTS), P))  # from the rules alone: no draw from the biology stream
    for i, field_name in enumerate(LONG_RANGE_CONTEXTS):
        for pathway, w in LONG_RANGE_RULES[field_name].items():
            w_long[i, names.index("HALLMARK_" + pathway)] = w
    return Biology(genes, classes, names, log_profiles, pathway_loadings, theta, dropout, w_comp, w_ctx, mix,
                   lib_effect, visible, w_long)


def hidden_programmes(n: int) -> tuple[np.ndarray, np.ndarray]:
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


@lru_cache(maxsize=8)
def activity_reference(long_range_scale: float = 0.0) -> np.ndarray:
    """A fixed typical pathway-activity level (cohort-independent), used to centre modulations."""
    bio = biology()
    typical = np.full(len(CELL_TYPES), 1.0 / len(CELL_TYPES))
    ref = typical @ bio.w_comp + np.array([0.1, 0.3, 0.05, 0.03, 0.2]) @ bio.w_ctx
    return ref + long_range_scale * (LONG_RANGE_REFERENCE @ bio.w_long)
