"""Page bodies for the book's results chapters, displayed in a notebook cell.

``axis_report`` is an ablation page's body (tables, figure, generated reading, example maps),
``show_takeaways`` its "Key takeaways", ``page_banner`` the notes at the top of a results page
(simulated or real data and which cohort, stale runs); ``api_table`` builds the reference page's API
tables from the code. The pages show :func:`stflib.report.results.page_summary`: the real runs of the
results folder when it has any, else the simulated ones.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from stflib.grid.axes import ARMS
from stflib.report.figures import example_arms, plot_axis
from stflib.report.conclusions import conclusion_box, grid_conclusion_box
from stflib.report.findings import describe_axis, simulation_note, takeaways
from stflib.data.source import source_text
from stflib.report.results import (axis_rows, data_sources, grid_runs, is_real, load_summary, metric_info, page_summary,
                                   real_mask, results_root, run_figure, runs_root, source_description)
from stflib.report.tables import arm_table, paired_deltas, show_table, stale_runs


def has_runs(axis: str, results_dir: str | Path | None = None) -> bool:
    """True when the runs the pages show (:func:`page_summary`) include finished runs of ``axis`` (a new axis
    has none until the grid runs it)."""
    summary = page_summary(results_dir)
    return bool((summary["axis"] == axis).any())


def not_run_note(axis: str, real: bool = False) -> str:
    """What a results page says while its axis has no runs: the arms and the command that runs them
    (``real``: on the data folder whose runs the pages show)."""
    arms = ", ".join(f"`{a}`" for a in ARMS[axis].arms)
    command = (f"`python -m stflib ablate params/hest/{axis} --folds 3 --set data_dir=<the data folder> --results "
               "<this results folder> && python -m stflib collect --results <this results folder>`" if real else
               f"`python -m stflib ablate params/{axis} --folds 3 && python -m stflib collect`")
    return (f"**Not run yet.** The grid has no finished runs of the `{axis}` axis{' on this cohort' if real else ''} "
            f"(arms: {arms}; reference `{ARMS[axis].reference}`). {command} runs them, and this page then shows "
            "their paired intervals.")


def data_note(summary: pd.DataFrame, results_dir: str | Path | None = None) -> str:
    """Which data the runs shown (a :func:`page_summary`) used: for real runs, a banner naming the cohort
    from its description (:func:`stflib.data.source.source_text`) and the runs of the folder not shown;
    for simulated runs, :func:`stflib.report.findings.simulation_note`."""
    if not is_real(summary):
        return simulation_note(summary)
    source = str(summary["data_source"].dropna().iloc[0])
    described = source_description(source, results_dir)
    full = load_summary(results_dir)
    n_simulated = int((~real_mask(full)).sum())
    others = data_sources(full).drop(source, errors="ignore")
    text = (f"**These results are real data.** The {len(summary)} runs shown here read the "
            f"{source_text(described) if len(described) > 1 else f'cohort `{source}` (its description was not recorded)'}. "
            "They measure what each design choice does on this cohort's tissue, with its patients held out.")
    if described.get("missing"):
        text += f" When the grid was planned its metadata could not be read: {described['missing']}."
    if n_simulated:
        text += (f" The results folder also holds {n_simulated} simulated runs, not shown on this page "
                 "(the Findings page sets them beside the real ones).")
    if len(others):
        text += (" Other data sources in this folder, not shown: "
                 + ", ".join(f"`{name}` ({n} runs)" for name, n in others.items()) + ".")
    return text


def runs_option(summary: pd.DataFrame, results_dir: str | Path | None = None) -> str:
    """`` --results <folder>`` for a command that reads the shown runs' folders (:func:`runs_root`) when they
    are not the project's results/ (a real cohort's; relative to the project when inside it); empty otherwise."""
    import os

    from stflib.paths import project_root

    folder, project = runs_root(summary, results_dir).resolve(), project_root().resolve()
    if folder == project / "results":
        return ""
    return f" --results {Path(os.path.relpath(folder, project)).as_posix() if folder.is_relative_to(project) else folder}"


def optional_section(compute, what: str, command: str) -> None:
    """Display ``compute()`` (a cell's extra table or figure, read from a file a command writes); where
    that file is absent from this results folder (a real cohort's, say), a note naming ``what`` and the
    ``command`` that computes it instead of an error."""
    from IPython.display import Markdown, display

    try:
        compute()
    except FileNotFoundError as e:
        display(Markdown(f"**{what}: not in this results folder.** `{command}` computes it ({e})."))


def spread_section(axis: str, summary: pd.DataFrame) -> None:
    """An axis page's "spread of the predictions" table and sentences (``python -m stflib spread <axis>``,
    read from the shown runs' folder), or the note naming that command where the table is absent."""
    from IPython.display import Markdown, display

    from stflib.report import spread

    def compute() -> None:
        table = spread.spread_table(axis, runs_root(summary))
        show_table(table.round(3), f"{axis.replace('_', '-')}-spread")
        display(Markdown(" ".join(spread.describe(table, arm, f"`{arm}`") for arm in table.index)))

    optional_section(compute, "The spread of the predictions", f"python -m stflib spread {axis}" + runs_option(summary))


def axis_report(axis: str, metric: str | None = None, results_dir: str | Path | None = None) -> None:
    """Display an ablation axis's results page body (in a notebook): the arm table with its flags, the
    paired differences to the axis's reference with intervals (on ``metric``, by default the axis's own,
    ``Axis.metric``), the figure, the generated reading and example maps. Both tables are downloadable as CSV."""
    import matplotlib.pyplot as plt
    from IPython.display import Image, Markdown, display

    metric = metric or ARMS[axis].metric
    reference = ARMS[axis].reference
    summary = page_summary(results_dir)
    if not has_runs(axis, results_dir):
        display(Markdown(not_run_note(axis, is_real(summary))))
        return
    display(Markdown(f"**Mean ± standard deviation over the runs (patient folds x seeds)** (reference arm: "
                     f"`{reference}`). `flags`: runs that used their whole step budget instead of stopping early, "
                     "and runs whose fit on their own training slides is below both simple models "
                     "(MLP and ridge probe) of the same fold and seed."))
    show_table(arm_table(summary, axis), f"{axis}-arms")
    display(Markdown(f"**Paired difference to `{reference}`** in {metric_info(metric).label} (arm minus "
                     "reference): one difference per held-out patient fold (both saw the same test patients), "
                     "averaged over the fold's seeds; `pairs` counts the folds. `ci_low`/`ci_high`: 95 % t interval "
                     "of the mean difference over the folds, conditional on this cohort's patients and the training "
                     "budget; `p_holm`: paired t-test p-value, Holm-adjusted across the distinct arms of this axis "
                     "(an arm that is the same model as another is shown once, with its aliases); `finding`: "
                     "`p_holm` < 0.05; `wins`: folds the arm is better in."))
    show_table(paired_deltas(summary, axis, reference, metric).round(4), f"{axis}-paired-differences")
    plot_axis(summary, axis, metric, reference=reference)
    plt.show()
    display(Markdown("**Reading, generated from the numbers above.** " + describe_axis(summary, axis, reference, metric)))
    folders = runs_root(summary, results_dir)  # the shown runs' folders (a real cohort's: <results>/real/<source>)
    arms = example_arms(summary, axis, reference, metric, results_dir=folders)
    if arms:
        display(Markdown("**Predicted (top) and measured (bottom) maps** of the best-predicted genes on a "
                         "held-out slide, fold 0, for " + " and ".join(f"`{a}`" for a in arms) + ":"))
        for arm in arms:
            display(Markdown(f"`{arm}`"))
            display(Image(filename=str(run_figure(axis, arm, "gene_maps.png", results_dir=folders))))


def standin_check(results_dir: str | Path | None = None) -> None:
    """The backbones page's pipeline check (simulated runs only): each stand-in's planted information
    (``results/worlds/calibration.csv``) beside STF's paired difference (:func:`~stflib.report.tables.standin_information`)
    and the generated sentence on their rank correlation."""
    from IPython.display import Markdown, display

    from stflib.report.tables import standin_information, standin_sentence
    from stflib.sim.truth import read_tables

    summary = page_summary(results_dir)
    if is_real(summary) or not has_runs("backbones", results_dir):
        display(Markdown("No stand-in check: these runs are on real data or the axis has not been run; on real "
                         "features the table above is the comparison of the encoders themselves."))
        return
    try:
        _, calibration = read_tables(results_root(results_dir) / "worlds")
    except FileNotFoundError as e:
        display(Markdown(f"No stand-in check: {e}"))
        return
    table = standin_information(summary, calibration)
    show_table(table.round(4), "backbones-standin-information")
    display(Markdown("**Reading, generated from the numbers above.** " + standin_sentence(table)))


def show_takeaways(axis: str, metric: str | None = None, results_dir: str | Path | None = None) -> None:
    """Display an axis page's "Key takeaways", generated by :func:`takeaways` from its intervals (on ``metric``,
    by default the axis's own, ``Axis.metric``)."""
    from IPython.display import Markdown, display

    metric = metric or ARMS[axis].metric
    if not has_runs(axis, results_dir):
        display(Markdown("No takeaways: the axis has not been run (see the note at the top of the page)."))
        return
    display(Markdown(takeaways(page_summary(results_dir), axis, metric=metric)))


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

    full, runs = page_summary(results_dir), grid_runs(results_dir)
    summary = full
    if is_real(full):  # the shown cohort's runs only
        runs = runs[(runs["world"] == "real") & (runs["data_source"] == full["data_source"].dropna().iloc[0])]
    if axis is not None and not has_runs(axis, results_dir):
        display(Markdown(data_note(full, results_dir) + "\n\n" + not_run_note(axis, is_real(full))))
        return
    if axis is not None:
        summary, runs = axis_rows(full, axis, world=None), runs[runs["axis"] == axis]
    display(Markdown(data_note(summary, results_dir) + "\n\n" + stale_banner(runs)))
    if axis is not None and axis in ARMS:
        run_time_note(f"ablations/{axis}", results_dir)
        display(Markdown(conclusion_box(full, axis, metric=ARMS[axis].metric)))
    else:
        display(Markdown(grid_conclusion_box(full)))


API_MODULES = ("pathways", "data", "simulate", "sim.calibration", "spatial", "backbones", "features", "models", "losses",
               "config", "train", "metrics", "plots", "grid.axes", "grid.params", "grid.runner", "grid.collect",
               "bench", "report.results", "report.stats", "report.tables", "report.figures", "report.findings",
               "report.claims", "report.context", "report.pages", "report.chapters", "report.scratch")


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


def show_source(*objects, title: str | None = None) -> None:
    """Display the source code of functions or classes as a Python code block (in a notebook): the
    from-scratch chapter shows the code that its cells run and the tests import, not a copy."""
    import inspect

    from IPython.display import Markdown, display

    code = "\n\n".join(inspect.getsource(obj).rstrip() for obj in objects)
    display(Markdown((f"**{title}**\n\n" if title else "") + f"```python\n{code}\n```"))


def source_lines(module) -> int:
    """Lines of code of a module, without blank lines, comments and docstrings (the from-scratch chapter's count)."""
    import ast
    import inspect

    source = inspect.getsource(module)
    docstrings = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef)) and ast.get_docstring(node) is not None:
            first = node.body[0]
            docstrings.update(range(first.lineno, first.end_lineno + 1))
    return sum(1 for i, line in enumerate(source.splitlines(), 1)
               if line.strip() and not line.strip().startswith("#") and i not in docstrings)


