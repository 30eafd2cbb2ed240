"""The book's sentences about the results, written from the numbers: axis readings, takeaways, findings.

A difference to an axis's reference arm is a *finding* when its paired t-test p-value, Holm-adjusted
across the axis's distinct arms, is below 0.05 (:mod:`stflib.report.stats`); every sentence here is
generated from the paired differences of :mod:`stflib.report.tables`, so no figure is typed by hand.
The unit is the held-out patient fold (seeds averaged within a fold): every sentence says over how
many folds an interval is and that it is conditional on the cohort's patients and the training
budget. An arm that is not a finding after Holm but whose unadjusted interval excludes zero is said
to be so, never "no measurable difference".
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from stflib.grid.axes import ARMS, axis_references
from stflib.report.results import DEFAULT_WORLD, axis_rows, is_real, metric_info, with_design_columns
from stflib.report.tables import arm_flags, arm_label, distinct_axis_rows, interval_text, paired_deltas
from stflib.report.tables import overview as _overview

# one page computes the same comparisons several times (the findings, the robustness table, the
# headline, the box): remember the last few, keyed by the summary object and the arguments
_MEMO: dict = {}


def _memo(name: str, summary: pd.DataFrame, compute, *key):
    k = (name, id(summary), summary.shape, *key)
    if k not in _MEMO:
        if len(_MEMO) > 32:
            _MEMO.clear()
        _MEMO[k] = (summary, compute())  # the summary is kept so that its id cannot be reused
    return _MEMO[k][1].copy()


def overview(summary: pd.DataFrame, references: dict[str, str], metric: str = "pcc_hvg50") -> pd.DataFrame:
    """:func:`stflib.report.tables.overview`, computed once per summary, references and metric."""
    return _memo("overview", summary, lambda: _overview(summary, references, metric),
                 tuple(sorted(references.items())), metric)


def excludes_zero(deltas: pd.DataFrame) -> pd.Series:
    """Per row of paired differences: its unadjusted 95 % interval excludes zero (a NaN bound: no)."""
    return (deltas["ci_low"] > 0) | (deltas["ci_high"] < 0)


def design_counts(rows: pd.DataFrame) -> tuple[int, int]:
    """(held-out patient folds, seeds per fold at most) of some runs."""
    if rows.empty:
        return 0, 0
    return int(rows["fold"].nunique()), int(rows.groupby("fold")["seed"].nunique().max())


def count_text(n: int | tuple[int, int]) -> str:
    """'6', or '3 to 6' for a (fewest, most) pair (:func:`unit_sentence`)."""
    return f"{n[0]} to {n[1]}" if isinstance(n, tuple) else str(n)


def unit_sentence(n_folds: int | tuple[int, int], n_seeds: int | tuple[int, int]) -> str:
    """What a paired interval is over and conditional on, in one clause. A (fewest, most) pair for either
    count: the axes differ (part of a grid re-run with another design), each axis's intervals over its own."""
    if isinstance(n_seeds, tuple):
        seeds = f"{n_seeds[0]} to {n_seeds[1]} training seeds per fold, averaged within a fold"
    else:
        seeds = f"the {n_seeds} training seeds averaged within a fold" if n_seeds > 1 else "one training seed per fold"
    by_axis = "by axis: " if isinstance(n_folds, tuple) or isinstance(n_seeds, tuple) else ""
    folds = (f"{n_folds[0]} to {n_folds[1]} held-out patient folds" if isinstance(n_folds, tuple)
             else f"{n_folds} held-out patient fold{'s' if n_folds != 1 else ''}")
    return (f"over {folds} of this cohort ({by_axis}{seeds}); the intervals are conditional on the cohort's patients "
            "and the training budget")


def _unadjusted_only(frame: pd.DataFrame, label) -> str:
    """The arms that are not findings after Holm but whose unadjusted interval excludes zero, in words."""
    return ", ".join(f"{label(a)} ({interval_text(r)}, Holm p = {r['p_holm']:.3g})" for a, r in frame.iterrows())


