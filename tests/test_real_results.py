"""Real runs are first-class: a run on a data folder is filed under its plain axis with its data source
(stflib.grid.runner, stflib.data.source), collected as world ``real`` (stflib.grid.collect), and an axis
page built from a results folder that holds such runs shows them, under a banner naming the cohort
(stflib.report.results.page_summary, stflib.report.pages)."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import HEST_CSV
from stflib.data.source import describe_metadata, describe_source, source_id, source_text
from stflib.grid.collect import collect, write_summary
from stflib.grid.params import axis_of, plain_axis
from stflib.grid.runner import REAL_FOLDER, make_tasks
from stflib.report import findings, pages, results, tables

REPO = Path(__file__).resolve().parents[1]
AXIS = "log_transform"
# a HEST-layout folder's metadata: 4 human Visium bowel samples (3 patients; TENXA has no patient label)
# and one mouse sample the default cohort filter leaves out
METADATA = pd.DataFrame({
    "id": ["ZA1", "ZA2", "ZB1", "TENXA", "MOUSE1"],
    "dataset_title": ["study Z", "study Z", "study Z", "demo", "mouse study"],
    "patient": ["P1", "P1", "P2", None, "M1"],
    "organ": ["Bowel"] * 5, "species": ["Homo sapiens"] * 4 + ["Mus musculus"],
    "st_technology": ["Visium"] * 5, "oncotree_code": ["COAD", "COAD", "READ", "COADREAD", "COAD"],
    "spots_under_tissue": [1000, 1200, 900, 3000, 500]})


@pytest.fixture()
def data_folder(tmp_path):
    folder = tmp_path / "bowel_cohort"
    folder.mkdir()
    METADATA.to_csv(folder / "metadata.csv", index=False)
    return folder


def test_data_source_describes_the_selected_cohort(data_folder):
    d = describe_source(data_folder)
    assert d["id"] == source_id(data_folder, ["ZA1", "ZA2", "ZB1", "TENXA"]) and d["id"].startswith("bowel-cohort-")
    assert (d["samples"], d["patients"], d["unlabelled_samples"], d["spots"]) == (4, 3, 1, 6100)
    assert d["technology"] == ["Visium"] and d["oncotree"] == ["COAD", "COADREAD", "READ"]
    assert d["species"] == ["Homo sapiens"] and d["data_dir"] == "bowel_cohort"
    # another selection of the same folder is another data source
    assert describe_source(data_folder, {"oncotree": ["COAD"]})["id"] != d["id"]
    text = source_text(d)
    assert d["id"] in text and "4 samples from 3 patients" in text and "`COADREAD`" in text
    with pytest.raises(FileNotFoundError, match="metadata"):
        describe_source(data_folder.parent / "nowhere")


@pytest.mark.skipif(not HEST_CSV.is_file(), reason="HEST-1k metadata CSV not in the reference data")
def test_data_source_of_the_real_hest_bowel_cohort():
    from stflib.data import select_samples

    d = describe_metadata(select_samples(HEST_CSV))
    assert (d["samples"], d["patients"], d["spots"]) == (55, 17, 175_713)
    assert d["unlabelled_samples"] > 0 and d["technology"] == ["Visium"] and d["species"] == ["Homo sapiens"]


def test_a_run_on_a_data_folder_is_filed_under_its_plain_axis(tmp_path, data_folder):
    assert plain_axis(axis_of(REPO / "params" / "hest" / AXIS / "on.yaml")) == AXIS == plain_axis(AXIS)
    real = make_tasks([REPO / "params" / "hest" / AXIS], folds=2, results=tmp_path,
                      overrides={"data_dir": str(data_folder)})
    simulated = make_tasks([REPO / "params" / AXIS], folds=2, results=tmp_path)
    source = describe_source(data_folder)
    assert {t.axis for t in real} == {AXIS} and all(t.data_source == source for t in real)
    assert {Path(t.out_dir).relative_to(tmp_path).parts[:3] for t in real} == {(REAL_FOLDER, source["id"], AXIS)}
    # the same arm on the simulator stays where it was: no folder is shared
    assert not {t.out_dir for t in real} & {t.out_dir for t in simulated}
    assert all(t.data_source is None for t in simulated)


def _write_run(folder: Path, info: dict, metrics: dict) -> None:
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps(info))
    (folder / "metrics.json").write_text(json.dumps(metrics))


def write_results(root: Path, data_folder: Path, simulated: bool = True) -> dict:
    """A results folder as the grid leaves it: 3 folds of both arms of the axis on the data folder (the
    runner's tasks, a run.json and metrics.json each; `on` better by 0.05 on every fold) and, beside them,
    the same arms on the simulator (`on` worse), then `collect`. Returns the data source."""
    rng = np.random.default_rng(0)
    tasks = make_tasks([REPO / "params" / "hest" / AXIS], folds=3, results=root, overrides={"data_dir": str(data_folder)})
    if simulated:
        tasks += make_tasks([REPO / "params" / AXIS], folds=3, results=root)
    for t in tasks:
        real = t.data_source is not None
        base = 0.30 + 0.02 * t.fold + rng.normal(0, 0.002)
        pcc = base + (0.05 if t.arm == "on" else 0.0) * (1 if real else -1)
        config = {**t.params, "model": "interaction", "epochs": 30}
        _write_run(Path(t.out_dir), {"axis": t.axis, "arm": t.arm, "fold": t.fold, "seed": t.seed, "status": "ok",
                                     "run_hash": t.run_hash, "params": t.params, "seconds": 10.0,
                                     "code_version": t.code_version, "core_version": t.core_version,
                                     **({"data_source": t.data_source} if real else {})},
                   {"pcc_hvg50": pcc, "pcc_all": pcc - 0.1, "mse": 1 - pcc, "model": "interaction",
                    "train_seconds": 9.0, "config": config})
    write_summary(collect(root), root)
    return tasks[0].data_source


def test_collect_keeps_real_runs_apart(tmp_path, data_folder):
    source = write_results(tmp_path / "results", data_folder)
    summary = results.load_summary(tmp_path / "results")
    real = summary[summary["world"] == "real"]
    assert len(real) == 6 and set(real["axis"]) == {AXIS} and set(real["data_source"]) == {source["id"]}
    assert len(summary[(summary["world"] == "default") & (summary["axis"] == AXIS)]) == 6
    assert summary.loc[summary["world"] == "default", "data_source"].isna().all()


def _displayed(monkeypatch, show) -> str:
    """The Markdown and table text a page function displays."""
    import IPython.display

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda *objs, **_: shown.extend(objs))
    monkeypatch.setattr("matplotlib.pyplot.show", lambda *a, **k: None)
    show()
    return "\n".join(getattr(o, "data", None) or (o.to_string() if hasattr(o, "to_string") else str(o)) for o in shown)


def test_axis_page_shows_the_real_runs_with_their_banner(tmp_path, data_folder, monkeypatch):
    folder = tmp_path / "results"
    source = write_results(folder, data_folder)
    monkeypatch.setenv("STFLIB_RESULTS", str(folder))  # how `make book RESULTS=...` points the pages at it

    shown = results.page_summary()
    assert len(shown) == 6 and set(shown["data_source"]) == {source["id"]} and results.is_real(shown)
    assert results.runs_root(shown) == folder / REAL_FOLDER / source["id"]
    arms = tables.arm_table(shown, AXIS)
    assert arms["runs"].to_dict() == {"on": 3, "off": 3}  # the real runs, best first (on the simulator, `off` is)
    deltas = tables.paired_deltas(shown, AXIS, "off")
    assert deltas.loc["on", "mean_delta"] == pytest.approx(0.05, abs=0.01) and deltas.loc["on", "pairs"] == 3

    banner = _displayed(monkeypatch, lambda: pages.page_banner(AXIS))
    assert "**These results are real data.**" in banner and source["id"] in banner
    assert "4 samples from 3 patients" in banner and "6 simulated runs, not shown" in banner
    assert "These results are simulated" not in banner
    body = _displayed(monkeypatch, lambda: pages.axis_report(AXIS))
    assert "Not run yet" not in body and "`on`" in body
    assert "`on` is better than `off`" in findings.takeaways(shown, AXIS)

    # without the real runs the same page is the simulated one, as before
    for run in (folder / REAL_FOLDER).rglob("run.json"):
        run.unlink()
    write_summary(collect(folder), folder)
    banner = _displayed(monkeypatch, lambda: pages.page_banner(AXIS))
    assert "These results are simulated" in banner and "real data" not in banner
    assert tables.arm_table(results.page_summary(), AXIS).index[0] == "off"


def test_real_runs_alone_and_a_chosen_source(tmp_path, data_folder):
    folder = tmp_path / "results"
    source = write_results(folder, data_folder, simulated=False)
    shown = results.page_summary(folder, data_source=source["id"])
    assert len(shown) == 6 and (shown["world"] == results.DEFAULT_WORLD).all()
    with pytest.raises(ValueError, match="present: " + source["id"]):
        results.page_summary(folder, data_source="another-cohort")
    assert "`on`" in pages.not_run_note(AXIS, real=True) and "data_dir=" in pages.not_run_note(AXIS, real=True)


def test_a_results_folder_of_runs_reads_the_projects_measurements(tmp_path, monkeypatch):
    """make book RESULTS=<dir> with runs only: the teaching chapters' measurements (chapters/, bench/, ...) come
    from the project's committed results, unless the folder holds its own."""
    from stflib.paths import measurement_dir, project_root

    monkeypatch.setenv("STFLIB_RESULTS", str(tmp_path))
    assert measurement_dir("chapters") == project_root() / "results" / "chapters"
    assert (measurement_dir("chapters") / "model" / "facts.json").is_file()
    (tmp_path / "bench").mkdir()
    assert measurement_dir("bench") == tmp_path / "bench"
