"""The book's result figures: an axis's runs, every axis's paired differences, histories, spot maps.

Figures of one run (learning curves, predicted maps, attention) live in :mod:`stflib.plots`; these
show the grid. Each function returns its matplotlib figure or axes.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from stflib.grid.axes import axis_references
from stflib.report.results import axis_rows, metric_info, run_dir, run_figure


def plot_axis(summary: pd.DataFrame, axis: str, metric: str = "pcc_hvg50", ax=None, reference: str | None = None):
    """Seaborn figure: one dot per fold and the mean ± sd per arm, arms ordered by their mean."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    from stflib.report.tables import distinct_axis_rows

    rows = distinct_axis_rows(summary, axis)  # each distinct model once (an alias arm's runs left out)
    order = list(rows.groupby("arm")[metric].mean().sort_values(ascending=not metric_info(metric).higher_is_better).index)
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 0.35 * len(order) + 1.2))
    sns.pointplot(data=rows, y="arm", x=metric, order=order, errorbar="sd", linestyle="none",
                  color="black", markers="D", ax=ax)
    sns.stripplot(data=rows, y="arm", x=metric, order=order, hue="fold", palette="Set2", size=6,
                  alpha=0.8, ax=ax, jitter=0.15)
    if reference is not None and reference in order:
        ax.axvline(rows.loc[rows["arm"] == reference, metric].mean(), color="grey", ls="--", lw=1,
                   label=f"{reference} (mean)")
    ax.set_xlabel(metric_info(metric).label + " on held-out patients (dots: folds; diamond: mean ± sd)")
    ax.set_ylabel(axis)
    ax.legend(title="fold", fontsize=8, loc="best")
    return ax


def plot_overview(deltas: pd.DataFrame, metric: str = "pcc_hvg50"):
    """One panel per axis: each arm's mean paired difference to the reference with its 95 % interval;
    filled markers are findings (Holm-adjusted p < 0.05 across the axis), open ones are not."""
    import matplotlib.pyplot as plt

    axes_names = list(dict.fromkeys(deltas["axis"]))
    heights = [max(1, (deltas["axis"] == a).sum()) for a in axes_names]
    fig, axes = plt.subplots(len(axes_names), 1, figsize=(7, 0.32 * sum(heights) + 1.0 * len(axes_names)),
                             gridspec_kw={"height_ratios": heights}, squeeze=False)
    for ax, name in zip(axes[:, 0], axes_names):
        rows = deltas[deltas["axis"] == name].sort_values("mean_delta")
        y = np.arange(len(rows))
        lo = (rows["mean_delta"] - rows["ci_low"]).fillna(0).clip(lower=0)
        hi = (rows["ci_high"] - rows["mean_delta"]).fillna(0).clip(lower=0)
        ax.errorbar(rows["mean_delta"], y, xerr=[lo, hi], fmt="none", ecolor="grey", lw=1)
        colours = np.where(rows["mean_delta"] > 0, "C2", "C3")
        found = rows["finding"].to_numpy(bool)
        ax.scatter(rows["mean_delta"][found], y[found], c=colours[found], zorder=3, s=26)
        ax.scatter(rows["mean_delta"][~found], y[~found], facecolors="white", edgecolors=colours[~found], zorder=3, s=26)
        ax.axvline(0, color="black", lw=0.8)
        ax.set_yticks(y, rows["arm"], fontsize=7)
        ax.set_title(f"{name} (vs {rows['reference'].iloc[0]})", fontsize=9, loc="left")
    axes[-1, 0].set_xlabel(f"difference in {metric_info(metric).label} to the axis's reference: mean over "
                           "(fold, seed) pairs, 95 % t interval; filled = finding after Holm")
    fig.tight_layout()
    return fig


def plot_histories(history: pd.DataFrame):
    """Training loss and validation PCC (50 HVGs) per epoch, one line per arm."""
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_pcc) = plt.subplots(1, 2, figsize=(10, 3.4))
    for arm, rows in history.groupby("arm", sort=False):
        ax_loss.plot(rows["epoch"], rows["train_loss"], label=arm)
        ax_pcc.plot(rows["epoch"], rows["val_pcc"], label=arm)
    ax_loss.set_yscale("log")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("training loss (same loss for every arm)")
    ax_pcc.set_xlabel("epoch")
    ax_pcc.set_ylabel("validation PCC, 50 HVGs")
    ax_pcc.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