def describe_axis(summary: pd.DataFrame, axis: str, reference: str, metric: str = "pcc_hvg50") -> str:
    """A plain-language reading of an axis, written from the numbers: the best arm, and which paired
    differences to the reference are findings (Holm-adjusted p < 0.05 across the axis's distinct arms),
    with what the intervals are over and conditional on. Each distinct model is named once, with the
    arms that are the same model."""
    rows = distinct_axis_rows(summary, axis)
    means = rows.groupby("arm")[metric].mean().sort_values(ascending=not metric_info(metric).higher_is_better)
    deltas = paired_deltas(summary, axis, reference, metric)
    name = metric_info(metric).label
    label = lambda a: arm_label(axis, a)  # noqa: E731
    n_folds, n_seeds = design_counts(rows)
    lines = [f"Paired differences to the reference are taken {unit_sentence(n_folds, n_seeds)}. The best arm on "
             f"{name} is {label(means.index[0])} ({means.iloc[0]:.3f}); the reference `{reference}` reaches "
             f"{means.get(reference, np.nan):.3f}."]
    found = deltas[deltas["finding"]]
    if len(found):
        items = ", ".join(f"{label(a)} ({interval_text(r)}, Holm p = {r['p_holm']:.3g})" for a, r in found.iterrows())
        lines.append(f"Differences to the reference that are findings (Holm-adjusted p < 0.05 across the "
                     f"{len(deltas)} distinct arms): {items}.")
    else:
        lines.append(f"None of the {len(deltas)} distinct arms differs from the reference after the Holm correction "
                     "(adjusted p < 0.05): on this grid no difference on this axis is a finding.")
    unadjusted = deltas[~deltas["finding"] & excludes_zero(deltas)]
    if len(unadjusted):
        lines.append(f"Not findings after Holm, though their unadjusted intervals exclude zero: "
                     f"{_unadjusted_only(unadjusted, label)}.")
    return " ".join(lines)


def takeaways(summary: pd.DataFrame, axis: str, reference: str | None = None, metric: str = "pcc_hvg50") -> str:
    """The "Key takeaways" bullets of an axis page, written from its own paired intervals."""
    reference = reference or ARMS[axis].reference
    deltas = paired_deltas(summary, axis, reference, metric)
    name = metric_info(metric).label
    up = metric_info(metric).higher_is_better
    label = lambda a: arm_label(axis, a)  # noqa: E731
    n_folds, n_seeds = design_counts(distinct_axis_rows(summary, axis))
    better = deltas[deltas["finding"] & ((deltas["mean_delta"] > 0) == up)]
    worse = deltas[deltas["finding"] & ((deltas["mean_delta"] > 0) != up)]
    unpaired = deltas[deltas["pairs"] == 0]  # arms whose runs are of another library version than the reference's
    compared = deltas[~deltas["finding"] & (deltas["pairs"] > 0)]
    unadjusted, null = compared[excludes_zero(compared)], compared[~excludes_zero(compared)]
    bullets = [f"Every interval below is the paired difference to `{reference}` {unit_sentence(n_folds, n_seeds)}."]
    for word, found in (("better than", better), ("worse than", worse)):
        for arm, r in found.iterrows():
            bullets.append(f"{label(arm)} is {word} `{reference}` on {name}: {interval_text(r)} "
                           f"(95 % interval; Holm-adjusted p = {r['p_holm']:.3g}; wins {r['wins']} of {r['pairs']} folds).")
    if len(unadjusted):
        bullets.append(f"Not a finding after Holm, though the unadjusted interval excludes zero: "
                       f"{_unadjusted_only(unadjusted, label)}.")
    if len(null):
        widest = null["ci_high"].sub(null["ci_low"]).max()
        span = f" (95 % intervals up to {widest:.3f} wide)" if np.isfinite(widest) else ""
        bullets.append(f"No measurable difference from `{reference}`{span}: "
                       + ", ".join(label(a) for a in null.index) + ". With "
                       f"{int(deltas['pairs'].max())} folds, smaller effects than these intervals cannot be told apart.")
    if len(unpaired):
        bullets.append("Not compared yet (their runs and the reference's come from different library versions; "
                       "`python -m stflib ablate` re-runs them): " + ", ".join(label(a) for a in unpaired.index) + ".")
    if not len(deltas):
        bullets.append(f"The axis has only its reference arm `{reference}`: nothing to compare.")
    from stflib.report.controls import BUDGET_SHARE, budget_limited_arms

    capped = {arm for _, _, arm in budget_limited_arms(distinct_axis_rows(summary, axis))}  # the runs compared above
    limited = [a for a in deltas.index if deltas.loc[a, "pairs"] > 0 and (a in capped or reference in capped)]
    if limited:
        bullets.append(f"Budget-limited (more than {BUDGET_SHARE:.0%} of the runs of the arm or of `{reference}` stopped "
                       "at the step cap, so a larger training budget could change the difference): "
                       + ", ".join(label(a) for a in limited) + ".")
    flags = arm_flags(summary, axis)
    flagged = flags[flags.str.contains("at step cap|below", regex=True)]
    if len(flagged):
        bullets.append("Read with care: " + "; ".join(f"`{a}`: {f}" for a, f in flagged.items()) + ".")
    bullets.append(simulation_note(axis_rows(summary, axis, world=None)))
    return "\n".join(f"- {b}" for b in bullets)


