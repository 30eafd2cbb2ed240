"""Tables, figures and sentences for the book's results pages, computed from ``results/summary.csv``.

Every number the book prints about an ablation comes through here, so the pages cannot drift from
the results files: no figure is typed by hand.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from stflib import stats

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
    return with_design_columns(summary)


DEFAULT_WORLD = "default"
# a pair is one (fold, seed): the arm and its reference saw the same test patients and the same seed
PAIR_COLUMNS = ["fold", "seed"]


def with_design_columns(summary: pd.DataFrame) -> pd.DataFrame:
    """Fill the design columns older summaries lack: ``seed`` 0 and ``world`` 'default'.

    Runs of the first grid were one seed (0) on the default simulated world; their rows keep
    pairing with the seed-0 runs of later grids.
    """
    summary = summary.copy()
    summary["seed"] = pd.to_numeric(summary["seed"], errors="coerce").fillna(0).astype(int) if "seed" in summary else 0
    summary["world"] = summary["world"].fillna(DEFAULT_WORLD).astype(str) if "world" in summary else DEFAULT_WORLD
    return summary


def _axis_rows(summary: pd.DataFrame, axis: str, world: str | None = DEFAULT_WORLD) -> pd.DataFrame:
    """The runs of one axis (of one simulator world; ``world=None``: all worlds)."""
    summary = with_design_columns(summary)
    if world is not None:
        summary = summary[summary["world"] == world]
    rows = summary[summary["axis"] == axis]
    if rows.empty:
        known = sorted(summary["axis"].unique())
        raise ValueError(f"axis {axis!r} has no completed runs in the summary; axes present: {known}")
    return rows


def arm_table(summary: pd.DataFrame, axis: str, metrics: tuple[str, ...] = tuple(METRICS)) -> pd.DataFrame:
    """Mean ± standard deviation over runs (folds x seeds) for every arm of ``axis``, best
    ``pcc_hvg50`` first, with the runs' flags (:func:`run_flags`)."""
    rows = _axis_rows(summary, axis)
    metrics = tuple(m for m in metrics if m in rows and rows[m].notna().any())
    grouped = rows.groupby("arm")
    table = pd.DataFrame({"runs": grouped.size()})
    for metric in metrics:
        mean, sd = grouped[metric].mean(), grouped[metric].std(ddof=1)
        digits = 1 if metric == "train_seconds" else 3
        table[METRICS[metric]] = [
            "n/a" if np.isnan(m) else (f"{m:.{digits}f}" if np.isnan(s) else f"{m:.{digits}f} ± {s:.{digits}f}")
            for m, s in zip(mean, sd)
        ]
    table["flags"] = arm_flags(summary, axis)
    order = grouped["pcc_hvg50"].mean().sort_values(ascending=False).index
    return table.loc[order].rename_axis(axis)


def _per_pair(rows: pd.DataFrame, metric: str) -> pd.DataFrame:
    """One row per pair (fold, seed), one column per arm."""
    return rows.pivot_table(index=PAIR_COLUMNS, columns="arm", values=metric)


def paired_deltas(summary: pd.DataFrame, axis: str, reference: str, metric: str = "pcc_hvg50",
                  world: str = DEFAULT_WORLD) -> pd.DataFrame:
    """Per arm of ``axis``: the (fold, seed)-paired difference to ``reference`` in ``metric``.

    Columns (see :mod:`stflib.stats`): ``pairs``, ``mean_delta`` with its 95 % t interval
    (``ci_low``, ``ci_high``), the paired t-test's ``p_value`` and its Holm-adjusted ``p_holm``
    across the arms of the axis, ``wins`` (pairs where the arm is better) and ``finding``
    (Holm-adjusted p < 0.05). Differences are arm minus reference whichever way the metric points;
    ``wins`` follows the metric's direction.
    """
    rows = _axis_rows(summary, axis, world)
    wide = _per_pair(rows, metric)
    if reference not in wide:
        raise ValueError(f"reference arm {reference!r} not among the {axis} arms: {sorted(wide.columns)}")
    out = stats.paired_effects(wide, reference, HIGHER_IS_BETTER.get(metric, True))
    return out.sort_values("mean_delta", ascending=not HIGHER_IS_BETTER.get(metric, True)).rename_axis(axis)


