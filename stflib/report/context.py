"""The context page's comparisons: STF with a neighbourhood against the simple models that read the
same neighbourhood, placed between the latent ceiling and the oracle.

A *neighbourhood* is what a spot's prediction may read besides its own patch: nothing, or its k
nearest spots (k = 6, the first hexagonal ring; 18, two rings). :func:`matched_arms` names, per
neighbourhood, STF's context arm and the ridge probe and MLP arms of the baselines axis that read
the same neighbourhood ([own features, mean of the k nearest spots' features]); those comparisons live in
:mod:`stflib.report.context_matched` and are importable from here. STF has no per-spot
arm: its "no neighbourhood" arm is whole-slide attention, while the per-spot models of that row
read one spot alone.

Two ceilings frame the numbers, both on the runs' held-out patients and 50 HVGs:

- the **oracle ceiling**, per run: ``noise_ceiling_hvg50``, the PCC of the simulator's expected
  expression with the measured counts (the counting noise no model can remove);
- the **latent ceiling**, per fold: the ``ridge_probe`` arm's probe (same patients, same fit, same
  penalty chosen on the validation patients, same metric) on the simulator's noise-free latent
  morphology instead of the backbone's features, with the mean of the k nearest spots' latents for
  k > 0, and once more with the true context fields added. It is a *linear* read-out of what the
  patches carry without feature noise, not a bound on every model. Computing it reads the cohort
  once per fold (tens of seconds each), so ``python -m stflib ceilings`` writes it to
  ``results/ceilings/latent_<world>.csv`` (:func:`write_latent_ceilings`) and the book reads that.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from stflib.grid.axes import GRID_FOLDS
from stflib.report import stats
from stflib.report.context_matched import (NEIGHBOURHOODS, SIMPLE, _world_runs, arm_intervals,  # noqa: F401
                                           context_matched_table, matched_arms, neighbourhood_label, oracle_ceiling)
from stflib.report.results import DEFAULT_WORLD, metric_info, results_root, version_column, write_results_csv
from stflib.report.tables import interval_text

__all__ = ["neighbourhood_label", "matched_arms", "context_matched_table", "arm_intervals", "oracle_ceiling",
           "ceilings_path", "latent_inputs_text", "probe_on_fold", "latent_ceilings", "write_latent_ceilings",
           "load_latent_ceilings", "ceiling_table", "folds_match_runs", "ceiling_notes", "missing_line",
           "describe_matched", "describe_ceilings"]


# ------------------------------------------------------------------------------------- latent ceiling
def ceilings_path(world: str = DEFAULT_WORLD, results_dir: str | Path | None = None) -> Path:
    """``results/ceilings/latent_<world>.csv``."""
    results_dir = results_root(results_dir)
    return results_dir / "ceilings" / f"latent_{world}.csv"


def latent_inputs_text(k: int, true_context: bool) -> str:
    """What the latent-ceiling probe reads, in words."""
    text = "the spot's noise-free latent morphology" if k == 0 else \
        f"[the spot's noise-free latent morphology, mean of its {k} nearest spots' latents]"
    return text + (" + the true context fields" if true_context else "")


def probe_on_fold(fold, cfg, inputs: dict) -> dict:
    """The ``ridge_probe`` arm on one loaded fold with other per-spot inputs: ``inputs`` maps each
    sample id of ``fold`` to its (N, F) input rows (the slide item's spot order). The probe is
    fitted on the training slides with its penalty chosen on the validation slides by the arm's own
    code (``fit_numpy``), and scored on the held-out slides by the runs' metric (``metrics.evaluate``).
    Returns ``pcc_hvg50``, ``ridge_alpha``, ``n_inputs``, ``n_test_spots``."""
    import torch

    from stflib.metrics import evaluate
    from stflib.train.model import fit_numpy
    from stflib.train.predict import predict_numpy

    absent = sorted(set(fold.items) - set(inputs))
    if absent:
        raise ValueError(f"probe_on_fold: no inputs for samples {absent[:5]} of the fold")
    items = {sid: {**item, "features": torch.as_tensor(np.asarray(inputs[sid]), dtype=torch.float32)}
             for sid, item in fold.items.items()}
    part = lambda ids: [items[i] for i in ids]  # noqa: E731
    probe = fit_numpy(part(fold.train_ids), cfg, val_items=part(fold.val_ids), score_columns=fold.hvg_columns)
    preds = predict_numpy(probe, part(fold.test_ids), cfg)
    pred = np.concatenate([p["pred"][p["valid"]] for p in preds])  # (held-out spots, genes)
    true = np.concatenate([p["true"][p["valid"]] for p in preds])
    slide_ids = np.concatenate([np.full(p["valid"].sum(), p["sample_id"], dtype=object) for p in preds])
    scores, _ = evaluate(pred, true, fold.genes, fold.hvg, slide_ids)
    return {"pcc_hvg50": scores["pcc_hvg50"], "ridge_alpha": float(probe.alpha_),
            "n_inputs": int(next(iter(items.values()))["features"].shape[1]), "n_test_spots": int(len(pred))}


def latent_ceilings(world: str = DEFAULT_WORLD, n_folds: int = 3, neighbourhoods: tuple[int, ...] = NEIGHBOURHOODS,
                    log: Callable[[str], None] | None = None, params: dict | None = None) -> pd.DataFrame:
    """The latent ceiling on the grid's folds: one row per (fold, neighbourhood, with or without the
    true context fields).

    Each fold is loaded exactly as a ``ridge_probe`` run of the grid loads it (``load_fold`` with the
    run defaults, ``world``, ``n_folds`` and any other run ``params``: the same patients, QC, gene
    vocabulary and 50 HVGs); only the inputs change (:func:`probe_on_fold`): the simulator's
    ``true_latent_morphology`` (N, L) per spot, its mean over the k nearest spots appended for k > 0
    (as the context-matched arms append the features' mean), and ``true_context`` (N, C) appended
    for the second row.
    """
    from stflib.config import RunConfig
    from stflib.grid.runner import code_version
    from stflib.sim.calibration import truth_obsm
    from stflib.spatial import with_neighbour_mean
    from stflib.train.fold import load_fold

    bad = [k for k in neighbourhoods if int(k) < 0]
    if bad:
        raise ValueError(f"neighbourhoods: k must be >= 0 (0 = the spot alone), got {bad}")
    version = code_version()
    rows = []
    for fold_index in range(n_folds):
        cfg = RunConfig.from_params({**(params or {}), "model": "ridge_probe", "world": world, "n_folds": n_folds,
                                     "fold": fold_index})
        fold = load_fold(cfg, log)
        latent = {sid: truth_obsm(fold.root, s, "true_latent_morphology") for sid, s in fold.samples.items()}  # (N, L)
        context = {sid: truth_obsm(fold.root, s, "true_context") for sid, s in fold.samples.items()}  # (N, C)
        for k in map(int, neighbourhoods):
            for true_context in (False, True):
                inputs = {}
                for sid, item in fold.items.items():
                    x = latent[sid] if k == 0 else with_neighbour_mean(latent[sid], item["coords"].numpy(), k)
                    inputs[sid] = np.concatenate([x, context[sid]], 1) if true_context else x  # (N, L | 2L [+ C])
                scores = probe_on_fold(fold, cfg, inputs)
                rows.append({"world": world, "n_folds": n_folds, "fold": fold_index, "n_neighbors": k,
                             "true_context": true_context, "inputs": latent_inputs_text(k, true_context), **scores,
                             "test_ids": ";".join(map(str, fold.test_ids)), "hvg50": ";".join(map(str, fold.hvg)),
                             "code_version": version})
                if log:
                    log(f"fold {fold_index}, {latent_inputs_text(k, true_context)}: pcc_hvg50 {scores['pcc_hvg50']:.3f}")
    return pd.DataFrame(rows)


def write_latent_ceilings(world: str = DEFAULT_WORLD, n_folds: int = 3, results_dir: str | Path | None = None,
                          log: Callable[[str], None] | None = print) -> Path:
    """Compute :func:`latent_ceilings` and write it to :func:`ceilings_path` (atomically)."""
    return write_results_csv(latent_ceilings(world, n_folds, log=log), ceilings_path(world, results_dir))


def load_latent_ceilings(world: str = DEFAULT_WORLD, results_dir: str | Path | None = None) -> pd.DataFrame | None:
    """The committed latent ceilings of ``world`` (None when ``python -m stflib ceilings`` has not written them)."""
    path = ceilings_path(world, results_dir)
    return pd.read_csv(path) if path.is_file() else None


def ceiling_table(summary: pd.DataFrame, latent: pd.DataFrame | None, world: str = DEFAULT_WORLD) -> pd.DataFrame:
    """One row per neighbourhood, each ceiling as a mean over the runs of that row's arms
    (:func:`matched_arms`), a run counting with its fold's value: ``latent`` (the latent ceiling with
    that neighbourhood), ``latent_true_context`` (plus the true context fields), ``oracle``
    (``noise_ceiling_hvg50``), and ``runs``. A latent value is NaN when ``latent`` is None or lacks
    one of the runs' folds (:func:`ceiling_notes` says which)."""
    runs = _world_runs(summary, world)
    rows = {}
    for label, row in matched_arms().iterrows():
        k = int(row["n_neighbors"])
        rows_runs = runs[runs["key"].isin([row["stf"], *(row[m] for m in SIMPLE)])]
        out = {"n_neighbors": k, "runs": len(rows_runs)}
        for column, with_context in (("latent", False), ("latent_true_context", True)):
            if latent is None or rows_runs.empty:
                out[column] = np.nan
                continue
            chosen = latent[(latent["n_neighbors"] == k) & (latent["true_context"].astype(bool) == with_context)]
            per_run = rows_runs["fold"].map(chosen.set_index("fold")["pcc_hvg50"])
            out[column] = per_run.mean() if per_run.notna().all() else np.nan
        oracle = rows_runs["noise_ceiling_hvg50"] if "noise_ceiling_hvg50" in rows_runs else pd.Series(dtype=float)
        out["oracle"] = oracle.mean()
        rows[label] = out
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("neighbourhood")[
        ["n_neighbors", "runs", "latent", "latent_true_context", "oracle"]]


