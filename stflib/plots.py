"""Figures of one run: learning curves, predicted vs measured maps, pathway maps, attention, per-gene PCC.

Every function returns a matplotlib ``Figure`` (the notebook shows it and may ``savefig`` it).
Figures of the whole grid (one axis, all axes) live in ``stflib.report.figures``.
"""
from __future__ import annotations

from typing import Sequence

import matplotlib

if matplotlib.get_backend().lower() not in ("module://matplotlib_inline.backend_inline", "nbagg", "widget"):
    matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _short(name: str) -> str:
    return str(name).removeprefix("HALLMARK_")


def learning_curve(history: Sequence[dict], title: str = ""):
    """Training/validation loss and validation PCC per epoch (the best epoch marked)."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2))
    if not history:
        a.text(0.5, 0.5, "no training history\n(a non-iterative model)", ha="center", va="center")
        b.axis("off")
        a.axis("off")
        return fig
    ep = [h["epoch"] for h in history]
    a.plot(ep, [h["train_loss"] for h in history], label="train")
    a.plot(ep, [h["val_loss"] for h in history], label="validation")
    a.set_xlabel("epoch")
    a.set_ylabel("loss")
    a.legend(frameon=False)
    pcc = [h["val_pcc"] for h in history]
    b.plot(ep, pcc, color="C2")
    best = int(np.nanargmax(pcc)) if np.isfinite(pcc).any() else 0
    b.axvline(ep[best], ls=":", color="grey")
    b.set_xlabel("epoch")
    b.set_ylabel("validation PCC (50 HVGs)")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def _scatter(ax, xy, values, title, vmin=None, vmax=None, cmap="viridis"):
    sc = ax.scatter(xy[:, 0], xy[:, 1], c=values, s=6, cmap=cmap, vmin=vmin, vmax=vmax, linewidths=0)
    ax.set_title(title, fontsize=8)
    ax.set_aspect("equal")
    ax.invert_yaxis()  # image coordinates
    ax.set_xticks([])
    ax.set_yticks([])
    return sc


def spatial_maps(adata, genes: Sequence[str], sample_id: str | None = None, layer_true: str = "truth"):
    """Predicted (top row) vs measured (bottom row) log1p(CP10k) maps of ``genes`` on one held-out slide."""
    sample_id = sample_id or str(adata.obs["sample_id"].iloc[0])
    m = (adata.obs["sample_id"].astype(str) == sample_id).to_numpy()
    xy = adata.obsm["spatial"][m]
    genes = list(genes)
    fig, axes = plt.subplots(2, len(genes), figsize=(2.4 * len(genes), 4.8), squeeze=False)
    for j, g in enumerate(genes):
        k = list(adata.var_names).index(g)
        pred = np.asarray(adata.X[m, k]).ravel()
        true = np.asarray(adata.layers[layer_true][m, k]).ravel()
        lo, hi = np.percentile(true, [1, 99])
        pr = ""
        if "pcc" in adata.var:
            pr = f" (PCC {adata.var['pcc'].iloc[k]:.2f})"
        _scatter(axes[0, j], xy, pred, f"{g} predicted{pr}", lo, hi)
        _scatter(axes[1, j], xy, true, f"{g} measured", lo, hi)
    fig.suptitle(f"held-out slide {sample_id}", fontsize=9)
    fig.tight_layout()
    return fig


def pathway_maps(adata, pathways: Sequence[str] | None = None, sample_id: str | None = None, n: int = 4):
    """Predicted pathway scores (top) vs the simulator's true activities (bottom) on one slide."""
    if "pathway_scores" not in adata.obsm:
        fig, ax = plt.subplots(figsize=(4, 1))
        ax.text(0.5, 0.5, "this model has no pathway scores", ha="center", va="center")
        ax.axis("off")
        return fig
    names = list(adata.uns.get("pathway_names", []))
    true_names = list(adata.uns.get("true_pathway_names", []))
    sample_id = sample_id or str(adata.obs["sample_id"].iloc[0])
    m = (adata.obs["sample_id"].astype(str) == sample_id).to_numpy()
    xy = adata.obsm["spatial"][m]
    scores = adata.obsm["pathway_scores"][m]
    truth = adata.obsm.get("true_pathway_activity")
    if pathways is None:  # the pathways with the most spatial variation in the truth (or the scores)
        ref = truth[m][:, [true_names.index(p) for p in names]] if truth is not None and all(p in true_names for p in names) else scores
        pathways = [names[i] for i in np.argsort(-ref.std(0))[:n]]
    rows = 2 if truth is not None else 1
    fig, axes = plt.subplots(rows, len(pathways), figsize=(2.6 * len(pathways), 2.4 * rows), squeeze=False)
    for j, p in enumerate(pathways):
        _scatter(axes[0, j], xy, scores[:, names.index(p)], f"{_short(p)}\npredicted score", cmap="magma")
        if truth is not None and p in true_names:
            _scatter(axes[1, j], xy, truth[m][:, true_names.index(p)], "true activity", cmap="magma")
        elif rows == 2:
            axes[1, j].axis("off")
    fig.tight_layout()
    return fig


def attention_maps(attention, coords: np.ndarray, num_pathways: int, pathway_names: Sequence[str] | None = None,
                   pathways: Sequence[int] | None = None, layer: int = -1):
    """Where pathway tokens look (P->H attention, averaged over heads) on the slide, plus the
    head-averaged quadrant matrix. ``attention``: list per layer of (B, H, T, T) or (B, T, T)."""
    a = np.asarray(attention[layer])
    if a.ndim == 4:
        a = a[0].mean(0)
    elif a.ndim == 3:
        a = a[0]
    s = len(coords)
    pathways = list(pathways) if pathways is not None else list(np.argsort(-a[:num_pathways, num_pathways:num_pathways + s].std(1))[:3])
    fig, axes = plt.subplots(1, len(pathways) + 1, figsize=(2.8 * (len(pathways) + 1), 2.8))
    im = axes[0].imshow(np.log10(a[: num_pathways + s, : num_pathways + s] + 1e-6), cmap="viridis", aspect="auto")
    axes[0].axhline(num_pathways - 0.5, color="w", lw=0.5)
    axes[0].axvline(num_pathways - 0.5, color="w", lw=0.5)
    axes[0].set_title("log10 attention\n[pathways | patches]", fontsize=8)
    fig.colorbar(im, ax=axes[0], fraction=0.046)
    for j, p in enumerate(pathways):
        name = _short(pathway_names[p]) if pathway_names is not None else f"token {p}"
        _scatter(axes[j + 1], np.asarray(coords), a[p, num_pathways:num_pathways + s], f"{name}\nattention to patches", cmap="inferno")
    fig.tight_layout()
    return fig


def per_gene_pcc(per_gene, title: str = ""):
    """Histogram of per-gene PCC (all genes vs the 50 HVGs) with the noise ceiling when known."""
    fig, ax = plt.subplots(figsize=(5, 3))
    bins = np.linspace(-0.5, 1, 41)
    ax.hist(per_gene["pcc"].dropna(), bins=bins, alpha=0.6, label="all genes", density=True)
    ax.hist(per_gene.loc[per_gene["is_hvg"], "pcc"].dropna(), bins=bins, alpha=0.6, label="50 HVGs", density=True)
    if "noise_ceiling" in per_gene:
        ax.axvline(per_gene.loc[per_gene["is_hvg"], "noise_ceiling"].mean(), color="k", ls="--", label="ceiling (HVGs)")
    ax.set_xlabel("PCC on held-out patients")
    ax.legend(frameon=False, fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig
