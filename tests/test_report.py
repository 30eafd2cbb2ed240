"""The results pages: tables, figures and sentences computed from a summary (stflib.report)."""
import matplotlib

matplotlib.use("Agg")
import numpy as np
import pandas as pd
import pytest

from stflib.report import figures, findings, pages, results, tables


@pytest.fixture
def summary():
    rows = []
    for fold in range(3):
        for arm, base in [("full", 0.30), ("bottleneck", 0.33), ("p2p", 0.10)]:
            rows.append(dict(axis="interactions", arm=arm, fold=fold, model="interaction",
                             pcc_hvg50=base + 0.01 * fold, pcc_all=base / 2, mse=0.5 - base,
                             pathway_pcc_truth=np.nan, train_seconds=10.0 + fold))
    rows.append(dict(axis="losses", arm="mse", fold=0, model="interaction", pcc_hvg50=0.2, pcc_all=0.1,
                     mse=0.3, pathway_pcc_truth=0.5, train_seconds=5.0))
    return pd.DataFrame(rows)


def test_arm_table_mean_sd_and_order(summary):
    table = tables.arm_table(summary, "interactions")
    assert list(table.index) == ["bottleneck", "full", "p2p"]
    assert table.loc["full", "PCC, 50 HVGs"] == "0.310 ± 0.010"
    assert table.loc["full", "runs"] == 3
    assert table.loc["full", "flags"] == "cap not recorded; fit not recorded"  # older summaries: said, not guessed
    assert "PCC with true pathways" not in table  # all NaN for this axis: left out, not printed as nan


def test_paired_deltas_are_fold_paired(summary):
    deltas = tables.paired_deltas(summary, "interactions", reference="full")
    assert deltas.loc["bottleneck", "mean_delta"] == pytest.approx(0.03)
    assert np.isnan(deltas.loc["bottleneck", "ci_low"])  # identical differences in every fold: no interval
    assert deltas.loc["bottleneck", "wins"] == 3 and deltas.loc["bottleneck", "pairs"] == 3
    assert deltas.loc["p2p", "wins"] == 0 and not deltas["finding"].any()
    with pytest.raises(ValueError, match="reference arm 'nope'"):
        tables.paired_deltas(summary, "interactions", reference="nope")


def test_runs_of_two_library_versions_are_never_paired(summary):
    # the reference and bottleneck were re-run with the new code; p2p still holds the old code's runs
    mixed = summary.assign(code_version=np.where(summary["arm"] == "p2p", "old", "new"))
    deltas = tables.paired_deltas(mixed, "interactions", reference="full")
    assert deltas.loc["bottleneck", "pairs"] == 3 and deltas.loc["p2p", "pairs"] == 0
    assert np.isnan(deltas.loc["p2p", "mean_delta"]) and not deltas.loc["p2p", "finding"]
    across = tables.deltas_to(mixed, [("interactions", "p2p"), ("interactions", "bottleneck")],
                              reference=("interactions", "full"))
    assert across.loc[("interactions", "p2p"), "pairs"] == 0 and across.loc[("interactions", "bottleneck"), "pairs"] == 3


def _noisy_summary(n_folds=3, seeds=(0, 1), worlds=("default",), effect=0.05, rng_seed=0):
    """Interactions-axis runs over folds x seeds x worlds: `bottleneck` better than `full` by
    ``effect`` (a world -> effect dict allowed), `p2p` the same as `full`, plus the simple models."""
    rng = np.random.default_rng(rng_seed)
    rows = []
    for world in worlds:
        gain = effect[world] if isinstance(effect, dict) else effect
        for fold in range(n_folds):
            for seed in seeds:
                base = 0.3 + rng.normal(0, 0.03)
                for axis, arm, value, fit in (("interactions", "full", base, 0.5),
                                              ("interactions", "bottleneck", base + gain + rng.normal(0, 0.004), 0.6),
                                              ("interactions", "p2p", base + 0.004 * (-1) ** (fold + seed), 0.2),
                                              ("baselines", "mlp", base, 0.4), ("baselines", "ridge_probe", base, 0.35)):
                    rows.append(dict(axis=axis, arm=arm, world=world, fold=fold, seed=seed, pcc_hvg50=value,
                                     train_pcc_hvg50=fit, hit_step_cap=arm == "full"))
    return pd.DataFrame(rows)