def folds_match_runs(latent: pd.DataFrame, results_dir: str | Path | None = None,
                     axes: tuple[str, ...] = ("context", "baselines")) -> pd.DataFrame:
    """Per fold of ``latent``: how many run folders of ``axes`` record (``metrics.json``: ``test_ids``,
    ``hvg50``) the same held-out patients and the same 50 HVGs as the latent ceiling's probe saw."""
    import json

    results_dir = results_root(results_dir)
    per_fold = latent.drop_duplicates("fold").set_index("fold")
    counts = {f: {"runs_checked": 0, "same_test_patients": 0, "same_hvgs": 0} for f in per_fold.index}
    for axis in axes:
        for path in sorted((results_dir / axis).glob("*/fold*/metrics.json")):
            m = json.loads(path.read_text())
            if m.get("fold") not in counts or "test_ids" not in m or "hvg50" not in m:
                continue
            ref = per_fold.loc[m["fold"]]
            c = counts[m["fold"]]
            c["runs_checked"] += 1
            c["same_test_patients"] += set(map(str, m["test_ids"])) == set(str(ref["test_ids"]).split(";"))
            # the metric is a mean over the genes: their order does not matter
            c["same_hvgs"] += set(map(str, m["hvg50"])) == set(str(ref["hvg50"]).split(";"))
    return pd.DataFrame.from_dict(counts, orient="index").rename_axis("fold")


