"""The grid (stflib.grid): the arms table, params files, task planning, the Dask runner (a real LocalCluster), collect."""
import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

from stflib import config as C
from stflib.backbones import BACKBONES
from stflib.grid.axes import ARMS, DEFAULT_WORLD, ROBUSTNESS_ARMS, ROBUSTNESS_WORLDS, Axis
from stflib.grid.collect import SUMMARY_COLUMNS, collect, summarise
from stflib.grid.params import arm_params, axis_of, robustness_params, write_params
from stflib.grid.runner import (complete_run_elsewhere, execute, kernel_environment, make_tasks, make_world_tasks, parse_run_folder, parse_seeds, parse_worlds,
                                result_files, run_grid)
from stflib.sim.worlds import WORLDS
from stflib.losses import LOSSES
from stflib.metrics import METRICS

REPO = Path(__file__).resolve().parents[1]


def test_axes_hold_every_registered_choice():
    # the 15 subsets under the default read-out are 10 models: one arm each, the others recorded as aliases
    flows = ARMS["interactions"]
    assert len(flows.arms) == 10 and {"full", "bottleneck"} <= set(flows.arms)
    assert len(flows.arms) + sum(len(a) for a in flows.aliases.values()) == 15
    assert flows.arms["bottleneck"]["interactions"] == ["p2p", "p2h", "h2p"]
    assert len(ARMS["interactions_contextual"].arms) == 15 and ARMS["interactions_contextual"].page == "interactions"
    assert set(ARMS["losses"].arms) == set(LOSSES)
    assert set(ARMS["backbones"].arms) == set(BACKBONES)
    assert set(ARMS["positional_encoding"].arms) == {"sinusoidal", "learned", "none"}
    assert set(ARMS["model_size"].arms) == {"tiny", "small", "medium"}
    assert ARMS["model_size"].arms["small"] == {"backbone": "ctranspath", "token_dim": 256, "n_heads": 4, "n_layers": 4}
    assert {"he2rna", "mlp", "ridge_probe", "abmil", "transmil", "mean"} <= set(ARMS["baselines"].arms)
    assert {(a["pathway_init"], a["pathway_loss_weight"]) for a in ARMS["pathways"].arms.values()} == \
        {(False, 0.0), (False, 0.5), (True, 0.0), (True, 0.5)}
    for axis, spec in ARMS.items():
        for arm in spec.arms:
            C.validate(arm_params(axis, arm), check_paths=False)
            assert arm_params(axis, arm, hest=True)["device"] == "cuda"


def test_every_axis_names_its_reference_among_its_arms():
    assert {axis: a.reference for axis, a in ARMS.items()} == {
        "interactions": "full", "losses": "mse", "backbones": "resnet50", "pathways": "init-off_aux-0",
        "log_transform": "off", "positional_encoding": "sinusoidal", "model_size": "small",
        "context": "whole-slide", "baselines": "stf", "h2p_balance": "plain",
        "pathway_readout": "contextual", "target": "genes", "depth_correction": "none",
        "interactions_contextual": "full"}
    with pytest.raises(ValueError, match="reference arm 'k6' is not an arm of its axis; arms: whole-slide"):
        Axis("k6", {"whole-slide": {}})


def test_an_axis_of_pathway_targets_is_compared_on_a_pathway_metric():
    # every depth_correction arm predicts pathway scores: no gene PCC exists for its page to compare
    assert all(over.get("target") == "pathways" for over in ARMS["depth_correction"].arms.values())
    assert ARMS["depth_correction"].metric == "pathway_pcc_truth"
    assert ARMS["interactions"].metric == "pcc_hvg50"  # the default
    with pytest.raises(ValueError, match="metric 'pcc_hvg5' is not a summarised metric; allowed: pcc_hvg50"):
        Axis("a", {"a": {}}, metric="pcc_hvg5")


