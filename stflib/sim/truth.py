"""What a simulated world lets a model find, measured on its truth before any model is trained.

``python -m stflib truth --world NAME|all`` simulates each world's cohort in memory (no patches), and
writes ``results/worlds/truth/<world>.json`` plus the two tables the data chapter reads,
``results/worlds/truth.csv`` (one row per world) and ``results/worlds/calibration.csv`` (one row per
world and stand-in backbone). Every figure is model-free: ridge probes and covariances on the truth.

1. **Variance shares of the evaluated genes** (``variance_shares``): the 50 HVGs of the cohort,
   log1p(CP10k) of the *expected* counts (the ZINB mean), pooled over every QC-passed spot of every
   slide (so patient offsets count). The log rate is a sum of terms: cell-type composition
   (``log(composition @ profiles)``), the Hallmark programmes split by what drives their activity
   (composition, the local context fields, the long-range fields, patient offsets, slide offsets and
   noise), hidden non-Hallmark programmes and depth-dependent capture. Each term's share of a gene's
   variance is ``cov(term, y) / var(y)`` (the covariance decomposition: the shares of additive terms
   sum to one, the remainder is library normalisation and log1p); shares are averaged over the genes.
2. **Observable share of pathway activity** (``pathway_observability``): per pathway, the share of
   its activity's variance from what an input carries (composition: the own patch; local and
   long-range context: the neighbourhood and the slide), and all of it for the pathways visible in
   morphology (``VISIBLE_PATHWAYS``, in the latent); ``patient_share`` is the patient offsets' share.
3. **Linear-sufficiency gap** (``linear_sufficiency``): held-out-patient PCC against the expected
   expression (same genes and folds as the probes) of the HEST-Bench ridge on [the noise-free
   latent, the mean latent of the 6/18/60 nearest spots] versus on all of the truth an input could
   carry (that, plus the true local context fields, the long-range fields, the slide's immune state,
   and products of the spot's own content with its neighbourhood). A gap means biology that a linear
   read-out of local means cannot form.
4. **Real-data confound figures** (``depth_figures``, ``study_figures``), measured the way the
   upstream SpatialTranscriptFormer measured them on 73 HEST-1k bowel slides: Hallmark scores are
   log1p(CP10k), a z-score per gene within the slide, the mean over member genes; the median over
   slides of |r(PC1 of the 50 scores, log total counts)| and of Moran's I of log depth; the study's
   predictability from image features and the loss of a probe trained on other studies.
5. **Calibration** (``calibration_rows``): per stand-in backbone, HEST-Bench's ridge on own features
   and on [own, mean of the 6 nearest], patient-held-out folds, against the encoder's published bowel
   range (``HEST_BENCH_BOWEL``) and STFlow's context gain.

``ACCEPTANCE`` states, per world, the figures it exists for; the command prints them and the tests
check them on a small cohort.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Sequence

import pandas as pd

from .anchors import (HEST_BENCH_BOWEL, BOWEL_TOLERANCE, CONTEXT_GAIN_RANGE, CONTEXT_GAIN_SOURCE,
                      FOUNDATION_MODELS, DEPTH_ANCHORS, STUDY_ANCHORS, NEIGHBOURHOODS, ACCEPTANCE)  # noqa: F401
from .truth_figures import (simulate_in_memory, with_features, SOURCES, log_rate_terms, variance_shares,
                            pathway_observability, truth_inputs, linear_sufficiency, hallmark_scores,
                            depth_figures, _study, study_figures, calibration_rows)  # noqa: F401
from .calibration import _fold_hvgs
from .worlds import BACKBONES, PRESETS, WORLDS

# the report's figures live in stflib.sim.truth_figures and its anchors in stflib.sim.anchors; both are
# importable from here, where the report, the tables and the command read them


# ------------------------------------------------------------------------------------ the report
def truth_report(world: str, preset: str = "default", seed: int = 0, n_folds: int = 3,
                 backbones: Sequence[str] | None = None, calibration: bool = True) -> dict:
    """Every figure of the module docstring for one world (a JSON-ready dict)."""
    t0 = time.time()
    spec = WORLDS[world]
    backbones = list(backbones if backbones is not None else BACKBONES)
    meta, samples, sims = simulate_in_memory(world, preset, seed, backbones)
    simulate_s = time.time() - t0
    hvg = _fold_hvgs(samples, 50)  # the evaluated genes of the whole cohort
    shares = variance_shares(samples, sims, world, hvg)
    report = {"world": world, "preset": preset, "seed": seed, "n_folds": n_folds, "n_slides": len(samples),
              "n_patients": int(meta["patient"].nunique()), "n_spots": int(sum(s.n_spots for s in samples)),
              "description": spec.description, "anchor": spec.anchor, "controls": spec.controls,
              "simulate_seconds": simulate_s,
              "variance_shares": shares,
              "share_composition": shares["composition"],
              "share_pathway": sum(v for k, v in shares.items() if k.startswith("pathway_")),
              "share_context": shares["pathway_context"] + shares["pathway_long_range"],
              "share_offsets_and_noise": shares["pathway_patient"] + shares["pathway_slide_and_noise"],
              "hvg_composition_markers": int(sum(g in _markers() for g in hvg))}
    report.update(pathway_observability(sims))
    report.update(linear_sufficiency(meta, samples, sims, n_folds, seed))
    report.update(depth_figures(samples))
    report.update(study_figures(meta, samples, sims) if "ctranspath" in backbones and "gigapath" in backbones else {})
    if calibration:
        report["calibration"] = calibration_rows(meta, samples, sims, backbones, n_folds, seed)
    report["acceptance"] = acceptance(world, report)
    report["seconds"] = time.time() - t0
    return report


def _markers() -> set[str]:
    from .genes import MARKERS

    return {g for genes in MARKERS.values() for g in genes}


def acceptance(world: str, report: dict) -> list[dict]:
    """``ACCEPTANCE[world]`` checked against ``report``: one dict per figure with ``passed``."""
    out = []
    for figure, op, threshold, why in ACCEPTANCE.get(world, []):
        value = report.get(figure)
        ok = value is not None and (value >= threshold if op == ">=" else value <= threshold)
        out.append(dict(figure=figure, op=op, threshold=threshold, value=value, passed=bool(ok), why=why))
    return out


TRUTH_COLUMNS = ["world", "controls", "share_composition", "share_pathway", "share_context", "share_offsets_and_noise",
                 "share_hidden_programmes", "share_depth_capture", "observable_share", "patient_share", "pcc_latent_own", "pcc_latent_local", "pcc_all_truth",
                 "local_context_gain", "linear_sufficiency_gap", "depth_pc1_abs_r", "depth_morans_i",
                 "study_accuracy", "cross_study_ratio", "hvg_composition_markers", "acceptance_passed",
                 "simulate_seconds"]


CALIBRATION_COLUMNS = ["world", "backbone", "probe_pcc", "probe_pcc_context", "context_gain_relative", "anchor_read",
                       "anchor_coad", "probe_within_anchor", "gain_within_anchor", "anchor_source"]


def write_tables(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``truth.csv`` and ``calibration.csv`` in ``folder`` from every ``truth/<world>.json`` there."""
    rows, cal = [], []
    for path in sorted((folder / "truth").glob("*.json")):
        r = json.loads(path.read_text())
        row = {c: r.get(c) for c in TRUTH_COLUMNS}
        row["share_hidden_programmes"] = r["variance_shares"]["hidden_programmes"]
        row["share_depth_capture"] = r["variance_shares"]["depth_capture"]
        row["acceptance_passed"] = (all(a["passed"] for a in r["acceptance"]) if r.get("acceptance") else None)
        rows.append(row)
        for c in r.get("calibration", []):
            cal.append({"world": r["world"], **c})
    order = {w: i for i, w in enumerate(WORLDS)}
    truth = pd.DataFrame(rows, columns=TRUTH_COLUMNS).sort_values("world", key=lambda s: s.map(order))
    calib = pd.DataFrame(cal, columns=CALIBRATION_COLUMNS)
    if len(calib):
        calib = calib.sort_values(["world", "backbone"], key=lambda s: s.map(order) if s.name == "world" else s)
    truth.to_csv(folder / "truth.csv", index=False, float_format="%.4f")
    calib.to_csv(folder / "calibration.csv", index=False, float_format="%.4f")
    return truth, calib


