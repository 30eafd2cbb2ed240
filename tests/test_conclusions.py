"""The "What to conclude" boxes and the lessons page (stflib.report.conclusions) speak of held-out
patient folds, name aliased arms once, never call an arm whose unadjusted interval excludes zero "no
measurable difference", and on real runs talk of the cohort, not of other simulated worlds."""
import numpy as np
import pandas as pd

from stflib.report import conclusions, findings

NO_TRUTH = pd.DataFrame()  # the worlds' truth report absent: the boxes must not need it
UNADJUSTED = "not a finding after Holm, though its unadjusted interval excludes zero"


def _summary() -> pd.DataFrame:
    """3 folds x 2 seeds. losses: `pcc`, `mse_pcc`, `zinb` each better than `mse` by 0.015, 0.02, 0.025
    over the folds (every unadjusted interval excludes zero, p = 0.020; Holm over 3: 0.061, no finding).
    interactions: `bottleneck` better than `full` by 0.05 in every fold (a finding), `p2p` and its alias
    `p2h` (the same model, bit-identical runs) 0.002 apart from `full` with alternating sign, `h2p` noisy."""
    rng = np.random.default_rng(0)
    rows = []
    for fold, gain in enumerate((0.015, 0.02, 0.025)):
        for seed in range(2):
            base = 0.3 + 0.02 * fold + 0.001 * seed
            rows.append(dict(axis="losses", arm="mse", fold=fold, seed=seed, pcc_hvg50=base))
            rows += [dict(axis="losses", arm=arm, fold=fold, seed=seed, pcc_hvg50=base + gain)
                     for arm in ("pcc", "mse_pcc", "zinb")]
            p2p = base + 0.002 * (-1) ** fold
            rows += [dict(axis="interactions", arm=arm, fold=fold, seed=seed, pcc_hvg50=value) for arm, value in
                     (("full", base), ("bottleneck", base + 0.05 + 0.002 * fold), ("p2p", p2p), ("p2h", p2p),
                      ("h2p", base + rng.normal(0, 0.03)))]
    return pd.DataFrame(rows).assign(world="default")


def _real(summary: pd.DataFrame) -> pd.DataFrame:
    """The same runs as one real cohort's, as ``results.page_summary`` shows them (world relabelled default)."""
    return summary.assign(data_dir="/home/someone/hest_bowel", data_source="hest-bowel-abc123")


def test_axis_box_is_over_folds_and_says_unadjusted_intervals_that_exclude_zero():
    box = conclusions.conclusion_box(_summary(), "losses", truth=NO_TRUTH)
    assert ("the paired difference to `mse` over 3 held-out patient folds of this cohort (the 2 training seeds "
            "averaged within a fold); the intervals are conditional on the cohort's patients and the training "
            "budget") in box
    assert "No arm differs from `mse` on PCC, 50 HVGs after the Holm correction across the axis's 3 distinct arms" in box
    assert f"each is {UNADJUSTED}" in box
    assert all(f"`{arm}` +0.020 [+0.008, +0.032], Holm p = 0.0606" in box for arm in ("pcc", "mse_pcc", "zinb"))
    assert "no measurable difference" not in box.lower() and "as good as" not in box
    assert "pairs" not in box and "More certainty than 3 held-out patient folds give" in box


def test_axis_box_names_an_aliased_model_once_and_keeps_null_wording_for_intervals_that_include_zero():
    box = conclusions.conclusion_box(_summary(), "interactions", truth=NO_TRUTH)
    conclude, dont = box.split("**Do not conclude**")
    assert "`bottleneck` differs from `full`" in conclude and "better in 3 of 3 folds" in conclude
    assert "`p2p` (same model as `p2h`, `p2p-p2h`)" in dont
    assert box.count("`p2h`") == 1  # only as p2p's alias: the same model is not a second arm
    null = next(line for line in dont.splitlines() if "as good as" in line)
    assert "`p2p`" in null and "their unadjusted intervals include zero" in null
    assert "no measurable difference is not an equivalence" in null and "`bottleneck`" not in null


def test_grid_box_and_lessons_count_distinct_arms_over_folds():
    summary = _summary()
    box = conclusions.grid_conclusion_box(summary, truth=NO_TRUTH)
    assert "- 1 of the 6 distinct arms differs from its axis's reference" in box  # bottleneck; p2h counts in p2p
    assert "its interval says by how much, over 3 held-out patient folds" in box
    assert f"each is {UNADJUSTED}" in box and "losses: `pcc` +0.020 [+0.008, +0.032]" in box
    listed = next(line for line in box.splitlines() if UNADJUSTED in line)
    assert "`p2p`" not in listed and "`bottleneck`" not in listed  # its interval includes zero; a finding
    assert "pairs are not" not in box and "That an effect carries over to real tissue" in box
    lesson = conclusions.lessons(summary, NO_TRUTH)
    null, unadjusted = lesson["null"].split("Each of 3 more arms is ")
    assert "make no measurable difference" in null and "`pcc`" not in null and "`p2p` (same model as" in null
    assert unadjusted.startswith(UNADJUSTED) and "losses: `zinb` vs `mse` +0.020 [+0.008, +0.032]" in unadjusted
    assert "over 3 held-out patient folds" in lesson["null"]
    assert "interactions: `bottleneck` vs `full` +0.05" in lesson["buys"]
    assert "nan" not in lesson["level"] and lesson["level"].endswith("default world.")  # no oracle recorded


def test_real_runs_are_read_as_one_cohort():
    real = _real(_summary())
    box = conclusions.conclusion_box(real, "interactions", truth=NO_TRUTH)
    assert "one cohort's patients (`hest-bowel-abc123`)" in box and "default world" not in box
    grid = conclusions.grid_conclusion_box(real, truth=NO_TRUTH)
    assert "`hest-bowel-abc123`" in grid and "every run here is simulated" not in grid
    assert "held-out patients of this cohort" in conclusions.lessons(real, NO_TRUTH)["level"]
    refs = {"interactions": "full", "losses": "mse"}
    simulated = findings.headline(_summary(), refs)
    assert "No other simulated world has been run yet" in simulated and "Simulation against reality" not in simulated
    headline = findings.headline(real, refs)
    assert "simulated world" not in headline and "*Simulation against reality*" in headline
    assert "(data source `hest-bowel-abc123`)" in headline and "/home/someone" not in headline


def test_the_design_sentence_names_each_axis_design_while_a_grid_is_part_re_run():
    """During a re-run with more folds, one axis has 6 folds x 1 seed and another still 3 folds x 2 seeds:
    the sentences say both, rather than the most folds with the most seeds."""
    import pandas as pd

    from stflib.report import conclusions
    from stflib.report.findings import _default_design, count_text, unit_sentence

    rows = ([{"world": "default", "axis": "context", "arm": "k18", "fold": f, "seed": 0} for f in range(6)]
            + [{"world": "default", "axis": "losses", "arm": "mse", "fold": f, "seed": s} for f in range(3) for s in (0, 1)])
    summary = pd.DataFrame(rows)
    assert _default_design(summary) == ((3, 6), (1, 2))
    assert _default_design(summary[summary["axis"] == "context"]) == (6, 1)
    text = unit_sentence(*_default_design(summary))
    assert "over 3 to 6 held-out patient folds of this cohort (by axis: 1 to 2 training seeds per fold, averaged" in text
    assert unit_sentence(6, 1).startswith("over 6 held-out patient folds of this cohort (one training seed per fold)")
    assert count_text((3, 6)) == "3 to 6" and count_text(6) == "6"
    assert "More certainty than 3 to 6 held-out patient folds give: the 1 to 2 seeds" in conclusions._certainty((3, 6), (1, 2))
