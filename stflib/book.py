"""Tables, figures and sentences for the book's results pages, computed from ``results/summary.csv``.

Every number the book prints about an ablation comes through here, so the pages cannot drift from
the results files: no figure is typed by hand.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

METRICS = {
    "pcc_hvg50": "PCC, 50 HVGs",
    "pcc_all": "PCC, all genes",
    "mse": "MSE (log1p CP10k)",
    "pathway_pcc_truth": "PCC with true pathways",
    "train_seconds": "train time (s)",
}
# the arm every other arm of an axis is compared with: the seed's default for that choice
AXIS_REFERENCES = {
    "interactions": "full",
    "losses": "mse",
    "backbones": "resnet50",
    "pathways": "init-off_aux-0",
    "log_transform": "off",
    "positional_encoding": "sinusoidal",
    "model_size": "small",
    "context": "whole-slide",
    "baselines": "stf",
}
HIGHER_IS_BETTER = {"pcc_hvg50": True, "pcc_all": True, "mse": False, "pathway_pcc_truth": True,
                    "train_seconds": False}


def repo_root(start: str | Path | None = None) -> Path:
    """The repository root: the first parent holding ``_config.yml`` and ``stflib/``."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "_config.yml").exists() and (folder / "stflib").is_dir():
            return folder
    raise FileNotFoundError(f"no stf-book repository root above {here} (looked for _config.yml and stflib/)")


def load_summary(results_dir: str | Path | None = None) -> pd.DataFrame:
    """Read ``results/summary.csv`` (one row per run), keeping only completed runs."""
    results_dir = Path(results_dir) if results_dir else repo_root() / "results"
    path = results_dir / "summary.csv"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run `python -m stflib ablate params` then `python -m stflib collect`")
    summary = pd.read_csv(path)
    if "status" in summary:
        summary = summary[summary["status"].fillna("ok") == "ok"]
    return summary


def _axis_rows(summary: pd.DataFrame, axis: str) -> pd.DataFrame:
    rows = summary[summary["axis"] == axis]
    if rows.empty:
        known = sorted(summary["axis"].unique())
        raise ValueError(f"axis {axis!r} has no completed runs in the summary; axes present: {known}")
    return rows


def arm_table(summary: pd.DataFrame, axis: str, metrics: tuple[str, ...] = tuple(METRICS)) -> pd.DataFrame:
    """Mean ± standard deviation over folds for every arm of ``axis``, best ``pcc_hvg50`` first."""
    rows = _axis_rows(summary, axis)
    metrics = tuple(m for m in metrics if m in rows and rows[m].notna().any())
    grouped = rows.groupby("arm")
    table = pd.DataFrame({"folds": grouped.size()})
    for metric in metrics:
        mean, sd = grouped[metric].mean(), grouped[metric].std(ddof=1)
        digits = 1 if metric == "train_seconds" else 3
        table[METRICS[metric]] = [
            "n/a" if np.isnan(m) else (f"{m:.{digits}f}" if np.isnan(s) else f"{m:.{digits}f} ± {s:.{digits}f}")
            for m, s in zip(mean, sd)
        ]
    order = grouped["pcc_hvg50"].mean().sort_values(ascending=False).index
    return table.loc[order].rename_axis(axis)


def paired_deltas(summary: pd.DataFrame, axis: str, reference: str, metric: str = "pcc_hvg50") -> pd.DataFrame:
    """Per arm: the fold-paired difference to ``reference`` (mean, sd over folds, folds where it wins)."""
    rows = _axis_rows(summary, axis)
    wide = rows.pivot_table(index="fold", columns="arm", values=metric)
    if reference not in wide:
        raise ValueError(f"reference arm {reference!r} not among the {axis} arms: {sorted(wide.columns)}")
    diff = wide.sub(wide[reference], axis=0).drop(columns=reference)
    better = diff > 0 if HIGHER_IS_BETTER.get(metric, True) else diff < 0
    out = pd.DataFrame({
        "mean_delta": diff.mean(), "sd_delta": diff.std(ddof=1),
        "folds_better": better.sum(), "folds": diff.notna().sum(),
    })
    return out.sort_values("mean_delta", ascending=not HIGHER_IS_BETTER.get(metric, True)).rename_axis(axis)