def _interval(row) -> str:
    if np.isnan(row["ci_low"]):
        return f"{row['mean_delta']:+.3f} (no interval: {int(row['pairs'])} pair{'s' if row['pairs'] != 1 else ''})"
    return f"{row['mean_delta']:+.3f} [{row['ci_low']:+.3f}, {row['ci_high']:+.3f}]"


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
    """A plain-language reading of an axis, written from the numbers: the best arm, and which paired
    differences to the reference are findings (Holm-adjusted p < 0.05 across the axis's arms)."""
    rows = _axis_rows(summary, axis)
    means = rows.groupby("arm")[metric].mean().sort_values(ascending=not HIGHER_IS_BETTER.get(metric, True))
    deltas = paired_deltas(summary, axis, reference, metric)
    name = METRICS.get(metric, metric)
    n_pairs = int(deltas["pairs"].max()) if len(deltas) else 0
    lines = [f"Over {n_pairs} (fold, seed) pairs ({rows['fold'].nunique()} patient folds x "
             f"{rows['seed'].nunique()} seed{'s' if rows['seed'].nunique() != 1 else ''}), the best arm on {name} is "
             f"`{means.index[0]}` ({means.iloc[0]:.3f}); the reference `{reference}` reaches "
             f"{means.get(reference, np.nan):.3f}."]
    found = deltas[deltas["finding"]]
    if len(found):
        items = ", ".join(f"`{a}` ({_interval(r)}, Holm p = {r['p_holm']:.3g})" for a, r in found.iterrows())
        lines.append(f"Differences to the reference that are findings (Holm-adjusted p < 0.05 across the "
                     f"{len(deltas)} arms): {items}.")
    else:
        lines.append(f"None of the {len(deltas)} arms differs from the reference after the Holm correction "
                     "(adjusted p < 0.05): on this grid no difference on this axis is a finding.")
    return " ".join(lines)


def takeaways(summary: pd.DataFrame, axis: str, reference: str | None = None, metric: str = "pcc_hvg50") -> str:
    """The "Key takeaways" bullets of an axis page, written from its own paired intervals."""
    reference = reference or AXIS_REFERENCES[axis]
    deltas = paired_deltas(summary, axis, reference, metric)
    name = METRICS.get(metric, metric)
    up = HIGHER_IS_BETTER.get(metric, True)
    better = deltas[deltas["finding"] & ((deltas["mean_delta"] > 0) == up)]
    worse = deltas[deltas["finding"] & ((deltas["mean_delta"] > 0) != up)]
    null = deltas[~deltas["finding"]]
    bullets = []
    for label, found in (("better than", better), ("worse than", worse)):
        for arm, r in found.iterrows():
            bullets.append(f"`{arm}` is {label} `{reference}` on {name}: {_interval(r)} "
                           f"(95 % interval; Holm-adjusted p = {r['p_holm']:.3g}; wins {r['wins']} of {r['pairs']} pairs).")
    if len(null):
        widest = null["ci_high"].sub(null["ci_low"]).max()
        span = f" (95 % intervals up to {widest:.3f} wide)" if np.isfinite(widest) else ""
        bullets.append(f"No measurable difference from `{reference}`{span}: "
                       + ", ".join(f"`{a}`" for a in null.index) + ". With "
                       f"{int(deltas['pairs'].max())} pairs, smaller effects than these intervals cannot be told apart.")
    if not len(deltas):
        bullets.append(f"The axis has only its reference arm `{reference}`: nothing to compare.")
    flags = arm_flags(summary, axis)
    flagged = flags[flags.str.contains("at epoch cap|below", regex=True)]
    if len(flagged):
        bullets.append("Read with care: " + "; ".join(f"`{a}`: {f}" for a, f in flagged.items()) + ".")
    bullets.append(simulation_note(_axis_rows(summary, axis, world=None)))
    return "\n".join(f"- {b}" for b in bullets)


def simulation_note(summary: pd.DataFrame) -> str:
    """One sentence saying which data the runs used: the simulated world(s) or a real data folder
    (from the runs' ``data_dir`` and ``world`` columns; no ``data_dir`` means the simulated cohort)."""
    summary = with_design_columns(summary)
    data_dir = summary["data_dir"] if "data_dir" in summary else pd.Series(np.nan, index=summary.index, dtype=object)
    real = data_dir.notna() & ~data_dir.astype(str).isin(["", "None", "nan"])
    worlds = sorted(summary.loc[~real, "world"].unique())
    parts = []
    if worlds:
        parts.append(f"**These results are simulated.** {int((~real).sum())} of the {len(summary)} runs shown here "
                     f"use the simulated cohort (world{'s' if len(worlds) > 1 else ''} "
                     f"{', '.join(f'`{w}`' for w in worlds)}), not real patients: they show what a design choice "
                     "can exploit in a cohort whose structure we built, not what it does on HEST-1k.")
    if real.any():
        parts.append(f"{int(real.sum())} runs read real data from "
                     + ", ".join(f"`{d}`" for d in sorted(data_dir[real].astype(str).unique())) + ".")
    return " ".join(parts)