def ceiling_notes(summary: pd.DataFrame, latent: pd.DataFrame | None, world: str = DEFAULT_WORLD,
                  results_dir: str | Path | None = None) -> str:
    """Where the latent ceilings come from and whether they fit the runs (a Markdown paragraph):
    absent file, folds the runs have and the file lacks, code versions, and the runs whose
    recorded held-out patients and HVGs differ from the ceiling's."""
    from stflib.sim.biology import CONTEXTS

    folds = "" if latent is None else f" --folds {int(latent['n_folds'].iloc[0])}"
    command = f"`python -m stflib ceilings --world {world}{folds}`"
    if latent is None:
        return (f"No latent ceilings for world `{world}` yet ({ceilings_path(world, results_dir).name} is absent): "
                f"{command} computes them; the latent columns stay empty until then.")
    runs = _world_runs(summary, world)
    keys = set(arm_intervals(summary, world=world)["arm"])
    runs = runs[runs["key"].isin(keys)]
    n_folds = int(latent["n_folds"].iloc[0])
    notes = [f"The latent ceilings were computed by {command} on the {n_folds} patient folds of "
             "the grid, with the `ridge_probe` arm's own fit and validation-chosen penalty; the inputs are the "
             "simulator's noise-free latent morphology of each spot (its cell composition and the activities "
             "of the pathways visible in a patch), with the mean over the k nearest spots appended for k > 0 "
             "and, in `latent_true_context`, the true context fields (the simulator's smoothed neighbourhood "
             f"fields: {', '.join(c.replace('_', ' ') for c in CONTEXTS)}). It is a "
             "linear read-out of what the patches carry without feature noise, not a bound on every model."]
    lacking = sorted(set(runs["fold"].astype(int)) - set(latent["fold"].astype(int)))
    if lacking:
        notes.append(f"The runs have folds {lacking} that the latent ceilings do not: re-run {command} "
                     "with the grid's number of folds.")
    # the ceilings record the shared core's version (stflib.grid.version); runs record it as core_version
    # (older runs: code_version, then a hash of the whole library)
    column = version_column(runs)
    if column:
        theirs = set(runs[column].dropna().astype(str))
        ours = set(latent["code_version"].astype(str))
        if theirs != ours:
            notes.append(f"The ceilings were computed with code version {', '.join(sorted(ours))} and the runs "
                         f"with {', '.join(sorted(theirs))}: if the data or the folds changed in between, "
                         f"re-run {command}.")
    check = folds_match_runs(latent, results_dir)
    checked = int(check["runs_checked"].sum())
    if checked:
        same = int(np.minimum(check["same_test_patients"], check["same_hvgs"]).sum())
        notes.append(f"{same} of the {checked} run folders of the context and baselines axes that record their "
                     "held-out patients and HVGs have the same ones as the ceiling's fold"
                     + ("." if same == checked else ": the others were run on different folds or genes, so the "
                        "ceilings do not describe them."))
    return " ".join(notes)


