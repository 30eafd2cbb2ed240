"""What a reader may and may not conclude: the "what to conclude, and what not to" box of every results
page (``conclusion_box``, ``grid_conclusion_box``), read through the simulated worlds' truth reports
(``world_truth``, ``simulator_caveat``), and the lessons page (``lessons``). Every number comes from
``results/``; the findings themselves are :mod:`stflib.report.findings`'.

The wording follows :func:`stflib.report.findings.takeaways`: the unit is the held-out patient fold
(seeds averaged within a fold), every interval says over how many folds it is and that it is
conditional on the cohort's patients and the training budget, an arm that is the same model as
another is named once with its aliases (``stflib.report.tables.arm_label``), and an arm whose
unadjusted 95 % interval excludes zero but that is not a finding after Holm is said to be so, never
"no measurable difference".
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from stflib.grid.axes import ARMS, axis_references
from stflib.report.findings import (WORLD_VERDICTS, count_text, design_counts, excludes_zero, overview,
                                    rerun_verdicts, unit_sentence, world_verdicts)
from stflib.report.results import DEFAULT_WORLD, is_real, metric_info, results_root, with_design_columns
from stflib.report.tables import arm_label, distinct_axis_rows, interval_text, paired_deltas


def world_truth(results_dir=None) -> pd.DataFrame:
    """``results/worlds/truth.csv`` indexed by world (what each simulated world lets a model find,
    measured on its truth by ``python -m stflib truth``); empty when it is absent.

    The worlds are the simulator's, not the runs': a results folder without the table (real runs
    only, ``make book RESULTS=<dir>``) reads the project's committed one."""
    from stflib.paths import project_root

    for root in (results_root(results_dir), project_root() / "results"):
        path = root / "worlds" / "truth.csv"
        if path.is_file():
            return pd.read_csv(path).set_index("world")
    return pd.DataFrame()


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


def real_data_caveat(summary: pd.DataFrame) -> str:
    """What runs on one real cohort (a :func:`stflib.report.results.shown_summary`) do not say."""
    sources = ", ".join(f"`{s}`" for s in sorted(summary["data_source"].dropna().astype(str).unique()))
    return (f"That an effect carries over to other tissue: these runs are one cohort's patients ({sources}); "
            "another organ, technology or encoder may rank the arms differently.")


def _box(do: list[str], dont: list[str]) -> str:
    """The admonition: a "Conclude" and a "Do not conclude" list."""
    body = ("**Conclude**\n\n" + "\n".join(f"- {d}" for d in do) + "\n\n**Do not conclude**\n\n"
            + "\n".join(f"- {d}" for d in dont))
    return f"```{{admonition}} What to conclude, and what not to\n:class: important\n{body}\n```"


def _default_design(summary: pd.DataFrame) -> tuple[int, int]:
    """(held-out patient folds, seeds per fold) of the default world's runs (a real cohort's, on a
    :func:`stflib.report.results.shown_summary`): what the page's intervals are over."""
    summary = with_design_columns(summary)
    return design_counts(summary[summary["world"] == DEFAULT_WORLD])


def _certainty(n_folds: int | tuple[int, int], n_seeds: int | tuple[int, int]) -> str:
    """What the fold-level intervals cannot give, in one sentence (a (fewest, most) pair: the axes differ)."""
    most_seeds = n_seeds[1] if isinstance(n_seeds, tuple) else n_seeds
    seeds = (f"the {count_text(n_seeds)} seeds of a fold share its test patients and are averaged into one difference"
             if most_seeds > 1 else "each fold gives one difference")
    return (f"More certainty than {count_text(n_folds)} held-out patient folds give: {seeds}, so only more folds (more "
            "patients) narrow the intervals; nor that an effect holds for another cohort or another training "
            "budget, which the intervals are conditional on.")


def _unadjusted_items(frame: pd.DataFrame, label) -> str:
    """'`a` (+0.04 [+0.01, +0.07], Holm p = 0.11), ...' for rows of paired differences indexed by arm."""
    return ", ".join(f"{label(a)} ({interval_text(r)}, Holm p = {r['p_holm']:.3g})" for a, r in frame.iterrows())