def simulation_note(summary: pd.DataFrame) -> str:
    """One sentence saying which data the runs used: the simulated world(s) or real data (from the runs'
    ``data_dir`` and ``world`` columns; no ``data_dir`` means the simulated cohort). Real data is named
    by the data source id its runs record (``data_source``, :mod:`stflib.data.source`), else by its
    folder's name: never by a path of the machine that ran them."""
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
        folder = data_dir[real].map(lambda d: Path(str(d)).name)
        recorded = summary.loc[real, "data_source"] if "data_source" in summary else pd.Series(np.nan, index=folder.index)
        named = recorded.where(recorded.notna() & ~recorded.astype(str).isin(["", "None", "nan"]), folder)
        parts.append(f"{int(real.sum())} runs read real data (data source "
                     + ", ".join(f"`{d}`" for d in sorted(named.astype(str).unique())) + ").")
    return " ".join(parts)


# what a default-world finding does in another world, by that world's paired comparison
WORLD_VERDICTS = ("holds in", "inconclusive in", "reversed in")
INTERVAL_COLUMNS = ("mean_delta", "ci_low", "ci_high", "pairs")  # what interval_text reads


def world_verdicts(summary: pd.DataFrame, references: dict[str, str] | None = None,
                   metric: str = "pcc_hvg50") -> pd.DataFrame:
    """What each finding of the default world does in every other world, one row per (finding, world).

    In each other world the arm is paired with the same reference on the same folds and seeds. The
    finding *holds* there when the difference has the same sign and its 95 % interval excludes zero;
    it is *reversed* when the interval excludes zero on the other side; otherwise it is
    *inconclusive* (the interval crosses zero: with the worlds' 3 folds of one seed that is often a
    matter of power, not of the effect). A world where the arm or its reference was not run gets the verdict
    ``not run in`` and no interval. Columns: axis, arm, reference, the default world's ``mean_delta``,
    ``ci_low``, ``ci_high``, ``pairs`` (prefixed ``default_``), world, verdict and that world's
    ``mean_delta``, ``ci_low``, ``ci_high``, ``pairs``.
    """
    references = references or axis_references()
    return _memo("verdicts", summary, lambda: _world_verdicts(summary, references, metric),
                 tuple(sorted(references.items())), metric)