# ------------------------------------------------------------------------------------------- sentences
def missing_line(table: pd.DataFrame) -> str:
    """One sentence naming the matched arms with no completed run ('' when every arm has runs)."""
    missing = [a for cell in table["missing"] for a in cell.split(", ") if a]
    if not missing:
        return ""
    return (f"Not run yet (no completed run in `results/summary.csv`): {', '.join(f'`{a}`' for a in missing)}; "
            "their cells are empty and the comparisons that need them are left out.")


def _with(k: int, explain: bool = True) -> str:
    """'with no neighbour' (``explain``: and what that means for STF) / 'with the k nearest spots'."""
    if k == 0:
        return "with no neighbour" + (" (STF attends to the whole slide, the simple models read one spot)" if explain else "")
    return f"with the {k} nearest spots"


def _verdict(p_holm: float, r: dict) -> str:
    """What a comparison of the table is, in the words of :func:`stflib.report.findings.takeaways`."""
    if not np.isfinite(p_holm):
        return "no test"
    if p_holm < stats.ALPHA:
        return f"Holm p = {p_holm:.2g}, a finding"
    excludes_zero = r["ci_low"] > 0 or r["ci_high"] < 0
    return f"Holm p = {p_holm:.2g}, not a finding after Holm" + (
        ", though its unadjusted interval excludes zero" if excludes_zero else "")


