"""The book's result tables: arms of an axis, paired differences to a reference, run flags, grid cost.

Every table is computed from ``results/summary.csv`` (or the run folders) through
:mod:`stflib.report.results` and :mod:`stflib.report.stats`; ``show_table`` displays one with a link
to its CSV. Paired differences take the held-out patient fold as the unit (seeds averaged within a
fold; ``unit="pair"``: every (fold, seed) pair, the earlier derivation). An axis shows each distinct
model once (:func:`distinct_axis_rows`): runs of an arm that is an alias of another
(``stflib.grid.axes.Axis.aliases``, the same computation) are left out, and the canonical arm is
labelled with its aliases, so the Holm family counts distinct models only.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from stflib.report import stats
from stflib.report.results import (DEFAULT_WORLD, PAIR_COLUMNS, axis_rows, metric_info, pair_index, repo_root,
                                   runs_of_reference_version, with_design_columns)


# the columns of an axis's arm table
TABLE_METRICS = ("pcc_hvg50", "pcc_all", "mse", "pathway_pcc_truth", "train_seconds")


def axis_aliases(axis: str) -> dict[str, tuple[str, ...]]:
    """Canonical arm -> the arms that are the same model, for an axis of ``ARMS`` (none for another axis)."""
    from stflib.grid.axes import ARMS

    return dict(ARMS[axis].aliases) if axis in ARMS else {}


def distinct_axis_rows(summary: pd.DataFrame, axis: str, world: str | None = DEFAULT_WORLD) -> pd.DataFrame:
    """The runs of ``axis`` (:func:`~stflib.report.results.axis_rows`) without the runs of arms that are
    aliases of another arm (committed before the grid ran each distinct model once): each model is
    counted once, under its canonical arm."""
    rows = axis_rows(summary, axis, world)
    aliases = {a for names in axis_aliases(axis).values() for a in names}
    return rows[~rows["arm"].isin(aliases)]


def same_model_as(axis: str, arm: str) -> str:
    """The arms that are the same model as ``arm`` of ``axis``, as code names ('`p2h`, `p2p-p2h`'; '' if none)."""
    return ", ".join(f"`{a}`" for a in axis_aliases(axis).get(arm, ()))


def arm_label(axis: str, arm: str) -> str:
    """An arm's name as code, with its aliases: '`p2p` (same model as `p2h`, `p2p-p2h`)'."""
    aliases = same_model_as(axis, arm)
    return f"`{arm}`" + (f" (same model as {aliases})" if aliases else "")


def _with_aliases(table: pd.DataFrame, axis: str) -> pd.DataFrame:
    """``table`` (indexed by arm) with a 'same model as' column when an arm of it has aliases."""
    if any(same_model_as(axis, arm) for arm in table.index):
        table = table.assign(**{"same model as": [same_model_as(axis, arm).replace("`", "") for arm in table.index]})
    return table


def arm_table(summary: pd.DataFrame, axis: str, metrics: tuple[str, ...] = TABLE_METRICS) -> pd.DataFrame:
    """Mean ± standard deviation over runs (folds x seeds) for every distinct arm of ``axis``, best
    ``pcc_hvg50`` first, with the runs' flags (:func:`run_flags`) and the arms each is the same model as."""
    rows = distinct_axis_rows(summary, axis)
    metrics = tuple(m for m in metrics if m in rows and rows[m].notna().any())
    grouped = rows.groupby("arm")
    table = pd.DataFrame({"runs": grouped.size()})
    for metric in metrics:
        mean, sd = grouped[metric].mean(), grouped[metric].std(ddof=1)
        digits = 1 if metric == "train_seconds" else 3
        table[metric_info(metric).label] = [
            "n/a" if np.isnan(m) else (f"{m:.{digits}f}" if np.isnan(s) else f"{m:.{digits}f} ± {s:.{digits}f}")
            for m, s in zip(mean, sd)
        ]
    table["flags"] = arm_flags(summary, axis)
    order = grouped["pcc_hvg50"].mean().sort_values(ascending=False).index
    return _with_aliases(table.loc[order], axis).rename_axis(axis)