def test_write_params_and_repo_params_in_sync(tmp_path):
    files = write_params(tmp_path)
    n = sum(len(a.arms) for a in ARMS.values())
    assert len(files) == 2 * n
    p = yaml.safe_load((tmp_path / "interactions" / "p2p-h2p.yaml").read_text())
    assert p == {"interactions": ["p2p", "h2p"]}
    assert not (tmp_path / "interactions" / "p2p-p2h.yaml").exists()  # the same model as p2p: not run
    p = yaml.safe_load((tmp_path / "interactions_contextual" / "p2p-p2h.yaml").read_text())
    assert p == {"interactions": ["p2p", "p2h"], "pathway_readout": "contextual"}
    assert yaml.safe_load((tmp_path / "hest" / "losses" / "zinb.yaml").read_text())["loss"] == "zinb"
    repo_params = REPO / "params"
    for f in files:
        rel = f.relative_to(tmp_path)
        assert (repo_params / rel).is_file(), f"params/{rel} missing: run stflib.grid.params.write_params()"
        assert (repo_params / rel).read_text() == f.read_text(), f"params/{rel} out of date"
    # no generated file of an arm the registry no longer runs (an alias, say) is left for the grid to run
    generated = {f.relative_to(tmp_path) for f in files}
    for axis in ARMS:
        for folder in (repo_params / axis, repo_params / "hest" / axis):
            for f in folder.glob("*.yaml"):
                assert f.relative_to(repo_params) in generated, f"params/{f.relative_to(repo_params)} is not an arm of ARMS"


def test_axis_names_and_dedup(tmp_path):
    assert axis_of(REPO / "params" / "losses" / "mse.yaml") == "losses"
    assert axis_of(REPO / "params" / "hest" / "losses" / "mse.yaml") == "hest/losses"
    tasks = make_tasks([REPO / "params" / "interactions" / "full.yaml", REPO / "params" / "baselines" / "stf.yaml",
                          REPO / "params" / "losses" / "pcc.yaml"], folds=2, results=tmp_path)
    assert len(tasks) == 4  # stf == full: computed once per fold, copied
    shared = [t for t in tasks if t.copies]
    assert len(shared) == 2 and all(len(t.copies) == 1 for t in shared)
    assert {t.fold for t in tasks} == {0, 1} and all(t.params["n_folds"] == 2 for t in tasks)


def test_seeds_make_one_run_per_fold_and_seed(tmp_path):
    yaml_file = REPO / "params" / "losses" / "pcc.yaml"
    one_seed = make_tasks([yaml_file], folds=2, results=tmp_path)
    tasks = make_tasks([yaml_file], folds=2, results=tmp_path, seeds=[0, 1])
    assert sorted(Path(t.out_dir).name for t in tasks) == ["fold0", "fold0-seed1", "fold1", "fold1-seed1"]
    # seed 0 keeps the first grid's folders and hashes, so its finished runs stay complete
    assert {t.run_hash for t in one_seed} == {t.run_hash for t in tasks if t.seed == 0}
    assert all(t.params.get("seed", 0) == t.seed for t in tasks)
    assert parse_run_folder("fold2-seed1") == (2, 1) and parse_run_folder("fold2") == (2, 0)
    assert parse_seeds("0, 1,2") == [0, 1, 2]
    for bad in ("0,x", "1,1", "-1", ""):
        with pytest.raises(ValueError, match="--seeds"):
            parse_seeds(bad)


def test_collect_reads_seed_and_world(tmp_path):
    for folder, params, config in (("fold0", {}, {"epochs": 30}),
                                   ("fold0-seed1", {"seed": 1}, {"epochs": 30, "seed": 1}),
                                   ("fold1", {"world": "no-context"}, {"epochs": 30, "world": "no-context"})):
        d = tmp_path / "losses" / "pcc" / folder
        d.mkdir(parents=True)
        fold = int(folder[4])
        (d / "run.json").write_text(json.dumps({"axis": "losses", "arm": "pcc", "fold": fold, "status": "ok",
                                                "params": params, "code_version": "abc"}))
        (d / "metrics.json").write_text(json.dumps({"pcc_hvg50": 0.2, "model": "interaction", "epochs_run": 30,
                                                    "config": config}))
    df = collect(tmp_path).set_index(["fold", "seed"])
    assert df.loc[(0, 1), "world"] == "default" and df.loc[(1, 0), "world"] == "no-context"
    assert df.loc[(0, 0), "epochs_max"] == 30 and df.loc[(0, 0), "code_version"] == "abc"
    assert set(summarise(df.reset_index())["world"]) == {"default", "no-context"}