def test_describe_axis_and_takeaways_read_the_intervals():
    summary = _noisy_summary()
    text = findings.describe_axis(summary, "interactions", reference="full")
    assert ("over 3 held-out patient folds of this cohort (the 2 training seeds averaged within a fold); the "
            "intervals are conditional on the cohort's patients and the training budget") in text
    assert "findings" in text and "`bottleneck` (+0.05" in text and "`p2p`" not in text.split("findings")[1]
    bullets = findings.takeaways(summary, "interactions").splitlines()
    assert bullets[0].startswith("- Every interval below is the paired difference to `full` over 3 held-out")
    assert bullets[1].startswith("- `bottleneck` is better than `full`") and "wins 3 of 3 folds" in bullets[1]
    # p2p is shown once, as the model it is: the same as p2h and p2p-p2h under the default read-out
    assert any(b.startswith("- No measurable difference from `full`")
               and "`p2p` (same model as `p2h`, `p2p-p2h`)" in b for b in bullets)
    assert any("`full`: 6/6 at step cap" in b and "`p2p`: 6/6 fit below simple models" in b for b in bullets)
    assert "**These results are simulated.**" in bullets[-1] and "`default`" in bullets[-1]
    # grids from before the step schedule record epochs: the cap is read from epochs_run >= epochs_max
    old = _noisy_summary().drop(columns="hit_step_cap").assign(epochs_run=12, epochs_max=30)
    old.loc[old["arm"] == "p2p", "epochs_run"] = 30
    assert tables.arm_flags(old, "interactions")["p2p"].startswith("6/6 at step cap")
    null = findings.takeaways(_noisy_summary(effect=0.0), "interactions")
    assert "better than" not in null and "No measurable difference" in null


def test_run_flags_compare_with_the_simple_models_of_the_same_pair():
    summary = _noisy_summary()
    flags = tables.run_flags(summary)
    rows = summary.assign(**flags)
    assert rows.loc[rows["arm"] == "full", "at_cap"].all() and not rows.loc[rows["arm"] == "p2p", "at_cap"].any()
    assert rows.loc[rows["arm"] == "p2p", "fit_below_simple"].all()  # 0.2 < both 0.4 and 0.35
    assert not rows.loc[rows["arm"] == "full", "fit_below_simple"].any()  # 0.5: above both
    assert rows.loc[rows["arm"] == "mlp", "fit_below_simple"].isna().all()  # the bar itself
    no_fit = tables.run_flags(summary.drop(columns=["train_pcc_hvg50", "hit_step_cap"]))
    assert no_fit.isna().all().all()


def test_simulation_note_names_worlds_and_real_data():
    summary = _noisy_summary(worlds=("default", "no-context"))
    assert "world" in findings.simulation_note(summary) and "`default`, `no-context`" in findings.simulation_note(summary)
    real = summary.assign(data_dir=np.where(summary["world"] == "no-context", "/data/hest", None))
    note = findings.simulation_note(real)
    assert "world `default`" in note and "runs read real data (data source `hest`)" in note
    assert "/data" not in note  # the folder's name, never the machine's path
    recorded = real.assign(data_source=np.where(real["world"] == "no-context", "hest-abc123", None))
    note = findings.simulation_note(recorded)
    assert "(data source `hest-abc123`)" in note and "`hest`" not in note


def _four_world_summary():
    """`bottleneck` better than `full` in the default world: it holds in no-context, reverses in
    strong-patient and was not run in pathway-misspecified."""
    summary = _noisy_summary(worlds=("default", "no-context", "strong-patient", "pathway-misspecified"),
                             effect={"default": 0.05, "no-context": 0.06, "strong-patient": -0.05,
                                     "pathway-misspecified": 0.05})
    return summary[~((summary["world"] == "pathway-misspecified") & (summary["arm"] == "bottleneck"))]