def plot_axis(summary: pd.DataFrame, axis: str, metric: str = "pcc_hvg50", ax=None, reference: str | None = None):
    """Seaborn figure: one dot per fold and the mean ± sd per arm, arms ordered by their mean."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    rows = _axis_rows(summary, axis)
    order = list(rows.groupby("arm")[metric].mean().sort_values(ascending=not HIGHER_IS_BETTER.get(metric, True)).index)
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 0.35 * len(order) + 1.2))
    sns.pointplot(data=rows, y="arm", x=metric, order=order, errorbar="sd", linestyle="none",
                  color="black", markers="D", ax=ax)
    sns.stripplot(data=rows, y="arm", x=metric, order=order, hue="fold", palette="Set2", size=6,
                  alpha=0.8, ax=ax, jitter=0.15)
    if reference is not None and reference in order:
        ax.axvline(rows.loc[rows["arm"] == reference, metric].mean(), color="grey", ls="--", lw=1,
                   label=f"{reference} (mean)")
    ax.set_xlabel(METRICS.get(metric, metric) + " on held-out patients (dots: folds; diamond: mean ± sd)")
    ax.set_ylabel(axis)
    ax.legend(title="fold", fontsize=8, loc="best")
    return ax


def describe_axis(summary: pd.DataFrame, axis: str, reference: str, metric: str = "pcc_hvg50") -> str:
    """A plain-language reading of an axis, written from the numbers (mean, fold-paired deltas, spread)."""
    rows = _axis_rows(summary, axis)
    means = rows.groupby("arm")[metric].mean().sort_values(ascending=not HIGHER_IS_BETTER.get(metric, True))
    deltas = paired_deltas(summary, axis, reference, metric)
    name = METRICS.get(metric, metric)
    n_folds = rows["fold"].nunique()
    lines = [f"Over {n_folds} patient folds, the best arm on {name} is `{means.index[0]}` "
             f"({means.iloc[0]:.3f}); the reference `{reference}` reaches {means.get(reference, np.nan):.3f}."]
    consistent = (deltas["folds_better"] == deltas["folds"]) | (deltas["folds_better"] == 0)
    clear = deltas[consistent & (deltas["mean_delta"].abs() > deltas["sd_delta"].fillna(0))]
    if len(clear):
        items = ", ".join(f"`{a}` ({d:+.3f} ± {s:.3f})" for a, d, s in zip(clear.index, clear["mean_delta"], clear["sd_delta"]))
        lines.append(f"Arms on the same side of the reference in every fold, by more than their fold spread: {items}.")
    else:
        lines.append("No arm is on the same side of the reference in every fold by more than its fold spread.")
    noisy = deltas[deltas["mean_delta"].abs() <= deltas["sd_delta"].fillna(np.inf)]
    if len(noisy):
        lines.append(f"{len(noisy)} of {len(deltas)} arms are within one fold-standard-deviation of the "
                     "reference: on this cohort those differences are not distinguishable from fold noise.")
    return " ".join(lines)


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


API_MODULES = ("pathways", "data", "simulate", "calibration", "spatial", "backbones", "features", "models", "losses",
               "config", "train", "metrics", "plots", "ablation", "bench", "book")


def api_table(module_name: str) -> pd.DataFrame:
    """Public functions and classes of ``stflib.<module_name>``: signature and first docstring line.

    The book's API reference is generated from the code with this, so it cannot go stale.
    """
    import importlib
    import inspect

    module = importlib.import_module(f"stflib.{module_name}")
    public = getattr(module, "__all__", None) or [n for n in vars(module) if not n.startswith("_")]
    rows = []
    for name in public:
        obj = getattr(module, name)
        if not (inspect.isfunction(obj) or inspect.isclass(obj)):
            continue
        if getattr(obj, "__module__", "").split(".")[0] != "stflib":
            continue  # re-exported third-party names (np, Path, ...)
        try:
            signature = str(inspect.signature(obj))
        except (TypeError, ValueError):
            signature = "(...)"
        doc = (inspect.getdoc(obj) or "").strip().splitlines()
        rows.append({"name": name, "kind": "class" if inspect.isclass(obj) else "function",
                     "signature": name + signature, "summary": doc[0] if doc else ""})
    return pd.DataFrame(rows, columns=["name", "kind", "signature", "summary"])


def run_dir(axis: str, arm: str, fold: int = 0, results_dir: str | Path | None = None) -> Path:
    """Folder of one run: ``results/<axis>/<arm>/fold<k>``."""
    results_dir = Path(results_dir) if results_dir else repo_root() / "results"
    return results_dir / axis / arm / f"fold{fold}"


def run_figure(axis: str, arm: str, name: str, fold: int = 0, results_dir: str | Path | None = None) -> Path:
    """A figure saved by one run (``results/<axis>/<arm>/fold<k>/<name>``); a clear error when absent."""
    path = run_dir(axis, arm, fold, results_dir) / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run `python -m stflib ablate params/{axis}` (fold {fold})")
    return path


def example_arms(summary: pd.DataFrame, axis: str, reference: str, metric: str = "pcc_hvg50",
                 figure: str = "gene_maps.png", results_dir: str | Path | None = None) -> list[str]:
    """The reference arm and the best arm of an axis whose fold-0 run saved ``figure``."""
    means = _axis_rows(summary, axis).groupby("arm")[metric].mean()
    ranked = means.sort_values(ascending=not HIGHER_IS_BETTER.get(metric, True)).index
    has_figure = [arm for arm in ranked if (run_dir(axis, arm, 0, results_dir) / figure).is_file()]
    chosen = [arm for arm in (reference, *has_figure[:1]) if arm in has_figure]
    return list(dict.fromkeys(chosen))


def overview(summary: pd.DataFrame, references: dict[str, str], metric: str = "pcc_hvg50") -> pd.DataFrame:
    """Every arm of every axis as a fold-paired difference to its axis's reference arm (long format)."""
    frames = []
    for axis, reference in references.items():
        rows = summary[summary["axis"] == axis]
        if rows.empty or reference not in set(rows["arm"]):
            continue  # an axis (or its reference arm) not run yet: nothing to compare with
        deltas = paired_deltas(summary, axis, reference, metric).reset_index().rename(columns={axis: "arm"})
        frames.append(deltas.assign(axis=axis, reference=reference))
    if not frames:
        raise ValueError(f"none of the axes {list(references)} has results in the summary")
    return pd.concat(frames, ignore_index=True)[["axis", "reference", "arm", "mean_delta", "sd_delta",
                                                 "folds_better", "folds"]]