def test_robustness_subset_keeps_each_axis_reference():
    assert ROBUSTNESS_WORLDS == tuple(w for w in WORLDS if w != "default") and DEFAULT_WORLD == "default"
    assert len(set(ROBUSTNESS_ARMS)) == len(ROBUSTNESS_ARMS)
    for axis, arm in ROBUSTNESS_ARMS:
        assert arm in ARMS[axis].arms, f"{axis}/{arm} is not an arm of ARMS"
    axes = {axis for axis, _ in ROBUSTNESS_ARMS}
    assert axes == {"interactions", "pathways", "context", "baselines"}
    for axis in axes:  # paired differences need the reference in every world
        assert (axis, ARMS[axis].reference) in ROBUSTNESS_ARMS, axis
    assert {("interactions", "bottleneck"), ("interactions", "h2h"), ("pathways", "init-on_aux-0.5"),
            ("context", "k18"), ("baselines", "ridge_probe"), ("baselines", "ridge_probe_k18")} <= set(ROBUSTNESS_ARMS)
    assert all(p.is_file() for p in robustness_params())


def test_world_tasks_go_to_their_own_folders_and_hashes(tmp_path):
    tasks = make_world_tasks(["no-context"], folds=3, results=tmp_path)
    default = make_tasks(robustness_params(), folds=3, results=tmp_path)
    assert len(tasks) == len(default) == 7 * 3  # 10 arms, 7 distinct configurations, 3 folds
    world_dir = tmp_path.resolve() / "worlds" / "no-context"
    folders = [Path(t.out_dir) for t in tasks] + [Path(c[2]) for t in tasks for c in t.copies]
    assert len(folders) == len(ROBUSTNESS_ARMS) * 3
    assert all(f.parent.parent.parent == world_dir for f in folders)
    assert {(f.parent.parent.name, f.parent.name) for f in folders} == set(ROBUSTNESS_ARMS)
    assert all(t.params["world"] == "no-context" for t in tasks) and not any("world" in t.params for t in default)
    assert not {t.run_hash for t in tasks} & {t.run_hash for t in default}
    # the default STF (interactions/full, pathways/init-off_aux-0, context/k18, baselines/stf) runs once per fold
    shared = [t for t in tasks if t.copies]
    assert len(shared) == 3 and all(
        {(t.axis, t.arm), *((a, m) for a, m, _ in t.copies)} == {("interactions", "full"), ("pathways", "init-off_aux-0"),
                                                                 ("context", "k18"), ("baselines", "stf")} for t in shared)
    # given paths run those params; two worlds run twice as many tasks, with distinct hashes
    two = make_world_tasks(["no-context", "strong-patient"], [REPO / "params" / "losses" / "pcc.yaml"], folds=2,
                           results=tmp_path)
    assert len({t.run_hash for t in two}) == 4
    assert {Path(t.out_dir).relative_to(tmp_path.resolve()).parts[:2] for t in two} == {
        ("worlds", "no-context"), ("worlds", "strong-patient")}


def test_world_errors_name_the_bad_value():
    assert parse_worlds(["all"]) == list(ROBUSTNESS_WORLDS)
    assert parse_worlds(["no-context,strong-patient", "no-context"]) == ["no-context", "strong-patient"]
    with pytest.raises(ValueError, match="unknown world 'nowhere'; allowed: all, pathway-misspecified"):
        parse_worlds(["no-context,nowhere"])
    with pytest.raises(ValueError, match="--world default: .* without --world"):
        parse_worlds(["default"])
    with pytest.raises(ValueError, match="--world: expected a world name"):
        parse_worlds([","])
    with pytest.raises(ValueError, match="--set world=strong-patient and --world together"):
        make_world_tasks(["no-context"], overrides={"world": "strong-patient"})
    with pytest.raises(ValueError, match="data_dir=/data/hest"):
        make_world_tasks(["no-context"], overrides={"data_dir": "/data/hest"})


def test_ablate_world_dry_run_lists_the_world_runs(tmp_path, capsys):
    import argparse

    from stflib.grid.commands import add_arguments_ablate, run_ablate

    parser = argparse.ArgumentParser()
    add_arguments_ablate(parser)
    args = parser.parse_args(["--world", "no-context", "--folds", "3", "--results", str(tmp_path), "--dry-run"])
    assert run_ablate(args) == 0
    out = capsys.readouterr().out
    assert out.count("[to run]") == 21 and "worlds/no-context/interactions/h2h/fold2 [to run]" in out
    args = parser.parse_args(["--world", "no-context", "--set", "world=default", "--results", str(tmp_path), "--dry-run"])
    assert run_ablate(args) == 2
    assert "--set world=default and --world together" in capsys.readouterr().err