def test_world_robustness_says_where_a_finding_holds():
    summary = _four_world_summary()
    table = findings.world_robustness(summary, {"interactions": "full"}).set_index("arm")
    assert list(table.index) == ["bottleneck"]  # the only finding of the default world
    row = table.loc["bottleneck"]
    assert row["holds in"].startswith("no-context +0.06") and row["reversed in"].startswith("strong-patient -0.05")
    assert (row["inconclusive in"], row["not run in"]) == ("-", "pathway-misspecified")
    text = findings.findings_text(summary, {"interactions": "full"})
    assert "`bottleneck` is better than `full` by +0.05" in text and "In the other worlds: holds in no-context +0.06" in text
    assert "reversed in strong-patient -0.05" in text
    assert findings.unchecked_findings(summary, {"interactions": "full"}) == []
    # an effect buried in noise: the interval crosses zero, neither holding nor reversed
    noisy = _noisy_summary(worlds=("default", "no-context"), effect={"default": 0.05, "no-context": 0.0})
    noisy_row = findings.world_robustness(noisy, {"interactions": "full"}).set_index("arm").loc["bottleneck"]
    assert noisy_row["inconclusive in"].startswith("no-context") and noisy_row["holds in"] == "-"
    # a finding whose arm no other world ran is not in the table but listed as unchecked
    alone = summary[~((summary["world"] != "default") & (summary["arm"] == "bottleneck"))]
    assert findings.world_robustness(alone, {"interactions": "full"}).empty
    assert findings.unchecked_findings(alone, {"interactions": "full"}) == ["interactions/bottleneck"]
    heading = "**No measurable difference (the unadjusted interval includes zero)**"
    assert heading in text and "`p2p`" in text.split(heading)[1]
    assert "over 3 held-out patient folds of this cohort" in text


def test_world_verdicts_are_one_row_per_finding_and_world():
    summary = _four_world_summary()
    long = findings.world_verdicts(summary, {"interactions": "full"}).set_index("world")
    assert list(long.index) == ["no-context", "pathway-misspecified", "strong-patient"]
    assert (long["arm"] == "bottleneck").all() and (long["default_pairs"] == 3).all()  # 3 folds, seeds averaged
    assert long.loc["no-context", "verdict"] == "holds in" and long.loc["no-context", "mean_delta"] > 0.05
    assert long.loc["strong-patient", "verdict"] == "reversed in" and long.loc["strong-patient", "ci_high"] < 0
    assert long.loc["pathway-misspecified", "verdict"] == "not run in"
    assert np.isnan(long.loc["pathway-misspecified", "mean_delta"]) and long.loc["pathway-misspecified", "pairs"] == 0
    # the table and the unchecked list read a precomputed long table the same way they read the runs
    verdicts = findings.world_verdicts(summary, {"interactions": "full"})
    assert findings.world_robustness(summary, {"interactions": "full"}, verdicts=verdicts).equals(
        findings.world_robustness(summary, {"interactions": "full"}))
    assert findings.unchecked_findings(summary, {"interactions": "full"}, verdicts=verdicts) == []


def test_stale_banner_counts_runs_of_an_earlier_library():
    runs = pd.DataFrame({"axis": ["losses", "losses", "context"], "code_version": ["old", "new", "old"]})
    text = pages.stale_banner(runs, current="new")
    assert "2 of the 3 committed runs" in text and "context, losses" in text and "python -m stflib ablate" in text
    assert "All 3 committed runs" in pages.stale_banner(runs.assign(code_version="new"), current="new")


def test_tables_are_written_as_csv_and_linked(tmp_path):
    table = pd.DataFrame({"mean_delta": [0.1]}, index=pd.Index(["k6"], name="arm"))
    path = tables.table_csv(table, "context-deltas", static_dir=tmp_path)
    assert pd.read_csv(path, index_col="arm").loc["k6", "mean_delta"] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="table name '../x'"):
        tables.table_csv(table, "../x", static_dir=tmp_path)