def plot_overview(deltas: pd.DataFrame, metric: str = "pcc_hvg50"):
    """One panel per axis: each arm's mean paired difference to the reference, with its fold sd."""
    import matplotlib.pyplot as plt

    axes_names = list(dict.fromkeys(deltas["axis"]))
    heights = [max(1, (deltas["axis"] == a).sum()) for a in axes_names]
    fig, axes = plt.subplots(len(axes_names), 1, figsize=(7, 0.32 * sum(heights) + 1.0 * len(axes_names)),
                             gridspec_kw={"height_ratios": heights}, squeeze=False)
    for ax, name in zip(axes[:, 0], axes_names):
        rows = deltas[deltas["axis"] == name].sort_values("mean_delta")
        colours = ["C2" if d > 0 else "C3" for d in rows["mean_delta"]]
        ax.errorbar(rows["mean_delta"], range(len(rows)), xerr=rows["sd_delta"].fillna(0), fmt="none",
                    ecolor="grey", lw=1)
        ax.scatter(rows["mean_delta"], range(len(rows)), c=colours, zorder=3, s=22)
        ax.axvline(0, color="black", lw=0.8)
        ax.set_yticks(range(len(rows)), rows["arm"], fontsize=7)
        ax.set_title(f"{name} (vs {rows['reference'].iloc[0]})", fontsize=9, loc="left")
    axes[-1, 0].set_xlabel(f"difference in {METRICS.get(metric, metric)} to the axis's reference "
                           "(mean over folds ± sd of the paired difference)")
    fig.tight_layout()
    return fig