def test_collect_keeps_world_runs_apart(tmp_path):
    from stflib.report.results import axis_rows

    runs = {tmp_path / "interactions" / "full" / "fold0": ({}, 0.30),
            tmp_path / "worlds" / "no-context" / "interactions" / "full" / "fold0": ({"world": "no-context"}, 0.20),
            # a run.json without axis and arm: read from the nested folder
            tmp_path / "worlds" / "no-context" / "interactions" / "h2h" / "fold0": ({"world": "no-context"}, 0.10)}
    for d, (params, pcc) in runs.items():
        d.mkdir(parents=True)
        info = {"fold": 0, "status": "ok", "params": params}
        if d.parent.name == "full":
            info.update(axis="interactions", arm="full")
        (d / "run.json").write_text(json.dumps(info))
        (d / "metrics.json").write_text(json.dumps({"pcc_hvg50": pcc, "model": "interaction",
                                                    "config": {"epochs": 30, **params}}))
    df = collect(tmp_path)
    got = {(r.world, r.axis, r.arm): r.pcc_hvg50 for r in df.itertuples()}
    assert got == {("default", "interactions", "full"): 0.30, ("no-context", "interactions", "full"): 0.20,
                   ("no-context", "interactions", "h2h"): 0.10}
    by_arm = summarise(df).set_index(["world", "axis", "arm"])
    assert by_arm.loc[("default", "interactions", "full"), "pcc_hvg50_mean"] == pytest.approx(0.30)
    assert by_arm.loc[("no-context", "interactions", "full"), "pcc_hvg50_mean"] == pytest.approx(0.20)
    assert by_arm["n_folds"].tolist() == [1, 1, 1]
    # the default world's tables read the default runs only
    assert axis_rows(df, "interactions")[["world", "arm"]].values.tolist() == [["default", "full"]]


def test_summary_columns_hold_every_registered_metric_once():
    metric_columns = [c for c in SUMMARY_COLUMNS if c in METRICS]
    assert metric_columns == list(METRICS) and len(set(SUMMARY_COLUMNS)) == len(SUMMARY_COLUMNS)
    assert SUMMARY_COLUMNS[:9] == ["axis", "arm", "world", "fold", "seed", "design_folds", "model", "status", "pcc_hvg50"]


def test_code_version_hashes_the_code_that_computes_results_only():
    files = {f.as_posix() for f in result_files()}
    assert {"models/stf.py", "metrics.py", "config.py", "arm.py"} <= files
    assert any(f.endswith(".gmt") for f in files)  # the bundled pathway sets change what a run computes
    assert not [f for f in files if f.split("/")[0] in ("grid", "report") or f in ("cli.py", "plots.py")]


TRIVIAL = '''
import json, os, time
from pathlib import Path
if seed == 13:
    raise ValueError("arm asked to fail")
Path(output_dir).mkdir(parents=True, exist_ok=True)
metrics = {"pcc_hvg50": 0.1 * (fold + 1), "pcc_all": 0.05, "mse": 1.0, "pathway_pcc_truth": None,
           "model": model, "train_seconds": 0.1, "config": {"seed": seed, "output_dir": output_dir},
           "settings": {"torch_threads": torch_threads, "prediction_genes": prediction_genes,
                        "omp": os.environ.get("OMP_NUM_THREADS"),
                        "stflib_env": sorted(k for k in os.environ if k in ("STFLIB_TORCH_THREADS", "STFLIB_PREDICTION_GENES"))}}
(Path(output_dir) / "metrics.json").write_text(json.dumps(metrics))
'''


