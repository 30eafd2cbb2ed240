"""Plan a grid before spending GPU hours: ``python -m stflib ablate params/hest --dry-run --set data_dir=D``.

``plan(tasks)`` checks each data folder the runs read (metadata, the cohort each filter selects, its
patient groups and folds - with how unlabelled slides were grouped and which sections sequenced twice
were merged -, st and patch files, spots whose barcode has no patch or feature row, the feature cache of
each backbone, the backbone weights), estimates the runs' time from the committed benchmarks in ``results/bench/`` and returns a
report whose every missing piece comes with the exact command that makes it.

The time estimate is an upper bound: ``max_steps`` optimiser steps (fewer when ``epochs`` caps them;
early stopping ends sooner), each over ``batch_size`` training slides cut to ``crop_spots`` spots,
a slide's step timed by ``bench attention`` at its spot count (``spots_under_tissue``), interpolated
on a log-log scale between benchmarked sizes and extrapolated beyond them with the mode's growth
(S^2 with whole-slide h2h attention, S without), scaled by ``n_layers / 2 * token_dim / 256`` (the
benchmark's model); every ``eval_every`` steps the validation slides, and once at the end the
training and test slides, add a third of a step each (a forward pass over the whole slide). CUDA figures (``*_cuda.json``, from ``python -m stflib bench gpu-check``)
are used when present, else the CPU figures, and the report says which.
"""
from __future__ import annotations

import json
import shlex
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stflib import config as C
from stflib.paths import measurement_dir

BENCH_DIR = measurement_dir("bench")  # the results folder's benchmarks, else the project's committed ones
BENCH_MODEL = {"token_dim": 256, "n_layers": 2}
GROWTH = {"full": 2.0, "bottleneck": 1.0}


@dataclass
class Plan:
    lines: list[str] = field(default_factory=list)
    missing: list[tuple[str, str]] = field(default_factory=list)  # (what is missing, command that makes it)
    hours: float = 0.0
    clock: str = ""

    @property
    def ready(self) -> bool:
        return not self.missing

    def text(self) -> str:
        out = list(self.lines)
        if self.missing:
            out.append(f"\nmissing ({len(self.missing)}), with the command that makes each:")
            for what, command in self.missing:
                out.append(f"  - {what}\n      {command}")
        else:
            out.append("\nnothing missing: the grid can run")
        return "\n".join(out)


# ------------------------------------------------------------------------------------ timing model
def load_step_times(bench_dir: str | Path = BENCH_DIR) -> tuple[dict[str, list[tuple[int, float]]], str]:
    """mode -> [(S, seconds per training step)] from ``attention_cuda.json`` (preferred) or
    ``attention_cpu.json``; and the device they were measured on ('' when neither exists)."""
    bench_dir = Path(bench_dir)
    for device in ("cuda", "cpu"):
        path = bench_dir / f"attention_{device}.json"
        if path.is_file():
            rows = json.loads(path.read_text())
            times: dict[str, list[tuple[int, float]]] = defaultdict(list)
            for r in rows:
                if r.get("seconds") is not None and r.get("mode") in GROWTH:
                    times[r["mode"]].append((int(r["S"]), float(r["seconds"])))
            return {m: sorted(v) for m, v in times.items()}, device
    return {}, ""


def step_seconds(times: list[tuple[int, float]], spots: float, growth: float) -> float:
    """Seconds per training step at ``spots`` from benchmarked (S, seconds), log-log interpolation,
    power-law extrapolation with exponent ``growth`` beyond the measured range."""
    if not times:
        raise ValueError("no benchmark figures for this mode")
    s = np.array([t[0] for t in times], float)
    y = np.array([t[1] for t in times], float)
    if spots <= s[0]:
        return float(y[0] * (spots / s[0]))
    if spots >= s[-1]:
        return float(y[-1] * (spots / s[-1]) ** growth)
    return float(np.exp(np.interp(np.log(spots), np.log(s), np.log(y))))


