"""The grid on a SLURM cluster through dask-jobqueue: ``python -m stflib ablate params/hest --cluster slurm
--cluster-config slurm.yaml --set data_dir=/shared/hest``.

The YAML names what a SLURM job asks for; ``make_cluster`` builds a ``dask_jobqueue.SLURMCluster`` from
it and ``scale(jobs=...)`` submits the worker jobs; ``job_script`` shows the batch script without
submitting anything. Example (every key but ``queue`` has a default)::

    queue: gpu            # partition (#SBATCH -p)
    account: mylab        # #SBATCH -A (optional)
    cores: 8              # CPU cores per job (#SBATCH --cpus-per-task)
    memory: 64GB          # per job (#SBATCH --mem)
    gpus: 1               # GPUs per job (#SBATCH --gres=gpu:1); 0 for a CPU grid
    walltime: "08:00:00"  # per job (#SBATCH -t)
    jobs: 4               # worker jobs submitted (4 GPUs = 4 runs at a time)
    prologue: ["module load cuda/12.4", "source /shared/stf/.venv/bin/activate"]
    extra_directives: ["--constraint=h100"]
    log_directory: /shared/stf/logs

A GPU job runs one run at a time (its worker holds a ``GPU`` resource of 1 and every run asks for it);
a CPU job runs ``cores`` runs at a time, one thread each. The workers run on other machines: the
repository, the data folder and the results folder must be on a file system they all see (the
runs write ``results/<axis>/<arm>/fold<k>/`` themselves), and the Python environment must be the same.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

CLUSTERS = ("slurm",)
KEYS = {
    "queue": None, "account": None, "cores": 8, "memory": "32GB", "gpus": 0, "walltime": "04:00:00", "jobs": 1,
    "prologue": [], "extra_directives": [], "log_directory": None, "local_directory": None, "python": None,
    "interface": None,
}


def read_config(path: str | Path) -> dict[str, Any]:
    """The cluster YAML, checked, with defaults filled in."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"cluster config not found: {path}")
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: a cluster config is a mapping of key: value; keys: {', '.join(KEYS)}")
    return validate_config(raw, str(path))


def validate_config(raw: dict[str, Any], where: str = "cluster config") -> dict[str, Any]:
    unknown = sorted(set(raw) - set(KEYS))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(KEYS)}")
    cfg = {**KEYS, **raw}
    if not cfg["queue"]:
        raise ValueError(f"{where}: 'queue' (the SLURM partition) is required")
    for key in ("cores", "jobs"):
        if not isinstance(cfg[key], int) or isinstance(cfg[key], bool) or cfg[key] < 1:
            raise ValueError(f"{where}: {key} must be an integer >= 1, got {cfg[key]!r}")
    if cfg["gpus"] not in (0, 1):
        raise ValueError(f"{where}: gpus must be 0 or 1 per job (a run uses one GPU; ask for more with jobs: N), "
                         f"got {cfg['gpus']!r}")
    for key in ("prologue", "extra_directives"):
        if isinstance(cfg[key], str):
            cfg[key] = [cfg[key]]
        if not isinstance(cfg[key], list) or not all(isinstance(x, str) for x in cfg[key]):
            raise ValueError(f"{where}: {key} must be a list of strings, got {cfg[key]!r}")
    import re

    if not re.fullmatch(r"(\d+-)?\d{1,3}:\d{2}(:\d{2})?", str(cfg["walltime"])):
        raise ValueError(f"{where}: walltime must look like HH:MM:SS or D-HH:MM:SS, got {cfg['walltime']!r}")
    if not re.fullmatch(r"\d+(\.\d+)?\s*[KMGT]i?B", str(cfg["memory"]), flags=re.I):
        raise ValueError(f"{where}: memory must look like 64GB or 500MB, got {cfg['memory']!r}")
    return cfg


# a run's host memory (suggest_config): the loaded cohort's arrays - features (feature_dim) and, per vocabulary
# gene, raw counts, targets and predictions - in float32, three times (the reader's, the slide items' and a
# standardised copy), plus the Python/torch/CUDA process itself. The rehearsal (README, "Rehearsing the
# real-data path": 171k spots, 1,536-d features) peaked at 12.4 GB per run on CPU; this gives 24GB for it
HOST_ARRAYS_PER_GENE = 3
HOST_COPIES = 3
HOST_BASE_GB = 8