def run_time_note(chapter: str, results_dir: str | Path | None = None) -> None:
    """Display a chapter's run time (in a notebook): how long its notebook took to execute when the
    times were last measured (``python -m stflib chapters --time-notebooks``), and, for a chapter
    whose slow parts are precomputed, the command that computes them and how long it took."""
    from IPython.display import Markdown, display

    from stflib.report import chapters

    parts = []
    try:
        seconds = chapters.table("timing", "notebook_seconds", results_dir=results_dir)["seconds"]
    except FileNotFoundError:
        seconds = pd.Series(dtype=float)
    if chapter in seconds.index:
        parts.append(f"**Run time**: this page's notebook executes in about {max(1, round(seconds[chapter]))} s "
                     "(one torch thread, measured on a shared two-core machine); it trains nothing and reads "
                     "committed files.")
    if chapter in chapters.CHAPTERS:
        try:
            compute = chapters.facts("timing", "compute_seconds", results_dir=results_dir).get(chapter)
        except FileNotFoundError:
            compute = None
        took = ""
        if compute:
            took = f" (about {round(compute)} s" if compute < 90 else f" (about {round(compute / 60)} min"
            took += " on two shared cores, generating the simulated cohort first where its cache is empty)"
        parts.append(f"Its slower figures come from `results/chapters/{chapter}/`, written by "
                     f"`python -m stflib chapters --chapter {chapter}`{took}.")
    if parts:
        display(Markdown(" ".join(parts)))