def run_seconds(cfg: dict, train_spots: list[float], val_spots: list[float], test_spots: list[float],
                times: dict[str, list[tuple[int, float]]]) -> float:
    """Upper-bound seconds of one run (see the module docstring)."""
    mode = "full" if ("h2h" in cfg["interactions"] and not cfg["n_neighbors"]) else "bottleneck"
    if mode not in times:
        mode = next(iter(times))
    scale = cfg["n_layers"] / BENCH_MODEL["n_layers"] * cfg["token_dim"] / BENCH_MODEL["token_dim"]
    per = lambda s: step_seconds(times[mode], s, GROWTH[mode]) * scale  # noqa: E731
    crop = cfg["crop_spots"]
    step_per_slide = float(np.mean([per(min(s, crop) if crop > 0 else s) for s in train_spots]))
    steps = cfg["max_steps"]
    if cfg["epochs"] is not None:
        steps = min(steps, cfg["epochs"] * -(-len(train_spots) // cfg["batch_size"]))
    forward = lambda spots: sum(per(s) / 3 for s in spots)  # noqa: E731
    return (steps * cfg["batch_size"] * step_per_slide + steps // cfg["eval_every"] * forward(val_spots)
            + forward(train_spots) + forward(test_spots))


def measured_seconds(arm_dir: str | Path) -> list[float]:
    """Seconds of the finished runs under one arm's folder (``run.json`` of every fold and seed, any
    code version: a version changes results, rarely cost), runs copied from another arm excluded."""
    out = []
    for path in sorted(Path(arm_dir).glob("*/run.json")):
        try:
            info = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if info.get("status") == "ok" and info.get("seconds") and not info.get("copied_from"):
            out.append(float(info["seconds"]))
    return out


def measured_estimate(tasks: list) -> str:
    """The embedded cohort's estimate: no benchmark model, but its runs were timed. Each run to do is
    costed at the median seconds of its arm's finished runs (``run.json``; one torch thread each, as
    the grid runs them), in another world at its default-world twin's; runs of an arm never run before
    are counted, not costed."""
    if not tasks:
        return "estimate: nothing to run"
    costed, unknown = 0.0, []
    cache: dict[str, list[float]] = {}
    for t in tasks:
        arm_dir = Path(t.out_dir).parent
        if str(arm_dir) not in cache:
            seconds = measured_seconds(arm_dir)
            parts = arm_dir.parts
            if not seconds and "worlds" in parts[:-3]:  # a world's arm not run yet: its default-world twin
                i = len(parts) - 1 - parts[::-1].index("worlds")
                seconds = measured_seconds(Path(*parts[:i], *parts[i + 2:]))
            cache[str(arm_dir)] = seconds
        if cache[str(arm_dir)]:
            costed += float(np.median(cache[str(arm_dir)]))
        else:
            unknown.append(t)
    n = len(tasks) - len(unknown)
    line = (f"estimate: {costed / 3600:.2f} run-hours for {n} of the {len(tasks)} runs to do, from the median measured "
            f"seconds of each arm's finished runs (results/**/run.json); wall time is about that over the "
            f"number of workers")
    if unknown:
        arms = sorted({f"{t.axis}/{t.arm}" for t in unknown})
        k = len(unknown)
        line += (f"; not in it: {k} run{'s' if k != 1 else ''} of arms never timed here "
                 f"({', '.join(arms[:4])}{', ...' if len(arms) > 4 else ''})")
    return line


# ------------------------------------------------------------------------------------ the plan
def sample_genes(root: Path, sample_id: str) -> set[str]:
    """The gene symbols ``read_hest_sample`` would give a sample, from its st file's var only."""
    import anndata as ad
    import h5py

    from stflib import data as D

    path = root / "st" / f"{sample_id}.h5ad"
    with h5py.File(path, "r") as f:
        var = ad.io.read_elem(f["var"])
        ensembl_only = "uns" in f and "gene_names" in f["uns"] and ad.io.read_elem(f["uns/gene_names"]) == "ensembl_ids"
    names = var.index.to_numpy().astype(str)
    return {str(g) for g in (names if ensembl_only else D.gene_symbols(var, names, path))}


def _check_gene_overlap(p: Plan, root: Path, meta, k: int) -> None:
    """A test sample that shares no gene with its fold's training and validation samples cannot be
    predicted (the vocabulary comes from them): say which, before the run fails on it."""
    from stflib import data as D

    ids = meta["id"].astype(str).tolist()
    try:
        genes = {i: sample_genes(root, i) for i in ids}
    except (OSError, KeyError, ValueError) as exc:
        p.missing.append((f"readable genes in {root / 'st'}: {exc}", "re-download or re-import the sample"))
        return
    for f, (train, test) in enumerate(D.patient_folds(meta, k)):
        pool = set().union(*(genes[i] for i in train))
        for i in test:
            if not genes[i] & pool:
                p.missing.append((f"fold {f}: test sample {i} shares no gene with its training samples "
                                  f"({i} has e.g. {sorted(genes[i])[:3]}, training e.g. {sorted(pool)[:3]}): "
                                  "the run would stop", "no command: give the sample gene symbols (re-import) or "
                                  "leave it out with the cohort filter"))


def cohort_run_seconds(cfgs: list[dict], meta, k: int, times: dict[str, list[tuple[int, float]]]) -> list[float]:
    """Upper-bound seconds of each run (validated configs of one cohort and fold count ``k``), from the
    metadata's ``spots_under_tissue`` (the median where a value is missing; nothing without the column)."""
    import pandas as pd

    from stflib import data as D

    if "spots_under_tissue" not in meta or not cfgs:
        return []
    spots = pd.to_numeric(meta.set_index(meta["id"].astype(str))["spots_under_tissue"], errors="coerce")
    spots = spots.fillna(spots.median())
    folds = D.patient_folds(meta, k)
    splits: dict[tuple, tuple] = {}  # (fold, val_fraction) -> (train, val): the same for every arm
    out = []
    for cfg in cfgs:
        train_all, test = folds[cfg["fold"]]
        key = (cfg["fold"], cfg["val_fraction"])
        if key not in splits:
            splits[key] = D.train_val_split(train_all, meta, cfg["val_fraction"], seed=0)
        train, val = splits[key]
        out.append(run_seconds(cfg, [spots[i] for i in train], [spots[i] for i in val], [spots[i] for i in test],
                               times))
    return out


def group_notes(meta, groups) -> list[str]:
    """How the patient groups were formed where HEST's metadata is irregular: samples without a patient
    label (grouped by their subseries block or dataset title) and groups that span several dataset titles
    (one section sequenced twice, merged by image size and spot count); so a user can check them."""
    lines = []
    if "patient" in meta:
        unlabelled = meta["patient"].isna() | (meta["patient"].astype(str).str.strip() == "")
        if unlabelled.any():
            ids = meta.loc[unlabelled, "id"].astype(str)
            lines.append(f"    {len(ids)} samples without a patient label, in {groups.loc[list(ids)].nunique()} groups "
                         "(by subseries block, else dataset title)")
    if "dataset_title" in meta:
        titles = meta.set_index(meta["id"].astype(str))["dataset_title"]
        for name, members in groups.groupby(groups).groups.items():
            if titles.loc[list(members)].nunique() > 1:
                lines.append(f"    one group across {titles.loc[list(members)].nunique()} dataset titles (same image "
                             f"size and spots: one section sequenced twice): {', '.join(members)}; kept in one fold")
    return lines


def _st_barcodes(path: Path) -> np.ndarray:
    """The obs names of an h5ad, read without loading its matrix."""
    import h5py

    from stflib import data as D

    with h5py.File(path, "r") as f:
        obs = f["obs"]
        return D.decode_barcodes(obs[obs.attrs["_index"]][:])


def _check_spot_joins(p: Plan, root: Path, ids: list[str], backbones: list[str]) -> None:
    """Spots whose barcode has no patch row (or no feature row of a backbone): the reader leaves them out
    (joins go by barcode); report how many, so a folder that lost most of a slide is seen before the run."""
    import h5py

    from stflib import data as D

    lost: dict[str, dict[str, int]] = defaultdict(dict)
    for i in ids:
        try:
            st = set(_st_barcodes(root / "st" / f"{i}.h5ad"))
            with h5py.File(root / "patches" / f"{i}.h5", "r") as f:
                have = st & set(D.decode_barcodes(f["barcode"][:]))
            lost["a patch"][i] = len(st) - len(have)
            for bb in backbones:
                feat = root / "features" / bb / f"{i}.h5"
                if feat.is_file():
                    with h5py.File(feat, "r") as f:
                        lost[f"a feature row of {bb} (patch present)"][i] = len(have - set(D.decode_barcodes(f["barcodes"][:])))
        except (OSError, KeyError) as exc:
            p.missing.append((f"readable barcodes of sample {i}: {exc}", "re-download or re-import the sample"))
            return
    for what, per in lost.items():
        hit = {i: n for i, n in per.items() if n}
        if hit:
            worst = sorted(hit.items(), key=lambda x: -x[1])[:4]
            p.lines.append(f"  spots without {what}: {sum(hit.values())} in {len(hit)} samples "
                           f"({', '.join(f'{i}: {n}' for i, n in worst)}{', ...' if len(hit) > 4 else ''}); "
                           "left out of training and evaluation")


def _random_weights(path: Path) -> bool:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return bool(f.attrs.get("random_weights", False)) or f.attrs.get("backbone_version") == "random-init"
    except OSError:
        return False


def _q(value) -> str:
    """A Python literal with double quotes (so the shell-quoted ``python -c '...'`` stays readable)."""
    return json.dumps(value)


def _cmd(*parts: str) -> str:
    return " ".join(shlex.quote(str(p)) for p in parts)


def plan(tasks: list, bench_dir: str | Path = BENCH_DIR, complete: set[str] | frozenset = frozenset()) -> Plan:
    """Check the folders and files every task needs; estimate the time of those whose ``run_hash`` is not
    in ``complete``. ``tasks``: :class:`stflib.grid.runner.Task`."""
    from stflib import data as D
    from stflib.backbones import WeightsError, find_weights

    p = Plan()
    times, device = load_step_times(bench_dir)
    p.clock = device
    by_dir: dict[Any, list] = defaultdict(list)
    for t in tasks:
        by_dir[t.params.get("data_dir")].append(t)
    for data_dir, dir_tasks in by_dir.items():
        if data_dir is None:
            p.lines.append(f"data: the embedded simulated cohort (generated on first use); {len(dir_tasks)} runs")
            p.lines.append(measured_estimate([t for t in dir_tasks if t.run_hash not in complete]))
            continue
        root = Path(data_dir)
        p.lines.append(f"data_dir {root}: {len(dir_tasks)} runs")
        meta_csv = root / "metadata.csv"
        if not root.is_dir():
            p.missing.append((f"the folder {root}", _cmd("python", "-c", f"from stflib.data import download_hest; "
                                                         f"download_hest(['TENX29', ...], {_q(str(root))})")))
            continue
        if not meta_csv.is_file():
            ids = sorted(x.stem for x in (root / "st").glob("*.h5ad"))
            if (root / "HEST_v1_1_0.csv").is_file() and ids:
                p.missing.append((f"{meta_csv} (the loader's list of the downloaded samples)",
                                  _cmd("python", "-c", f"from stflib.data import write_downloaded_metadata as w; "
                                                       f"w({_q(str(root))}, {_q(ids)})")))
            else:
                p.missing.append((f"{meta_csv}", _cmd("python", "-c", f"from stflib.data import download_hest; "
                                                      f"download_hest([...], {_q(str(root))})")))
            continue
        # one cohort per distinct filter and fold count
        cohorts: dict[tuple, list] = defaultdict(list)
        for t in dir_tasks:
            cfg = C.validate(t.params, check_paths=False)
            cohorts[(tuple(C.describe_cohort(cfg).split(" ")), cfg["n_folds"])].append((t, cfg))
        for (_, k), members in cohorts.items():
            cfg0 = members[0][1]
            described = f"the cohort filter {C.describe_cohort(cfg0)} on {meta_csv}"
            try:
                meta = D.select_samples(meta_csv, **C.cohort_filter(cfg0))
                D.check_cohort_folds(meta, k, described)
            except ValueError as exc:
                p.missing.append((f"a cohort for {len(members)} runs: {exc}",
                                  "change the filter: --set organ=... --set oncotree=... (None: no filter), "
                                  f"or --folds fewer than {k}"))
                continue
            ids = meta["id"].astype(str).tolist()
            groups = D.patient_groups(meta)
            p.lines.append(f"  cohort {C.describe_cohort(cfg0)}: {len(ids)} samples, {groups.nunique()} patient groups")
            p.lines.extend(group_notes(meta, groups))
            for f, (_train, test) in enumerate(D.patient_folds(meta, k)):
                p.lines.append(f"    fold {f}: test {len(test)} samples ({', '.join(test[:6])}{', ...' if len(test) > 6 else ''})")
            absent = [i for i in ids if not (root / "st" / f"{i}.h5ad").is_file() or not (root / "patches" / f"{i}.h5").is_file()]
            if absent:
                p.missing.append((f"st/patches files of {len(absent)} samples ({', '.join(absent[:8])})",
                                  _cmd("python", "-c", f"from stflib.data import download_hest; "
                                                       f"download_hest({_q(absent)}, {_q(str(root))})")))
            if not absent:
                _check_gene_overlap(p, root, meta, k)
            backbones = sorted({cfg["backbone"] for _, cfg in members})
            for bb in backbones:
                have = [i for i in ids if (root / "features" / bb / f"{i}.h5").is_file()]
                lacking = [i for i in ids if i not in have]
                try:
                    weights = find_weights(bb)
                    w_text = f"weights {weights}" if weights else "no weights found"
                except WeightsError as exc:
                    weights, w_text = None, f"weights unusable: {exc}"
                random = [i for i in have if _random_weights(root / "features" / bb / f"{i}.h5")]
                note = f" ({len(random)} from random weights: test features, not {bb}'s)" if random else ""
                p.lines.append(f"  features {bb}: {len(have)}/{len(ids)} samples{note}; {w_text}")
                if lacking:
                    if weights is None:
                        p.missing.append((f"{bb} weights (for {len(lacking)} samples' features)",
                                          _cmd("python", "-c", f"from stflib.backbones import download_weights; "
                                                               f"download_weights({_q(bb)})")))
                    cmd = ["python", "-m", "stflib", "extract-features", "--data-dir", str(root), "--backbone", bb]
                    if len(lacking) < len(ids):
                        cmd += ["--samples", *lacking]
                    p.missing.append((f"{bb} features of {len(lacking)} samples ({', '.join(lacking[:8])}"
                                      f"{', ...' if len(lacking) > 8 else ''})", _cmd(*cmd)))
            if not absent:
                _check_spot_joins(p, root, ids, backbones)
            # time
            if times:
                p.hours += sum(cohort_run_seconds([cfg for t, cfg in members if t.run_hash not in complete],
                                                  meta, k, times)) / 3600
    # the benchmark model costs runs on data folders only; the embedded cohort's are costed above
    n = len([t for t in tasks if t.run_hash not in complete and t.params.get("data_dir") is not None])
    if n and device:
        unit = "GPU-hours" if device == "cuda" else "CPU-hours (one core; no CUDA benchmark yet: run `python -m stflib bench gpu-check` on the GPU)"
        amount = f"{p.hours:.1f}" if p.hours >= 1 else f"{p.hours * 60:.1f} min, i.e. {p.hours:.3f}"
        p.lines.append(f"estimate: {amount} {unit} for the {n} runs to do, upper bound at each run's max_steps "
                       f"(from {Path(bench_dir) / f'attention_{device}.json'})")
    elif n:
        p.lines.append("estimate: none (no results/bench/attention_*.json; run `python -m stflib bench gpu-check`)")
    return p