def _per_pair(rows: pd.DataFrame, metric: str) -> pd.DataFrame:
    """One row per pair (fold, seed, library version), one column per arm."""
    return rows.pivot_table(index=pair_index(rows), columns="arm", values=metric)


def paired_deltas(summary: pd.DataFrame, axis: str, reference: str, metric: str = "pcc_hvg50",
                  world: str = DEFAULT_WORLD, unit: str = "fold") -> pd.DataFrame:
    """Per distinct arm of ``axis`` (:func:`distinct_axis_rows`): the paired difference to ``reference``
    in ``metric``, one per held-out patient fold (the mean over the fold's seeds; ``unit="pair"``: one
    per (fold, seed), the earlier derivation).

    Columns (see :mod:`stflib.report.stats`): ``pairs`` (the paired units: folds, or pairs),
    ``mean_delta`` with its 95 % t interval (``ci_low``, ``ci_high``), the paired t-test's ``p_value`` and
    its Holm-adjusted ``p_holm`` across the distinct arms of the axis, ``wins`` (units where the arm is
    better) and ``finding`` (Holm-adjusted p < 0.05); then 'same model as' where an arm has aliases.
    Differences are arm minus reference whichever way the metric points; ``wins`` follows the metric's
    direction.
    """
    rows = distinct_axis_rows(summary, axis, world)
    wide = _per_pair(rows, metric)
    if reference not in wide:
        raise ValueError(f"reference arm {reference!r} not among the {axis} arms: {sorted(wide.columns)}")
    out = stats.paired_effects(wide, reference, metric_info(metric).higher_is_better, unit=unit)
    out = out.sort_values("mean_delta", ascending=not metric_info(metric).higher_is_better)
    return _with_aliases(out, axis).rename_axis(axis)


UNIT_WORDS = {"fold": "fold", "pair": "pair"}  # what one paired unit is called in a sentence


def interval_text(row, unit: str = "fold") -> str:
    """'+0.012 [-0.004, +0.028]': a paired difference with its 95 % interval (``row``: the columns of
    :func:`paired_deltas`); ``unit`` names what ``pairs`` counts when there is no interval."""
    word = UNIT_WORDS[stats.check_unit(unit)]
    if int(row["pairs"]) == 0:
        return "not compared (no pair of runs by one library version yet)"
    if np.isnan(row["ci_low"]):
        return f"{row['mean_delta']:+.3f} (no interval: {int(row['pairs'])} {word}{'s' if row['pairs'] != 1 else ''})"
    return f"{row['mean_delta']:+.3f} [{row['ci_low']:+.3f}, {row['ci_high']:+.3f}]"


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
    if "hit_step_cap" in summary:  # recorded by the run itself: the step budget ran out before early stopping
        recorded = summary["hit_step_cap"].map({True: True, False: False, "True": True, "False": False})
        cap_known |= recorded.notna()
        cap_hit |= recorded.eq(True)
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
    """Per distinct arm of ``axis``: its runs' flags in words ("2/6 at step cap; fit not recorded")."""
    rows = distinct_axis_rows(summary, axis)
    flags = run_flags(summary).loc[rows.index]
    out = {}
    for arm, idx in rows.groupby("arm").groups.items():
        f, words = flags.loc[idx], []
        n = len(f)
        cap = f["at_cap"].dropna()
        if cap.empty:
            words.append("cap not recorded")
        elif cap.astype(bool).any():
            words.append(f"{int(cap.astype(bool).sum())}/{n} at step cap")
        fit = f["fit_below_simple"].dropna()
        if any((axis, arm) == s for s in SIMPLE_MODELS):
            pass
        elif fit.empty:
            words.append("fit not recorded")
        elif fit.astype(bool).any():
            words.append(f"{int(fit.astype(bool).sum())}/{n} fit below simple models")
        out[arm] = "; ".join(words) if words else "none"
    return pd.Series(out, name="flags")


