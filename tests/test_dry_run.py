"""`ablate --dry-run` on a folder laid out exactly as `download_hest` leaves it (a mocked download):
cohort, folds, features per backbone, weights, the time estimate, and the command for each missing piece."""
from __future__ import annotations

import json
from pathlib import Path
from unittest import mock

import pandas as pd
import pytest

from conftest import write_fake_hest_sample
from stflib import data
from stflib.cli import main
from stflib.grid.plan import step_seconds

DOWNLOADED = ["TENX1", "TENX2", "ZEN1", "ZEN2"]


def mock_hest_download(all_rows: int = 8):
    """snapshot_download stand-in: HEST's full CSV (``all_rows`` samples, more than were asked for)
    and real-format st/patches/metadata files for each asked id, resnet50 features included."""
    def download(repo_id, repo_type, local_dir, allow_patterns, token):
        root = Path(local_dir)
        ids = sorted({p.split("/")[1].rsplit(".", 1)[0] for p in allow_patterns if p.startswith("st/")})
        for i, sid in enumerate(ids):
            write_fake_hest_sample(root, sid, n_spots=30, seed=i, backbone="resnet50")
        extra = [f"OTHER{i}" for i in range(all_rows - len(ids))]
        pd.DataFrame({"id": ids + extra, "organ": "Bowel", "species": "Homo sapiens", "st_technology": "Visium",
                      "oncotree_code": "COAD", "patient": [f"P{i}" for i in range(all_rows)],
                      "dataset_title": "T", "spots_under_tissue": 3000}).to_csv(root / "HEST_v1_1_0.csv", index=False)
        return str(root)
    return download


@pytest.fixture
def hest_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("STFLIB_WEIGHTS_DIR", str(tmp_path / "no-weights"))
    with mock.patch("huggingface_hub.snapshot_download", side_effect=mock_hest_download()):
        root = data.download_hest(DOWNLOADED, tmp_path / "hest")
    params = tmp_path / "params" / "backbones"
    params.mkdir(parents=True)
    (params / "resnet50.yaml").write_text("backbone: resnet50\nepochs: 10\n")
    (params / "ctranspath.yaml").write_text("backbone: ctranspath\nepochs: 10\n")
    return root, tmp_path / "params"


def test_dry_run_names_missing_features_and_prints_the_command(hest_folder, tmp_path, capsys):
    root, params = hest_folder
    assert pd.read_csv(root / "metadata.csv")["id"].tolist() == DOWNLOADED  # the downloaded subset
    rc = main(["ablate", str(params), "--dry-run", "--folds", "3", "--results", str(tmp_path / "results"),
               "--set", f"data_dir={root}"])
    out = capsys.readouterr().out
    assert rc == 3  # something is missing
    assert out.count("[to run]") == 6  # 2 arms x 3 folds
    assert "cohort organ=Bowel species=Homo sapiens technology=Visium oncotree=COAD,READ,COADREAD: 4 samples, 4 patient groups" in out
    assert "features resnet50: 4/4 samples" in out
    assert "features ctranspath: 0/4 samples; no weights found" in out
    assert f"python -m stflib extract-features --data-dir {root} --backbone ctranspath" in out
    assert 'download_weights("ctranspath")' in out
    assert "estimate:" in out and ("GPU-hours" in out or "CPU-hours" in out)
    # one backbone's features made: only the other remains
    for sid in DOWNLOADED:
        src = root / "features" / "resnet50" / f"{sid}.h5"
        (root / "features" / "ctranspath").mkdir(exist_ok=True)
        (root / "features" / "ctranspath" / f"{sid}.h5").write_bytes(src.read_bytes())
    (root / "features" / "ctranspath" / "ZEN2.h5").unlink()
    main(["ablate", str(params), "--dry-run", "--folds", "3", "--results", str(tmp_path / "results"),
          "--set", f"data_dir={root}"])
    out = capsys.readouterr().out
    assert "features ctranspath: 3/4 samples" in out
    assert "--backbone ctranspath --samples ZEN2" in out


def test_dry_run_without_metadata_csv_and_with_too_few_patients(hest_folder, tmp_path, capsys):
    root, params = hest_folder
    (root / "metadata.csv").unlink()  # e.g. a folder downloaded by hand with HEST's CSV only
    rc = main(["ablate", str(params), "--dry-run", "--folds", "3", "--set", f"data_dir={root}",
               "--results", str(tmp_path / "r")])
    out = capsys.readouterr().out
    assert rc == 3 and "write_downloaded_metadata" in out and str(root / "metadata.csv") in out
    data.write_downloaded_metadata(root, DOWNLOADED)
    rc = main(["ablate", str(params), "--dry-run", "--folds", "3", "--set", f"data_dir={root}", "--set", "organ=Breast",
               "--results", str(tmp_path / "r")])
    captured = capsys.readouterr()
    assert rc == 3 and "no sample of" in captured.out and "organ" in captured.out


