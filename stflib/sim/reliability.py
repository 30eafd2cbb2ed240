"""Split-half reliability: how much of a measured map would replicate in a second measurement.

A Visium spot's UMIs are a sample of its molecules, so a gene's or a pathway score's map carries
counting noise that no model can predict. Its size is measured without a second slide by binomial
thinning: each UMI goes to half A or half B with probability 1/2 (``numpy``'s binomial on every
count), each half is normalised on its own (log1p of CP10k with the half's own library size), and
the correlation r between the two halves' maps over a slide's QC-passed spots is the reliability of
a half-depth measurement. The Spearman-Brown formula ``2r / (1 + r)`` steps it up to the full depth.

Pathway scores are computed the upstream way (``stflib.pathways.pathway_targets``: a z-score per gene
within the slide, then the mean over the pathway's member genes, pathways with at least 5
genes in the vocabulary). ``depth_correction="regress"`` regresses each half's scores
on that half's log total counts within the slide first, as the upstream does before it reads a
score as biology: depth is shared by all pathways and replicates between halves, so it inflates the
raw reliability.

The reliability is a ceiling of a different kind than the feature ceiling: no prediction correlates
with a measured map better than ``sqrt(reliability)`` (Spearman's attenuation bound), however good the
features. The upstream's real figures (73 HEST-1k bowel slides, Hallmark scores): 0.85 raw and 0.67
after depth regression; ``UPSTREAM_RELIABILITY`` keeps them for the comparison.

``python -m stflib reliability --world all`` writes ``results/worlds/reliability.csv`` (one row per
world), and ``--data-dir DIR`` computes the same figures from the counts of a HEST-1k folder.
"""
from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .. import pathways as P
from ..data.dataset import normalize_cp10k, qc_mask, select_genes
from ..metrics import pearson_columns

DEPTH_CORRECTIONS = ("none", "regress")
UPSTREAM_RELIABILITY = {
    "pathway_reliability_raw": (0.85, "median split-half reliability of the Hallmark scores, 73 HEST-1k bowel slides"),
    "pathway_reliability_depth": (0.67, "the same after regressing log depth out of each score within the slide"),
}
COLUMNS = ["world", "n_slides", "gene_reliability_hvg50", "gene_reliability_all", "gene_ceiling_hvg50",
           "pathway_reliability_raw", "pathway_reliability_depth", "pathway_ceiling_raw", "pathway_ceiling_depth",
           "pathway_depth_r2", "n_pathways_scored"]


def thin_counts(counts: sp.spmatrix | np.ndarray, rng: np.random.Generator, p: float = 0.5
                ) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Split every UMI count between two halves: A ~ Binomial(count, p), B = count - A (spots x genes)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"thin_counts: p must lie in (0, 1), got {p}")
    m = sp.csr_matrix(counts, dtype=np.float64)
    data = np.rint(m.data).astype(np.int64)
    if (data < 0).any():
        raise ValueError("thin_counts: counts must be non-negative integers (raw UMIs), found a negative value")
    a_data = rng.binomial(data, p).astype(np.float64)
    a = sp.csr_matrix((a_data, m.indices, m.indptr), shape=m.shape)
    b = sp.csr_matrix((data - a_data, m.indices, m.indptr), shape=m.shape)
    return a, b


def spearman_brown(r: np.ndarray | float) -> np.ndarray:
    """The full-depth reliability from the half-depth correlation r: 2r / (1 + r) (NaN stays NaN)."""
    r = np.asarray(r, np.float64)
    return np.where(r > -1.0, 2.0 * r / np.maximum(1.0 + r, 1e-12), np.nan)


def log_cp10k_dense(counts: sp.spmatrix | np.ndarray) -> np.ndarray:
    """log1p(CP10k) with each spot's own library (all genes), dense (N, G) (``normalize_cp10k``)."""
    return np.asarray(normalize_cp10k(sp.csr_matrix(counts), log1p=True).todense(), np.float64)