def rows_measuring(rows: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The runs of ``rows`` that record a value of ``metric``: runs that predate it (e.g. the second panel)
    or cannot measure it (a pathway target has no gene PCC) are not run for it."""
    if metric not in rows:
        return rows
    return rows[pd.to_numeric(rows[metric], errors="coerce").notna()]


def overview(summary: pd.DataFrame, references: dict[str, str], metric: str = "pcc_hvg50",
             world: str = DEFAULT_WORLD, unit: str = "fold") -> pd.DataFrame:
    """Every distinct arm of every axis as a paired difference to its axis's reference arm (long format,
    the columns of :func:`paired_deltas`, ``unit`` as there; Holm families are the axes' distinct arms).
    An axis whose reference arm has no run with a value of ``metric`` (e.g. every arm predicts pathway
    scores, which have no gene PCC) is left out."""
    summary = with_design_columns(summary)
    summary = summary[summary["world"] == world]
    frames = []
    for axis, reference in references.items():
        rows = rows_measuring(summary[summary["axis"] == axis], metric)
        if rows.empty or reference not in set(rows["arm"]):
            continue  # an axis (or its reference arm) not run yet, or not measured by the metric: nothing to compare
        deltas = paired_deltas(summary, axis, reference, metric, world, unit).reset_index().rename(columns={axis: "arm"})
        frames.append(deltas.assign(axis=axis, reference=reference))
    if not frames:
        raise ValueError(f"none of the axes {list(references)} has results in the summary (world {world!r})")
    return pd.concat(frames, ignore_index=True)[["axis", "reference", "arm", *stats.EFFECT_COLUMNS]]


def quadrant_effects(summary: pd.DataFrame, metric: str = "pcc_hvg50", axis: str = "interactions",
                     world: str = DEFAULT_WORLD, unit: str = "fold") -> pd.DataFrame:
    """Main effect of each information flow in the 15-subset factorial design: for every (fold, seed)
    pair, the mean over the arms that have the quadrant minus the mean over the arms that do not;
    averaged over the seeds of each fold (``unit="pair"``: not); then the mean over the units with its
    95 % t interval, Holm-adjusted p-value across the four flows, and the units where the effect is
    positive (:func:`stflib.report.stats.factorial_effects`).

    An arm that is an alias of another (the same model, ``Axis.aliases``) is not run: its cell of the
    design is its canonical arm's runs, so the design stays the full 15 subsets while each model is
    trained once. Arm names are the enabled quadrants joined by '-', with 'full' (all four) and
    'bottleneck' (p2p, p2h, h2p) as the seed's named variants.
    """
    from stflib.models.config import QUADRANTS, parse_interactions

    rows = distinct_axis_rows(summary, axis, world)
    rows = runs_of_reference_version(rows, rows["arm"] == "full")  # every subset from one library version
    cells = [rows.loc[rows["arm"] == canonical].assign(arm=alias)
             for canonical, names in axis_aliases(axis).items() for alias in names]
    rows = pd.concat([rows, *cells], ignore_index=True)
    # arm names are the interactions grammar with '-' for ',' ('p2p-h2h'), or a named variant ('full')
    quads = rows["arm"].map(lambda a: set(parse_interactions(a.replace("-", ","))))
    factors = {q: quads.map(lambda s, q=q: q in s) for q in QUADRANTS}
    return stats.factorial_effects(rows, factors, PAIR_COLUMNS, metric, unit=unit).rename_axis("quadrant")


def deltas_to(summary: pd.DataFrame, arms: list[tuple[str, str]], reference: tuple[str, str],
              metric: str = "pcc_hvg50", world: str = DEFAULT_WORLD, unit: str = "fold") -> pd.DataFrame:
    """Paired differences of runs from any axes to one reference run, e.g. every context arm against
    ``("baselines", "ridge_probe")``: rows (axis, arm) with the columns of :func:`paired_deltas`
    (``unit`` as there; the Holm family is the arms listed)."""
    summary = with_design_columns(summary)
    summary = summary[summary["world"] == world]

    def per_pair(axis: str, arm: str) -> pd.Series:
        rows = summary[(summary["axis"] == axis) & (summary["arm"] == arm)]
        if rows.empty:
            raise ValueError(f"no completed runs for {axis}/{arm} (world {world!r})")
        return rows.set_index(pair_index(rows))[metric]

    columns = {"/".join(reference): per_pair(*reference)}
    for axis, arm in arms:
        columns[f"{axis}/{arm}"] = per_pair(axis, arm)
    wide = pd.DataFrame(columns)
    out = stats.paired_effects(wide, "/".join(reference), metric_info(metric).higher_is_better, unit=unit)
    out.index = pd.MultiIndex.from_tuples([tuple(i.split("/", 1)) for i in out.index], names=["axis", "arm"])
    return out


def flag_counts(summary: pd.DataFrame) -> pd.DataFrame:
    """Per axis: runs that ended at their step (or epoch) cap, runs whose training fit is below the simple
    models', and how many runs do not record what a flag needs."""
    summary = with_design_columns(summary)
    flags = run_flags(summary)
    table = pd.DataFrame({
        "runs": summary.groupby("axis").size(),
        "at step cap": flags["at_cap"].eq(True).groupby(summary["axis"]).sum(),
        "cap not recorded": flags["at_cap"].isna().groupby(summary["axis"]).sum(),
        "fit below simple models": flags["fit_below_simple"].eq(True).groupby(summary["axis"]).sum(),
        "fit not recorded": flags["fit_below_simple"].isna().groupby(summary["axis"]).sum(),
    })
    return table.astype(int)


def busy_hours(started: pd.Series, finished: pd.Series) -> float:
    """Wall-clock hours during which at least one of the runs was executing: the length of the union
    of their [started, finished] intervals. Unlike last finish minus first start, it leaves out the
    gaps between sessions of a grid that was resumed, and counts runs executing in parallel once."""
    spans = sorted((a, b) for a, b in zip(pd.to_datetime(started), pd.to_datetime(finished))
                   if pd.notna(a) and pd.notna(b) and b >= a)
    total, end = 0.0, None
    for a, b in spans:
        if end is None or a > end:
            total += (b - a).total_seconds()
            end = b
        elif b > end:
            total += (b - end).total_seconds()
            end = b
    return total / 3600


# the whole grid (default world and the robustness worlds) must run on the project's 2-core, no-GPU
# machine in about this much busy wall time, resumed across sessions if need be
GRID_WALL_BUDGET_HOURS = 5.0


def grid_wall_verdict(runs: pd.DataFrame, current: str | None = None,
                      budget_hours: float = GRID_WALL_BUDGET_HOURS) -> str:
    """One sentence: the grid's busy wall time (:func:`busy_hours` over its executions) against
    ``budget_hours``, and how many executions ran an earlier version of the library (their cost is
    that version's: the figure is today's grid only when there are none)."""
    if runs.empty:
        raise ValueError("no runs under results/: run `python -m stflib ablate params` first")
    executed = runs[~runs["copied"].astype(bool)]
    busy = busy_hours(executed["started"], executed["finished"])
    margin = budget_hours - busy
    text = (f"The grid kept the machine busy for {busy:.2f} h over {len(executed)} executions: "
            + (f"within the {budget_hours:g}-hour budget for a 2-core machine, with {margin:.2f} h to spare."
               if margin >= 0 else f"over the {budget_hours:g}-hour budget for a 2-core machine by {-margin:.2f} h."))
    old = stale_runs(executed, current)
    if len(old):
        text += (f" {len(old)} of these executions ran an earlier version of the library, so the figure mixes "
                 "that version's cost with today's until they are re-run.")
    return text


def grid_cost(runs: pd.DataFrame) -> pd.DataFrame:
    """The grid's cost per axis from :func:`grid_runs`: run folders, executions (copies of a shared
    run count once), the executions' summed and median durations, the wall-clock hours the axis kept
    the machine busy (:func:`busy_hours`), and how many executions ran with Dask's malloc trimming
    (slower: see ``stflib.grid.runner.kernel_environment``), and the median share of an execution's wall
    time spent outside training and evaluation (starting the kernel, imports, reading the fold, writing;
    NaN for runs that predate ``eval_seconds``). Runs in another simulator world than the default are one
    row per world (``world <name>``), not mixed into the axes."""
    if runs.empty:
        raise ValueError("no runs under results/: run `python -m stflib ablate params` first")
    runs = runs.copy()
    if "world" in runs:
        other = runs["world"].fillna(DEFAULT_WORLD) != DEFAULT_WORLD
        runs.loc[other, "axis"] = "world " + runs.loc[other, "world"].astype(str)
    executed = runs[~runs["copied"].astype(bool)].copy()
    timed = {c: pd.to_numeric(executed[c], errors="coerce") if c in executed else pd.Series(np.nan, index=executed.index)
             for c in ("seconds", "train_seconds", "eval_seconds")}
    executed["outside"] = 1 - (timed["train_seconds"] + timed["eval_seconds"]) / timed["seconds"]
    table = pd.DataFrame({
        "run folders": runs.groupby("axis").size(),
        "executions": executed.groupby("axis").size(),
        "median minutes per execution": executed.groupby("axis")["seconds"].median() / 60,
        "executed hours": executed.groupby("axis")["seconds"].sum() / 3600,
        "busy wall hours": executed.groupby("axis")[["started", "finished"]].apply(
            lambda g: busy_hours(g["started"], g["finished"])),
        "executions with malloc trimming": executed.groupby("axis")["malloc_trim"].sum(),
    })
    def median_known(values: pd.Series) -> float:  # NaN, without numpy's empty-slice warning, when none is known
        values = values.dropna()
        return float(values.median()) if len(values) else np.nan

    outside = executed.groupby("axis")["outside"].agg(median_known)
    table = table.fillna(0)
    table["median share outside training and evaluation"] = outside
    table.loc["all axes"] = [len(runs), len(executed), executed["seconds"].median() / 60, executed["seconds"].sum() / 3600,
                             busy_hours(executed["started"], executed["finished"]), executed["malloc_trim"].sum(),
                             median_known(executed["outside"])]
    return table.astype({"run folders": int, "executions": int, "executions with malloc trimming": int}).round(2)


def stale_runs(runs: pd.DataFrame, current: str | None = None) -> pd.DataFrame:
    """The runs whose ``code_version`` (in ``run.json``) differs from what the current code gives them:
    their numbers came from an earlier version of the code they execute. ``current``: one version for
    every run; by default each run's own (:func:`stflib.grid.runner.run_version` of its ``params``: the
    shared core and the registry entries it names). A run whose parameters no longer validate is stale."""
    if current is not None:
        return runs[runs["code_version"].astype(str) != current]
    from stflib.grid.runner import run_version
    from stflib.grid.version import CodeIndex

    index = CodeIndex(notebook=_default_notebook())

    def is_stale(row) -> bool:
        try:
            return run_version(dict(row["params"] or {}), index=index) != str(row["code_version"])
        except (ValueError, TypeError):
            return True

    if runs.empty:
        return runs
    if "params" not in runs:
        raise ValueError(f"stale_runs: the runs need a 'params' column (stflib.report.results.grid_runs); "
                         f"columns: {', '.join(map(str, runs.columns))}")
    return runs[runs.apply(is_stale, axis=1)]


def _default_notebook():
    from stflib.grid.runner import DEFAULT_NOTEBOOK

    return DEFAULT_NOTEBOOK


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


def markdown_table(table: pd.DataFrame, code_columns: tuple[str, ...] = ()) -> str:
    """A table as Markdown (header, one line per row; the index is left out), so the rendered book
    wraps long cells instead of cutting them; ``code_columns`` are set as code (names of things)."""
    unknown = [c for c in code_columns if c not in table.columns]
    if unknown:
        allowed = ", ".join(map(str, table.columns))
        raise ValueError(f"markdown table: unknown code columns {unknown}; allowed: {allowed}")

    def cell(column, value) -> str:
        text = "" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)
        text = text.replace("|", "\\|").replace("\n", " ")  # a bar would end the cell, a newline the row
        return f"`{text}`" if column in code_columns and text else text

    lines = ["| " + " | ".join(str(c) for c in table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(cell(c, v) for c, v in zip(table.columns, row)) + " |"
              for row in table.itertuples(index=False)]
    return "\n".join(lines)


SHOWN_ROWS = 500  # a page shows a table whole up to this many rows (pandas would cut it to 10 above 60)


def show_table(table: pd.DataFrame, name: str) -> None:
    """Display a table whole (every row up to :data:`SHOWN_ROWS`, every column, cells uncut) and a link to
    its CSV download."""
    from IPython.display import Markdown, display

    with pd.option_context("display.max_rows", SHOWN_ROWS, "display.min_rows", SHOWN_ROWS,
                           "display.max_columns", None, "display.max_colwidth", None):
        display(table)
    display(Markdown(csv_link(table, name)))


def standin_information(summary: pd.DataFrame, calibration: pd.DataFrame, metric: str = "pcc_hvg50",
                        world: str = DEFAULT_WORLD) -> pd.DataFrame:
    """The backbones axis as a pipeline check: per backbone, the information its simulated stand-in carries
    (``probe_pcc``: the own-feature ridge probe of HEST-Bench's protocol, from ``calibration.csv`` of
    ``python -m stflib truth``), the encoder's published bowel range it was placed in (``anchor_read``,
    ``anchor_coad``), and STF's paired difference to the axis's reference backbone (``mean_delta`` with its
    fold interval; 0 for the reference itself). Sorted by ``probe_pcc``. Backbones with no run, or with no
    calibration row in ``world``, are left out."""
    from stflib.grid.axes import ARMS

    reference = ARMS["backbones"].reference
    calibration = calibration[calibration["world"] == world].set_index("backbone")
    missing = {"probe_pcc", "anchor_read", "anchor_coad"} - set(calibration.columns)
    if missing:
        raise ValueError(f"calibration table lacks {sorted(missing)}: rerun `python -m stflib truth --world all`")
    deltas = paired_deltas(summary, "backbones", reference, metric, world)[["pairs", "mean_delta", "ci_low", "ci_high"]]
    deltas.loc[reference] = [deltas["pairs"].max(), 0.0, np.nan, np.nan]
    table = calibration[["probe_pcc", "anchor_read", "anchor_coad"]].join(deltas, how="inner")
    return table.sort_values("probe_pcc").rename_axis("backbone")


def standin_sentence(table: pd.DataFrame, metric: str = "pcc_hvg50") -> str:
    """One generated sentence on :func:`standin_information`: the Spearman rank correlation between the
    information planted in each stand-in and STF's difference, and what it does and does not say."""
    from scipy.stats import spearmanr

    known = table.dropna(subset=["probe_pcc", "mean_delta"])
    if len(known) < 3:
        return (f"Only {len(known)} backbones have both a calibration row and runs: too few to compare their "
                "order with STF's.")
    rho, p = spearmanr(known["probe_pcc"], known["mean_delta"])
    top, bottom = known["probe_pcc"].idxmax(), known["probe_pcc"].idxmin()
    follows = ("follows" if p < 0.05 and rho > 0 else "does not measurably follow")
    return (f"Over the {len(known)} backbones, STF's difference in {metric_info(metric).label} {follows} the "
            f"information planted in each stand-in (Spearman ρ = {rho:.2f}, p = {p:.2g}; the stand-in with the most, "
            f"`{top}`, scores {known.loc[top, 'mean_delta']:+.3f} against the reference, the one with the least, "
            f"`{bottom}`, {known.loc[bottom, 'mean_delta']:+.3f}). This checks that the model turns more informative "
            "features into better predictions; it does not rank the real encoders, whose published bowel ranges "
            "(READ to COAD) overlap so much that the stand-ins' order inside them is the simulator's choice.")