def test_grid_cost_counts_each_execution_once():
    t0 = pd.Timestamp("2026-12-02T10:00:00")
    minutes = lambda m: t0 + pd.Timedelta(minutes=m)  # noqa: E731
    runs = pd.DataFrame({"axis": ["a", "a", "b"], "seconds": [60.0, 60.0, 120.0], "copied": [False, True, False],
                         "malloc_trim": [True, True, False],
                         "started": [minutes(0), minutes(0), minutes(600)], "finished": [minutes(1), minutes(1), minutes(602)]})
    cost = tables.grid_cost(runs)
    assert cost.loc["a", "run folders"] == 2 and cost.loc["a", "executions"] == 1
    assert cost.loc["all axes", "executed hours"] == pytest.approx(180 / 3600, abs=0.005)
    # the 598 idle minutes between the two axes are not grid time
    assert cost.loc["all axes", "busy wall hours"] == pytest.approx(3 / 60, abs=0.005)
    assert list(cost["executions with malloc trimming"]) == [1, 0, 1]  # a, b, all axes: the copy is not an execution
    worlds = tables.grid_cost(runs.assign(world=["default", "default", "no-context"]))
    assert "world no-context" in worlds.index and "b" not in worlds.index
    # the share of an execution outside training and evaluation, from its own clock; unknown without eval_seconds
    share = "median share outside training and evaluation"
    assert cost[share].isna().all()
    timed = tables.grid_cost(runs.assign(train_seconds=[45.0, 45.0, 90.0], eval_seconds=[3.0, 3.0, 6.0]))
    assert timed.loc["a", share] == pytest.approx(0.2) and timed.loc["b", share] == pytest.approx(0.2)
    assert timed.loc["all axes", share] == pytest.approx(0.2)


def test_grid_wall_verdict_compares_busy_time_with_the_budget():
    t = lambda h: pd.Timestamp("2026-12-02") + pd.Timedelta(hours=h)  # noqa: E731
    runs = pd.DataFrame({"started": [t(0), t(1), t(1)], "finished": [t(2), t(3), t(3)], "copied": [False, False, True],
                         "code_version": ["new", "new", "new"]})
    text = tables.grid_wall_verdict(runs, current="new", budget_hours=4)
    assert f"{tables.GRID_WALL_BUDGET_HOURS:g}-hour budget" in tables.grid_wall_verdict(runs, current="new")
    assert "busy for 3.00 h over 2 executions" in text and "within the 4-hour budget" in text and "1.00 h to spare" in text
    assert "earlier version" not in text
    over = tables.grid_wall_verdict(runs.assign(code_version=["old", "new", "new"]), current="new", budget_hours=2.5)
    assert "over the 2.5-hour budget for a 2-core machine by 0.50 h" in over and "1 of these executions" in over
    with pytest.raises(ValueError, match="no runs under results/"):
        tables.grid_wall_verdict(runs[:0], current="new")


def test_busy_hours_counts_overlapping_runs_once_and_leaves_out_gaps():
    t = lambda h: pd.Timestamp("2026-12-02") + pd.Timedelta(hours=h)  # noqa: E731
    # two workers: [0, 2] and [1, 3] overlap (3 h busy); a resumed session [10, 11]; one run without times
    started = pd.Series([t(0), t(1), t(10), pd.NaT])
    finished = pd.Series([t(2), t(3), t(11), pd.NaT])
    assert tables.busy_hours(started, finished) == pytest.approx(4.0)
    assert tables.busy_hours(started[:0], finished[:0]) == 0.0


def test_unknown_axis_names_the_present_ones(summary):
    with pytest.raises(ValueError, match=r"axes present: \['interactions', 'losses'\]"):
        tables.arm_table(summary, "nope")


def test_plot_axis_draws_every_arm(summary):
    ax = figures.plot_axis(summary, "interactions", reference="full")
    assert [t.get_text() for t in ax.get_yticklabels()] == ["bottleneck", "full", "p2p"]


def test_load_summary_missing_file_says_how_to_make_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="stflib collect"):
        results.load_summary(tmp_path)


def test_example_arms_only_those_with_a_saved_figure(summary, tmp_path):
    for arm in ("full", "p2p"):
        folder = tmp_path / "interactions" / arm / "fold0"
        folder.mkdir(parents=True)
        (folder / "gene_maps.png").write_bytes(b"png")
    # the best arm (bottleneck) saved no figure: the best arm with one (full, the reference) is shown
    assert figures.example_arms(summary, "interactions", "full", results_dir=tmp_path) == ["full"]
    assert figures.example_arms(summary, "interactions", "p2p", results_dir=tmp_path) == ["p2p", "full"]
    with pytest.raises(FileNotFoundError, match="ablate params/interactions"):
        results.run_figure("interactions", "bottleneck", "gene_maps.png", results_dir=tmp_path)


def test_api_table_lists_public_functions_with_signatures():
    table = pages.api_table("pathways")
    row = table.set_index("name").loc["pathway_targets"]
    assert row["kind"] == "function" and row["signature"].startswith("pathway_targets(expression")
    assert "Path" not in set(table["name"])  # imported names from other packages are left out
    assert {"Axis", "axis_references"} <= set(pages.api_table("grid.axes")["name"])


