"""The book's sentences about the results, written from the numbers: axis readings, takeaways, findings.

A difference to an axis's reference arm is a *finding* when its paired t-test p-value, Holm-adjusted
across the axis's arms, is below 0.05 (:mod:`stflib.report.stats`); every sentence here is generated
from the paired differences of :mod:`stflib.report.tables`, so no figure is typed by hand.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from stflib.grid.axes import ARMS, axis_references
from stflib.report.results import DEFAULT_WORLD, axis_rows, metric_info, with_design_columns
from stflib.report.tables import arm_flags, interval_text, paired_deltas
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


def describe_axis(summary: pd.DataFrame, axis: str, reference: str, metric: str = "pcc_hvg50") -> str:
    """A plain-language reading of an axis, written from the numbers: the best arm, and which paired
    differences to the reference are findings (Holm-adjusted p < 0.05 across the axis's arms)."""
    rows = axis_rows(summary, axis)
    means = rows.groupby("arm")[metric].mean().sort_values(ascending=not metric_info(metric).higher_is_better)
    deltas = paired_deltas(summary, axis, reference, metric)
    name = metric_info(metric).label
    n_pairs = int(deltas["pairs"].max()) if len(deltas) else 0
    lines = [f"Over {n_pairs} (fold, seed) pairs ({rows['fold'].nunique()} patient folds x "
             f"{rows['seed'].nunique()} seed{'s' if rows['seed'].nunique() != 1 else ''}), the best arm on {name} is "
             f"`{means.index[0]}` ({means.iloc[0]:.3f}); the reference `{reference}` reaches "
             f"{means.get(reference, np.nan):.3f}."]
    found = deltas[deltas["finding"]]
    if len(found):
        items = ", ".join(f"`{a}` ({interval_text(r)}, Holm p = {r['p_holm']:.3g})" for a, r in found.iterrows())
        lines.append(f"Differences to the reference that are findings (Holm-adjusted p < 0.05 across the "
                     f"{len(deltas)} arms): {items}.")
    else:
        lines.append(f"None of the {len(deltas)} arms differs from the reference after the Holm correction "
                     "(adjusted p < 0.05): on this grid no difference on this axis is a finding.")
    return " ".join(lines)


def takeaways(summary: pd.DataFrame, axis: str, reference: str | None = None, metric: str = "pcc_hvg50") -> str:
    """The "Key takeaways" bullets of an axis page, written from its own paired intervals."""
    reference = reference or ARMS[axis].reference
    deltas = paired_deltas(summary, axis, reference, metric)
    name = metric_info(metric).label
    up = metric_info(metric).higher_is_better
    better = deltas[deltas["finding"] & ((deltas["mean_delta"] > 0) == up)]
    worse = deltas[deltas["finding"] & ((deltas["mean_delta"] > 0) != up)]
    unpaired = deltas[deltas["pairs"] == 0]  # arms whose runs are of another library version than the reference's
    null = deltas[~deltas["finding"] & (deltas["pairs"] > 0)]
    bullets = []
    for label, found in (("better than", better), ("worse than", worse)):
        for arm, r in found.iterrows():
            bullets.append(f"`{arm}` is {label} `{reference}` on {name}: {interval_text(r)} "
                           f"(95 % interval; Holm-adjusted p = {r['p_holm']:.3g}; wins {r['wins']} of {r['pairs']} pairs).")
    if len(null):
        widest = null["ci_high"].sub(null["ci_low"]).max()
        span = f" (95 % intervals up to {widest:.3f} wide)" if np.isfinite(widest) else ""
        bullets.append(f"No measurable difference from `{reference}`{span}: "
                       + ", ".join(f"`{a}`" for a in null.index) + ". With "
                       f"{int(deltas['pairs'].max())} pairs, smaller effects than these intervals cannot be told apart.")
    if len(unpaired):
        bullets.append("Not compared yet (their runs and the reference's come from different library versions; "
                       "`python -m stflib ablate` re-runs them): " + ", ".join(f"`{a}`" for a in unpaired.index) + ".")
    if not len(deltas):
        bullets.append(f"The axis has only its reference arm `{reference}`: nothing to compare.")
    flags = arm_flags(summary, axis)
    flagged = flags[flags.str.contains("at step cap|below", regex=True)]
    if len(flagged):
        bullets.append("Read with care: " + "; ".join(f"`{a}`: {f}" for a, f in flagged.items()) + ".")
    bullets.append(simulation_note(axis_rows(summary, axis, world=None)))
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


# what a default-world finding does in another world, by that world's paired comparison
WORLD_VERDICTS = ("holds in", "inconclusive in", "reversed in")
INTERVAL_COLUMNS = ("mean_delta", "ci_low", "ci_high", "pairs")  # what interval_text reads


def world_verdicts(summary: pd.DataFrame, references: dict[str, str] | None = None,
                   metric: str = "pcc_hvg50") -> pd.DataFrame:
    """What each finding of the default world does in every other world, one row per (finding, world).

    In each other world the arm is paired with the same reference on the same folds and seeds. The
    finding *holds* there when the difference has the same sign and its 95 % interval excludes zero;
    it is *reversed* when the interval excludes zero on the other side; otherwise it is
    *inconclusive* (the interval crosses zero: with the worlds' 3 pairs that is often a matter of
    power, not of the effect). A world where the arm or its reference was not run gets the verdict
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


def findings_text(summary: pd.DataFrame, references: dict[str, str] | None = None,
                  metric: str = "pcc_hvg50") -> str:
    """The findings page's body in Markdown: one sentence per finding (effect, interval, worlds where
    it holds), then the arms that made no measurable difference, axis by axis."""
    references = references or axis_references()
    deltas = overview(summary, references, metric)
    robust = world_robustness(summary, references, metric).set_index(["axis", "arm"])
    name = metric_info(metric).label
    up = metric_info(metric).higher_is_better
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
            worlds = " In the other worlds: " + "; ".join(
                f"{verdict.removesuffix(' in')} in {r[verdict]}" for verdict in (*WORLD_VERDICTS, "not run in")
                if r[verdict] != "-") + "."
        lines.append(f"- **{f['axis']}**: `{f['arm']}` is {direction} than `{f['reference']}` by {interval_text(f)} "
                     f"(Holm-adjusted p = {f['p_holm']:.3g}; wins {f['wins']} of {f['pairs']} pairs).{worlds}")
    if found.empty:
        lines.append(f"- None: no arm of any axis differs from its axis's reference after the Holm correction, "
                     f"with {n_pairs} pairs per arm.")
    lines += ["", "**No measurable difference**", ""]
    for axis, rows in deltas[~deltas["finding"] & (deltas["pairs"] > 0)].groupby("axis", sort=False):
        lines.append(f"- **{axis}** (vs `{rows['reference'].iloc[0]}`): "
                     + ", ".join(f"`{a}` {interval_text(r)}" for a, r in rows.set_index("arm").iterrows()))
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
    baselines, how the reference STF compares with the baselines, and what the other worlds say."""
    references = references or axis_references()
    deltas = overview(summary, references, metric)
    unpaired = int((deltas["pairs"] == 0).sum())
    deltas = deltas[deltas["pairs"] > 0]
    found = deltas[deltas["finding"]]
    name = metric_info(metric).label
    up = metric_info(metric).higher_is_better
    n_pairs = int(deltas["pairs"].max()) if len(deltas) else 0
    bullets = [f"{len(found)} of the {len(deltas)} arms compared differ from their axis's reference on {name} "
               f"(Holm-adjusted p < 0.05 across each axis's arms; at most {n_pairs} (fold, seed) pairs per arm); "
               f"the other {len(deltas) - len(found)} made no measurable difference."
               + (f" {unpaired} arms are not compared yet: their runs come from an earlier library version than "
                  "their reference's." if unpaired else "")]
    design = found[found["axis"] != "baselines"]
    if len(design):
        # one per axis, so a single axis with large effects (say, the backbones) does not fill the line
        top = design.loc[design["mean_delta"].abs().groupby(design["axis"]).idxmax()]
        bullets.append("The largest finding of each axis about STF's design and inputs: " + "; ".join(
            f"{r['axis']}: `{r['arm']}` vs `{r['reference']}` {interval_text(r)}" for _, r in top.iterrows()) + ".")
    base = deltas[deltas["axis"] == "baselines"]
    if len(base):
        reference = base["reference"].iloc[0]
        # an arm that is worse than the reference is a model the reference beats
        beaten = base[base["finding"] & ((base["mean_delta"] < 0) == up)]
        beating = base[base["finding"] & ((base["mean_delta"] > 0) == up)]
        level = base[~base["finding"]]
        parts = []
        if len(beaten):
            parts.append("beats " + ", ".join(f"`{a}`" for a in beaten["arm"]))
        if len(beating):
            parts.append("is beaten by " + ", ".join(f"`{a}` ({interval_text(r)})" for a, r in
                                                     beating.set_index("arm").iterrows()))
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
            pairs_text = f"{pairs[0]} pairs each" if len(pairs) == 1 else f"{pairs[0]} to {pairs[-1]} pairs"
            n_reversed = rerun.loc[rerun["verdict"] == "reversed in", ["axis", "arm"]].drop_duplicates().shape[0]
            bullets.append(f"In the other simulated worlds ({', '.join(other_worlds)}; {pairs_text}), "
                           f"{len(per_finding)} findings were re-run: " + "; ".join(per_finding) + ". "
                           + ("None reverses anywhere." if n_reversed == 0 else
                              f"{n_reversed} reverse{'s' if n_reversed == 1 else ''} somewhere."))
        elif not other_worlds:
            bullets.append("No other simulated world has been run yet, so no finding has been checked for "
                           "robustness to the simulator's assumptions (`python -m stflib ablate --world all "
                           "--folds 3` runs the robustness subset in each).")
    bullets.append(simulation_note(summary))
    return "\n".join(f"- {b}" for b in bullets)


# ---------------------------------------------------------------------------------------------
# What to conclude and what not to: generated boxes for the results pages, and the lessons page
# ---------------------------------------------------------------------------------------------


def world_truth(results_dir=None) -> pd.DataFrame:
    """``results/worlds/truth.csv`` indexed by world (what each simulated world lets a model find,
    measured on its truth by ``python -m stflib truth``); empty when it is absent."""
    from stflib.report.results import repo_root

    path = (repo_root() / "results" if results_dir is None else Path(results_dir)) / "worlds" / "truth.csv"
    return pd.read_csv(path).set_index("world") if path.is_file() else pd.DataFrame()


def _share(truth: pd.DataFrame, world: str, column: str) -> str:
    """A figure of the truth report, with two decimals (or two significant digits when it is below 0.1)."""
    if world not in truth.index or column not in truth:
        return "n/a"
    value = float(truth.loc[world, column])
    return f"{value:.2f}" if abs(value) >= 0.1 or value == 0 else f"{value:.2g}"


def simulator_caveat(axis: str, truth: pd.DataFrame) -> str:
    """What the simulator, not the design, decides on ``axis``: a sentence built from the worlds'
    truth report (variance shares, observable pathway share, local-context gain)."""
    if truth.empty:
        return "The simulator's truth report (`results/worlds/truth.csv`) is absent: run `python -m stflib truth --world all`."
    if axis in ("interactions", "context", "h2p_balance", "positional_encoding"):
        return (f"In the default world, spatial context carries a share of {_share(truth, 'default', 'share_context')} of "
                f"the evaluated genes' variance and composition {_share(truth, 'default', 'share_composition')}; a ridge "
                f"on the neighbours' noise-free latents gains {_share(truth, 'default', 'local_context_gain')} in PCC over "
                "the spot's own. A gain from letting spots talk is therefore mostly the averaging-out of per-spot feature "
                "noise, not context biology; the `long-range-context` world (context share "
                f"{_share(truth, 'long-range-context', 'share_context')}) is where a context effect could be biology.")
    if axis in ("pathways", "pathway_readout"):
        return (f"Only a share of {_share(truth, 'default', 'observable_share')} of the true pathway activity is "
                f"observable from any input in the default world ({_share(truth, 'pathway-visible', 'observable_share')} "
                "in `pathway-visible`), so named tokens can recover named pathways only up to that; a null result here "
                "says as much about the world as about the tokens.")
    if axis == "backbones":
        return ("The backbones are stand-ins: features whose information level the simulator sets to follow "
                "HEST-Bench's ranking. Differences between them measure that setting, not the real encoders.")
    if axis in ("losses", "log_transform"):
        return ("The counts are drawn from a zero-inflated negative binomial by the simulator, which favours a "
                "likelihood of that family; the ranking of losses on real counts may differ.")
    return (f"All of it is simulated: in the default world composition carries "
            f"{_share(truth, 'default', 'share_composition')} of the evaluated genes' variance, patients "
            f"{_share(truth, 'default', 'patient_share')} of the pathway activity.")


def conclusion_box(summary: pd.DataFrame, axis: str, reference: str | None = None, metric: str = "pcc_hvg50",
                   truth: pd.DataFrame | None = None) -> str:
    """A MyST admonition for an axis page: what its numbers allow one to conclude (the findings, with
    their intervals) and what they do not (a null result is not an equivalence; the intervals' width;
    what is a property of the simulator), all from the paired differences and the truth report."""
    reference = reference or ARMS[axis].reference
    truth = world_truth() if truth is None else truth
    deltas = paired_deltas(summary, axis, reference, metric)
    deltas = deltas[deltas["pairs"] > 0]
    name = metric_info(metric).label
    found, null = deltas[deltas["finding"]], deltas[~deltas["finding"]]
    do = [f"`{a}` differs from `{reference}` on {name} by {interval_text(r)}." for a, r in found.iterrows()]
    if not do:
        do = [f"No arm differs measurably from `{reference}` on {name} with {int(deltas['pairs'].max()) if len(deltas) else 0} "
              "pairs: the axis does not separate its arms on this grid."]
    dont = []
    if len(null):
        widest = float((null["ci_high"] - null["ci_low"]).max())
        dont.append(f"That {', '.join(f'`{a}`' for a in null.index)} {'is' if len(null) == 1 else 'are'} as good as "
                    f"`{reference}`: no measurable difference is not an equivalence (95 % intervals up to "
                    f"{widest:.3f} wide).")
    n_folds = axis_rows(summary, axis)["fold"].nunique()
    dont.append(f"More certainty than {n_folds} groups of held-out patients give: the seeds within a fold share its "
                "test patients, so the pairs are not independent patients.")
    dont.append(simulator_caveat(axis, truth))
    body = ("**Conclude**\n\n" + "\n".join(f"- {d}" for d in do) + "\n\n**Do not conclude**\n\n"
            + "\n".join(f"- {d}" for d in dont))
    return f"```{{admonition}} What to conclude, and what not to\n:class: important\n{body}\n```"


