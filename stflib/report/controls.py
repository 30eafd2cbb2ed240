"""Findings read through the worlds: every default-world comparison beside the same comparison in the
simulator's control worlds (and on real data where it was run), with one generated sentence each.

The default world alone cannot say *why* an arm differs from its reference. The worlds can
(``stflib.sim.worlds.WORLDS``, each with a ``role`` and, for a control, the biology it is ``about``):
a **negative control** removes or weakens one biology, so an effect that survives there does not come
from it; a **positive control** makes it strong, so an effect that appears only there says the model can
use that biology when it exists; a **confound** or **stress test** adds a nuisance a finding could ride on.

- :func:`world_cells`: one row per (comparison, world): the paired difference of
  ``stflib.report.tables.paired_deltas`` (used as it is, whatever its unit), its state (:data:`STATES`) and
  whether it is *budget-limited* (more than half of the runs of the arm or of its reference stopped at the
  step cap, the summary's ``hit_step_cap``).
- :func:`findings_matrix`: findings by worlds, each cell the interval text or "not run";
  :func:`folds_text` says how many folds each world's intervals are over where they differ.
- :func:`readings`: one sentence per comparison from the rule table :data:`RULES`, read per controlled
  biology (the axis's own, :data:`AXIS_BIOLOGY`, or all of them).
- :func:`reality_check`: where runs on real data (world ``real``) exist, whether the simulator predicted
  the real outcome (same sign and overlapping intervals) and which simulated world came closest.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from stflib.report.results import DEFAULT_WORLD, with_design_columns
from stflib.report.tables import interval_text, paired_deltas, rows_measuring
from stflib.sim.worlds import CONTROLLED_BIOLOGY, WORLD_ROLES, WORLDS

REAL_WORLD = "real"  # the world column of runs on a real data folder
NOT_RUN = "not run"
# a cell's state: the 95 % interval above zero, below it, across it; "no interval" (too few units to
# have one: untested, like a world not run); not run (the arm or its reference has no run there)
STATES = ("+", "-", "0", "no interval", NOT_RUN)
# the paired-unit count of paired_deltas: "pairs" today; the first of these its columns hold
COUNT_COLUMNS = ("pairs", "folds", "units")
ALIASES_COLUMN = "same model as"  # paired_deltas' column of an arm's aliases (stflib.grid.axes.Axis.aliases)
# more than this share of an arm's runs at the step cap makes a comparison budget-limited
BUDGET_SHARE = 0.5
# the biology each axis's design question is about, read in that biology's controls; an axis not
# listed (backbones, losses, sizes, ...) is read through every control
AXIS_BIOLOGY: dict[str, tuple[str, ...]] = {
    "context": ("context",), "interactions": ("context",),
    "pathways": ("pathways",), "pathway_readout": ("pathways",), "target": ("pathways",),
    "h2p_balance": ("pathways",),
}


def world_order(summary: pd.DataFrame) -> list[str]:
    """The matrix's world columns: the registered worlds by role (reference, positive and negative
    controls, confounds, stress tests), then worlds in the summary the registry does not know, then
    ``real`` when the summary has real runs."""
    present = set(with_design_columns(summary)["world"])
    known = sorted(WORLDS, key=lambda w: WORLD_ROLES.index(WORLDS[w].role))
    extra = sorted(present - set(WORLDS) - {REAL_WORLD})
    return known + extra + ([REAL_WORLD] if REAL_WORLD in present else [])


def count_column(deltas: pd.DataFrame) -> str:
    """The paired-unit count column of a :func:`~stflib.report.tables.paired_deltas` table."""
    for column in COUNT_COLUMNS:
        if column in deltas:
            return column
    raise ValueError(f"paired differences without a count column ({', '.join(COUNT_COLUMNS)}); "
                     f"columns: {', '.join(map(str, deltas.columns))}")


def state_of(row) -> str:
    """A cell's state (:data:`STATES`) from its paired difference: where its 95 % interval lies."""
    if row is None or not row["count"] or not np.isfinite(row["mean_delta"]):
        return NOT_RUN
    if not np.isfinite(row["ci_low"]):
        return "no interval"
    return "+" if row["ci_low"] > 0 else "-" if row["ci_high"] < 0 else "0"