def describe_matched(table: pd.DataFrame, ceilings: pd.DataFrame | None = None, metric: str = "pcc_hvg50") -> str:
    """The context-matched comparisons in words, written from :func:`context_matched_table` (and the
    :func:`ceiling_table` of the same summary): what the differences are over (held-out patient folds,
    seeds averaged within a fold), per neighbourhood STF against each simple model, and where the best
    arm sits between the latent ceiling and the oracle."""
    name = metric_info(metric).label
    sentences = []
    for _, row in table.iterrows():
        if np.isnan(row["stf"]):
            continue
        parts = []
        for model, model_name in SIMPLE.items():
            d = f"stf_minus_{model}"
            if row[f"{d}_folds"] == 0:
                continue
            r = {"mean_delta": row[d], "ci_low": row[f"{d}_ci_low"], "ci_high": row[f"{d}_ci_high"],
                 "pairs": row[f"{d}_folds"]}
            parts.append(f"the {model_name} (`{row[f'{model}_arm']}`, {row[model]:.3f}) by {interval_text(r)}, "
                         f"winning {int(row[f'{d}_wins'])} of {int(row[f'{d}_folds'])} folds "
                         f"({_verdict(row[f'{d}_p_holm'], r)})")
        if parts:
            opening = _with(int(row["n_neighbors"]))
            sentences.append(f"{opening[0].upper()}{opening[1:]}, STF (`{row['stf_arm']}`) reaches "
                             f"{row['stf']:.3f} ({name}) and differs from " + " and from ".join(parts) + ".")
    if sentences:
        n_folds = int(table[[f"stf_minus_{m}_folds" for m in SIMPLE]].to_numpy().max())
        sentences.insert(0, f"Each difference is STF minus a simple model over {n_folds} held-out patient "
                            f"fold{'s' if n_folds != 1 else ''} (runs paired by fold and seed, the seeds of a fold "
                            "averaged into one difference), with its 95 % t interval over the folds and the paired "
                            "t-test Holm-adjusted across every comparison of the table; the intervals are "
                            "conditional on the cohort's patients and the training budget.")
    if not sentences:
        return "No neighbourhood has both STF and a matched simple model run yet."
    means = table[["stf", *SIMPLE]].stack()  # (neighbourhood, role) -> mean
    label, role = means.idxmax()
    if ceilings is not None and np.isfinite(ceilings.loc[label, "oracle"]):
        best, arm = means.max(), table.loc[label, f"{role}_arm"]
        oracle, latent = ceilings.loc[label, "oracle"], ceilings.loc[label, "latent"]
        text = f"The best arm of the table, `{arm}` ({best:.3f}), reaches {best / oracle:.0%} of the oracle ceiling ({oracle:.3f})"
        if np.isfinite(latent):
            text += (f" and is {'above' if best > latent else 'below'} the latent ceiling "
                     f"{_with(int(table.loc[label, 'n_neighbors']), explain=False)} ({latent:.3f}; "
                     f"{ceilings.loc[label, 'latent_true_context']:.3f} with the true context fields)")
        sentences.append(text + ".")
    return " ".join(sentences)


LITTLE = 0.01  # a change of the latent ceiling smaller than this (PCC) is read as "adds little"


def describe_ceilings(ceilings: pd.DataFrame) -> str:
    """What the neighbourhood and the true context fields add to the latent ceiling, in words, written
    from :func:`ceiling_table` ('' when the latent ceilings are absent)."""
    rows = ceilings.dropna(subset=["latent"]).sort_values("n_neighbors")
    if rows.empty:
        return ""
    first, last = rows.iloc[0], rows.iloc[-1]
    change = last["latent"] - first["latent"]
    text = (f"The latent ceiling is {first['latent']:.3f} {_with(int(first['n_neighbors']), explain=False)} and "
            f"{last['latent']:.3f} {_with(int(last['n_neighbors']), explain=False)} ({change:+.3f}); the true context "
            f"fields add {(rows['latent_true_context'] - rows['latent']).mean():+.3f} on average over the rows.")
    if len(rows) > 1 and abs(change) < LITTLE:
        text += (f" Within {LITTLE} PCC, the neighbours' latents add almost nothing a linear read-out of the spot's "
                 "own noise-free latent lacks: what a neighbourhood adds to the arms that read the features comes from "
                 "reading the noisy features better (their neighbours' mean averages part of the noise out), or from "
                 "what a linear read-out cannot use.")
    if np.isfinite(last["oracle"]):
        text += (f" Between the latent ceiling and the oracle ({last['oracle']:.3f}) lies what a linear read-out of "
                 f"the noise-free patches does not reach ({last['oracle'] - last['latent']:.3f} with the widest "
                 "neighbourhood).")
    return text


# --------------------------------------------------------------------------------------------- command
def add_arguments(p: argparse.ArgumentParser) -> None:
    from stflib.sim.worlds import WORLDS

    p.add_argument("--world", default=DEFAULT_WORLD, choices=list(WORLDS), help="simulator world of the grid's runs")
    p.add_argument("--folds", type=int, default=GRID_FOLDS,
                   help=f"patient folds, as the grid was run with (ablate --folds; default the grid's {GRID_FOLDS})")
    p.add_argument("--results", default=None, help="results folder (default: results/ of this repository)")


def run(args: argparse.Namespace) -> int:
    path = write_latent_ceilings(args.world, args.folds, args.results)
    table = pd.read_csv(path)
    print(table.groupby(["n_neighbors", "true_context"])["pcc_hvg50"].agg(["mean", "min", "max"]).round(4))
    print(f"wrote {path}")
    return 0