def _trivial_notebook(path: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("model = 'interaction'\nseed = 0\nfold = 0\nn_folds = 3\noutput_dir = 'out'\nprogress = True\n"
                                         "torch_threads = 0\nprediction_genes = 'all'")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(TRIVIAL)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def test_a_run_gets_its_threads_and_prediction_genes_as_parameters(tmp_path, monkeypatch):
    for name in ("STFLIB_TORCH_THREADS", "STFLIB_PREDICTION_GENES"):
        monkeypatch.delenv(name, raising=False)
    nb = _trivial_notebook(tmp_path / "trivial.ipynb")
    (tmp_path / "params" / "demo").mkdir(parents=True)
    (tmp_path / "params" / "demo" / "good.yaml").write_text("model: mlp\n")
    task = make_tasks([tmp_path / "params"], folds=2, results=tmp_path / "results", notebook=nb, threads=2)[0]
    info = execute(task)
    assert info["status"] == "ok", info.get("error")
    settings = json.loads((Path(task.out_dir) / "metrics.json").read_text())["settings"]
    # the BLAS reads its threads from the environment; the run's own settings come as parameters
    assert settings == {"torch_threads": 2, "prediction_genes": "hvg50", "omp": "2", "stflib_env": []}
    assert "torch_threads" not in task.params  # not a result-determining parameter: not in the run's hash


def test_a_run_finished_in_another_axis_is_copied_not_run_again(tmp_path):
    nb = _trivial_notebook(tmp_path / "trivial.ipynb")
    for axis in ("first", "second"):  # the same parameters in two axes, run one axis at a time
        (tmp_path / "params" / axis).mkdir(parents=True)
        (tmp_path / "params" / axis / "same.yaml").write_text("model: mlp\n")
    results = tmp_path / "results"
    first = make_tasks([tmp_path / "params" / "first"], folds=2, results=results, notebook=nb)[:1]
    assert execute(first[0])["status"] == "ok"
    second = make_tasks([tmp_path / "params" / "second"], folds=2, results=results, notebook=nb)[:1]
    logs = []
    infos = run_grid(second, workers=1, log=logs.append)  # no Dask cluster starts when nothing is left to run
    assert "1 complete, 0 to run" in logs[0] and infos[0]["status"] == "ok"
    copied = json.loads((results / "second" / "same" / "fold0" / "run.json").read_text())
    assert copied["axis"] == "second" and copied["copied_from"] == "first/same/fold0"  # no path of this machine
    ran = json.loads((results / "first" / "same" / "fold0" / "metrics.json").read_text())["config"]["output_dir"]
    assert ran == Path(os.path.relpath(results / "first" / "same" / "fold0", first[0].cwd)).as_posix()
    assert not Path(ran).is_absolute() and ".partial" not in ran
    assert copied["run_hash"] == first[0].run_hash
    assert complete_run_elsewhere(second[0], {}) is not None


@pytest.mark.slow
def test_grid_on_a_local_cluster(tmp_path):
    nb = _trivial_notebook(tmp_path / "trivial.ipynb")
    params = tmp_path / "params"
    (params / "demo").mkdir(parents=True)
    (params / "demo" / "good.yaml").write_text("model: mlp\n")
    (params / "demo" / "bad.yaml").write_text("seed: 13\n")
    results = tmp_path / "results"
    tasks = make_tasks([params], folds=2, results=results, notebook=nb)
    assert len(tasks) == 4
    infos = run_grid(tasks, workers=2, log=lambda s: None)
    assert sorted(i["status"] for i in infos) == ["failed", "failed", "ok", "ok"]
    good = results / "demo" / "good" / "fold1"
    assert json.loads((good / "metrics.json").read_text())["pcc_hvg50"] == pytest.approx(0.2)
    assert (good / "executed.ipynb").is_file() and json.loads((good / "run.json").read_text())["status"] == "ok"
    err = json.loads((results / "demo" / "bad" / "fold0" / "error.json").read_text())
    assert "arm asked to fail" in err["message"]
    assert not list(results.rglob(".*partial"))  # everything moved into place
    # a re-run only runs what is missing (the failed arm)
    logs = []
    run_grid(make_tasks([params], folds=2, results=results, notebook=nb), workers=1, log=logs.append)
    assert "2 complete, 2 to run" in logs[0]
    df = collect(results)
    assert list(df.columns[:12]) == ["axis", "arm", "world", "fold", "seed", "design_folds", "model", "status", "pcc_hvg50",
                                     "pcc_all", "mse", "pathway_pcc_truth"]
    assert len(df) == 4 and set(df["axis"]) == {"demo"}
    by_arm = summarise(df)
    assert by_arm.loc[by_arm["arm"] == "good", "pcc_hvg50_mean"].item() == pytest.approx(0.15)


def test_cli_dry_run_and_collect(tmp_path):
    out = subprocess.run([sys.executable, "-m", "stflib", "ablate", str(REPO / "params" / "losses"), "--folds", "2",
                          "--results", str(tmp_path), "--dry-run"], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("to run") == 2 * len(LOSSES) and "losses/zinb/fold1" in out.stdout
    out = subprocess.run([sys.executable, "-m", "stflib", "collect", "--results", str(tmp_path)],
                         capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "summary.csv").is_file()


def test_notebook_rejects_a_bad_quadrant_at_once(tmp_path):
    import time

    import papermill as pm

    t0 = time.perf_counter()
    with pytest.raises(pm.PapermillExecutionError) as err:
        pm.execute_notebook(str(REPO / "notebooks" / "ablation.ipynb"), str(tmp_path / "out.ipynb"),
                            parameters={"interactions": "p2x", "output_dir": str(tmp_path)}, progress_bar=False,
                            kernel_name="python3")
    assert "unknown quadrant 'p2x'; allowed: p2p, p2h, h2p, h2h" in str(err.value)
    assert time.perf_counter() - t0 < 60 and not (tmp_path / "metrics.json").exists()


def test_kernel_environment_sets_threads_and_drops_dasks_malloc_trim(monkeypatch):
    import os

    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "65536")  # what Dask's nanny gives its workers
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    monkeypatch.setenv("MKL_NUM_THREADS", "7")
    kernel_environment(2)
    assert "MALLOC_TRIM_THRESHOLD_" not in os.environ
    assert os.environ["OMP_NUM_THREADS"] == os.environ["MKL_NUM_THREADS"] == "2"
    kernel_environment(0)  # at least one thread
    assert os.environ["OMP_NUM_THREADS"] == "1"


def test_every_axis_has_its_reference_its_params_and_its_book_page():
    """Read from the registry: each axis's reference arm is one of its arms, each arm has its params
    file, and the book has the axis's page (``book/ablations/<axis>.py`` or ``.ipynb``) in its table of contents."""
    from stflib.grid.axes import ARMS

    root = Path(__file__).resolve().parents[1]
    toc = (root / "book" / "_toc.yml").read_text()
    for axis, spec in ARMS.items():
        assert spec.reference in spec.arms, axis
        for arm in spec.arms:
            assert (root / "params" / axis / f"{arm}.yaml").is_file(), f"params/{axis}/{arm}.yaml"
        page = spec.page or axis
        assert any((root / "book" / "ablations" / f"{page}{ext}").is_file() for ext in (".py", ".ipynb")), axis
        assert f"book/ablations/{page}\n" in toc, f"_toc.yml: book/ablations/{page}"
    with pytest.raises(ValueError) as err:
        ARMS["nowhere"]
    assert str(err.value) == "axis: unknown 'nowhere'; allowed: " + ", ".join(ARMS)


def test_every_metric_is_a_summary_column_or_documented():
    """Each registered metric is a column of the committed results/summary.csv or, when the committed grid
    predates it, documented (its label and description) for the summary that ``collect`` writes."""
    from stflib.grid.collect import SUMMARY_COLUMNS
    from stflib.metrics import METRICS

    root = Path(__file__).resolve().parents[1]
    summary = root / "results" / "summary.csv"
    columns = set(summary.read_text().splitlines()[0].split(",")) if summary.is_file() else set()
    for name, metric in METRICS.items():
        assert name in SUMMARY_COLUMNS, f"collect does not summarise {name}"
        assert name in columns or (metric.label and len(metric.description) > 10), name


def test_collect_prints_the_folds_per_arm_and_each_finding_over_folds_beside_pairs(tmp_path, capsys):
    """3 folds x 2 seeds of two arms and of an alias arm: the design table counts the folds and seeds,
    and findings_by_unit.csv derives the comparison over the 3 folds beside the 6 pairs."""
    import argparse

    import numpy as np
    import pandas as pd

    from stflib.grid.collect import design_by_axis, findings_by_unit
    from stflib.grid.commands import add_arguments_collect, run_collect
    from stflib.report.results import load_summary

    rng = np.random.default_rng(0)
    for fold in range(3):
        for seed in range(2):
            base = 0.3 + rng.normal(0, 0.03)
            for arm, value in (("full", base), ("bottleneck", base + 0.05 + rng.normal(0, 0.004)),
                               ("p2h", base), ("p2p", base)):  # p2h: the same model as p2p, run before aliases
                d = tmp_path / "interactions" / arm / (f"fold{fold}" + (f"-seed{seed}" if seed else ""))
                d.mkdir(parents=True)
                (d / "run.json").write_text(json.dumps({"axis": "interactions", "arm": arm, "fold": fold, "seed": seed,
                                                        "status": "ok", "params": {"seed": seed}}))
                (d / "metrics.json").write_text(json.dumps({"pcc_hvg50": value, "config": {"world": "default"}}))
    parser = argparse.ArgumentParser()
    add_arguments_collect(parser)
    assert run_collect(parser.parse_args(["--results", str(tmp_path)])) == 0
    out = capsys.readouterr().out
    assert "Folds per arm and seeds per fold" in out and "Every finding (default world) over folds beside" in out
    design = design_by_axis(load_summary(tmp_path)).set_index("axis").loc["interactions"]
    assert design[["arms", "alias arms", "folds per arm", "seeds per fold", "runs"]].tolist() == [4, 1, "3", "2", 24]
    table = pd.read_csv(tmp_path / "findings_by_unit.csv").set_index("arm")
    assert set(table.index) == {"bottleneck", "p2p"}  # p2h is p2p: shown once
    row = table.loc["bottleneck"]
    assert (row["folds"], row["pairs"]) == (3, 6) and row["fold_mean_delta"] == pytest.approx(row["pair_mean_delta"])
    assert row["fold_ci_high"] - row["fold_ci_low"] > row["pair_ci_high"] - row["pair_ci_low"]
    assert table.loc["p2p", "same model as"] == "p2h, p2p-p2h"
    assert findings_by_unit(load_summary(tmp_path))["change"].isin(
        ["finding in both", "finding over pairs only", "finding over folds only", "finding in neither"]).all()
    assert "bottleneck" in out.split("Every finding")[1]


def test_collect_pairs_only_runs_of_the_current_fold_design(tmp_path, capsys):
    """Re-running the grid with 6 folds leaves the 3-fold design's seed-1 runs on disk: fold 0 of each
    design holds out other patients, so collect keeps the reference arm's largest design per axis."""
    from stflib.grid.commands import add_arguments_collect, run_collect

    runs = {("interactions", "full", "fold0"): (6, 0.40), ("interactions", "full", "fold1"): (6, 0.41),
            ("interactions", "full", "fold0-seed1"): (3, 0.30), ("interactions", "h2h", "fold0"): (6, 0.35),
            ("interactions", "h2h", "fold2-seed1"): (3, 0.20),
            # an axis not re-run yet keeps its earlier design whole
            ("context", "whole-slide", "fold0"): (3, 0.33), ("context", "k18", "fold0"): (3, 0.36)}
    for (axis, arm, folder), (n_folds, pcc) in runs.items():
        d = tmp_path / axis / arm / folder
        d.mkdir(parents=True)
        fold, seed = parse_run_folder(folder)
        (d / "run.json").write_text(json.dumps({"axis": axis, "arm": arm, "fold": fold, "seed": seed, "status": "ok",
                                                "params": {"n_folds": n_folds, "fold": fold}}))
        (d / "metrics.json").write_text(json.dumps({"pcc_hvg50": pcc, "model": "interaction",
                                                    "config": {"n_folds": n_folds, "fold": fold, "seed": seed}}))
    old = []
    df = collect(tmp_path, old)
    got = {(r.axis, r.arm, r.fold, r.seed): r.design_folds for r in df.itertuples()}
    assert got == {("interactions", "full", 0, 0): 6, ("interactions", "full", 1, 0): 6,
                   ("interactions", "h2h", 0, 0): 6, ("context", "k18", 0, 0): 3, ("context", "whole-slide", 0, 0): 3}
    assert sorted(zip(old[0]["arm"], old[0]["seed"])) == [("full", 1), ("h2h", 1)]
    parser = argparse.ArgumentParser()
    add_arguments_collect(parser)
    run_collect(parser.parse_args(["--results", str(tmp_path)]))
    assert "left out: 2 runs of another fold design (3 folds) than their axis reference's" in capsys.readouterr().out
    import pandas as pd

    assert len(pd.read_csv(tmp_path / "summary.csv")) == 5