def architecture_figure(num_pathways: int = 50, quadrants: tuple[str, ...] = ("p2p", "p2h", "h2p", "h2h")):
    """STF's architecture drawn from code (matplotlib): frozen features -> patch tokens (+ 2-D
    positional encoding) and pathway tokens -> the masked encoder, with its four quadrants drawn as
    the mask itself -> cosine scores x temperature -> gene reconstructor (and the auxiliary loss)."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    from stflib.models import interaction_mask

    fig, ax = plt.subplots(figsize=(10, 4.6))
    ax.set_xlim(0, 10)
    ax.set_ylim(0, 4.6)
    ax.axis("off")

    def box(x, y, w, h, text, color):
        ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.04", fc=color, ec="0.3", lw=1))
        ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=8.5, wrap=True)
        return x, y, w, h

    def arrow(a, b, label=""):
        ax.add_patch(FancyArrowPatch(a, b, arrowstyle="-|>", mutation_scale=12, color="0.3", lw=1.2))
        if label:
            ax.text((a[0] + b[0]) / 2, (a[1] + b[1]) / 2 + 0.12, label, ha="center", fontsize=7.5, color="0.25")

    box(0.1, 3.3, 1.6, 0.9, "H&E patch\nper spot", "#f4e1ee")
    box(0.1, 1.9, 1.6, 0.9, "frozen backbone\n(CTransPath, ...)\nnever trained", "#e8e8e8")
    box(2.1, 1.9, 1.6, 0.9, "Linear projection\n+ 2-D positional\nencoding of (x, y)", "#dbe9f6")
    box(2.1, 0.4, 1.6, 0.9, f"{num_pathways} learnable\npathway tokens\n(Hallmarks)", "#fde7c8")
    arrow((0.9, 3.3), (0.9, 2.8))
    arrow((1.7, 2.35), (2.1, 2.35), "features")
    # the encoder, with the mask drawn inside it
    box(4.1, 0.3, 2.4, 3.9, "", "#eef5e9")
    ax.text(5.3, 3.95, "transformer encoder\nover [pathways | patches]", ha="center", va="top", fontsize=8.5)
    import numpy as np

    n_p, n_s = 6, 10
    mask = interaction_mask(n_p, n_s, quadrants).numpy()
    colours = {"p2p": (0.99, 0.75, 0.45), "p2h": (0.55, 0.75, 0.95), "h2p": (0.6, 0.85, 0.55), "h2h": (0.8, 0.7, 0.9)}
    image = np.ones((n_p + n_s, n_p + n_s, 3))
    for name, (rows, cols) in {"p2p": (slice(0, n_p), slice(0, n_p)), "p2h": (slice(0, n_p), slice(n_p, None)),
                               "h2p": (slice(n_p, None), slice(0, n_p)), "h2h": (slice(n_p, None), slice(n_p, None))}.items():
        if name in quadrants:
            image[rows, cols] = colours[name]
    image[np.eye(n_p + n_s, dtype=bool) & mask] = (0.35, 0.35, 0.35)  # every token reads itself
    inset = ax.inset_axes([4.45, 0.75, 1.7, 2.4], transform=ax.transData)
    inset.imshow(image)
    inset.axhline(5.5, color="C3", lw=1)
    inset.axvline(5.5, color="C3", lw=1)
    for (r, c), name in {(1.2, 3.8): "p2p", (2.5, 10.5): "p2h", (10.5, 2.5): "h2p", (8.2, 13.0): "h2h"}.items():
        inset.text(c, r, name, ha="center", va="center", fontsize=8, color="0.1" if name in quadrants else "0.6",
                   fontweight="bold" if name in quadrants else "normal")
    inset.set_xticks([])
    inset.set_yticks([])
    inset.set_xlabel("keys", fontsize=7)
    inset.set_ylabel("queries", fontsize=7)
    arrow((3.7, 2.35), (4.1, 2.35), "patch tokens")
    arrow((3.7, 0.85), (4.1, 0.85))
    box(7.0, 2.6, 1.4, 1.0, "cosine scores\nx temperature τ\n(S x P)", "#fde7c8")
    box(8.6, 2.6, 1.3, 1.0, "gene\nreconstructor\nP -> G", "#dbe9f6")
    box(7.0, 0.6, 1.4, 1.0, "auxiliary pathway\nloss (optional)", "#f6dada")
    box(8.6, 0.6, 1.3, 1.0, "genes of every\nspot (S x G)", "#e8e8e8")
    arrow((6.5, 3.1), (7.0, 3.1), "encoded\npatches")
    arrow((8.4, 3.1), (8.6, 3.1))
    arrow((7.7, 2.6), (7.7, 1.6))
    ax.add_patch(FancyArrowPatch((3.7, 0.6), (7.2, 2.6), arrowstyle="-|>", mutation_scale=12, color="0.55", lw=1,
                                 ls="--", connectionstyle="arc3,rad=0.35"))
    ax.text(6.75, 1.75, "shared read-out:\nscores against the\npathway tokens", fontsize=7, color="0.4", ha="center")
    arrow((9.25, 2.6), (9.25, 1.6))
    ax.text(5.3, 0.05, "mask: a coloured quadrant is on; h2h off = the pathway bottleneck (spots talk only through pathway tokens)",
            ha="center", fontsize=7.5, color="0.3")
    fig.tight_layout()
    return fig