def test_step_time_model():
    times = [(1000, 1.0), (4000, 4.0)]
    assert step_seconds(times, 2000, 1.0) == pytest.approx(2.0)
    assert step_seconds(times, 8000, 2.0) == pytest.approx(16.0)  # quadratic beyond the measured range
    assert step_seconds(times, 500, 2.0) == pytest.approx(0.5)


def test_estimate_prefers_cuda_figures(tmp_path):
    from stflib.grid.plan import load_step_times

    (tmp_path / "attention_cpu.json").write_text(json.dumps([{"mode": "full", "S": 1000, "seconds": 1.0}]))
    assert load_step_times(tmp_path)[1] == "cpu"
    (tmp_path / "attention_cuda.json").write_text(json.dumps([{"mode": "full", "S": 1000, "seconds": 0.01}]))
    times, device = load_step_times(tmp_path)
    assert device == "cuda" and times["full"] == [(1000, 0.01)]


def test_dry_run_names_a_test_sample_without_shared_genes(hest_folder, tmp_path, capsys):
    root, params = hest_folder
    write_fake_hest_sample(root, "ZEN2", n_spots=30, genes=[f"OTHER{i}" for i in range(40)], ensembl=False)
    rc = main(["ablate", str(params / "backbones" / "resnet50.yaml"), "--dry-run", "--folds", "3",
               "--results", str(tmp_path / "r"), "--set", f"data_dir={root}"])
    out = capsys.readouterr().out
    assert rc == 3
    assert "test sample ZEN2 shares no gene with its training samples (ZEN2 has e.g. ['OTHER0', 'OTHER1'" in out


def test_run_seconds_counts_optimiser_steps_on_crops_and_the_evaluations():
    from stflib import config as C
    from stflib.grid.plan import BENCH_MODEL, run_seconds

    times = {"full": [(100, 0.1), (1000, 1.0)], "bottleneck": [(100, 0.1), (1000, 1.0)]}
    # the benchmarked model's width and depth: the per-spot times apply unscaled
    cfg = C.validate({"n_neighbors": 0, "crop_spots": 0, "max_steps": 100, "eval_every": 25,
                      "token_dim": BENCH_MODEL["token_dim"], "n_layers": BENCH_MODEL["n_layers"]}, check_paths=False)
    train, val, test = [500.0] * 8, [500.0] * 3, [500.0] * 4
    whole = run_seconds(cfg, train, val, test, times)
    per = 0.5  # 500 spots between the two benchmarked sizes, linear here
    assert whole == pytest.approx(100 * cfg["batch_size"] * per + 4 * 3 * per / 3 + (8 + 4) * per / 3)
    cropped = run_seconds({**cfg, "crop_spots": 256}, train, val, test, times)
    assert cropped < whole
    capped = run_seconds({**cfg, "epochs": 2}, train, val, test, times)  # 2 passes of 8 slides, 2 a step: 8 steps
    assert capped < whole and capped == pytest.approx(8 * 2 * per + 0 + 12 * per / 3)


def test_embedded_cohort_runs_are_costed_from_their_arms_measured_seconds(tmp_path):
    from types import SimpleNamespace

    from stflib.grid.plan import measured_estimate, measured_seconds

    def finished(folder, **info):
        folder.mkdir(parents=True)
        (folder / "run.json").write_text(json.dumps({"status": "ok", **info}))

    arm = tmp_path / "results" / "context" / "k6"
    finished(arm / "fold0", seconds=100.0)
    finished(arm / "fold1", seconds=300.0)
    finished(arm / "fold2", seconds=5000.0, copied_from="elsewhere")  # another arm's run: not this arm's cost
    finished(tmp_path / "results" / "context" / "broken" / "fold0", seconds=50.0, status="failed")
    assert measured_seconds(arm) == [100.0, 300.0]

    def task(out_dir, axis="context", name="k6"):
        return SimpleNamespace(out_dir=str(out_dir), axis=axis, arm=name, params={}, run_hash=str(out_dir))

    todo = [task(arm / "fold0-seed1"), task(arm / "fold1-seed1"),  # 2 x median 200 s
            task(tmp_path / "results" / "worlds" / "w" / "context" / "k6" / "fold0"),  # its default-world twin's
            task(tmp_path / "results" / "context" / "broken" / "fold1", name="broken")]  # never finished: uncosted
    line = measured_estimate(todo)
    assert line.startswith("estimate: 0.17 run-hours for 3 of the 4 runs to do")  # 600 s
    assert "not in it: 1 run of arms never timed here (context/broken)" in line
    assert measured_estimate([]) == "estimate: nothing to run"