def budget_limited_arms(summary: pd.DataFrame, share: float = BUDGET_SHARE) -> set[tuple[str, str, str]]:
    """(world, axis, arm) whose runs stopped at the step cap more than ``share`` of the time (the
    summary's ``hit_step_cap``; runs that do not record it count as not at the cap)."""
    summary = with_design_columns(summary)
    if "hit_step_cap" not in summary:
        return set()
    at_cap = summary["hit_step_cap"].map({True: 1.0, False: 0.0, "True": 1.0, "False": 0.0}).fillna(0.0)
    frac = at_cap.groupby([summary["world"], summary["axis"], summary["arm"]]).mean()
    return set(frac[frac > share].index)


def world_cells(summary: pd.DataFrame, references: dict[str, str] | None = None,
                metric: str = "pcc_hvg50", worlds: list[str] | None = None) -> pd.DataFrame:
    """One row per (axis, arm, world) for every arm compared with its axis's reference in the default
    world: ``reference``, ``count`` (paired units), ``mean_delta``, ``ci_low``, ``ci_high``, ``p_holm``,
    ``finding`` (Holm p < 0.05 within the world's axis), ``same_model_as`` (the arm's aliases), ``state`` (:data:`STATES`), ``budget_limited``
    and ``text`` (the interval, or "not run"; "(budget-limited)" appended). ``worlds``: the columns
    (default :func:`world_order`)."""
    from stflib.grid.axes import axis_references

    summary = with_design_columns(summary)
    references = references or axis_references()
    worlds = worlds or world_order(summary)
    capped = budget_limited_arms(summary)
    rows = []
    for axis, reference in references.items():
        base = _deltas(summary, axis, reference, metric, DEFAULT_WORLD)
        if base is None:
            continue  # the axis (or its reference) has no default-world runs: no finding to read
        for world in worlds:
            there = base if world == DEFAULT_WORLD else _deltas(summary, axis, reference, metric, world)
            for arm in base.index:
                # paired_deltas names the arms that are the same model as this one, where it knows any
                aliases = base.loc[arm].get(ALIASES_COLUMN, "")
                d = None if there is None or arm not in there.index else there.loc[arm]
                cell = _cell(d, there)
                limited = bool(d is not None and cell["count"] and ((world, axis, arm) in capped
                                                                     or (world, axis, reference) in capped))
                text = interval_text(d) if cell["count"] else NOT_RUN
                rows.append({"axis": axis, "arm": arm, "reference": reference, "world": world,
                             "same_model_as": aliases if isinstance(aliases, str) else "", **cell,
                             "state": state_of(cell), "budget_limited": limited,
                             "text": text + (" (budget-limited)" if limited else "")})
    return pd.DataFrame(rows, columns=["axis", "arm", "reference", "world", "same_model_as", "count", "mean_delta", "ci_low",
                                       "ci_high", "p_holm", "finding", "state", "budget_limited", "text"])


def _deltas(summary: pd.DataFrame, axis: str, reference: str, metric: str, world: str) -> pd.DataFrame | None:
    rows = rows_measuring(summary[(summary["world"] == world) & (summary["axis"] == axis)], metric)
    if rows.empty or reference not in set(rows["arm"]):
        return None
    return paired_deltas(summary, axis, reference, metric, world)


def _cell(d, deltas) -> dict:
    if d is None:
        return {"count": 0, "mean_delta": np.nan, "ci_low": np.nan, "ci_high": np.nan, "p_holm": np.nan,
                "finding": False}
    return {"count": int(d[count_column(deltas)]), **{k: float(d[k]) for k in ("mean_delta", "ci_low", "ci_high",
                                                                                "p_holm")},
            "finding": bool(d["finding"])}