def figures_to_commit(summary: pd.DataFrame, results_dir: str | Path | None = None,
                      figure: str = "gene_maps.png") -> list[Path]:
    """The run figures the ablation pages show (reference and best arm of each axis, fold 0).

    Run figures are git-ignored to keep the repository small; these few are force-added.
    """
    paths = []
    for axis, reference in AXIS_REFERENCES.items():
        if axis in set(summary["axis"]):
            for arm in example_arms(summary, axis, reference, figure=figure, results_dir=results_dir):
                paths.append(run_figure(axis, arm, figure, results_dir=results_dir))
    return paths


def grid_runs(results_dir: str | Path | None = None) -> pd.DataFrame:
    """One row per run folder from its ``run.json`` (status, seconds, start and finish times).

    Runs shared between arms (identical parameters) are executed once and copied; copies are
    marked ``copied`` so the grid's cost counts each execution once.
    """
    import json

    results_dir = Path(results_dir) if results_dir else repo_root() / "results"
    rows = []
    for path in sorted(results_dir.glob("*/*/fold*/run.json")):
        info = json.loads(path.read_text())
        rows.append({"axis": info.get("axis"), "arm": info.get("arm"), "fold": info.get("fold"),
                     "status": info.get("status"), "seconds": info.get("seconds"),
                     "started": pd.to_datetime(info.get("started")), "finished": pd.to_datetime(info.get("finished")),
                     "copied": "copied_from" in info})
    return pd.DataFrame(rows, columns=["axis", "arm", "fold", "status", "seconds", "started", "finished", "copied"])


def histories(axis: str, arms: list[str], fold: int = 0, results_dir: str | Path | None = None) -> pd.DataFrame:
    """Training histories (``history.csv``: epoch, train_loss, val_loss, val_pcc) of several arms, long format."""
    frames = []
    for arm in arms:
        path = run_dir(axis, arm, fold, results_dir) / "history.csv"
        if path.is_file():
            frames.append(pd.read_csv(path).assign(arm=arm))
    if not frames:
        raise FileNotFoundError(f"no history.csv for {arms} in results/{axis}/*/fold{fold}")
    return pd.concat(frames, ignore_index=True)


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


def axis_report(axis: str, metric: str = "pcc_hvg50", results_dir: str | Path | None = None) -> None:
    """Display an ablation axis's results page body (in a notebook): the arm table, the fold-paired
    differences to the axis's reference, the figure, the generated reading and example maps."""
    import matplotlib.pyplot as plt
    from IPython.display import Image, Markdown, display

    reference = AXIS_REFERENCES[axis]
    summary = load_summary(results_dir)
    display(Markdown(f"**Mean ± standard deviation over the patient folds** (reference arm: `{reference}`)"))
    display(arm_table(summary, axis))
    display(Markdown(f"**Fold-paired difference to `{reference}`** in {METRICS.get(metric, metric)}: the folds "
                     "share their test patients, so the per-fold difference is the fair comparison; "
                     "`folds_better` counts the folds an arm wins."))
    display(paired_deltas(summary, axis, reference, metric).round(3))
    plot_axis(summary, axis, metric, reference=reference)
    plt.show()
    display(Markdown("**Reading, generated from the numbers above.** " + describe_axis(summary, axis, reference, metric)))
    arms = example_arms(summary, axis, reference, metric, results_dir=results_dir)
    if arms:
        display(Markdown("**Predicted (top) and measured (bottom) maps** of the best-predicted genes on a "
                         "held-out slide, fold 0, for " + " and ".join(f"`{a}`" for a in arms) + ":"))
        for arm in arms:
            display(Markdown(f"`{arm}`"))
            display(Image(filename=str(run_figure(axis, arm, "gene_maps.png", results_dir=results_dir))))


