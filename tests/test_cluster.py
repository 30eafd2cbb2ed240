"""SLURM through dask-jobqueue, offline: the job script's directives from a small YAML, config errors,
and the cluster object the grid runs on (started without submitting jobs)."""
from __future__ import annotations

import re

import pytest

from stflib.cli import main
from stflib.grid import cluster as K

YAML = """\
queue: gpu
account: mylab
cores: 8
memory: 64GB
gpus: 1
walltime: "08:00:00"
jobs: 3
prologue: ["module load cuda/12.4"]
"""


def directives(script: str) -> list[str]:
    return [line.removeprefix("#SBATCH ").strip() for line in script.splitlines() if line.startswith("#SBATCH")]


def test_job_script_directives_from_yaml(tmp_path):
    (tmp_path / "slurm.yaml").write_text(YAML)
    cfg = K.read_config(tmp_path / "slurm.yaml")
    script = K.job_script(cfg, scheduler="tcp://10.1.2.3:8786")
    d = directives(script)
    assert "-p gpu" in d and "-A mylab" in d and "--cpus-per-task=8" in d and "-t 08:00:00" in d
    assert "--gres=gpu:1" in d
    mem = next(x for x in d if x.startswith("--mem="))
    assert 55 <= int(re.search(r"\d+", mem).group()) <= 64  # dask-jobqueue writes 64GB as 60G (GiB)
    assert "module load cuda/12.4" in script
    worker = script.strip().splitlines()[-1]
    assert "tcp://10.1.2.3:8786" in worker and "--resources GPU=1" in worker and "--nthreads 8" in worker
    assert K.run_resources(cfg) == {"GPU": 1} and K.run_threads(cfg) == 8


def test_cpu_job_runs_one_single_threaded_worker_per_core():
    cfg = K.validate_config({"queue": "short", "cores": 4, "memory": "16GB"})
    script = K.job_script(cfg)
    assert not any(x.startswith("--gres") for x in directives(script))
    assert "--nworkers 4" in script and "--nthreads 1" in script
    assert K.run_resources(cfg) is None and K.run_threads(cfg) == 1


@pytest.mark.parametrize("raw, message", [
    ({"cores": 4}, "'queue' .* is required"),
    ({"queue": "q", "gpu": 1}, r"unknown key\(s\) gpu; allowed: queue, account"),
    ({"queue": "q", "gpus": 2}, "gpus must be 0 or 1 per job .* got 2"),
    ({"queue": "q", "walltime": "8h"}, "walltime must look like HH:MM:SS .* got '8h'"),
    ({"queue": "q", "memory": "lots"}, "memory must look like 64GB .* got 'lots'"),
    ({"queue": "q", "jobs": 0}, "jobs must be an integer >= 1, got 0"),
])
def test_bad_cluster_config_names_the_value(raw, message):
    with pytest.raises(ValueError, match=message):
        K.validate_config(raw)


def test_slurm_cluster_object_starts_offline(tmp_path):
    cfg = K.validate_config({"queue": "gpu", "cores": 2, "memory": "8GB", "gpus": 1, "jobs": 2,
                             "log_directory": str(tmp_path / "logs")})
    cluster = K.make_cluster("slurm", cfg, submit=False)  # the scheduler starts here; no sbatch
    try:
        assert cluster.scheduler_address.startswith("tcp://")
        assert "--gres=gpu:1" in directives(cluster.job_script())
    finally:
        cluster.close()
    with pytest.raises(ValueError, match="--cluster: unknown kind 'pbs'; allowed: slurm"):
        K.make_cluster("pbs", cfg)


def test_ablate_dry_run_prints_the_job_script(tmp_path, capsys):
    (tmp_path / "slurm.yaml").write_text(YAML)
    params = tmp_path / "params" / "losses"
    params.mkdir(parents=True)
    (params / "mse.yaml").write_text("loss: mse\n")
    rc = main(["ablate", str(tmp_path / "params"), "--dry-run", "--folds", "2", "--results", str(tmp_path / "r"),
               "--cluster", "slurm", "--cluster-config", str(tmp_path / "slurm.yaml")])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "slurm job script (3 jobs would be submitted)" in out and "#SBATCH --gres=gpu:1" in out
    rc = main(["ablate", str(tmp_path / "params"), "--dry-run", "--cluster", "slurm",
               "--cluster-config", str(tmp_path / "missing.yaml")])
    assert rc == 2 and "cluster config not found" in capsys.readouterr().err


def test_suggested_config_covers_a_jobs_share_and_the_cohort_in_memory():
    runs = [1800.0] * 10 + [7200.0]  # 11 runs; the longest 2 h, 7 h in all
    cfg = K.suggest_config(runs, spots=175_000, feature_dim=1536, jobs=4)
    assert cfg["gpus"] == 1 and cfg["jobs"] == 4
    hours = int(cfg["walltime"].split(":")[0])
    assert hours * 3600 >= 1.5 * max(max(runs), sum(runs) / 4)  # one submission finishes the grid
    large = K.suggest_config(runs, spots=1_000_000, feature_dim=1536, jobs=4)
    assert int(large["memory"][:-2]) > int(cfg["memory"][:-2])  # memory follows the cohort's size
    assert K.suggest_config(runs[:2], spots=10_000, feature_dim=768, jobs=4)["jobs"] == 2  # no more jobs than runs
    assert "queue: gpu" in K.config_yaml(cfg) and "walltime" in K.config_yaml(cfg)
    with pytest.raises(ValueError, match="needs the runs' estimated seconds"):
        K.suggest_config([], spots=1, feature_dim=1)