def findings_matrix(cells: pd.DataFrame) -> pd.DataFrame:
    """Findings by worlds: one row per comparison ('axis: `arm` vs `reference`'), one column per world
    (in the order of ``cells``), each cell the interval text or "not run". The comparisons run in the
    most worlds come first (the robustness subset, read through its controls), then the rest in the
    order of ``cells``."""
    if cells.empty:
        return pd.DataFrame()
    same = cells["same_model_as"].fillna("").map(lambda a: f" (same model as {a})" if a else "")
    cells = cells.assign(finding_label=cells["axis"] + ": " + cells["arm"] + same + " vs " + cells["reference"])
    worlds_run = cells[cells["text"] != NOT_RUN].groupby("finding_label").size()
    first_seen = list(dict.fromkeys(cells["finding_label"]))
    order = sorted(first_seen, key=lambda label: -worlds_run.get(label, 0))  # stable: ties keep their order
    wide = cells.pivot(index="finding_label", columns="world", values="text")
    return wide.loc[order, list(dict.fromkeys(cells["world"]))].rename_axis("finding").rename_axis(None, axis=1)


# ------------------------------------------------------------------------------- the rule table
@dataclass(frozen=True)
class Pattern:
    """What a comparison does in the default world and in one biology's controls: each world's state
    (world -> :data:`STATES`), whether its interval holds the default's mean difference (``holds``)
    and its cell text."""

    default: str
    negative: dict[str, str]
    positive: dict[str, str]
    holds: dict[str, bool]
    texts: dict[str, str]

    def present(self, worlds: dict[str, str], sign: str | None = None) -> list[str]:
        """The worlds whose interval excludes zero (on ``sign``'s side only, when given)."""
        return [w for w, s in worlds.items() if s in ("+", "-") and (sign is None or s == sign)]

    def tested(self, worlds: dict[str, str]) -> list[str]:
        """The worlds with an interval (the state tells where it lies)."""
        return [w for w, s in worlds.items() if s in ("+", "-", "0")]

    def gone(self, worlds: dict[str, str]) -> list[str]:
        """Worlds whose interval crosses zero and leaves out the default's effect: it shrank there, not
        just lost power (a crossing interval that still holds the default's effect says nothing)."""
        return [w for w, s in worlds.items() if s == "0" and not self.holds.get(w, False)]

    def compatible(self, worlds: dict[str, str]) -> list[str]:
        """Worlds whose interval crosses zero and still holds the default's effect: too few units to tell."""
        return [w for w, s in worlds.items() if s == "0" and self.holds.get(w, False)]

    def opposite(self) -> list[str]:
        """Control worlds whose interval excludes zero on the other side of the default's effect."""
        if self.default not in ("+", "-"):
            return []
        return self.present({**self.negative, **self.positive}, "-" if self.default == "+" else "+")

    def cells(self, worlds: list[str]) -> str:
        """'`no-context` (+0.063 [-0.01, +0.13])': the worlds with their intervals."""
        return ", ".join(f"`{w}` ({self.texts[w]})" for w in worlds)


@dataclass(frozen=True)
class Rule:
    name: str
    when: str  # the condition in words (the rule table the book can print)
    test: Callable[[Pattern], bool]
    says: str  # the clause: {biology}, {negative_present}, {negative_gone}, ... (see apply_rules)


def _names(worlds: list[str]) -> str:
    return ", ".join(f"`{w}`" for w in worlds)


def _differs(p: Pattern) -> bool:
    return p.default in ("+", "-")