def grid_conclusion_box(summary: pd.DataFrame, metric: str = "pcc_hvg50", truth: pd.DataFrame | None = None) -> str:
    """The box of the pages that show every axis at once (the overview, the findings)."""
    truth = world_truth() if truth is None else truth
    deltas = overview(summary, axis_references(), metric)
    deltas = deltas[deltas["pairs"] > 0]
    found = deltas[deltas["finding"]]
    do = [f"{len(found)} of the {len(deltas)} arms differ from their axis's reference (Holm-adjusted p < 0.05 within "
          "each axis); their intervals say by how much, on the simulated cohort."]
    dont = ["That the other arms are as good as their references: no measurable difference is not an equivalence.",
            "That an effect carries over to real tissue: every run here is simulated, and in the default world "
            f"composition carries {_share(truth, 'default', 'share_composition')} of the evaluated genes' variance "
            f"and spatial context {_share(truth, 'default', 'share_context')}; real tissue's shares are not known.",
            "That two axes' effects add up: each arm changes one choice from the reference, so interactions between "
            "choices were not measured."]
    body = ("**Conclude**\n\n" + "\n".join(f"- {d}" for d in do) + "\n\n**Do not conclude**\n\n"
            + "\n".join(f"- {d}" for d in dont))
    return f"```{{admonition}} What to conclude, and what not to\n:class: important\n{body}\n```"


