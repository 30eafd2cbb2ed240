"""Gene panels the evaluation scores besides the 50 HVGs (``stflib.metrics``): numpy only, no torch.

In the simulator's default world the 50 most variable genes are 94 % cell-type composition, so a
pathway or context effect cannot show in ``pcc_hvg50``; ``pcc_pathway_genes`` scores the panel of
:func:`pathway_context_panel` instead, the genes whose variation is pathway activity driven by the
spatial context.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

EPS = 1e-12

# how many genes the simulator's panel keeps: as many as the HVG panel, so the two means average alike
PANEL_SIZE = 50
# where a cohort's genes come from: the simulator (whose drivers are known) or a measurement (real data)
PANEL_SOURCES = ("simulator", "measured")


def pathway_context_panel(genes, hvg, source: str = "simulator", size: int = PANEL_SIZE) -> list[str]:
    """The pathway- and context-gene panel of ``pcc_pathway_genes``: genes of ``genes`` outside ``hvg``.

    ``source="simulator"``: the ``size`` genes with the largest *context drive* in the simulator's fixed
    biology (``stflib.sim.biology``), in that order. A gene's log rate moves with each pathway's activity
    by its Hallmark loading (``pathway_loadings``), and each activity with the local context fields
    (``w_ctx``: tumour-stroma interface, tumour depth, immune and necrosis proximity, stroma
    neighbourhood) and the long-range fields of the ``long-range-context`` world (``w_long``); the drive
    is the norm over those fields of loading x weight (how far one unit of each field moves the gene's
    log rate). Only the catalogue's "hallmark" genes are ranked: compartment markers and ribosomal genes
    belong to Hallmark sets too, but their cell-type loadings make their variation composition. One panel for every world (the long-range fields are in the ranking whether a world turns
    them on or not), so worlds are compared on the same genes; genes with no drive are never kept.
    ``source="measured"`` (real data, whose drivers are unknown): every Hallmark member gene
    (``stflib.pathways.hallmarks``) among ``genes``, outside ``hvg``, in the order of ``genes`` (none
    where the genes are not HGNC symbols, say Ensembl ids: the metric is then NaN).
    """
    if source not in PANEL_SOURCES:
        raise ValueError(f"panel source {source!r}; allowed: {', '.join(PANEL_SOURCES)}")
    if size < 1:
        raise ValueError(f"panel size must be >= 1, got {size!r}")
    excluded = {str(g) for g in hvg}
    present = [str(g) for g in genes if str(g) not in excluded]
    if source == "measured":
        from stflib.pathways import hallmarks

        members = {g for members in hallmarks().values() for g in members}
        return [g for g in present if g in members]
    ranked = _simulator_context_ranking()
    keep = set(present)
    return [g for g in ranked if g in keep][:size]


@lru_cache(maxsize=1)
def _simulator_context_ranking() -> tuple[str, ...]:
    """The simulator's genes with a context drive (:func:`pathway_context_panel`), largest first (ties by name)."""
    from stflib.sim.biology import biology

    bio = biology()
    fields = np.vstack([bio.w_ctx, bio.w_long])  # (local + long-range fields, pathways)
    drive = np.linalg.norm(bio.pathway_loadings @ fields.T, axis=1)
    # compartment markers and ribosomal genes are Hallmark members too, but their cell-type loadings
    # (3-5 on the log scale for a marker) make their variation composition: only the "hallmark" class
    drive = np.where(bio.gene_class == "hallmark", drive, 0.0)
    order = sorted((i for i in range(len(bio.genes)) if drive[i] > EPS), key=lambda i: (-drive[i], str(bio.genes[i])))
    return tuple(str(bio.genes[i]) for i in order)