def read_tables(folder: str | Path = "results/worlds") -> tuple[pd.DataFrame, pd.DataFrame]:
    """The committed ``truth.csv`` and ``calibration.csv`` (what the data chapter shows)."""
    folder = Path(folder)
    missing = [n for n in ("truth.csv", "calibration.csv") if not (folder / n).is_file()]
    if missing:
        raise FileNotFoundError(f"{', '.join(missing)} not in {folder}: run `python -m stflib truth --world all`")
    return pd.read_csv(folder / "truth.csv"), pd.read_csv(folder / "calibration.csv")


# -------------------------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--world", action="append", default=[], metavar="NAME",
                        help=f"world(s) to report (repeatable or comma-separated; 'all'): {', '.join(WORLDS)}")
    parser.add_argument("--preset", default="default", help=f"cohort size: {', '.join(PRESETS)}")
    parser.add_argument("--seed", type=int, default=0, help="cohort seed")
    parser.add_argument("--folds", type=int, default=3, help="patient-held-out folds of the probes")
    parser.add_argument("--out", default="results/worlds", help="folder of truth/<world>.json and the two tables")
    parser.add_argument("--no-calibration", action="store_true", help="skip the per-backbone calibration probes")


def run(args: argparse.Namespace) -> int:
    names = [w for item in (args.world or ["all"]) for w in str(item).split(",") if w]
    names = list(WORLDS) if "all" in names else names
    try:
        for w in names:
            WORLDS[w]  # an unknown world raises, naming the registered ones
        PRESETS[args.preset]
    except ValueError as err:
        print(f"error: {err}")
        return 2
    out = Path(args.out)
    (out / "truth").mkdir(parents=True, exist_ok=True)
    failed = []
    for w in names:
        print(f"world {w!r}: simulating {args.preset!r} (seed {args.seed}) in memory and measuring its truth ...",
              flush=True)
        r = truth_report(w, args.preset, args.seed, args.folds, calibration=not args.no_calibration)
        path = out / "truth" / f"{w}.json"
        tmp = path.with_suffix(f".tmp-{os.getpid()}")
        tmp.write_text(json.dumps(r, indent=1, default=float))
        os.replace(tmp, path)
        print(format_report(r), flush=True)
        failed += [f"{w}: {a['figure']}" for a in r["acceptance"] if not a["passed"]]
    truth, calib = write_tables(out)
    print(f"wrote {out / 'truth.csv'} ({len(truth)} worlds) and {out / 'calibration.csv'} ({len(calib)} rows)")
    if failed:
        print("acceptance NOT met: " + "; ".join(failed))
        return 1
    return 0