def test_every_module_of_the_api_reference_imports():
    import importlib

    for name in pages.API_MODULES:
        importlib.import_module(f"stflib.{name}")


def test_histories_and_grid_runs_read_run_folders(tmp_path):
    for arm, loss in (("stf", 2.0), ("mlp", 1.0)):
        folder = tmp_path / "baselines" / arm / "fold0"
        folder.mkdir(parents=True)
        pd.DataFrame({"epoch": [0, 1], "train_loss": [loss, loss / 2], "val_loss": [1, 1],
                      "val_pcc": [0.1, 0.2]}).to_csv(folder / "history.csv", index=False)
        (folder / "run.json").write_text(
            '{"axis": "baselines", "arm": "%s", "fold": 0, "status": "ok", "seconds": 10,'
            ' "started": "2026-01-01T00:00:00", "finished": "2026-01-01T00:00:10"%s}'
            % (arm, ', "copied_from": "x"' if arm == "mlp" else ""))
    curves = results.histories("baselines", ["stf", "mlp", "missing"], results_dir=tmp_path)
    assert list(curves.groupby("arm", sort=False)["train_loss"].first()) == [2.0, 1.0]
    world_run = tmp_path / "worlds" / "no-context" / "baselines" / "stf" / "fold0"
    world_run.mkdir(parents=True)
    (world_run / "run.json").write_text('{"axis": "baselines", "arm": "stf", "fold": 0, "status": "ok", '
                                        '"seconds": 10, "params": {"world": "no-context"}, "kernel_environment": '
                                        '{"OMP_NUM_THREADS": "1", "MALLOC_TRIM_THRESHOLD_": null}}')
    runs = results.grid_runs(tmp_path)
    assert len(runs) == 3 and runs["copied"].sum() == 1 and (runs["status"] == "ok").all()
    assert sorted(runs["world"]) == ["default", "default", "no-context"]
    # the two runs without a recorded kernel environment predate it: they ran with Dask's malloc trimming
    assert list(runs.sort_values("world")["malloc_trim"]) == [True, True, False]
    assert runs["eval_seconds"].isna().all()  # no metrics.json in these folders
    # a seed-1 run of an earlier 3-fold design beside the reference's 6-fold runs: not today's grid's cost
    for folder, n_folds in (("fold0-seed1", 3), ("fold1", 6)):
        d = tmp_path / "baselines" / "stf" / folder
        d.mkdir(parents=True)
        (d / "run.json").write_text('{"axis": "baselines", "arm": "stf", "fold": 0, "status": "ok", "seconds": 10, '
                                    '"params": {"n_folds": %d}}' % n_folds)
    runs = results.grid_runs(tmp_path)
    assert sorted(runs.loc[runs["world"] == "default", "folder"]) == ["baselines/stf/fold1"]
    assert len(results.grid_runs(tmp_path, earlier_designs=True)) == 5
    figures.plot_histories(curves)
    with pytest.raises(FileNotFoundError, match="no history.csv"):
        results.histories("baselines", ["missing"], results_dir=tmp_path)


def test_loss_terms_side_by_side(tmp_path):
    folder = tmp_path / "losses" / "mse_pcc" / "fold0"
    folder.mkdir(parents=True)
    pd.DataFrame({"epoch": [0, 1], "train_loss": [601.0, 500.0], "val_loss": [1, 1], "val_pcc": [0.1, 0.2],
                  "train_mse": [600.0, 499.0], "train_pcc": [1.0, 1.0]}).to_csv(folder / "history.csv", index=False)
    terms = results.loss_terms("losses", ["mse_pcc"], results_dir=tmp_path)
    assert terms.loc["mse_pcc"].to_dict() == {"loss": 601.0, "mse": 600.0, "pcc": 1.0}