def loss_terms(axis: str, arms: list[str], fold: int = 0, epoch: int = 0,
               results_dir: str | Path | None = None) -> pd.DataFrame:
    """The size of each training-loss term (``train_<term>`` columns of ``history.csv``) at one epoch.

    Weights such as ``pcc_weight`` and ``pathway_loss_weight`` only mean something relative to the
    other terms: this shows the terms' magnitudes side by side.
    """
    history = histories(axis, arms, fold, results_dir)
    terms = [c for c in history.columns if c.startswith("train_") and c != "train_loss"]
    rows = history[history["epoch"] == epoch].set_index("arm")[["train_loss", *terms]]
    return rows.rename(columns=lambda c: c.removeprefix("train_"))


QUADRANTS = ("p2p", "p2h", "h2p", "h2h")


def quadrant_effects(summary: pd.DataFrame, metric: str = "pcc_hvg50", axis: str = "interactions") -> pd.DataFrame:
    """Main effect of each information flow in the 15-subset design: for every fold, the mean over the
    arms that have the quadrant minus the mean over the arms that do not; then mean and sd over folds.

    Arm names are the enabled quadrants joined by '-', with 'full' (all four) and 'bottleneck'
    (p2p, p2h, h2p) as the seed's named variants.
    """
    named = {"full": set(QUADRANTS), "bottleneck": {"p2p", "p2h", "h2p"}}
    rows = _axis_rows(summary, axis).copy()
    quads = rows["arm"].map(lambda a: named.get(a, set(a.split("-"))))
    out = []
    for q in QUADRANTS:
        has = quads.map(lambda s, q=q: q in s)
        per_fold = rows[has].groupby("fold")[metric].mean() - rows[~has].groupby("fold")[metric].mean()
        out.append({"quadrant": q, "arms_with": int(rows.loc[has, "arm"].nunique()),
                    "arms_without": int(rows.loc[~has, "arm"].nunique()),
                    "mean_effect": per_fold.mean(), "sd_over_folds": per_fold.std(ddof=1),
                    "folds_positive": int((per_fold > 0).sum()), "folds": int(per_fold.notna().sum())})
    return pd.DataFrame(out).set_index("quadrant")


def deltas_to(summary: pd.DataFrame, arms: list[tuple[str, str]], reference: tuple[str, str],
              metric: str = "pcc_hvg50") -> pd.DataFrame:
    """Fold-paired differences of runs from any axes to one reference run, e.g. every context arm
    against ``("baselines", "ridge_probe")``: rows (axis, arm), mean and sd over folds, folds won."""
    def per_fold(axis: str, arm: str) -> pd.Series:
        rows = summary[(summary["axis"] == axis) & (summary["arm"] == arm)]
        if rows.empty:
            raise ValueError(f"no completed runs for {axis}/{arm}")
        return rows.set_index("fold")[metric]

    ref = per_fold(*reference)
    out = []
    for axis, arm in arms:
        diff = (per_fold(axis, arm) - ref).dropna()
        better = diff > 0 if HIGHER_IS_BETTER.get(metric, True) else diff < 0
        out.append({"axis": axis, "arm": arm, "mean_delta": diff.mean(), "sd_delta": diff.std(ddof=1),
                    "folds_better": int(better.sum()), "folds": int(len(diff))})
    return pd.DataFrame(out).set_index(["axis", "arm"])
