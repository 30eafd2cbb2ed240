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


def _pathway_title(name: str) -> str:
    return _short(name).replace("_", " ")


def attention_maps(attention, coords: np.ndarray, num_pathways: int, pathway_names: Sequence[str] | None = None,
                   pathways: Sequence[int | str] | None = None, layer: int = -1):
    """The head-averaged attention of one layer on the first slide of a batch.

    Top: the (pathways + patches)^2 matrix, rows = queries and columns = keys, on a log colour scale
    with the entries the mask blocks in grey; its four quadrants (``p2p``, ``p2h``, ``h2p``, ``h2h``,
    query -> key) are drawn at the same size whatever the number of spots, and each is labelled with
    the share of its queries' attention it holds. Bottom: where a few pathway tokens look on the
    slide (their attention over the patches), by default the three whose attention varies most.

    ``attention``: list per layer of (B, H, T, T) or (B, T, T) with T >= num_pathways + len(coords);
    ``pathways``: token indices or names of ``pathway_names``.
    """
    import matplotlib.colors as mcolors

    a = np.asarray(attention[layer], dtype=float)
    if a.ndim == 4:
        a = a[0].mean(0)  # (T, T): first slide, mean over heads
    elif a.ndim == 3:
        a = a[0]
    else:
        raise ValueError(f"attention maps: a layer's shape {a.shape}; allowed: (B, H, T, T) or (B, T, T)")
    coords = np.asarray(coords)
    n_p, n_s = int(num_pathways), len(coords)
    if a.shape[0] < n_p + n_s:
        raise ValueError(f"attention maps: {a.shape[0]} tokens, fewer than {n_p} pathways + {n_s} spots")
    a = a[: n_p + n_s, : n_p + n_s]
    names = list(pathway_names) if pathway_names is not None else [f"token {p}" for p in range(n_p)]
    if pathways is None:  # the tokens whose attention over the slide varies most
        pathways = list(np.argsort(-a[:n_p, n_p:].std(1))[:3])
    unknown = [p for p in pathways if isinstance(p, str) and p not in names]
    if unknown:
        raise ValueError(f"attention maps: unknown pathways {unknown}; allowed: {', '.join(names)}")
    pathways = [names.index(p) if isinstance(p, str) else int(p) for p in pathways]

    fig = plt.figure(figsize=(9, 9.5), layout="constrained")
    grid = fig.add_gridspec(2, len(pathways), height_ratios=[1.6, 1])
    ax = fig.add_subplot(grid[0, :])

    # the four quadrants, each drawn in a unit square: [0, 1] = pathway tokens, [1, 2] = patch tokens
    allowed = a[a > 0]
    norm = mcolors.LogNorm(vmin=max(float(np.percentile(allowed, 1)), 1e-6), vmax=float(allowed.max()))
    cmap = plt.get_cmap("viridis").with_extremes(bad="0.85")  # grey: blocked by the mask (exactly zero weight)
    blocks = {"p2p": (slice(0, n_p), slice(0, n_p)), "p2h": (slice(0, n_p), slice(n_p, None)),
              "h2p": (slice(n_p, None), slice(0, n_p)), "h2h": (slice(n_p, None), slice(n_p, None))}
    words = {"p2p": "pathway → pathway", "p2h": "pathway → patch", "h2p": "patch → pathway",
             "h2h": "patch → patch"}
    for quadrant, (rows, cols) in blocks.items():
        block = a[rows, cols]
        x0, y0 = (0 if cols.start == 0 else 1), (0 if rows.start == 0 else 1)
        im = ax.imshow(np.ma.masked_equal(block, 0.0), cmap=cmap, norm=norm, extent=(x0, x0 + 1, y0 + 1, y0),
                       interpolation="nearest", aspect="auto")
        share = block.sum(1).mean()  # mean over the block's queries of the weight on its keys (a row sums to 1)
        ax.text(x0 + 0.5, y0 + 0.5, f"{quadrant}: {words[quadrant]}\n{100 * share:.0f} % of the rows' weight",
                ha="center", va="center", fontsize=9, bbox=dict(boxstyle="round", fc="white", ec="none", alpha=0.85))
    ax.set_xlim(0, 2)
    ax.set_ylim(2, 0)
    ax.set_aspect("equal")
    ax.axhline(1, color="white", lw=2)
    ax.axvline(1, color="white", lw=2)
    labels = [f"pathway tokens\n({n_p})", f"patch tokens\n({n_s} spots)"]
    ax.set_xticks([0.5, 1.5], labels)
    ax.set_yticks([0.5, 1.5], labels, rotation=90, va="center")
    ax.set_xlabel("keys (attended to)")
    ax.set_ylabel("queries (attending)")
    ax.set_title("attention weights, mean over heads (each row sums to 1; grey: blocked by the mask);\n"
                 "the four blocks are drawn at the same size whatever the number of spots", fontsize=10)
    fig.colorbar(im, ax=ax, shrink=0.8).set_label("attention weight (log scale)")

    # where the chosen pathway tokens look: their attention over the patches of the slide
    size = float(np.clip(6000 / max(n_s, 1), 3, 60))
    for j, p in enumerate(pathways):
        axj = fig.add_subplot(grid[1, j])
        sc = axj.scatter(coords[:, 0], coords[:, 1], c=a[p, n_p:], s=size, cmap="inferno", linewidths=0)
        axj.set_aspect("equal")
        axj.invert_yaxis()  # image coordinates
        axj.set_xticks([])
        axj.set_yticks([])
        axj.set_title(f"{_pathway_title(names[p])}:\nwhere its token looks", fontsize=9)
        bar = fig.colorbar(sc, ax=axj, shrink=0.8)
        bar.ax.tick_params(labelsize=7)
        bar.set_label("attention weight", fontsize=8)
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