def test_quadrant_effects_main_effect_per_fold():
    """The 15-subset design from the 10 distinct models: an alias's cell is its canonical arm's runs (a
    committed alias run is ignored), and the unit is the fold."""
    from stflib.grid.axes import ARMS

    rows = [dict(axis="interactions", arm=arm, fold=fold, seed=seed,
                 pcc_hvg50=0.3 + 0.05 * ("h2h" in arm or arm == "full") + 0.01 * fold + 0.001 * seed)
            for fold in range(3) for seed in range(2) for arm in ARMS["interactions"].arms]
    rows += [dict(axis="interactions", arm="p2h", fold=fold, seed=0, pcc_hvg50=9.9) for fold in range(3)]
    effects = tables.quadrant_effects(pd.DataFrame(rows))
    assert (effects["arms_with"] == 8).all() and (effects["arms_without"] == 7).all() and (effects["pairs"] == 3).all()
    assert effects.loc["h2h", "mean_delta"] == pytest.approx(0.05)
    # p2h: with it, 4 of 8 cells have h2h; without it, 4 of 7
    assert effects.loc["p2h", "mean_delta"] == pytest.approx(0.05 * (4 / 8 - 4 / 7))
    assert tables.quadrant_effects(pd.DataFrame(rows), unit="pair").loc["h2h", "pairs"] == 6


def test_deltas_to_a_run_of_another_axis(summary):
    deltas = tables.deltas_to(summary, [("interactions", "bottleneck")], reference=("interactions", "full"))
    assert deltas.loc[("interactions", "bottleneck"), "mean_delta"] == pytest.approx(0.03)
    with pytest.raises(ValueError, match="no completed runs for losses/zinb"):
        tables.deltas_to(summary, [("losses", "zinb")], reference=("interactions", "full"))


def test_metric_labels_and_directions_come_from_the_registry(summary):
    assert results.metric_info("mse").label == "MSE (log1p CP10k)" and not results.metric_info("mse").higher_is_better
    from stflib.metrics import METRICS

    with pytest.raises(ValueError) as err:
        results.metric_info("pcc")
    assert str(err.value) == "metric: unknown 'pcc'; allowed: " + ", ".join(METRICS)
    # lower MSE is better: bottleneck (0.17) wins every fold against full (0.20)
    deltas = tables.paired_deltas(summary, "interactions", reference="full", metric="mse")
    assert deltas.loc["bottleneck", "wins"] == 3 and deltas.loc["bottleneck", "mean_delta"] == pytest.approx(-0.03)


def test_markdown_table_keeps_long_cells_whole_and_escapes_bars():
    table = pd.DataFrame({"name": ["ridge_probe", "mlp"], "description": ["a | b " + "x" * 120, "one\ntwo"]})
    text = tables.markdown_table(table, code_columns=("name",))
    lines = text.splitlines()
    assert lines[:2] == ["| name | description |", "|---|---|"]
    assert lines[2] == "| `ridge_probe` | a \\| b " + "x" * 120 + " |"  # nothing cut, the bar escaped
    assert lines[3] == "| `mlp` | one two |"
    with pytest.raises(ValueError, match="unknown code columns \\['class'\\]; allowed: name, description"):
        tables.markdown_table(table, code_columns=("class",))


def test_book_renders_generated_markdown_tables_as_tables():
    # the pages display tables.markdown_table through IPython's Markdown; myst-nb parses that output
    # with the format _config.yml names, and its default (CommonMark) prints a table as plain text
    from pathlib import Path

    import yaml
    from markdown_it.renderer import RendererHTML
    from myst_parser.config.main import MdParserConfig
    from myst_parser.parsers.mdit import create_md_parser

    book = yaml.safe_load((Path(__file__).parents[1] / "_config.yml").read_text())
    fmt = book["sphinx"]["config"].get("nb_render_markdown_format", "commonmark")
    assert fmt in ("gfm", "myst"), f"_config.yml renders cell Markdown as {fmt!r}: tables would print as text"
    config = MdParserConfig(gfm_only=True) if fmt == "gfm" else MdParserConfig(
        enable_extensions=set(book["parse"]["myst_enable_extensions"]))
    text = tables.markdown_table(pd.DataFrame({"arm": ["k18"], "holds in": ["strong-patient +0.065 [+0.003, +0.127]"]}),
                                 code_columns=("arm",))
    html = create_md_parser(config, RendererHTML).render(text)
    assert "<table>" in html and "<td><code>k18</code></td>" in html