# the simple models a trained STF should at least match on its own training slides
SIMPLE_MODELS = (("baselines", "mlp"), ("baselines", "ridge_probe"))


def run_flags(summary: pd.DataFrame) -> pd.DataFrame:
    """Per run: ``at_cap`` (training ended at its epoch/step cap rather than by early stopping) and
    ``fit_below_simple`` (training fit below both simple models of :data:`SIMPLE_MODELS` on the same
    world, fold and seed: lower ``train_pcc_hvg50`` or higher ``train_mse_ratio``).

    A flag is NaN where the summary does not record what it needs (older grids).
    """
    summary = with_design_columns(summary)
    flags = pd.DataFrame(index=summary.index, columns=["at_cap", "fit_below_simple"], dtype=object)
    caps = [("epochs_run", "epochs_max"), ("steps_run", "max_steps")]
    cap_known, cap_hit = pd.Series(False, index=summary.index), pd.Series(False, index=summary.index)
    for done, cap in caps:
        if done in summary and cap in summary:
            ran, limit = pd.to_numeric(summary[done], errors="coerce"), pd.to_numeric(summary[cap], errors="coerce")
            known = ran.notna() & (limit > 0)
            cap_known |= known
            cap_hit |= known & (ran >= limit)
    flags["at_cap"] = cap_hit.astype(object).where(cap_known)
    keys = ["world", *PAIR_COLUMNS]
    simple = pd.concat([summary[(summary["axis"] == a) & (summary["arm"] == m)] for a, m in SIMPLE_MODELS])
    fit_known, fit_below = pd.Series(False, index=summary.index), pd.Series(False, index=summary.index)
    for column, lower_is_worse in (("train_pcc_hvg50", True), ("train_mse_ratio", False)):
        if column not in summary or summary[column].isna().all() or simple.empty:
            continue
        bar = simple.groupby(keys)[column].agg("min" if lower_is_worse else "max").rename("bar")
        joined = summary[keys + [column]].join(bar, on=keys)
        known = joined[column].notna() & joined["bar"].notna()
        worse = joined[column] < joined["bar"] if lower_is_worse else joined[column] > joined["bar"]
        fit_known |= known
        fit_below |= known & worse
    below = fit_below.astype(object).where(fit_known)
    is_simple = pd.Series(False, index=summary.index)
    for a, m in SIMPLE_MODELS:
        is_simple |= (summary["axis"] == a) & (summary["arm"] == m)
    below[is_simple] = np.nan  # they define the bar
    flags["fit_below_simple"] = below
    return flags


def arm_flags(summary: pd.DataFrame, axis: str) -> pd.Series:
    """Per arm of ``axis``: its runs' flags in words ("2/6 at epoch cap; fit not recorded")."""
    rows = _axis_rows(summary, axis)
    flags = run_flags(summary).loc[rows.index]
    out = {}
    for arm, idx in rows.groupby("arm").groups.items():
        f, words = flags.loc[idx], []
        n = len(f)
        cap = f["at_cap"].dropna()
        if cap.empty:
            words.append("cap not recorded")
        elif cap.astype(bool).any():
            words.append(f"{int(cap.astype(bool).sum())}/{n} at epoch cap")
        fit = f["fit_below_simple"].dropna()
        if any((axis, arm) == s for s in SIMPLE_MODELS):
            pass
        elif fit.empty:
            words.append("fit not recorded")
        elif fit.astype(bool).any():
            words.append(f"{int(fit.astype(bool).sum())}/{n} fit below simple models")
        out[arm] = "; ".join(words) if words else "none"
    return pd.Series(out, name="flags")


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


API_MODULES = ("pathways", "data", "simulate", "sim.calibration", "spatial", "backbones", "features", "models", "losses",
               "config", "train", "metrics", "plots", "ablation", "bench", "stats", "book")


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