def regress_out(y: np.ndarray, covariate: np.ndarray) -> np.ndarray:
    """Residuals of each column of ``y`` (N, K) after least squares on [1, covariate (N,)]."""
    x = np.column_stack([np.ones(len(covariate)), covariate])
    beta, *_ = np.linalg.lstsq(x, y, rcond=None)
    return y - x @ beta


def _check_correction(depth_correction: str) -> str:
    if depth_correction not in DEPTH_CORRECTIONS:
        raise ValueError(f"depth_correction: unknown {depth_correction!r}; allowed: {', '.join(DEPTH_CORRECTIONS)}")
    return depth_correction


def pathway_scores(counts: sp.spmatrix | np.ndarray, membership: np.ndarray, depth_correction: str = "none"
                   ) -> np.ndarray:
    """(N, P) upstream pathway scores of the spots' counts, optionally with log depth regressed out."""
    scores = P.pathway_targets(log_cp10k_dense(counts), membership).astype(np.float64)
    if _check_correction(depth_correction) == "regress":
        depth = np.log(np.maximum(np.asarray(sp.csr_matrix(counts).sum(1)).ravel(), 1.0))
        scores = regress_out(scores, depth)
    return scores


def slide_reliability(sample, genes: Sequence[str], membership: P.Membership | None, seed: int = 0) -> dict:
    """One slide's split-half reliabilities (Spearman-Brown), over its QC-passed spots.

    Returns ``genes`` (G,) for ``genes`` (NaN where a gene is absent or constant in a half),
    ``pathways_raw`` and ``pathways_depth`` (P,), and ``depth_r2`` (P,): the share of each full-depth
    pathway score's variance that log depth explains.
    """
    keep = qc_mask(sample.counts, sample.genes)
    counts = sp.csr_matrix(sample.counts)[keep]
    rng = np.random.default_rng([seed, len(sample.sample_id), *map(ord, sample.sample_id[:16])])
    half_a, half_b = thin_counts(counts, rng)
    index = {str(g): i for i, g in enumerate(sample.genes)}
    cols = np.array([index.get(str(g), -1) for g in genes])
    la, lb = log_cp10k_dense(half_a), log_cp10k_dense(half_b)
    gene_r = np.full(len(genes), np.nan)
    ok = cols >= 0
    gene_r[ok] = pearson_columns(la[:, cols[ok]], lb[:, cols[ok]], constant_pred=np.nan)
    out = {"genes": spearman_brown(gene_r)}
    if membership is not None:
        # the membership is over ``genes``; align it to the slide's own gene order
        mat = np.zeros((len(membership.names), counts.shape[1]))
        mat[:, cols[ok]] = membership.matrix[:, ok]
        full_scores = pathway_scores(counts, mat)
        depth = np.log(np.maximum(np.asarray(counts.sum(1)).ravel(), 1.0))
        resid = regress_out(full_scores, depth)
        var = full_scores.var(0)
        out["depth_r2"] = np.divide(var - resid.var(0), var, out=np.full(len(var), np.nan), where=var > 1e-12)
        for correction, key in (("none", "pathways_raw"), ("regress", "pathways_depth")):
            r = pearson_columns(pathway_scores(half_a, mat, correction), pathway_scores(half_b, mat, correction),
                                constant_pred=np.nan)  # NaN where either half is constant
            out[key] = spearman_brown(r)
    return out