def format_report(r: dict) -> str:
    """A few lines per world: shares, observability, the gap, confounds, acceptance and calibration."""
    lines = [f"  simulated in {r['simulate_seconds']:.0f} s; report in {r['seconds']:.0f} s",
             f"  evaluated genes' variance: composition {r['share_composition']:.3f}, pathway programmes "
             f"{r['share_pathway']:.3f} (context {r['share_context']:.3f}, offsets and noise "
             f"{r['share_offsets_and_noise']:.3f}); hidden programmes {r['variance_shares']['hidden_programmes']:.3f}, "
             f"depth capture {r['variance_shares']['depth_capture']:.3f}",
             f"  pathway activity: observable {r['observable_share']:.3f}, patient offsets {r['patient_share']:.3f}",
             f"  ridge on truth vs expected expression: own latent {r['pcc_latent_own']:.3f}, + 6/18/60-nearest means "
             f"{r['pcc_latent_local']:.3f}, all of the truth {r['pcc_all_truth']:.3f} (gap "
             f"{r['linear_sufficiency_gap']:+.3f})",
             f"  depth: |r(PC1, log depth)| {r['depth_pc1_abs_r']:.3f}, Moran's I {r['depth_morans_i']:.3f}"]
    if "study_accuracy" in r:
        lines.append(f"  study: predicted from features {r['study_accuracy']:.3f}; ridge within {r['pcc_within_study']:.3f}, "
                     f"across {r['pcc_across_studies']:.3f} (ratio {r['cross_study_ratio']:.2f})")
    for a in r["acceptance"]:
        lines.append(f"  acceptance {a['figure']} {a['op']} {a['threshold']}: {a['value']:.3f} "
                     f"{'ok' if a['passed'] else 'NOT MET'} ({a['why']})")
    for c in r.get("calibration", []):
        lines.append(f"  {c['backbone']:10s} probe {c['probe_pcc']:.3f} [{c['anchor_read']:.3f}, {c['anchor_coad']:.3f}] "
                     f"{'in' if c['probe_within_anchor'] else 'OUT'}; context gain {100 * c['context_gain_relative']:+.1f} % "
                     f"{'in' if c['gain_within_anchor'] else 'OUT'}")
    return "\n".join(lines)