def overview(summary: pd.DataFrame, references: dict[str, str], metric: str = "pcc_hvg50",
             world: str = DEFAULT_WORLD) -> pd.DataFrame:
    """Every arm of every axis as a paired difference to its axis's reference arm (long format,
    the columns of :func:`paired_deltas`; Holm families are the axes)."""
    summary = with_design_columns(summary)
    summary = summary[summary["world"] == world]
    frames = []
    for axis, reference in references.items():
        rows = summary[summary["axis"] == axis]
        if rows.empty or reference not in set(rows["arm"]):
            continue  # an axis (or its reference arm) not run yet: nothing to compare with
        deltas = paired_deltas(summary, axis, reference, metric, world).reset_index().rename(columns={axis: "arm"})
        frames.append(deltas.assign(axis=axis, reference=reference))
    if not frames:
        raise ValueError(f"none of the axes {list(references)} has results in the summary (world {world!r})")
    return pd.concat(frames, ignore_index=True)[["axis", "reference", "arm", *stats.EFFECT_COLUMNS]]


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
    axes[-1, 0].set_xlabel(f"difference in {METRICS.get(metric, metric)} to the axis's reference: mean over "
                           "(fold, seed) pairs, 95 % t interval; filled = finding after Holm")
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
    """One row per run folder from its ``run.json`` (status, seconds, start and finish times, the
    library version that produced it).

    Runs shared between arms (identical parameters) are executed once and copied; copies are
    marked ``copied`` so the grid's cost counts each execution once.
    """
    import json

    results_dir = Path(results_dir) if results_dir else repo_root() / "results"
    rows = []
    for path in sorted(results_dir.glob("*/*/fold*/run.json")):
        info = json.loads(path.read_text())
        params = info.get("params") or {}
        rows.append({"axis": info.get("axis"), "arm": info.get("arm"), "fold": info.get("fold"),
                     "seed": info.get("seed", params.get("seed", 0)),
                     "world": info.get("world", params.get("world", DEFAULT_WORLD)),
                     "status": info.get("status"), "seconds": info.get("seconds"),
                     "started": pd.to_datetime(info.get("started")), "finished": pd.to_datetime(info.get("finished")),
                     "copied": "copied_from" in info, "code_version": info.get("code_version"),
                     "folder": str(path.parent.relative_to(results_dir))})
    return pd.DataFrame(rows, columns=["axis", "arm", "fold", "seed", "world", "status", "seconds", "started",
                                       "finished", "copied", "code_version", "folder"])


def grid_cost(runs: pd.DataFrame) -> pd.DataFrame:
    """The grid's cost per axis from :func:`grid_runs`: run folders, executions (copies of a shared
    run count once), and the executions' summed and median durations."""
    if runs.empty:
        raise ValueError("no runs under results/: run `python -m stflib ablate params` first")
    executed = runs[~runs["copied"].astype(bool)]
    table = pd.DataFrame({
        "run folders": runs.groupby("axis").size(),
        "executions": executed.groupby("axis").size(),
        "median minutes per execution": executed.groupby("axis")["seconds"].median() / 60,
        "executed hours": executed.groupby("axis")["seconds"].sum() / 3600,
    }).fillna(0)
    table.loc["all axes"] = [len(runs), len(executed), executed["seconds"].median() / 60, executed["seconds"].sum() / 3600]
    return table.astype({"run folders": int, "executions": int}).round(2)


def stale_runs(runs: pd.DataFrame, current: str | None = None) -> pd.DataFrame:
    """The runs whose ``code_version`` (in ``run.json``) differs from the current library's
    (:func:`stflib.ablation.code_version`): their numbers came from an earlier version of the code."""
    if current is None:
        from stflib.ablation import code_version

        current = code_version()
    return runs[runs["code_version"].astype(str) != current]


def stale_banner(runs: pd.DataFrame | None = None, current: str | None = None) -> str:
    """A sentence saying how many committed runs an earlier library version produced, and the command
    that re-runs exactly those (the runner re-runs a run whose code version changed)."""
    runs = grid_runs() if runs is None else runs
    if runs.empty:
        return "No runs are committed under `results/` yet: `python -m stflib ablate params` runs the grid."
    stale = stale_runs(runs, current)
    if stale.empty:
        return f"All {len(runs)} committed runs were produced by the current version of the library."
    axes = sorted(stale["axis"].dropna().unique())
    return (f"**Stale results**: {len(stale)} of the {len(runs)} committed runs "
            f"({len(axes)} ax{'es' if len(axes) != 1 else 'is'}: {', '.join(axes)}) were produced by an earlier "
            "version of the library than the one this book was built with, so their numbers may differ from "
            "what the current code gives. `python -m stflib ablate params && python -m stflib collect` re-runs "
            "them (only the stale ones; finished current runs are kept).")