def suggest_config(run_seconds: list[float], spots: int, feature_dim: int, n_genes: int = 1000, queue: str = "gpu",
                   jobs: int = 4, margin: float = 1.5, gpus: int = 1) -> dict[str, Any]:
    """A checked SLURM configuration for a grid whose runs take ``run_seconds`` (upper bounds, e.g.
    ``stflib.grid.bill.grid_bill``) on a cohort of ``spots`` spots: one GPU and 8 cores a job, ``jobs`` jobs
    (no more than runs), a walltime of ``margin`` x a job's share of the grid (the total over ``jobs``, at least
    the longest run) in whole hours, so one submission finishes the grid (a job serves runs one after another;
    an interrupted grid resumes what is left), memory for the cohort held in memory (``HOST_*``), rounded up
    to 8 GB."""
    if not run_seconds:
        raise ValueError("suggest_config needs the runs' estimated seconds; got none (no benchmark in results/bench/?)")
    jobs = max(1, min(jobs, len(run_seconds)))
    share = max(max(run_seconds), sum(run_seconds) / jobs)
    hours = max(1, int(-(-share * margin // 3600)))
    walltime = f"{hours:02d}:00:00" if hours < 100 else f"{hours // 24}-{hours % 24:02d}:00:00"
    gb = spots * (feature_dim + HOST_ARRAYS_PER_GENE * n_genes) * 4 * HOST_COPIES / 1e9 + HOST_BASE_GB
    memory = f"{int(-(-gb // 8) * 8)}GB"
    return validate_config({"queue": queue, "cores": 8, "memory": memory, "gpus": gpus, "walltime": walltime,
                            "jobs": jobs}, "suggested cluster config")


def config_yaml(cfg: dict[str, Any]) -> str:
    """The YAML for ``--cluster-config`` (keys that differ from the defaults, and ``queue``)."""
    import yaml

    return yaml.safe_dump({k: v for k, v in cfg.items() if k == "queue" or v != KEYS[k]}, sort_keys=False)


def _jobqueue_kwargs(cfg: dict[str, Any]) -> dict[str, Any]:
    gpu = cfg["gpus"] > 0
    directives = list(cfg["extra_directives"]) + ([f"--gres=gpu:{cfg['gpus']}"] if gpu else [])
    kw = dict(queue=cfg["queue"], account=cfg["account"], cores=cfg["cores"], memory=cfg["memory"],
              walltime=cfg["walltime"], job_name="stf-grid", job_extra_directives=directives,
              job_script_prologue=list(cfg["prologue"]), python=cfg["python"] or sys.executable,
              # GPU job: one worker that holds the GPU; CPU job: one single-threaded worker per core
              processes=1 if gpu else cfg["cores"],
              worker_extra_args=["--resources", "GPU=1"] if gpu else [])
    for key in ("log_directory", "local_directory", "interface"):
        if cfg[key]:
            kw[key] = cfg[key]
    return kw


def run_resources(cfg: dict[str, Any]) -> dict[str, int] | None:
    """What each run asks of a worker: the GPU on a GPU cluster."""
    return {"GPU": 1} if cfg["gpus"] else None


def run_threads(cfg: dict[str, Any]) -> int:
    """torch threads per run: the job's cores on a GPU job, 1 on a CPU job (one run per core)."""
    return cfg["cores"] if cfg["gpus"] else 1


def job_script(cfg: dict[str, Any], scheduler: str = "tcp://SCHEDULER:8786") -> str:
    """The batch script a worker job runs, without starting a scheduler or submitting anything."""
    from dask_jobqueue.slurm import SLURMJob

    kw = _jobqueue_kwargs(cfg)
    return SLURMJob(scheduler=scheduler, name="stf-grid-worker", **kw).job_script()


def make_cluster(kind: str, cfg: dict[str, Any], submit: bool = True):
    """A started ``SLURMCluster`` (its scheduler runs here); ``submit``: request ``cfg['jobs']`` worker jobs."""
    if kind not in CLUSTERS:
        raise ValueError(f"--cluster: unknown kind {kind!r}; allowed: {', '.join(CLUSTERS)}")
    from dask_jobqueue import SLURMCluster

    cluster = SLURMCluster(**_jobqueue_kwargs(cfg))
    if submit:
        cluster.scale(jobs=cfg["jobs"])
    return cluster