def test_headline_reads_the_intervals_of_design_axes_baselines_and_worlds():
    # bottleneck better than full in both worlds; p2p level; the MLP worse than the reference STF
    summary = _noisy_summary(worlds=("default", "no-context"), effect={"default": 0.05, "no-context": 0.06})
    stf = summary[summary["arm"] == "full"].assign(axis="baselines", arm="stf")
    summary = pd.concat([summary[summary["arm"] != "mlp"], stf,
                         stf.assign(arm="mlp", pcc_hvg50=stf["pcc_hvg50"] - 0.1 + 0.002 * stf["fold"])])
    refs = {"interactions": "full", "baselines": "stf"}
    bullets = findings.headline(summary, refs).splitlines()
    assert bullets[0].startswith("- 2 of the 4 distinct arms compared differ")
    assert "over 3 held-out patient folds of this cohort" in bullets[0]
    assert bullets[1].startswith("- The largest finding of each axis") and "interactions: `bottleneck` vs `full` +0.05" in bullets[1]
    assert "baselines" not in bullets[1]
    assert "The reference STF (`stf`) beats `mlp`; is not measurably different from `ridge_probe`" in bullets[2]
    assert "`bottleneck` vs `full` holds in no-context" in bullets[3] and "None reverses anywhere." in bullets[3]
    assert "(no-context; 3 folds each)" in bullets[3]  # counted from the runs, not typed
    assert "**These results are simulated.**" in bullets[-1]


def test_an_alias_is_shown_once_and_the_holm_family_counts_distinct_models():
    """p2h is the same model as p2p under the default read-out: its committed runs are left out, p2p is
    labelled with its aliases, and Holm corrects over the distinct arms only."""
    from stflib.report import stats

    rows = []
    for fold in range(3):
        for seed in range(2):
            base = 0.3 + 0.02 * fold
            for arm, value in (("full", base), ("p2p", base - 0.05 - 0.004 * fold), ("p2h", base - 0.05 - 0.004 * fold),
                               ("h2p", base - 0.03 + 0.01 * (-1) ** fold)):
                rows.append(dict(axis="interactions", arm=arm, fold=fold, seed=seed, pcc_hvg50=value + 0.001 * seed))
    summary = pd.DataFrame(rows)
    deltas = tables.paired_deltas(summary, "interactions", "full")
    assert set(deltas.index) == {"p2p", "h2p"}  # p2h is p2p
    assert deltas.loc["p2p", "same model as"] == "p2h, p2p-p2h" and deltas.loc["h2p", "same model as"] == ""
    assert deltas["p_holm"].tolist() == pytest.approx(list(stats.holm(deltas["p_value"].to_numpy())))
    assert deltas["p_holm"].min() == pytest.approx(2 * deltas["p_value"].min())  # a family of 2, not 3
    assert set(tables.arm_table(summary, "interactions").index) == {"full", "p2p", "h2p"}
    assert "`p2p` (same model as `p2h`, `p2p-p2h`)" in findings.describe_axis(summary, "interactions", "full")
    assert tables.arm_label("losses", "mse") == "`mse`"


def test_an_interval_that_excludes_zero_is_never_called_no_difference():
    """Three arms each 0.02 better in every fold (0.015, 0.02, 0.025 over the 3 folds): each unadjusted
    interval excludes zero (p = 0.020), Holm's family of 3 makes none a finding (0.061)."""
    rows = []
    for fold, gain in enumerate((0.015, 0.02, 0.025)):
        for seed in range(2):
            base = 0.3 + 0.02 * fold + 0.001 * seed
            rows.append(dict(axis="losses", arm="mse", fold=fold, seed=seed, pcc_hvg50=base))
            rows += [dict(axis="losses", arm=arm, fold=fold, seed=seed, pcc_hvg50=base + gain)
                     for arm in ("pcc", "mse_pcc", "zinb")]
    summary = pd.DataFrame(rows)
    deltas = tables.paired_deltas(summary, "losses", "mse")
    assert not deltas["finding"].any() and (deltas["ci_low"] > 0).all()
    for text in (findings.describe_axis(summary, "losses", "mse"), findings.takeaways(summary, "losses"),
                 findings.findings_text(summary, {"losses": "mse"})):
        assert "No measurable difference" not in text and "no measurable difference" not in text.lower().replace(
            "made no measurable difference", "")
        assert "excludes zero" in text or "exclude zero" in text
    said = findings.takeaways(summary, "losses").split("Not a finding after Holm, though the unadjusted interval "
                                                        "excludes zero: ")[1]
    assert all(f"`{arm}` (+0.020 [+0.008, +0.032], Holm p = 0.0606)" in said for arm in ("pcc", "mse_pcc", "zinb"))
    assert "0 made no measurable difference" in findings.headline(summary, {"losses": "mse"})