def page_banner(axis: str | None = None, results_dir: str | Path | None = None) -> None:
    """Display the top-of-page notes of a results page (of one ``axis``, or of the whole grid):
    simulated or real data, and runs made by an earlier library version."""
    from IPython.display import Markdown, display

    summary, runs = load_summary(results_dir), grid_runs(results_dir)
    if axis is not None:
        summary, runs = _axis_rows(summary, axis, world=None), runs[runs["axis"] == axis]
    display(Markdown(simulation_note(summary) + "\n\n" + stale_banner(runs)))


def table_csv(table: pd.DataFrame, name: str, static_dir: str | Path | None = None) -> Path:
    """Write a results table to ``_static/tables/<name>.csv`` at the book's root; Jupyter Book copies
    ``_static/`` into the built site, so the page can link to it (:func:`csv_link`)."""
    if not name or any(c in name for c in "/\\ ") or name.startswith("."):
        raise ValueError(f"table name {name!r}: use a plain file stem such as 'backbones-deltas'")
    folder = Path(static_dir) if static_dir else repo_root() / "_static" / "tables"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.csv"
    table.to_csv(path, float_format="%.6g")
    return path


def csv_link(table: pd.DataFrame, name: str, label: str = "Download this table as CSV") -> str:
    """Write the table (:func:`table_csv`) and return a Markdown link to it relative to the page
    being executed (Jupyter Book runs each page in its own folder, which is where its HTML lands)."""
    import os

    path = table_csv(table, name)
    return f"[{label}]({Path(os.path.relpath(path, Path.cwd())).as_posix()})"


def show_table(table: pd.DataFrame, name: str) -> None:
    """Display a table and a link to its CSV download."""
    from IPython.display import Markdown, display

    display(table)
    display(Markdown(csv_link(table, name)))


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
    """Display an ablation axis's results page body (in a notebook): the arm table with its flags, the
    paired differences to the axis's reference with intervals, the figure, the generated reading and
    example maps. Both tables are downloadable as CSV."""
    import matplotlib.pyplot as plt
    from IPython.display import Image, Markdown, display

    reference = AXIS_REFERENCES[axis]
    summary = load_summary(results_dir)
    display(Markdown(f"**Mean ± standard deviation over the runs (patient folds x seeds)** (reference arm: "
                     f"`{reference}`). `flags`: runs that ended at their epoch cap instead of stopping early, "
                     "and runs whose fit on their own training slides is below both simple models "
                     "(MLP and ridge probe) of the same fold and seed."))
    show_table(arm_table(summary, axis), f"{axis}-arms")
    display(Markdown(f"**Paired difference to `{reference}`** in {METRICS.get(metric, metric)} (arm minus "
                     "reference): a pair is one patient fold and seed, so both saw the same test patients. "
                     "`ci_low`/`ci_high`: 95 % t interval of the mean difference; `p_holm`: paired t-test "
                     "p-value, Holm-adjusted across the arms of this axis; `finding`: `p_holm` < 0.05; "
                     "`wins`: pairs the arm is better in."))
    show_table(paired_deltas(summary, axis, reference, metric).round(4), f"{axis}-paired-differences")
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


def show_takeaways(axis: str, metric: str = "pcc_hvg50", results_dir: str | Path | None = None) -> None:
    """Display an axis page's "Key takeaways", generated by :func:`takeaways` from its intervals."""
    from IPython.display import Markdown, display

    display(Markdown(takeaways(load_summary(results_dir), axis, metric=metric)))


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