def _world_verdicts(summary: pd.DataFrame, references: dict[str, str], metric: str) -> pd.DataFrame:
    original = summary
    summary = with_design_columns(summary)
    findings = overview(original, references, metric)
    findings = findings[findings["finding"]]
    worlds = [w for w in sorted(summary["world"].unique()) if w != DEFAULT_WORLD]
    columns = ["axis", "arm", "reference", "default_mean_delta", "default_ci_low", "default_ci_high", "default_pairs",
               "world", "verdict", "mean_delta", "ci_low", "ci_high", "pairs"]
    rows = []
    for _, f in findings.iterrows():
        finding = {"axis": f["axis"], "arm": f["arm"], "reference": f["reference"],
                   **{f"default_{k}": f[k] for k in INTERVAL_COLUMNS}}
        for world in worlds:
            there = summary[(summary["world"] == world) & (summary["axis"] == f["axis"])]
            d = None
            if {f["arm"], f["reference"]} <= set(there["arm"]):
                d = paired_deltas(summary, f["axis"], f["reference"], metric, world).loc[f["arm"]]
            if d is None or int(d["pairs"]) == 0:
                rows.append({**finding, "world": world, "verdict": "not run in", "mean_delta": np.nan,
                             "ci_low": np.nan, "ci_high": np.nan, "pairs": 0})
                continue
            excludes_zero = d["ci_low"] > 0 or d["ci_high"] < 0
            same_side = np.sign(d["mean_delta"]) == np.sign(f["mean_delta"])
            verdict = "inconclusive in" if not excludes_zero else "holds in" if same_side else "reversed in"
            rows.append({**finding, "world": world, "verdict": verdict,
                         **{k: d[k] for k in INTERVAL_COLUMNS}})
    return pd.DataFrame(rows, columns=columns)


def rerun_verdicts(verdicts: pd.DataFrame) -> pd.DataFrame:
    """The rows of :func:`world_verdicts` whose finding was re-run in at least one other world."""
    return verdicts.groupby(["axis", "arm"], sort=False).filter(lambda v: (v["verdict"] != "not run in").any())


def world_robustness(summary: pd.DataFrame, references: dict[str, str] | None = None,
                     metric: str = "pcc_hvg50", verdicts: pd.DataFrame | None = None) -> pd.DataFrame:
    """The robustness table: one row per finding of the default world that was re-run in another
    world, with the worlds where it holds, is inconclusive or is reversed (each with its effect and
    interval) and the worlds where it was not run. Findings run in no other world are left out
    (:func:`unchecked_findings` lists them). ``verdicts``: :func:`world_verdicts`' table, if already
    computed."""
    if verdicts is None:
        verdicts = world_verdicts(summary, references, metric)
    rows = []
    for (axis, arm), per_world in rerun_verdicts(verdicts).groupby(["axis", "arm"], sort=False):
        first = per_world.iloc[0]
        effect = interval_text({k: first[f"default_{k}"] for k in INTERVAL_COLUMNS})
        cells = {v: "; ".join(f"{w['world']} {interval_text(w)}" for _, w in per_world[per_world["verdict"] == v].iterrows())
                 or "-" for v in WORLD_VERDICTS}
        missing = ", ".join(per_world.loc[per_world["verdict"] == "not run in", "world"]) or "-"
        rows.append({"axis": axis, "arm": arm, "reference": first["reference"], "effect (default world)": effect,
                     **cells, "not run in": missing})
    return pd.DataFrame(rows, columns=["axis", "arm", "reference", "effect (default world)", *WORLD_VERDICTS,
                                       "not run in"])


def unchecked_findings(summary: pd.DataFrame, references: dict[str, str] | None = None,
                       metric: str = "pcc_hvg50", verdicts: pd.DataFrame | None = None) -> list[str]:
    """``axis/arm`` of the default world's findings that no other world re-ran (their arm is outside
    the robustness subset, ``stflib.grid.axes.ROBUSTNESS_ARMS``, or no world was run). ``verdicts``:
    :func:`world_verdicts`' table, if already computed."""
    references = references or axis_references()
    if verdicts is None:
        verdicts = world_verdicts(summary, references, metric)
    found = overview(summary, references, metric)
    found = found[found["finding"]]
    checked = set(map(tuple, rerun_verdicts(verdicts)[["axis", "arm"]].to_numpy()))
    return [f"{a}/{b}" for a, b in found[["axis", "arm"]].to_numpy() if (a, b) not in checked]


def _default_design(summary: pd.DataFrame) -> tuple[int | tuple[int, int], int | tuple[int, int]]:
    """(folds, seeds per fold) of the default world's runs: the design every default-world interval is over;
    where the axes differ (a grid part re-run with more folds), each count is its (fewest, most) over axes."""
    summary = with_design_columns(summary)
    default = summary[summary["world"] == DEFAULT_WORLD]
    if default.empty or "axis" not in default:
        return design_counts(default)
    per_axis = [design_counts(g) for _, g in default.groupby("axis")]
    folds, seeds = sorted({f for f, _ in per_axis}), sorted({s for _, s in per_axis})
    return (folds[0] if len(folds) == 1 else (folds[0], folds[-1]),
            seeds[0] if len(seeds) == 1 else (seeds[0], seeds[-1]))


def findings_text(summary: pd.DataFrame, references: dict[str, str] | None = None,
                  metric: str = "pcc_hvg50") -> str:
    """The findings page's body in Markdown: what the intervals are over and conditional on, one
    sentence per finding (effect, interval, worlds where it holds), then the arms that are not findings
    after Holm though their unadjusted interval excludes zero, and those that made no measurable
    difference, axis by axis; each distinct model named once, with its aliases."""
    references = references or axis_references()
    deltas = overview(summary, references, metric)
    robust = world_robustness(summary, references, metric).set_index(["axis", "arm"])
    name = metric_info(metric).label
    up = metric_info(metric).higher_is_better
    n_folds, n_seeds = _default_design(summary)
    lines = [f"Each comparison pairs an arm with its axis's reference on the same held-out patient folds and seeds; "
             f"the paired differences are taken {unit_sentence(n_folds, n_seeds)}. A difference is a finding when "
             f"its paired t-test p-value, Holm-adjusted across the distinct arms of its axis (an arm that is the same "
             f"model as another counts once), is below 0.05; intervals are unadjusted 95 % t intervals of the mean "
             f"difference in {name}.", "", "**Findings**", ""]
    found = deltas[deltas["finding"]].sort_values(["axis", "mean_delta"], ascending=[True, not up])
    for _, f in found.iterrows():
        direction = "better" if (f["mean_delta"] > 0) == up else "worse"
        worlds = ""
        if (f["axis"], f["arm"]) in robust.index:
            r = robust.loc[(f["axis"], f["arm"])]
            worlds = " In the other worlds: " + "; ".join(
                f"{verdict.removesuffix(' in')} in {r[verdict]}" for verdict in (*WORLD_VERDICTS, "not run in")
                if r[verdict] != "-") + "."
        lines.append(f"- **{f['axis']}**: {arm_label(f['axis'], f['arm'])} is {direction} than `{f['reference']}` by "
                     f"{interval_text(f)} (Holm-adjusted p = {f['p_holm']:.3g}; wins {f['wins']} of {f['pairs']} "
                     f"folds).{worlds}")
    if found.empty:
        lines.append(f"- None: no arm of any axis differs from its axis's reference after the Holm correction, "
                     f"with {count_text(n_folds)} folds per arm.")
    compared = deltas[~deltas["finding"] & (deltas["pairs"] > 0)]
    for title, rows_of in (("Not findings after Holm, though the unadjusted interval excludes zero",
                            compared[excludes_zero(compared)]),
                           ("No measurable difference (the unadjusted interval includes zero)",
                            compared[~excludes_zero(compared)])):
        if rows_of.empty:
            continue
        lines += ["", f"**{title}**", ""]
        for axis, rows in rows_of.groupby("axis", sort=False):
            lines.append(f"- **{axis}** (vs `{rows['reference'].iloc[0]}`): "
                         + ", ".join(f"{arm_label(axis, a)} {interval_text(r)}" for a, r in rows.set_index("arm").iterrows()))
    unpaired = deltas[deltas["pairs"] == 0]
    if len(unpaired):
        lines += ["", "**Not compared yet** (the arm's runs and its reference's come from different library "
                  "versions; `python -m stflib ablate` re-runs them)", ""]
        for axis, rows in unpaired.groupby("axis", sort=False):
            lines.append(f"- **{axis}**: " + ", ".join(f"`{a}`" for a in rows["arm"]))
    return "\n".join(lines)


def headline(summary: pd.DataFrame, references: dict[str, str] | None = None, metric: str = "pcc_hvg50") -> str:
    """The book's headline findings in Markdown bullets (the findings page's takeaways, linked from the
    introduction): how many arms are findings, the largest finding of each axis other than the
    baselines, how the reference STF compares with the baselines, and what the other worlds say (on one real
    cohort's runs, a :func:`stflib.report.results.shown_summary`: nothing about other worlds, only where the
    Findings page compares the simulator with them)."""
    references = references or axis_references()
    deltas = overview(summary, references, metric)
    unpaired = int((deltas["pairs"] == 0).sum())
    deltas = deltas[deltas["pairs"] > 0]
    found = deltas[deltas["finding"]]
    name = metric_info(metric).label
    up = metric_info(metric).higher_is_better
    n_folds, n_seeds = _default_design(summary)
    unadjusted = int((~deltas["finding"] & excludes_zero(deltas)).sum())
    bullets = [f"{len(found)} of the {len(deltas)} distinct arm{'' if len(deltas) == 1 else 's'} compared "
               f"differ{'s' if len(found) == 1 else ''} from {'its' if len(found) == 1 else 'their'} axis's reference on {name} "
               f"(Holm-adjusted p < 0.05 across each axis's distinct arms; paired differences "
               f"{unit_sentence(n_folds, n_seeds)}); of the other {len(deltas) - len(found)}, "
               f"{unadjusted} have an unadjusted interval that excludes zero but are not findings after Holm, and "
               f"{len(deltas) - len(found) - unadjusted} made no measurable difference."
               + (f" {unpaired} arms are not compared yet: their runs come from an earlier library version than "
                  "their reference's." if unpaired else "")]
    design = found[found["axis"] != "baselines"]
    if len(design):
        # one per axis, so a single axis with large effects (say, the backbones) does not fill the line
        top = design.loc[design["mean_delta"].abs().groupby(design["axis"]).idxmax()]
        bullets.append("The largest finding of each axis about STF's design and inputs: " + "; ".join(
            f"{r['axis']}: {arm_label(r['axis'], r['arm'])} vs `{r['reference']}` {interval_text(r)}"
            for _, r in top.iterrows()) + ".")
    base = deltas[deltas["axis"] == "baselines"]
    if len(base):
        reference = base["reference"].iloc[0]
        # an arm that is worse than the reference is a model the reference beats
        beaten = base[base["finding"] & ((base["mean_delta"] < 0) == up)]
        beating = base[base["finding"] & ((base["mean_delta"] > 0) == up)]
        level = base[~base["finding"] & ~excludes_zero(base)]
        unadjusted_base = base[~base["finding"] & excludes_zero(base)]
        parts = []
        if len(beaten):
            parts.append("beats " + ", ".join(f"`{a}`" for a in beaten["arm"]))
        if len(beating):
            parts.append("is beaten by " + ", ".join(f"`{a}` ({interval_text(r)})" for a, r in
                                                     beating.set_index("arm").iterrows()))
        if len(unadjusted_base):
            parts.append("differs from " + ", ".join(f"`{a}` ({interval_text(r)})" for a, r in
                                                     unadjusted_base.set_index("arm").iterrows())
                         + " by an unadjusted interval that excludes zero, not a finding after Holm")
        if len(level):
            parts.append("is not measurably different from " + ", ".join(
                f"`{a}` ({interval_text(r)})" for a, r in level.set_index("arm").iterrows()))
        bullets.append(f"The reference STF (`{reference}`) " + "; ".join(parts) + " (differences are the baseline "
                       f"minus `{reference}`).")
    if len(found):
        verdicts = world_verdicts(summary, references, metric)
        other_worlds = sorted(set(with_design_columns(summary)["world"]) - {DEFAULT_WORLD})
        rerun = rerun_verdicts(verdicts)
        if other_worlds and len(rerun):
            per_finding = []
            for (_, arm), v in rerun.groupby(["axis", "arm"], sort=False):
                said = [f"{verdict.removesuffix(' in')} in " + ", ".join(v.loc[v["verdict"] == verdict, "world"])
                        for verdict in WORLD_VERDICTS if (v["verdict"] == verdict).any()]
                per_finding.append(f"`{arm}` vs `{v['reference'].iloc[0]}` " + ", ".join(said))
            pairs = sorted({int(n) for n in rerun.loc[rerun["verdict"] != "not run in", "pairs"]})
            pairs_text = f"{pairs[0]} folds each" if len(pairs) == 1 else f"{pairs[0]} to {pairs[-1]} folds"
            n_reversed = rerun.loc[rerun["verdict"] == "reversed in", ["axis", "arm"]].drop_duplicates().shape[0]
            bullets.append(f"In the other simulated worlds ({', '.join(other_worlds)}; {pairs_text}), "
                           f"{len(per_finding)} finding{' was' if len(per_finding) == 1 else 's were'} re-run: "
                           + "; ".join(per_finding) + ". "
                           + ("None reverses anywhere." if n_reversed == 0 else
                              f"{n_reversed} reverse{'s' if n_reversed == 1 else ''} somewhere."))
            read = control_readings_line(summary, metric)
            if read:
                bullets.append(read)
        elif not other_worlds and not is_real(summary):
            bullets.append("No other simulated world has been run yet, so no finding has been checked for "
                           "robustness to the simulator's assumptions (`python -m stflib ablate --world all` "
                           "runs the robustness subset in each).")
    if is_real(summary):  # one real cohort: the simulated worlds are compared with it on the Findings page
        bullets.append("These are real runs: whether the simulator predicted each of their outcomes (same sign, "
                       "overlapping intervals) is the Findings page's *Simulation against reality* section.")
    bullets.append(simulation_note(summary))
    return "\n".join(f"- {b}" for b in bullets)


def control_readings_line(summary: pd.DataFrame, metric: str = "pcc_hvg50") -> str | None:
    """One headline sentence: each comparison that the control worlds could read (a rule of
    ``stflib.report.controls.RULES`` matched), with what the rule concludes and, once, what each rule used
    means; None when no comparison has run in a control world."""
    from stflib.report import controls
    from stflib.sim.worlds import CONTROLLED_BIOLOGY

    table = controls.readings(controls.world_cells(summary, metric=metric))
    read = table[table["rules"] != ""]
    if read.empty:
        return None
    parts, used = [], {}
    for r in read.itertuples():
        rules = r.rules.split("; ")
        used.update(dict.fromkeys(rules))
        read_as = [f"*{rule}* ({CONTROLLED_BIOLOGY[biology].split(' (')[0]})"  # the biology's short name
                   for rule, biology in zip(rules, r.biologies.split("; "))]
        parts.append(f"{arm_label(r.axis, r.arm)} vs `{r.reference}` ({r.axis}): {', '.join(read_as)}")
    when = {rule.name: rule.when for rule in controls.RULES}
    return ("Read through the worlds built to test them (a negative control removes the biology an axis is "
            "about, a positive control makes it strong; the Findings page has every cell): " + "; ".join(parts)
            + ". (" + "; ".join(f"*{rule}*: {when[rule]}" for rule in used) + ".)")


# ---------------------------------------------------------------------------------------------
# What to conclude and what not to: generated boxes for the results pages, and the lessons page
# ---------------------------------------------------------------------------------------------
