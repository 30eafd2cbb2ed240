"""The bill before the GPU: what a grid on a HEST cohort will cost, from the cohort's metadata alone.

``grid_bill(metadata_csv)`` lists the runs of ``params/hest/`` (or any params), selects the cohort their
filter names from a HEST metadata CSV (e.g. HEST-1k's ``HEST_v1_1_0.csv``, with the real spot counts) and
costs every run with the dry run's timing model (:func:`stflib.grid.plan.cohort_run_seconds`, from the
committed benchmarks in ``results/bench/``), before anything is downloaded: no data folder, no run
hashes, no training. :func:`stflib.grid.cluster.suggest_config` turns it into a SLURM configuration.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stflib import config as C
from stflib.grid.plan import BENCH_DIR, cohort_run_seconds, load_step_times
from stflib.paths import project_root


@dataclass
class GridBill:
    """What a grid on a HEST cohort will cost, from its metadata alone (no data folder): ``grid_bill``."""

    runs: int  # distinct runs (arms with identical parameters share one)
    arms: int
    folds: int
    cohort: str  # the cohort filter
    samples: int
    spots: int
    run_seconds: list[float]  # upper bound of each run
    device: str  # the benchmark's device: cuda or cpu ('' without benchmarks)
    bench_file: Path | None
    backbones: list[str]
    feature_dim: int  # the widest backbone's

    @property
    def hours(self) -> float:
        return sum(self.run_seconds) / 3600

    def text(self) -> str:
        unit = "GPU-hours" if self.device == "cuda" else "CPU-hours on one core"
        out = [f"{self.runs} runs ({self.arms} arms x {self.folds} patient-grouped folds, identical arms run once) on "
               f"{self.samples} samples, {self.spots:,} spots (cohort {self.cohort})"]
        if not self.run_seconds:
            out.append("estimate: none (no results/bench/attention_*.json, or no spots_under_tissue in the metadata)")
            return "\n".join(out)
        source = self.bench_file
        if source is not None and source.is_relative_to(project_root()):
            source = source.relative_to(project_root())
        out.append(f"estimate: {self.hours:.1f} {unit} in all, upper bound at each run's max_steps; the longest run "
                   f"{max(self.run_seconds) / 3600:.2f} h (from {source})")
        if self.device != "cuda":
            out.append("no CUDA benchmark is committed: these are one CPU core's figures, an upper bound for a GPU; "
                       "`python -m stflib bench gpu-check` on the GPU writes results/bench/attention_cuda.json, "
                       "and this bill is then in GPU-hours")
        return "\n".join(out)


def grid_bill(metadata_csv: str | Path, paths: list[str | Path] | None = None, folds: int | None = None,
              bench_dir: str | Path = BENCH_DIR, overrides: dict[str, Any] | None = None) -> GridBill:
    """The dry run's estimate of a grid (default ``params/hest``, the config's ``n_folds``) on the cohort its
    filter selects from a HEST metadata CSV (e.g. ``HEST_v1_1_0.csv``, with the real spot counts), before
    anything is downloaded: no data folder, no run hashes, no training (well under a second after imports)."""
    import numpy as np
    import pandas as pd

    from stflib import data as D
    from stflib.backbones import BACKBONES
    from stflib.grid.params import discover, load_params

    paths = paths or [project_root() / "params" / "hest"]
    k = int(folds or C.PARAM_BY_NAME["n_folds"].default)
    times, device = load_step_times(bench_dir)
    arms = discover(paths)
    cohorts: dict[str, list[dict]] = defaultdict(list)
    seen = set()
    for _axis, _arm, path in arms:
        base = {**load_params(path), **(overrides or {})}
        for fold in range(k):
            cfg = C.validate({**base, "n_folds": k, "fold": fold}, check_paths=False)
            if C.config_hash(cfg) not in seen:  # the grid runs identical arms once (its copies)
                seen.add(C.config_hash(cfg))
                cohorts[C.describe_cohort(cfg)].append(cfg)
    seconds, ids, spots_of = [], set(), {}
    for described, cfgs in cohorts.items():
        meta = D.select_samples(metadata_csv, **C.cohort_filter(cfgs[0]))
        D.check_cohort_folds(meta, k, f"the cohort filter {described} on {metadata_csv}")
        ids.update(meta["id"].astype(str))
        if "spots_under_tissue" in meta:
            spots_of.update(zip(meta["id"].astype(str), pd.to_numeric(meta["spots_under_tissue"], errors="coerce")))
        if times:
            seconds += cohort_run_seconds(cfgs, meta, k, times)
    backbones = sorted({c["backbone"] for cfgs in cohorts.values() for c in cfgs})
    bench_file = Path(bench_dir) / f"attention_{device}.json" if device else None
    return GridBill(runs=len(seen), arms=len(arms), folds=k, cohort=" | ".join(cohorts), samples=len(ids),
                    spots=int(np.nansum(list(spots_of.values()))),
                    run_seconds=seconds, device=device, bench_file=bench_file, backbones=backbones,
                    feature_dim=max(BACKBONES[b].feature_dim for b in backbones))