def quadrant_effects(summary: pd.DataFrame, metric: str = "pcc_hvg50", axis: str = "interactions",
                     world: str = DEFAULT_WORLD) -> pd.DataFrame:
    """Main effect of each information flow in the 15-subset factorial design: for every (fold, seed)
    pair, the mean over the arms that have the quadrant minus the mean over the arms that do not;
    then the mean over pairs with its 95 % t interval, Holm-adjusted p-value across the four flows,
    and the pairs where the effect is positive (:func:`stflib.stats.factorial_effects`).

    Arm names are the enabled quadrants joined by '-', with 'full' (all four) and 'bottleneck'
    (p2p, p2h, h2p) as the seed's named variants.
    """
    named = {"full": set(QUADRANTS), "bottleneck": {"p2p", "p2h", "h2p"}}
    rows = _axis_rows(summary, axis, world)
    quads = rows["arm"].map(lambda a: named.get(a, set(a.split("-"))))
    factors = {q: quads.map(lambda s, q=q: q in s) for q in QUADRANTS}
    return stats.factorial_effects(rows, factors, PAIR_COLUMNS, metric).rename_axis("quadrant")


def deltas_to(summary: pd.DataFrame, arms: list[tuple[str, str]], reference: tuple[str, str],
              metric: str = "pcc_hvg50", world: str = DEFAULT_WORLD) -> pd.DataFrame:
    """Paired differences of runs from any axes to one reference run, e.g. every context arm against
    ``("baselines", "ridge_probe")``: rows (axis, arm) with the columns of :func:`paired_deltas`
    (the Holm family is the arms listed)."""
    summary = with_design_columns(summary)
    summary = summary[summary["world"] == world]

    def per_pair(axis: str, arm: str) -> pd.Series:
        rows = summary[(summary["axis"] == axis) & (summary["arm"] == arm)]
        if rows.empty:
            raise ValueError(f"no completed runs for {axis}/{arm} (world {world!r})")
        return rows.set_index(PAIR_COLUMNS)[metric]

    columns = {"/".join(reference): per_pair(*reference)}
    for axis, arm in arms:
        columns[f"{axis}/{arm}"] = per_pair(axis, arm)
    wide = pd.DataFrame(columns)
    out = stats.paired_effects(wide, "/".join(reference), HIGHER_IS_BETTER.get(metric, True))
    out.index = pd.MultiIndex.from_tuples([tuple(i.split("/", 1)) for i in out.index], names=["axis", "arm"])
    return out


def world_robustness(summary: pd.DataFrame, references: dict[str, str] | None = None,
                     metric: str = "pcc_hvg50") -> pd.DataFrame:
    """For each finding of the default world, in which other worlds it holds.

    A finding holds in a world when that world's paired difference to the same reference has the
    same sign and its 95 % interval excludes zero (the Holm family there is the arms re-run in that
    world). Worlds where the arm or its reference was not run are listed as ``not run``.
    """
    references = references or AXIS_REFERENCES
    summary = with_design_columns(summary)
    findings = overview(summary, references, metric)
    findings = findings[findings["finding"]]
    worlds = [w for w in sorted(summary["world"].unique()) if w != DEFAULT_WORLD]
    rows = []
    for _, f in findings.iterrows():
        holds, fails, missing = [], [], []
        for world in worlds:
            there = summary[(summary["world"] == world) & (summary["axis"] == f["axis"])]
            if not {f["arm"], f["reference"]} <= set(there["arm"]):
                missing.append(world)
                continue
            d = paired_deltas(summary, f["axis"], f["reference"], metric, world).loc[f["arm"]]
            same_side = np.sign(d["mean_delta"]) == np.sign(f["mean_delta"])
            excludes_zero = d["ci_low"] > 0 or d["ci_high"] < 0
            (holds if same_side and excludes_zero else fails).append(world)
        rows.append({"axis": f["axis"], "arm": f["arm"], "reference": f["reference"],
                     "effect (default world)": _interval(f), "holds in": ", ".join(holds) or "-",
                     "does not hold in": ", ".join(fails) or "-", "not run in": ", ".join(missing) or "-"})
    return pd.DataFrame(rows, columns=["axis", "arm", "reference", "effect (default world)", "holds in",
                                       "does not hold in", "not run in"])