# first match wins; a pattern no rule matches (no control of the biology run) says nothing about it.
# "present": the 95 % interval excludes zero; "gone": it crosses zero and leaves out the default's
# effect; "compatible": it crosses zero but holds the default's effect (too few units to say more)
RULES: tuple[Rule, ...] = (
    Rule("not that biology", "present in a negative control (on the default's side, when the default differs)",
         lambda p: bool(p.present(p.negative, p.default if _differs(p) else None)),
         "present in {negative_present}, which removes or weakens {biology}: not that biology"),
    Rule("reversed in a control", "the default's effect, and the opposite in a control world",
         lambda p: bool(p.opposite()),
         "reverses in {opposite}: its direction depends on the simulator's assumptions about {biology}"),
    Rule("needs that biology", "different by default, gone in every negative control run",
         lambda p: _differs(p) and bool(p.tested(p.negative)) and p.gone(p.negative) == p.tested(p.negative),
         "gone in {negative_gone}, which removes or weakens {biology}: consistent with the effect coming "
         "from it{positive_clause}"),
    Rule("no sign it needs that biology", "different by default; in a negative control the interval crosses "
         "zero but still holds the default's effect",
         lambda p: _differs(p) and bool(p.compatible(p.negative)),
         "in {negative_compatible}, which removes or weakens {biology}, the interval still holds the default's "
         "effect: no sign it comes from {biology} (too few units there to exclude zero)"),
    Rule("the model can use it when it exists", "no difference by default, present in a positive control",
         lambda p: not _differs(p) and bool(p.present(p.positive)),
         "present only in {positive_present}, where {biology} is strong: the model can use it when it exists"),
    Rule("no evidence the design matters", "no difference by default nor in any control run",
         lambda p: p.default == "0" and bool(p.tested(p.negative) + p.tested(p.positive)),
         "absent in {all_tested} too, controls for {biology}: no evidence the design matters"),
    Rule("holds where the biology is strong", "different by default and in a positive control, no negative "
         "control run", lambda p: _differs(p) and bool(p.present(p.positive, p.default)),
         "holds in {positive_present}, where {biology} is strong"),
    Rule("lost where the biology is strong", "different by default, gone in the positive controls run",
         lambda p: _differs(p) and bool(p.tested(p.positive)) and p.gone(p.positive) == p.tested(p.positive),
         "gone in {positive_gone}, where {biology} is strong: the effect is not about {biology}"),
    Rule("undecided", "different by default; the controls run cross zero and hold its effect",
         lambda p: _differs(p) and bool(p.tested(p.positive)),
         "in {positive_compatible}, where {biology} is strong, the interval crosses zero: undecided"),
)


def apply_rules(pattern: Pattern, biology: str) -> tuple[str, str] | None:
    """(rule name, clause) of the first rule of :data:`RULES` that ``pattern`` matches; None when none
    does (no control of ``biology`` was run)."""
    words = CONTROLLED_BIOLOGY[biology].split(" (")[0]  # the short name in a sentence
    p = pattern
    positive = p.present(p.positive, p.default if _differs(p) else None)
    fields = {"biology": words, "opposite": p.cells(p.opposite()),
              "negative_present": p.cells(p.present(p.negative)), "negative_gone": p.cells(p.gone(p.negative)),
              "negative_compatible": p.cells(p.compatible(p.negative)),
              "positive_present": p.cells(p.present(p.positive)), "positive_gone": p.cells(p.gone(p.positive)),
              "positive_compatible": p.cells(p.compatible(p.positive)),
              "all_tested": p.cells(p.tested(p.negative) + p.tested(p.positive)),
              "positive_clause": f", and it holds in {p.cells(positive)}, where it is strong" if positive else ""}
    for rule in RULES:
        if rule.test(p):
            return rule.name, rule.says.format(**fields)
    return None


def rule_table() -> pd.DataFrame:
    """The rule table in words (rule, when it applies), in the order it is applied."""
    return pd.DataFrame([{"rule": r.name, "when": r.when} for r in RULES])


def _controls(biology: str, role: str) -> list[str]:
    return [w for w, spec in WORLDS.items() if spec.role == role and spec.about == biology]


def _status(default: pd.Series) -> str:
    """The default world's cell in words."""
    if default["state"] == NOT_RUN:
        return "not compared in the default world"
    text = default["text"].removesuffix(" (budget-limited)")  # said once, at the sentence's end
    if default["finding"]:
        return f"{text} by default, a finding (Holm p = {default['p_holm']:.3g})"
    if default["state"] in ("+", "-"):
        return f"{text} by default: the interval excludes zero, but it is not a finding after the Holm correction"
    return f"{text} by default: no measurable difference"