def conclusion_box(summary: pd.DataFrame, axis: str, reference: str | None = None, metric: str = "pcc_hvg50",
                   truth: pd.DataFrame | None = None) -> str:
    """A MyST admonition for an axis page: what its numbers allow one to conclude (the findings, with
    their fold-level intervals) and what they do not (an arm that is not a finding after Holm though
    its unadjusted interval excludes zero; a null result is not an equivalence; what the intervals are
    over and conditional on; what is a property of the simulator or of the one real cohort), all from
    the paired differences of the axis's distinct arms (each named once, with its aliases) and the
    worlds' truth report."""
    reference = reference or ARMS[axis].reference
    truth = world_truth() if truth is None else truth
    deltas = paired_deltas(summary, axis, reference, metric)
    deltas = deltas[deltas["pairs"] > 0]
    name = metric_info(metric).label
    label = lambda a: arm_label(axis, a)  # noqa: E731
    n_folds, n_seeds = design_counts(distinct_axis_rows(summary, axis))
    found = deltas[deltas["finding"]]
    unadjusted = deltas[~deltas["finding"] & excludes_zero(deltas)]
    null = deltas[~deltas["finding"] & ~excludes_zero(deltas)]
    do = [f"Every interval here is the paired difference to `{reference}` {unit_sentence(n_folds, n_seeds)}."]
    do += [f"{label(a)} differs from `{reference}` on {name} by {interval_text(r)} (Holm-adjusted p = "
           f"{r['p_holm']:.3g}; better in {r['wins']} of {r['pairs']} folds)." for a, r in found.iterrows()]
    if found.empty:
        do.append(f"No arm differs from `{reference}` on {name} after the Holm correction across the axis's "
                  f"{len(deltas)} distinct arms: on this grid the axis has no finding.")
    no_interval = null[null["ci_low"].isna()]
    null = null[null["ci_low"].notna()]
    dont = []
    if len(unadjusted):
        one = len(unadjusted) == 1
        dont.append(f"That {', '.join(label(a) for a in unadjusted.index)} differ{'s' if one else ''} from "
                    f"`{reference}`: {'it is' if one else 'each is'} not a finding after Holm, though its unadjusted "
                    f"interval excludes zero (" + "; ".join(f"`{a}` {interval_text(r)}, Holm p = {r['p_holm']:.3g}"
                                                             for a, r in unadjusted.iterrows()) + ").")
    if len(null):
        one = len(null) == 1
        widest = float((null["ci_high"] - null["ci_low"]).max())
        dont.append(f"That {', '.join(label(a) for a in null.index)} {'is' if one else 'are'} as good as "
                    f"`{reference}`: {'its' if one else 'their'} unadjusted interval{'' if one else 's'} "
                    f"include{'s' if one else ''} zero, and no measurable difference is not an equivalence (95 % "
                    f"intervals up to {widest:.3f} wide).")
    if len(no_interval):
        dont.append(f"Anything about {', '.join(label(a) for a in no_interval.index)}: too few folds for an interval.")
    dont.append(_certainty(n_folds, n_seeds))
    dont.append(real_data_caveat(summary) if is_real(summary) else simulator_caveat(axis, truth))
    return _box(do, dont)


def grid_conclusion_box(summary: pd.DataFrame, metric: str = "pcc_hvg50", truth: pd.DataFrame | None = None) -> str:
    """The box of the pages that show every axis at once (the overview, the findings): how many distinct
    arms are findings, over how many folds, and what the rest does not show."""
    truth = world_truth() if truth is None else truth
    deltas = overview(summary, axis_references(), metric)
    deltas = deltas[deltas["pairs"] > 0]
    n_folds, n_seeds = _default_design(summary)
    found = deltas[deltas["finding"]]
    unadjusted = deltas[~deltas["finding"] & excludes_zero(deltas)]
    null = deltas[~deltas["finding"] & ~excludes_zero(deltas)]
    one = len(found) == 1
    do = [f"{len(found)} of the {len(deltas)} distinct arm{'' if len(deltas) == 1 else 's'} "
          f"differ{'s' if one else ''} from {'its' if one else 'their'} axis's reference (Holm-adjusted p < 0.05 "
          "across each axis's distinct arms; an arm that is the same model as another counts once); "
          f"{'its interval says' if one else 'their intervals say'} by how much, {unit_sentence(n_folds, n_seeds)}."]
    dont = []
    if len(unadjusted):
        several = len(unadjusted) > 1
        dont.append(f"That the {f'{len(unadjusted)} arms' if several else 'arm'} listed here "
                    f"differ{'' if several else 's'} from {'their' if several else 'its'} axis's reference: "
                    f"{'each' if several else 'it'} is not a finding after Holm, though its unadjusted interval "
                    "excludes zero ("
                    + "; ".join(f"{r['axis']}: {arm_label(r['axis'], r['arm'])} {interval_text(r)}"
                                for _, r in unadjusted.iterrows()) + ").")
    if len(null):
        dont.append(f"That the other {len(null)} arms are as good as their references: their unadjusted intervals "
                    "include zero, and no measurable difference is not an equivalence." if len(null) > 1 else
                    "That the other arm is as good as its reference: its unadjusted interval includes zero, and no "
                    "measurable difference is not an equivalence.")
    dont += [_certainty(n_folds, n_seeds),
             real_data_caveat(summary) if is_real(summary) else
             "That an effect carries over to real tissue: every run here is simulated, and in the default world "
             f"composition carries {_share(truth, 'default', 'share_composition')} of the evaluated genes' variance "
             f"and spatial context {_share(truth, 'default', 'share_context')}; real tissue's shares are not known.",
             "That two axes' effects add up: each arm changes one choice from the reference, so interactions between "
             "choices were not measured."]
    return _box(do, dont)