def reliability_figures(samples: list, seed: int = 0, n_hvg: int = 50) -> dict:
    """The cohort's reliability figures: medians over slides and then genes (or pathways).

    ``gene_reliability_hvg50``/``_all``: over the cohort's 50 HVGs / its 1,000-gene vocabulary (chosen on
    all slides, as a report of the measurement, not of a fold). ``*_ceiling_*``: sqrt of the reliability,
    the highest PCC any prediction can reach against the measured map."""
    vocabulary, hvg = select_genes(samples, n_genes=1000, n_hvg=n_hvg)
    membership = P.membership_matrix(P.hallmarks(), vocabulary)  # drops sets with < 5 genes, as the upstream
    per_slide = [slide_reliability(s, vocabulary, membership, seed) for s in samples]
    hvg_cols = [vocabulary.index(g) for g in hvg]

    def median(key: str, cols=None) -> float:
        stack = np.array([r[key] if cols is None else r[key][cols] for r in per_slide])
        return float(np.nanmedian(np.nanmedian(stack, axis=0)))

    out = {"n_slides": len(samples), "n_pathways_scored": len(membership.names),
           "gene_reliability_hvg50": median("genes", hvg_cols), "gene_reliability_all": median("genes"),
           "pathway_reliability_raw": median("pathways_raw"), "pathway_reliability_depth": median("pathways_depth"),
           "pathway_depth_r2": median("depth_r2")}
    out["gene_ceiling_hvg50"] = float(np.sqrt(max(out["gene_reliability_hvg50"], 0.0)))
    out["pathway_ceiling_raw"] = float(np.sqrt(max(out["pathway_reliability_raw"], 0.0)))
    out["pathway_ceiling_depth"] = float(np.sqrt(max(out["pathway_reliability_depth"], 0.0)))
    return out


def world_reliability(world: str, preset: str = "default", seed: int = 0) -> dict:
    """``reliability_figures`` of ``world``'s simulated cohort (simulated in memory, no patches)."""
    from .truth import simulate_in_memory

    _, samples, _ = simulate_in_memory(world, preset, seed, backbones=[])
    return {"world": world, **reliability_figures(samples, seed)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--world", default="all", help="a world name, or 'all' (default)")
    parser.add_argument("--preset", default="default", help="cohort preset (default: default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=None,
                        help="a HEST-1k folder: compute the figures from its counts instead of simulating")
    parser.add_argument("--out", default="results/worlds/reliability.csv", help="the table to write (worlds only)")


def run(args: argparse.Namespace) -> int:
    if args.data_dir:
        from ..data.decoded import read_sample

        meta = pd.read_csv(Path(args.data_dir) / "metadata.csv")
        samples = [read_sample(args.data_dir, str(i), cache=False) for i in meta["id"]]  # names an unreadable file
        print(format_row({"world": f"data: {args.data_dir}", **reliability_figures(samples, args.seed)}))
        return 0
    from .worlds import WORLDS

    worlds = list(WORLDS) if args.world == "all" else [args.world]
    for w in worlds:
        if w not in WORLDS:
            raise SystemExit(f"reliability: unknown world {w!r}; allowed: all, {', '.join(WORLDS)}")
    rows = []
    for w in worlds:
        row = world_reliability(w, args.preset, args.seed)
        print(format_row(row), flush=True)
        rows.append(row)
    out = Path(args.out)
    table = pd.DataFrame(rows, columns=COLUMNS)
    if out.exists() and args.world != "all":  # one world refreshed: keep the other rows
        old = pd.read_csv(out)
        table = pd.concat([old[~old["world"].isin(worlds)], table]).set_index("world").reindex(
            [w for w in WORLDS if w in set(old["world"]) | set(worlds)]).reset_index()
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False, float_format="%.4f")
    print(f"wrote {out}")
    return 0


def format_row(row: dict) -> str:
    up_raw, up_depth = (UPSTREAM_RELIABILITY[k][0] for k in ("pathway_reliability_raw", "pathway_reliability_depth"))
    return (f"{row['world']}: genes (50 HVGs) {row['gene_reliability_hvg50']:.3f} (ceiling {row['gene_ceiling_hvg50']:.3f}), "
            f"all genes {row['gene_reliability_all']:.3f}; pathways raw {row['pathway_reliability_raw']:.3f} "
            f"(upstream real {up_raw}), after depth {row['pathway_reliability_depth']:.3f} (upstream real {up_depth}); "
            f"depth explains {row['pathway_depth_r2']:.2f} of a score's variance; {row['n_pathways_scored']} pathways scored")
