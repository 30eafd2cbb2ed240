"""Findings read through the worlds (stflib.report.controls), on synthetic summaries whose paired
differences are set by hand, and the worlds' roles (stflib.sim.worlds)."""
import numpy as np
import pandas as pd
import pytest

from stflib.report import controls
from stflib.sim.worlds import CONTROLLED_BIOLOGY, WORLDS, World

REFS = {"context": "whole-slide"}
SPREAD = np.array([1.0, -1.0, 0.5, -0.5])  # four folds: the differences are effect + spread x noise


def _summary(effects: dict[str, tuple[float, float]], capped: dict[tuple[str, str], int] | None = None,
             axis: str = "context", arm: str = "k18", reference: str = "whole-slide") -> pd.DataFrame:
    """Runs of ``arm`` and ``reference`` on four folds per world: ``effects`` world -> (mean paired
    difference, noise); ``capped`` (world, arm) -> how many of the four runs hit the step cap."""
    rows = []
    for world, (effect, noise) in effects.items():
        for fold, s in enumerate(SPREAD):
            base = 0.30 + 0.02 * fold
            for name, value in ((reference, base), (arm, base + effect + noise * s)):
                cap = (capped or {}).get((world, name), 0) > fold
                rows.append({"axis": axis, "arm": name, "world": world, "fold": fold, "seed": 0,
                             "pcc_hvg50": value, "hit_step_cap": cap, "status": "ok"})
    return pd.DataFrame(rows)


def _reading(effects, axis="context", arm="k18", reference="whole-slide", **kw):
    cells = controls.world_cells(_summary(effects, axis=axis, arm=arm, reference=reference, **kw),
                                 {axis: reference})
    return cells, controls.readings(cells).iloc[0]


TIGHT, WIDE = 0.002, 0.2


def test_worlds_have_roles_and_each_biology_has_both_controls():
    for name, world in WORLDS.items():
        assert world.role in ("reference", "negative control", "positive control", "confound", "stress test"), name
    assert WORLDS["default"].role == "reference"
    for biology in CONTROLLED_BIOLOGY:
        roles = sorted(w.role for w in WORLDS.values() if w.about == biology)
        assert roles == ["negative control", "positive control"], biology
    assert {w for w, spec in WORLDS.items() if spec.role == "confound"} == {"depth-confounded", "study-shift"}
    with pytest.raises(ValueError, match="allowed: reference, negative control"):
        World("x", role="control")
    with pytest.raises(ValueError, match="names one of context, pathways"):
        World("x", role="negative control")


def test_present_in_the_negative_control_is_not_that_biology():
    cells, r = _reading({"default": (0.05, TIGHT), "no-context": (0.05, TIGHT)})
    assert r["rules"] == "not that biology" and "present in `no-context`" in r["sentence"]
    assert "a finding" in r["sentence"] and "long-range-context" in r["untested"]


def test_gone_in_the_negative_control_needs_that_biology():
    cells, r = _reading({"default": (0.05, TIGHT), "no-context": (0.0, 0.01), "long-range-context": (0.08, TIGHT)})
    assert r["rules"] == "needs that biology"
    assert "gone in `no-context`" in r["sentence"] and "holds in `long-range-context`" in r["sentence"]
    assert r["untested"] == ""


def test_a_crossing_interval_that_holds_the_default_effect_is_no_evidence_either_way():
    # the case: +0.063 in no-context against +0.067 by default, an interval crossing zero
    cells, r = _reading({"default": (0.05, TIGHT), "no-context": (0.045, WIDE)})
    assert r["rules"] == "no sign it needs that biology" and "needs that biology" not in r["rules"].split("; ")


def test_present_only_in_the_positive_control_the_model_can_use_it():
    _, r = _reading({"default": (0.0, 0.01), "no-context": (0.0, 0.01), "long-range-context": (0.06, TIGHT)})
    assert r["rules"] == "the model can use it when it exists" and "present only in `long-range-context`" in r["sentence"]
    assert "no measurable difference" in r["sentence"]


def test_absent_in_the_controls_too_is_no_evidence_the_design_matters():
    _, r = _reading({"default": (0.0, 0.01), "no-context": (0.0, 0.01), "long-range-context": (0.0, 0.01)})
    assert r["rules"] == "no evidence the design matters"


def test_reversal_and_confounds():
    _, r = _reading({"default": (0.05, TIGHT), "long-range-context": (-0.05, TIGHT), "depth-confounded": (0.0, 0.01),
                     "strong-patient": (0.05, TIGHT)})
    assert r["rules"] == "reversed in a control"
    assert "holds in `strong-patient`" in r["sentence"] and "is lost in `depth-confounded`" in r["sentence"]


def test_an_axis_without_a_biology_is_read_through_every_control():
    _, r = _reading({"default": (0.05, TIGHT), "no-context": (0.05, TIGHT), "pathway-misspecified": (0.0, 0.01)},
                    axis="backbones", arm="gigapath", reference="resnet50")
    assert r["rules"] == "not that biology; needs that biology"
    assert "spatial context biology: not that biology" in r["sentence"]