def readings(cells: pd.DataFrame) -> pd.DataFrame:
    """One row per comparison of :func:`world_cells`: ``rules`` (the :data:`RULES` that matched, per
    controlled biology), ``biologies`` (the biology each of those rules read, in the same order),
    ``untested`` (its controls not run yet), ``budget_limited`` (the worlds where it is) and ``sentence``: the default world's interval and status, one clause per biology read
    (:data:`AXIS_BIOLOGY`), what the confound and stress-test worlds show, and the budget warning."""
    out = []
    for (axis, arm, reference), rows in cells.groupby(["axis", "arm", "reference"], sort=False):
        states = dict(zip(rows["world"], rows["state"]))
        default = rows[rows["world"] == DEFAULT_WORLD].iloc[0]
        d = default["state"]
        holds = {r.world: bool(r.ci_low <= default["mean_delta"] <= r.ci_high) for r in rows.itertuples()}
        texts = dict(zip(rows["world"], rows["text"]))
        clauses, matched, read_biologies, untested = [], [], [], []
        for biology in AXIS_BIOLOGY.get(axis, tuple(CONTROLLED_BIOLOGY)):
            pattern = Pattern(d, *({w: states.get(w, NOT_RUN) for w in _controls(biology, role)}
                                   for role in ("negative control", "positive control")), holds, texts)
            hit = apply_rules(pattern, biology)
            untested += [w for w in (*pattern.negative, *pattern.positive)
                         if states.get(w, NOT_RUN) in (NOT_RUN, "no interval") and w not in untested]
            if hit is not None:
                matched.append(hit[0])
                read_biologies.append(biology)
                clauses.append(hit[1])
        others = [w for w in states if w in WORLDS and WORLDS[w].role in ("confound", "stress test")
                  and states[w] in ("+", "-", "0")]
        if others and d in ("+", "-"):
            said = [f"{verb} {_names(ws)}" for verb, ws in (
                ("holds in", [w for w in others if states[w] == d]),
                ("is lost in", [w for w in others if states[w] == "0"]),
                ("reverses in", [w for w in others if states[w] not in (d, "0")])) if ws]
            clauses.append("under the confounds and stress tests it " + ", ".join(said))
        elif others and any(states[w] in ("+", "-") for w in others):
            clauses.append(f"it appears in {_names([w for w in others if states[w] in ('+', '-')])}")
        limited = list(rows.loc[rows["budget_limited"], "world"])
        sentence = f"**{axis}**: `{arm}` vs `{reference}` {_status(default)}"
        sentence += "".join(f"; {c}" for c in clauses) + "."
        if untested:
            sentence += f" Not run yet in {'its control' if len(untested) == 1 else 'its controls'} {_names(untested)}."
        if limited:
            sentence += (f" Budget-limited in {_names(limited)}: more than half of the runs of `{arm}` or "
                         f"`{reference}` there stopped at the step cap.")
        out.append({"axis": axis, "arm": arm, "reference": reference, "default": d, "rules": "; ".join(matched),
                    "biologies": "; ".join(read_biologies), "untested": ", ".join(untested),
                    "budget_limited": ", ".join(limited), "sentence": sentence})
    return pd.DataFrame(out, columns=["axis", "arm", "reference", "default", "rules", "biologies", "untested",
                                      "budget_limited", "sentence"])


def readings_text(readings_table: pd.DataFrame) -> str:
    """The readings as Markdown bullets: every comparison that a rule read or that differs by default,
    then, in one line, the comparisons with no measurable difference whose controls have not run."""
    quiet = (readings_table["rules"] == "") & readings_table["default"].isin(["0", "no interval", NOT_RUN])
    lines = [f"- {s}" for s in readings_table.loc[~quiet, "sentence"]]
    if quiet.any():
        lines.append("- No measurable difference by default, and no control of its biology run yet: "
                     + ", ".join(f"{r.axis} `{r.arm}`" for r in readings_table[quiet].itertuples()) + ".")
    return "\n".join(lines)