def test_overview_leaves_out_an_axis_the_metric_does_not_measure():
    # every depth_correction arm predicts pathway scores: no gene PCC, so no pcc_hvg50 comparison (not a crash)
    rows = _noisy_summary(n_folds=3, seeds=(0,))
    pathway_target = pd.DataFrame([dict(axis="depth_correction", arm=arm, world="default", fold=fold, seed=0,
                                         pcc_hvg50=np.nan, pathway_pcc_truth=0.1 + 0.01 * fold)
                                    for arm in ("none", "regress") for fold in range(3)])
    summary = pd.concat([rows, pathway_target], ignore_index=True)
    references = {"interactions": "full", "depth_correction": "none"}
    table = tables.overview(summary, references, "pcc_hvg50")
    assert set(table["axis"]) == {"interactions"}
    by_pathways = tables.overview(summary, references, "pathway_pcc_truth")
    assert set(by_pathways["axis"]) == {"depth_correction"}  # the interactions rows have no pathway_pcc_truth
    assert by_pathways.set_index("arm").loc["regress", "mean_delta"] == pytest.approx(0.0)


def test_standin_information_pairs_the_planted_information_with_the_model_difference():
    rows = []
    for fold in range(4):
        for arm, gain in (("resnet50", 0.0), ("uni", 0.02), ("gigapath", 0.04), ("ctranspath", -0.03)):
            rows.append(dict(axis="backbones", arm=arm, world="default", fold=fold, seed=0,
                             pcc_hvg50=0.3 + gain + 0.005 * (fold % 2) * (arm != "resnet50")))
    summary = pd.DataFrame(rows)
    calibration = pd.DataFrame({"world": "default", "backbone": ["resnet50", "uni", "gigapath", "ctranspath", "plip"],
                                "probe_pcc": [0.22, 0.23, 0.25, 0.19, 0.21], "anchor_read": 0.1, "anchor_coad": 0.3})
    table = tables.standin_information(summary, calibration)
    assert list(table.index) == ["ctranspath", "resnet50", "uni", "gigapath"]  # by planted information; plip: no runs
    assert table.loc["resnet50", "mean_delta"] == 0.0
    assert table.loc["gigapath", "mean_delta"] == pytest.approx(0.0425)
    sentence = tables.standin_sentence(table)
    assert "Spearman ρ = 1.00" in sentence and "follows" in sentence and "`gigapath`" in sentence
    flipped = table.assign(mean_delta=-table["mean_delta"])
    assert "does not measurably follow" in tables.standin_sentence(flipped)
    with pytest.raises(ValueError, match="probe_pcc"):
        tables.standin_information(summary, calibration.drop(columns="probe_pcc"))


def test_takeaways_name_the_budget_limited_comparisons():
    summary = _noisy_summary(n_folds=4, seeds=(0,))
    text = findings.takeaways(summary, "interactions", reference="full")
    # every `full` run hit the step cap (_noisy_summary): each comparison with it is budget-limited
    assert "Budget-limited (more than 50% of the runs of the arm or of `full`" in text
    assert "`bottleneck`" in text.split("Budget-limited")[1].split("\n")[0]
    uncapped = findings.takeaways(summary.assign(hit_step_cap=False), "interactions", reference="full")
    assert "Budget-limited" not in uncapped


def test_show_table_shows_every_row_and_whole_cells(monkeypatch):
    import IPython.display

    shown = []
    monkeypatch.setattr(IPython.display, "display",
                        lambda obj: shown.append(obj._repr_html_() if isinstance(obj, pd.DataFrame) else obj))
    long_cell = "present in a negative control (on the default's side of zero) " * 2
    table = pd.DataFrame({"finding": [f"arm {i}" for i in range(69)], "when": long_cell})
    tables.show_table(table, "a-long-table")
    html = shown[0]
    assert "arm 68" in html and "arm 34" in html and "..." not in html  # pandas cuts >60 rows to 10 by default
    assert long_cell.strip() in html
