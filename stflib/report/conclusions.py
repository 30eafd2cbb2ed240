"""What a reader may and may not conclude: the "what to conclude, and what not to" box of every results
page (``conclusion_box``, ``grid_conclusion_box``), read through the simulated worlds' truth reports
(``world_truth``, ``simulator_caveat``), and the lessons page (``lessons``). Every number comes from
``results/``; the findings themselves are :mod:`stflib.report.findings`'.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from stflib.grid.axes import ARMS, axis_references
from stflib.report.findings import WORLD_VERDICTS, overview, rerun_verdicts, world_verdicts
from stflib.report.results import DEFAULT_WORLD, axis_rows, metric_info, with_design_columns
from stflib.report.tables import interval_text, paired_deltas


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