def test_matrix_cells_not_run_and_budget_limited():
    summary = _summary({"default": (0.05, TIGHT), "no-context": (0.05, TIGHT)},
                       capped={("default", "k18"): 3, ("no-context", "whole-slide"): 2})
    cells = controls.world_cells(summary, REFS)
    matrix = controls.findings_matrix(cells)
    assert list(matrix.index) == ["context: k18 vs whole-slide"]
    assert list(matrix.columns) == controls.world_order(summary) and "real" not in matrix.columns
    assert matrix.loc["context: k18 vs whole-slide", "default"].endswith("(budget-limited)")  # 3 of 4 runs at the cap
    assert "budget-limited" not in matrix.loc["context: k18 vs whole-slide", "no-context"]  # 2 of 4: not more than half
    assert matrix.loc["context: k18 vs whole-slide", "study-shift"] == "not run"
    assert matrix.iloc[0]["default"].startswith("+0.050 [")
    reading = controls.readings(cells).iloc[0]
    assert reading["budget_limited"] == "default" and "Budget-limited in `default`" in reading["sentence"]
    note = controls.not_run_text(cells)
    assert "`study-shift`" in note and "`no-context`" not in note and "`default`" not in note
    assert controls.folds_text(cells) == ""  # every world's intervals are over as many folds
    fewer = cells.assign(count=cells["count"].where(cells["world"] != "no-context", 3))
    assert "`default` 4, `no-context` 3" in controls.folds_text(fewer)


def test_simulation_against_reality():
    effects = {"default": (0.05, TIGHT), "no-context": (0.02, TIGHT), "real": (0.045, 0.004)}
    cells = controls.world_cells(_summary(effects), REFS)
    assert controls.world_order(_summary(effects))[-1] == "real"
    check = controls.reality_check(cells).iloc[0]
    assert bool(check["default_predicts"]) and check["closest_world"] == "default"
    assert check["predicting_worlds"] == "default"  # no-context's +0.02 interval misses the real one
    assert "did not" not in controls.reality_text(controls.reality_check(cells))
    # the real outcome on the other side: predicted by no world
    cells = controls.world_cells(_summary({**effects, "real": (-0.03, 0.004)}), REFS)
    check = controls.reality_check(cells).iloc[0]
    assert check["default_predicts"] is not None and not check["default_predicts"]
    assert check["predicting_worlds"] == ""
    assert check["closest_world"] == "no-context"
    # no real runs: nothing to check
    assert controls.reality_check(controls.world_cells(_summary({"default": (0.05, TIGHT)}), REFS)).empty


def test_predicts_needs_the_same_sign_and_overlapping_intervals():
    real = pd.Series({"mean_delta": 0.02, "ci_low": 0.01, "ci_high": 0.03})
    assert controls.predicts(pd.Series({"mean_delta": 0.04, "ci_low": 0.025, "ci_high": 0.05}), real)
    assert not controls.predicts(pd.Series({"mean_delta": 0.06, "ci_low": 0.05, "ci_high": 0.07}), real)
    assert not controls.predicts(pd.Series({"mean_delta": -0.001, "ci_low": -0.01, "ci_high": 0.015}), real)
    assert controls.predicts(pd.Series({"mean_delta": 0.02, "ci_low": np.nan, "ci_high": np.nan}), real) is None


def test_rule_table_is_in_words_and_in_order():
    table = controls.rule_table()
    assert list(table["rule"])[:2] == ["not that biology", "reversed in a control"]
    assert table["when"].str.len().min() > 20
    assert "the model can use it when it exists" in set(table["rule"])


def test_the_matrix_puts_the_comparisons_run_in_most_worlds_first():
    cells = pd.DataFrame([
        dict(axis="losses", arm="pcc", reference="mse", world=w, same_model_as="",
             text="+0.001 [-0.01, +0.01]" if w == "default" else controls.NOT_RUN) for w in ("default", "no-context")
    ] + [
        dict(axis="context", arm="k18", reference="whole-slide", world=w, same_model_as="", text="+0.05 [+0.01, +0.09]")
        for w in ("default", "no-context")])
    matrix = controls.findings_matrix(cells)
    assert list(matrix.index) == ["context: k18 vs whole-slide", "losses: pcc vs mse"]
    assert list(matrix.columns) == ["default", "no-context"]


def test_the_headline_reads_each_controlled_finding_with_its_biology():
    from stflib.report import findings

    summary = _summary({"default": (0.05, TIGHT), "no-context": (0.05, TIGHT)})
    r = controls.readings(controls.world_cells(summary, REFS)).iloc[0]
    assert r["biologies"] == "context"
    line = findings.control_readings_line(summary)
    assert "`k18` vs `whole-slide` (context): *not that biology* (spatial context biology)" in line
    assert "*not that biology*: present in a negative control" in line
    assert findings.control_readings_line(_summary({"default": (0.05, TIGHT)})) is None  # no control run