def spot_maps(coords: np.ndarray, fields: dict[str, np.ndarray], ncols: int = 4, cmap: str = "viridis",
              size: float = 7.0, categorical: bool = False):
    """A grid of spot maps of one slide: one panel per named per-spot field (image coordinates)."""
    import matplotlib.pyplot as plt

    n = len(fields)
    ncols = min(ncols, n)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.7 * ncols, 2.6 * nrows), squeeze=False)
    for ax, (title, values) in zip(axes.ravel(), fields.items()):
        values = np.asarray(values)
        if categorical or values.dtype.kind in "OUS":
            labels, codes = np.unique(values, return_inverse=True)
            sc = ax.scatter(coords[:, 0], coords[:, 1], c=codes, s=size, cmap="tab10", vmin=0, vmax=9, linewidths=0)
            handles = [plt.Line2D([], [], ls="", marker="o", color=sc.cmap(sc.norm(i)), label=str(lab))
                       for i, lab in enumerate(labels)]
            ax.legend(handles=handles, fontsize=6, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
        else:
            sc = ax.scatter(coords[:, 0], coords[:, 1], c=values, s=size, cmap=cmap, linewidths=0)
            fig.colorbar(sc, ax=ax, shrink=0.7)
        ax.set_title(title, fontsize=8)
        ax.set_aspect("equal")
        ax.invert_yaxis()
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    fig.tight_layout()
    return fig


def example_arms(summary: pd.DataFrame, axis: str, reference: str, metric: str = "pcc_hvg50",
                 figure: str = "gene_maps.png", results_dir: str | Path | None = None) -> list[str]:
    """The reference arm and the best arm of an axis whose fold-0 run saved ``figure``."""
    means = axis_rows(summary, axis).groupby("arm")[metric].mean()
    ranked = means.sort_values(ascending=not metric_info(metric).higher_is_better).index
    has_figure = [arm for arm in ranked if (run_dir(axis, arm, 0, results_dir) / figure).is_file()]
    chosen = [arm for arm in (reference, *has_figure[:1]) if arm in has_figure]
    return list(dict.fromkeys(chosen))


def figures_to_commit(summary: pd.DataFrame, results_dir: str | Path | None = None,
                      figure: str = "gene_maps.png") -> list[Path]:
    """The run figures the ablation pages show (reference and best arm of each axis, fold 0).

    Run figures are git-ignored to keep the repository small; these few are force-added.
    """
    paths = []
    for axis, reference in axis_references().items():
        if axis in set(summary["axis"]):
            for arm in example_arms(summary, axis, reference, figure=figure, results_dir=results_dir):
                paths.append(run_figure(axis, arm, figure, results_dir=results_dir))
    return paths


def plot_context(intervals: pd.DataFrame, ceilings: pd.DataFrame | None = None, oracle: float | None = None,
                 metric: str = "pcc_hvg50"):
    """The context page's figure: every arm's mean ``metric`` with its 95 % interval over its held-out
    patient folds (each fold the mean of its seeds' runs; :func:`stflib.report.context.arm_intervals`), grouped
    by the neighbourhood it reads, between the ceilings.

    ``intervals``: :func:`stflib.report.context.arm_intervals` (arms with no runs are left out);
    ``ceilings``: :func:`stflib.report.context.ceiling_table` (index: the same neighbourhood names),
    drawn as a solid segment over each group (latent ceiling) and a dotted one (with the true context
    fields); ``oracle``: one line across the figure (mean over the runs).
    """
    import matplotlib.pyplot as plt

    drawn = intervals[intervals["runs"] > 0]
    if drawn.empty:
        raise ValueError("plot_context: no arm has a completed run; nothing to draw")
    groups = list(dict.fromkeys(intervals["neighbourhood"]))  # keep every neighbourhood on the axis
    models = list(dict.fromkeys(intervals["model"]))
    offsets = dict(zip(models, np.linspace(-0.3, 0.3, len(models)) if len(models) > 1 else [0.0]))
    markers = dict(zip(models, "DosP^v<>"))
    fig, ax = plt.subplots(figsize=(8, 5.6))
    for model in models:
        rows = drawn[drawn["model"] == model]
        if rows.empty:
            continue
        x = np.array([groups.index(g) for g in rows["neighbourhood"]]) + offsets[model]
        lo = (rows["mean"] - rows["ci_low"]).fillna(0).clip(lower=0).to_numpy()  # no interval: a bare point
        hi = (rows["ci_high"] - rows["mean"]).fillna(0).clip(lower=0).to_numpy()
        ax.errorbar(x, rows["mean"].to_numpy(), yerr=[lo, hi], fmt=markers[model], ms=7, capsize=3, lw=1.2,
                    color=f"C{models.index(model)}", label=model)
    tops = [drawn["ci_high"].max(), drawn["mean"].max()]
    if ceilings is not None:
        for i, g in enumerate(groups):
            if g not in ceilings.index:
                continue
            values = {}
            for column, style, name in (("latent", "-", "latent ceiling: ridge on the noise-free latent, same neighbourhood"),
                                        ("latent_true_context", ":", "latent ceiling + the true context fields")):
                value = float(ceilings.loc[g, column])
                if np.isfinite(value):
                    first = not any(line.get_label() == name for line in ax.collections)
                    ax.hlines(value, i - 0.45, i + 0.45, colors="0.35", linestyles=style, lw=2, label=name if first else None)
                    values[column] = value
            if values:
                text = " | ".join(f"{'latent' if c == 'latent' else '+ context'} {v:.3f}" for c, v in values.items())
                ax.annotate(text, (i, max(values.values())), xytext=(0, 3), textcoords="offset points", ha="center",
                            fontsize=7, color="0.3")
                tops.append(max(values.values()))
    if oracle is not None and np.isfinite(oracle):
        ax.axhline(oracle, color="black", ls="--", lw=1.2, label=f"oracle ceiling (mean over the runs): {oracle:.3f}")
        tops.append(oracle)
    ax.set_xticks(range(len(groups)), [g.replace(" (", "\n(") for g in groups])
    ax.set_xlim(-0.6, len(groups) - 0.4)
    ax.set_ylim(min(0.0, float(drawn["ci_low"].min()) if drawn["ci_low"].notna().any() else 0.0),
                np.nanmax(tops) * 1.08 + 0.02)
    ax.set_xlabel("neighbourhood the arm reads besides its own spot")
    ax.set_ylabel(f"{metric_info(metric).label}, held-out patients\n(mean over folds, 95 % t interval)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, frameon=False)
    fig.tight_layout()
    return fig