def folds_text(cells: pd.DataFrame) -> str:
    """One sentence: how many held-out patient folds each world's intervals are over (the most any of its
    cells has), so that a column re-run with more folds is read with its own width; "" when all agree."""
    run = cells[cells["count"] > 0]
    if run.empty:
        return ""
    per_world = run.groupby("world", sort=False)["count"].max()
    if per_world.nunique() == 1:
        return ""
    parts = ", ".join(f"`{w}` {int(n)}" for w, n in per_world.items())
    return (f"The intervals are over the held-out patient folds each world has run: {parts}. A world with fewer "
            "folds has wider intervals; its cells are read the same way, by whether they hold zero.")


def not_run_text(cells: pd.DataFrame) -> str:
    """A sentence naming the worlds with no run of any comparison yet ('' when every world has some)."""
    empty = [w for w, rows in cells.groupby("world", sort=False) if (rows["state"] == NOT_RUN).all()]
    if not empty:
        return ""
    return (f"Not run yet: {_names(empty)} ({'its column says' if len(empty) == 1 else 'their columns say'} "
            f"\"{NOT_RUN}\"); `python -m stflib ablate params --world NAME` runs the robustness subset there.")


# ----------------------------------------------------------------------- simulation against reality
def predicts(sim: pd.Series, real: pd.Series) -> bool | None:
    """Whether a simulated cell predicted the real one: the same sign of the mean difference and
    overlapping 95 % intervals; None when either has no interval."""
    bounds = (sim["ci_low"], sim["ci_high"], real["ci_low"], real["ci_high"])
    if not all(np.isfinite(b) for b in bounds):
        return None
    same_sign = np.sign(sim["mean_delta"]) == np.sign(real["mean_delta"])
    return bool(same_sign and sim["ci_low"] <= real["ci_high"] and real["ci_low"] <= sim["ci_high"])


def reality_check(cells: pd.DataFrame) -> pd.DataFrame:
    """Per comparison run on real data (world ``real``): ``real`` (its interval), ``default_predicts``
    (:func:`predicts` for the default world; None when it cannot say), ``predicting_worlds`` (every
    simulated world that predicted it), ``closest_world`` (the simulated world whose mean difference is
    nearest the real one) and ``closest`` (its interval). Empty without real runs."""
    columns = ["axis", "arm", "reference", "real", "default_predicts", "predicting_worlds", "closest_world",
               "closest"]
    out = []
    for (axis, arm, reference), rows in cells.groupby(["axis", "arm", "reference"], sort=False):
        real = rows[rows["world"] == REAL_WORLD]
        if real.empty or real.iloc[0]["state"] == NOT_RUN:
            continue
        real = real.iloc[0]
        sims = rows[(rows["world"] != REAL_WORLD) & (rows["state"] != NOT_RUN)]
        verdicts = {r["world"]: predicts(r, real) for _, r in sims.iterrows()}
        default = verdicts.get(DEFAULT_WORLD)
        closest = sims.loc[(sims["mean_delta"] - real["mean_delta"]).abs().idxmin()] if len(sims) else None
        out.append({"axis": axis, "arm": arm, "reference": reference, "real": real["text"],
                    "default_predicts": default,
                    "predicting_worlds": ", ".join(w for w, v in verdicts.items() if v),
                    "closest_world": None if closest is None else closest["world"],
                    "closest": None if closest is None else closest["text"]})
    return pd.DataFrame(out, columns=columns)


def reality_text(check: pd.DataFrame) -> str:
    """One Markdown bullet per comparison of :func:`reality_check`; '' without real runs."""
    lines = []
    for r in check.itertuples():
        verdict = {True: "the default simulated world predicted it (same sign, overlapping intervals)",
                   False: "the default simulated world did not predict it",
                   None: "the default world cannot say (a missing interval)"}[r.default_predicts]
        if r.predicting_worlds:
            verdict += f"; worlds that did: {_names(r.predicting_worlds.split(', '))}"
        closest = f"; closest simulated world: `{r.closest_world}` ({r.closest})" if r.closest_world else ""
        lines.append(f"- **{r.axis}**: `{r.arm}` vs `{r.reference}` on real data {r.real}: {verdict}{closest}.")
    return "\n".join(lines)