def lessons(summary: pd.DataFrame, truth: pd.DataFrame | None = None, metric: str = "pcc_hvg50") -> dict[str, str]:
    """The "What we learned" page's paragraphs, every number read from ``summary`` and the worlds'
    truth report: what STF's design buys, what it does not, and what is a property of the simulator."""
    truth = world_truth() if truth is None else truth
    references = axis_references()
    deltas = overview(summary, references, metric)
    deltas = deltas[deltas["pairs"] > 0]
    up = metric_info(metric).higher_is_better
    name = metric_info(metric).label
    inputs = deltas[deltas["axis"] == "backbones"]
    design = deltas[~deltas["axis"].isin(["baselines", "backbones"])]
    better = design[design["finding"] & ((design["mean_delta"] > 0) == up)]
    worse = design[design["finding"] & ((design["mean_delta"] > 0) != up)]
    null = design[~design["finding"]]

    def items(frame: pd.DataFrame) -> str:
        return "; ".join(f"{r['axis']}: `{r['arm']}` vs `{r['reference']}` {interval_text(r)}" for _, r in frame.iterrows())

    out = {}
    ref_rows = summary[(summary["axis"] == "interactions") & (summary["arm"] == references.get("interactions", "full"))
                       & (with_design_columns(summary)["world"] == DEFAULT_WORLD)]
    level = ref_rows[metric].mean() if len(ref_rows) else np.nan
    ceiling = ref_rows["noise_ceiling_hvg50"].mean() if "noise_ceiling_hvg50" in ref_rows else np.nan
    out["level"] = (f"The reference STF reaches a mean {name} of {level:.3f} on held-out patients of the default "
                    f"world, where the simulator's own expected expression reaches {ceiling:.3f}: the model recovers "
                    f"{level / ceiling:.0%} of what the data allow on this metric.")
    base = deltas[deltas["axis"] == "baselines"]
    if len(base):
        beaten = base[base["finding"] & ((base["mean_delta"] < 0) == up)]
        beating = base[base["finding"] & ((base["mean_delta"] > 0) == up)]
        level_with = base[~base["finding"]]
        parts = [f"it beats {len(beaten)} of the {len(base)} baselines it is compared with"]
        if len(beating):
            parts.append("is beaten by " + ", ".join(f"`{a}` ({interval_text(r)})" for a, r in beating.set_index("arm").iterrows()))
        if len(level_with):
            parts.append("cannot be told apart from " + ", ".join(f"`{a}`" for a in level_with["arm"]))
        out["baselines"] = "Against the baselines trained the same way, " + "; ".join(parts) + "."
        if len(level_with) and level_with["arm"].str.contains(r"_k\d+$").all():
            out["baselines"] += (" Every baseline it cannot be told apart from is a per-spot model given the mean of "
                                 "the spot's nearest neighbours' features: on this world, averaging the neighbourhood "
                                 "gets about what STF's attention gets.")
    out["buys"] = ("What the design's choices buy, measurably (Holm-adjusted p < 0.05 on their axis): "
                   + (items(better) if len(better) else "no arm beats its axis's reference") + ".")
    flows = deltas[deltas["axis"] == "interactions"]
    if len(flows):
        with_h2h = flows["arm"].str.contains("h2h")
        worse_flows = flows["finding"] & ((flows["mean_delta"] > 0) != up)
        reference_flows = flows["reference"].iloc[0]
        out["flows"] = (f"The information flows: of the {int((~with_h2h).sum())} interaction arms without `h2h` (patches "
                        f"never read each other directly), {int((worse_flows & ~with_h2h).sum())} are measurably worse "
                        f"than `{reference_flows}`; of the {int(with_h2h.sum())} arms with `h2h`, "
                        f"{int((worse_flows & with_h2h).sum())} are.")
        if (worse_flows & ~with_h2h).sum() == (~with_h2h).sum() and not (worse_flows & with_h2h).any():
            out["flows"] += (" On this world, direct patch-to-patch attention is what the flows buy; routing every "
                             "spot-to-spot message through the pathway tokens (the bottleneck) costs accuracy, and "
                             "which of the other flows are on makes no measurable difference once `h2h` is there.")
    if len(inputs):
        found_inputs = inputs[inputs["finding"]]
        out["inputs"] = (f"The input matters more than most design choices: {len(found_inputs)} of the {len(inputs)} "
                         f"backbone stand-ins differ from `{inputs['reference'].iloc[0]}`"
                         + (f", by up to {inputs['mean_delta'].abs().max():.3f} in {name}" if len(found_inputs) else "")
                         + " (stand-ins whose information level the simulator sets).")
    out["costs"] = ("What is measurably worse than the reference: " + (items(worse) if len(worse) else "nothing") + ".")
    out["null"] = (f"{len(null)} of the {len(design)} design arms make no measurable difference, with up to "
                   f"{int(design['pairs'].max()) if len(design) else 0} pairs each: "
                   + ", ".join(f"`{a}`" for a in null["arm"].head(12)) + (" and others" if len(null) > 12 else "") + ".")
    if not truth.empty:
        out["simulator"] = (
            "What is a property of the simulator, not of STF. In the default world, composition carries "
            f"{_share(truth, 'default', 'share_composition')} of the evaluated genes' variance and spatial context "
            f"{_share(truth, 'default', 'share_context')}; in the `long-range-context` world context carries "
            f"{_share(truth, 'long-range-context', 'share_context')}. Of the true pathway activity, "
            f"{_share(truth, 'default', 'observable_share')} is observable from any input in the default world and "
            f"{_share(truth, 'pathway-visible', 'observable_share')} in `pathway-visible`. So a design that lets spots "
            "talk can, in the default world, only average out feature noise, and named pathway tokens can only be "
            "judged in the world that makes pathways visible; the positive and negative control worlds are where "
            "those two claims are tested.")
    verdicts = world_verdicts(summary, references, metric)
    rerun = rerun_verdicts(verdicts)
    rerun = rerun[rerun["verdict"] != "not run in"]
    if len(rerun):
        counts = rerun["verdict"].value_counts()
        out["robustness"] = (f"Re-run in the other worlds, {rerun[['axis', 'arm']].drop_duplicates().shape[0]} findings "
                             f"give {len(rerun)} (finding, world) verdicts: "
                             + ", ".join(f"{int(counts.get(v, 0))} {v.removesuffix(' in')}" for v in WORLD_VERDICTS)
                             + " (a world runs one seed per fold, so inconclusive often means too few pairs).")
    return out