def lessons(summary: pd.DataFrame, truth: pd.DataFrame | None = None, metric: str = "pcc_hvg50") -> dict[str, str]:
    """The "What we learned" page's paragraphs, every number read from ``summary`` (a
    :func:`stflib.report.results.page_summary`) and the worlds' truth report: what STF's design buys,
    what it does not, and what is a property of the simulator. Intervals are over the held-out patient
    folds of the distinct arms, as on the axis pages."""
    truth = world_truth() if truth is None else truth
    references = axis_references()
    deltas = overview(summary, references, metric)
    deltas = deltas[deltas["pairs"] > 0]
    up = metric_info(metric).higher_is_better
    name = metric_info(metric).label
    real = is_real(summary)
    n_folds, n_seeds = _default_design(summary)
    inputs = deltas[deltas["axis"] == "backbones"]
    design = deltas[~deltas["axis"].isin(["baselines", "backbones"])]
    better = design[design["finding"] & ((design["mean_delta"] > 0) == up)]
    worse = design[design["finding"] & ((design["mean_delta"] > 0) != up)]
    unadjusted = design[~design["finding"] & excludes_zero(design)]
    null = design[~design["finding"] & ~excludes_zero(design)]

    def label(r) -> str:
        return arm_label(r["axis"], r["arm"])

    def items(frame: pd.DataFrame) -> str:
        return "; ".join(f"{r['axis']}: {label(r)} vs `{r['reference']}` {interval_text(r)}" for _, r in frame.iterrows())

    out = {}
    ref_rows = summary[(summary["axis"] == "interactions") & (summary["arm"] == references.get("interactions", "full"))
                       & (with_design_columns(summary)["world"] == DEFAULT_WORLD)]
    level = ref_rows[metric].mean() if len(ref_rows) else np.nan
    ceiling = ref_rows["noise_ceiling_hvg50"].mean() if "noise_ceiling_hvg50" in ref_rows else np.nan
    out["level"] = (f"The reference STF reaches a mean {name} of {level:.3f} on held-out patients of "
                    + ("this cohort" if real else "the default world"))
    out["level"] += (f", where the simulator's own expected expression reaches {ceiling:.3f}: the model recovers "
                     f"{level / ceiling:.0%} of what the data allow on this metric." if np.isfinite(ceiling) else ".")
    base = deltas[deltas["axis"] == "baselines"]
    if len(base):
        beaten = base[base["finding"] & ((base["mean_delta"] < 0) == up)]
        beating = base[base["finding"] & ((base["mean_delta"] > 0) == up)]
        unadjusted_base = base[~base["finding"] & excludes_zero(base)]
        level_with = base[~base["finding"] & ~excludes_zero(base)]
        parts = [f"it beats {len(beaten)} of the {len(base)} baselines it is compared with"]
        if len(beating):
            parts.append("is beaten by " + ", ".join(f"`{a}` ({interval_text(r)})" for a, r in beating.set_index("arm").iterrows()))
        if len(unadjusted_base):
            parts.append("differs from " + ", ".join(f"`{a}` ({interval_text(r)})" for a, r in
                                                     unadjusted_base.set_index("arm").iterrows())
                         + " by unadjusted intervals that exclude zero, not findings after Holm")
        if len(level_with):
            parts.append("cannot be told apart from " + ", ".join(f"`{a}`" for a in level_with["arm"]))
        out["baselines"] = ("Against the baselines trained the same way (differences are the baseline minus the "
                            "reference STF), " + "; ".join(parts) + ".")
        if len(level_with) and level_with["arm"].str.contains(r"_k\d+$").all():
            out["baselines"] += (" Every baseline it cannot be told apart from is a per-spot model given the mean of "
                                 "the spot's nearest neighbours' features: on this cohort, averaging the neighbourhood "
                                 "gets about what STF's attention gets.")
    out["buys"] = ("What the design's choices buy, measurably (Holm-adjusted p < 0.05 across their axis's distinct "
                   "arms): " + (items(better) if len(better) else "no arm beats its axis's reference") + ".")
    flows = deltas[deltas["axis"] == "interactions"]
    if len(flows):
        with_h2h = flows["arm"].str.contains("h2h")
        worse_flows = flows["finding"] & ((flows["mean_delta"] > 0) != up)
        reference_flows = flows["reference"].iloc[0]
        out["flows"] = (f"The information flows: of the {int((~with_h2h).sum())} distinct interaction models without "
                        f"`h2h` (patches never read each other directly; subsets that are the same model count once), "
                        f"{int((worse_flows & ~with_h2h).sum())} are measurably worse than `{reference_flows}`; of "
                        f"the {int(with_h2h.sum())} with `h2h`, {int((worse_flows & with_h2h).sum())} are.")
        if (worse_flows & ~with_h2h).sum() == (~with_h2h).sum() and not (worse_flows & with_h2h).any():
            out["flows"] += (" On this cohort, direct patch-to-patch attention is what the flows buy; routing every "
                             "spot-to-spot message through the pathway tokens (the bottleneck) costs accuracy, and "
                             "which of the other flows are on makes no measurable difference once `h2h` is there.")
    if len(inputs):
        found_inputs = inputs[inputs["finding"]]
        out["inputs"] = (f"The input matters more than most design choices: {len(found_inputs)} of the {len(inputs)} "
                         f"backbone{'s' if real else ' stand-ins'} differ from `{inputs['reference'].iloc[0]}`"
                         + (f", by up to {inputs['mean_delta'].abs().max():.3f} in {name}" if len(found_inputs) else "")
                         + ("." if real else " (stand-ins whose information level the simulator sets)."))
    out["costs"] = ("What is measurably worse than the reference: " + (items(worse) if len(worse) else "nothing") + ".")
    out["null"] = (f"{len(null)} of the {len(design)} distinct design arms make no measurable difference, their "
                   "unadjusted intervals including zero"
                   + (": " + ", ".join(label(r) for _, r in null.head(12).iterrows())
                      + (" and others" if len(null) > 12 else "") if len(null) else "") + ".")
    if len(unadjusted):
        out["null"] += (f" {'One more arm is' if len(unadjusted) == 1 else f'Each of {len(unadjusted)} more arms is'} "
                        "not a finding after Holm, though its unadjusted interval excludes zero: " + items(unadjusted) + ".")
    out["null"] += f" The paired differences are taken {unit_sentence(n_folds, n_seeds)}."
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
                             + " (a world runs one seed per fold, so inconclusive often means too few folds).")
    return out