def findings_text(summary: pd.DataFrame, references: dict[str, str] | None = None,
                  metric: str = "pcc_hvg50") -> str:
    """The findings page's body in Markdown: one sentence per finding (effect, interval, worlds where
    it holds), then the arms that made no measurable difference, axis by axis."""
    references = references or AXIS_REFERENCES
    deltas = overview(summary, references, metric)
    robust = world_robustness(summary, references, metric).set_index(["axis", "arm"])
    name = METRICS.get(metric, metric)
    up = HIGHER_IS_BETTER.get(metric, True)
    n_pairs = int(deltas["pairs"].max())
    lines = [f"Each comparison pairs an arm with its axis's reference on the same patient fold and seed "
             f"(up to {n_pairs} pairs per arm). A difference is a finding when its paired t-test p-value, "
             f"Holm-adjusted across the arms of its axis, is below 0.05; intervals are unadjusted 95 % t intervals "
             f"of the mean difference in {name}.", "", "**Findings**", ""]
    found = deltas[deltas["finding"]].sort_values(["axis", "mean_delta"], ascending=[True, not up])
    for _, f in found.iterrows():
        direction = "better" if (f["mean_delta"] > 0) == up else "worse"
        worlds = ""
        if (f["axis"], f["arm"]) in robust.index:
            r = robust.loc[(f["axis"], f["arm"])]
            worlds = (f" Holds in the worlds: {r['holds in']}; does not hold in: {r['does not hold in']}; "
                      f"not run in: {r['not run in']}.")
        lines.append(f"- **{f['axis']}**: `{f['arm']}` is {direction} than `{f['reference']}` by {_interval(f)} "
                     f"(Holm-adjusted p = {f['p_holm']:.3g}; wins {f['wins']} of {f['pairs']} pairs).{worlds}")
    if found.empty:
        lines.append(f"- None: no arm of any axis differs from its axis's reference after the Holm correction, "
                     f"with {n_pairs} pairs per arm.")
    lines += ["", "**No measurable difference**", ""]
    for axis, rows in deltas[~deltas["finding"]].groupby("axis", sort=False):
        lines.append(f"- **{axis}** (vs `{rows['reference'].iloc[0]}`): "
                     + ", ".join(f"`{a}` {_interval(r)}" for a, r in rows.set_index("arm").iterrows()))
    return "\n".join(lines)


def headline(summary: pd.DataFrame, references: dict[str, str] | None = None, metric: str = "pcc_hvg50") -> str:
    """The book's headline findings in Markdown bullets (the findings page's takeaways, linked from the
    introduction): how many arms are findings, the largest of them, and how much of the grid is null."""
    references = references or AXIS_REFERENCES
    deltas = overview(summary, references, metric)
    found = deltas[deltas["finding"]]
    name = METRICS.get(metric, metric)
    n_pairs = int(deltas["pairs"].max())
    bullets = [f"{len(found)} of the {len(deltas)} arms compared differ from their axis's reference on {name} "
               f"(Holm-adjusted p < 0.05 across each axis's arms; at most {n_pairs} (fold, seed) pairs per arm); "
               f"the other {len(deltas) - len(found)} made no measurable difference."]
    if len(found):
        top = found.reindex(found["mean_delta"].abs().sort_values(ascending=False).index).head(3)
        bullets.append("Largest findings: " + "; ".join(
            f"{r['axis']}: `{r['arm']}` vs `{r['reference']}` {_interval(r)}" for _, r in top.iterrows()) + ".")
        robust = world_robustness(summary, references, metric)
        other_worlds = sorted(set(with_design_columns(summary)["world"]) - {DEFAULT_WORLD})
        if other_worlds:
            everywhere = robust[(robust["does not hold in"] == "-") & (robust["not run in"] == "-")]
            bullets.append(f"{len(everywhere)} of the {len(robust)} findings hold in every other simulated world "
                           f"({', '.join(other_worlds)}).")
        else:
            bullets.append("No other simulated world has been run yet, so no finding has been checked for "
                           "robustness to the simulator's assumptions.")
    bullets.append(simulation_note(summary))
    return "\n".join(f"- {b}" for b in bullets)


def flag_counts(summary: pd.DataFrame) -> pd.DataFrame:
    """Per axis: runs, runs that ended at their epoch cap, runs whose training fit is below the simple
    models', and how many runs do not record what a flag needs."""
    summary = with_design_columns(summary)
    flags = run_flags(summary)
    table = pd.DataFrame({
        "runs": summary.groupby("axis").size(),
        "at epoch cap": flags["at_cap"].eq(True).groupby(summary["axis"]).sum(),
        "cap not recorded": flags["at_cap"].isna().groupby(summary["axis"]).sum(),
        "fit below simple models": flags["fit_below_simple"].eq(True).groupby(summary["axis"]).sum(),
        "fit not recorded": flags["fit_below_simple"].isna().groupby(summary["axis"]).sum(),
    })
    return table.astype(int)
