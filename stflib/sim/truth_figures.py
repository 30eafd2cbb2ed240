"""The figures of a world's truth report (``stflib.sim.truth``), each measured on the simulator's truth
before any model: the cohort simulated in memory, (1) variance shares of the evaluated genes by driver,
(2) how observable the pathway activities are, (3) the linear-sufficiency gap, (4) the real-data
confounds (depth, study) and (5) each backbone stand-in's calibration against its published range.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from .. import metrics, spatial
from .anchors import BOWEL_TOLERANCE, CONTEXT_GAIN_RANGE, HEST_BENCH_BOWEL, NEIGHBOURHOODS
from .biology import CELL_TYPES, biology
from .calibration import _fold_hvgs, _qc, log_cp10k
from .tissue import _long_range_fields, depth_capture
from .worlds import BACKBONES, PRESETS, WORLDS


# ------------------------------------------------------------------------------------- the cohort
def simulate_in_memory(world: str, preset: str = "default", seed: int = 0,
                       backbones: Sequence[str] | None = None) -> tuple[pd.DataFrame, list, list[dict]]:
    """(metadata, ``HestSample`` per slide with the features of ``backbones[0]``, the simulator's
    per-slide dicts) of ``world``'s cohort, simulated without patches and without writing files."""
    from ..data.hest import HestSample
    from .cohort import _cohort_plan, simulate_slide
    from .tissue import PIXEL_SIZE_UM

    spec = WORLDS[world]
    backbones = list(backbones if backbones is not None else BACKBONES)
    sims, samples, rows = [], [], []
    for plan in _cohort_plan(PRESETS[preset], seed, spec.n_studies):
        sim = simulate_slide(plan, seed, preset, with_patches=False, backbones=backbones, world=world)
        a = sim["adata"]
        sim["plan"] = plan
        sims.append(sim)
        samples.append(HestSample(
            sample_id=plan["id"], counts=a.X.tocsr(), genes=np.asarray(a.var_names, str),
            barcodes=np.asarray(a.obs_names, str), coords=np.asarray(a.obsm["spatial"], np.float64),
            pixel_size_um=PIXEL_SIZE_UM, metadata=sim["meta"],
            features=sim["features"][backbones[0]] if backbones else None,
            truth={"pathway_activity": np.asarray(a.obsm["true_pathway_activity"], np.float32),
                   "expected_counts": sim["expected"], "composition": np.asarray(a.obsm["true_composition"])},
            truth_names={"pathway_activity": [str(n) for n in a.uns["true_pathway_names"]]}))
        rows.append(sim["meta"])
    return pd.DataFrame(rows), samples, sims


def with_features(samples: list, sims: list[dict], backbone: str) -> list:
    """The same samples carrying ``backbone``'s stand-in features."""
    from dataclasses import replace

    return [replace(s, features=sim["features"][backbone]) for s, sim in zip(samples, sims)]


# --------------------------------------------------------------------------- 1. variance shares
SOURCES = ("composition", "pathway_composition", "pathway_context", "pathway_long_range", "pathway_patient",
           "pathway_slide_and_noise", "hidden_programmes", "depth_capture")


def log_rate_terms(sim: dict, world: str) -> dict[str, np.ndarray]:
    """The additive terms (N, G) of one slide's log expression rate, by source (``SOURCES``)."""
    from .biology import hidden_programmes

    spec = WORLDS[world]
    bio = biology()
    tissue = sim["tissue"]
    profiles = sim["study"]["profiles"]  # the study's perturbation of the cell-type profiles, as simulated
    log_profiles = bio.log_profiles if profiles is None else bio.log_profiles + profiles
    terms = {"composition": np.log(tissue["composition"] @ np.exp(log_profiles).T)}
    load = spec.hallmark_scale * bio.pathway_loadings.T  # (P, G)
    for part, values in tissue["activity_parts"].items():
        terms[f"pathway_{part}"] = values @ load
    n, g = terms["composition"].shape
    terms["hidden_programmes"] = np.zeros((n, g))
    if spec.hidden_programmes:
        _, hidden_load = hidden_programmes(spec.hidden_programmes)
        terms["hidden_programmes"] = spec.hidden_scale * (tissue["hidden_activity"] @ hidden_load.T)
    log_lib = np.log(np.asarray(sim["adata"].obs["true_library_size"], np.float64))
    terms["depth_capture"] = np.broadcast_to(depth_capture(bio, log_lib, spec), (n, g))
    return terms


def variance_shares(samples: list, sims: list[dict], world: str, genes: Sequence[str]) -> dict:
    """Mean over ``genes`` of each source's share of the variance of log1p(CP10k expected), pooled spots."""
    ys, terms = [], {k: [] for k in SOURCES}
    for s, sim in zip(samples, sims):
        index = {g: i for i, g in enumerate(s.genes)}
        cols = np.array([index[g] for g in genes])
        keep = _qc(s)
        ys.append(log_cp10k(s, genes, expected=True)[keep])
        for k, v in log_rate_terms(sim, world).items():
            terms[k].append(v[keep][:, cols])
    y = np.concatenate(ys)
    yc = y - y.mean(0)
    var = (yc ** 2).mean(0)
    shares = {}
    for k in SOURCES:
        t = np.concatenate(terms[k])
        shares[k] = float(np.mean(((t - t.mean(0)) * yc).mean(0) / var))
    shares["normalisation_residual"] = 1.0 - sum(shares.values())
    return shares


# ------------------------------------------------------------------- 2. observability of pathways
def pathway_observability(sims: list[dict]) -> dict:
    """Observable share and patient share of the true pathway activity, mean over the 50 pathways."""
    bio = biology()
    parts = {k: np.concatenate([sim["tissue"]["activity_parts"][k] for sim in sims])
             for k in sims[0]["tissue"]["activity_parts"]}
    act = sum(parts.values())
    ac = act - act.mean(0)
    var = (ac ** 2).mean(0)

    def share(x):
        return ((x - x.mean(0)) * ac).mean(0) / np.maximum(var, 1e-12)

    observable = share(parts["composition"] + parts["context"] + parts["long_range"])
    observable[bio.visible] = 1.0  # in the latent morphology itself: everything an own patch shows
    patient = share(parts["patient"])
    return {"observable_share": float(observable.mean()), "patient_share": float(patient.mean()),
            "observable_share_per_pathway": dict(zip(bio.pathway_names, observable.round(4).tolist()))}


# --------------------------------------------------------------------- 3. linear sufficiency gap
def truth_inputs(sample, sim: dict, n_neighbors: Sequence[int] = NEIGHBOURHOODS) -> dict[str, np.ndarray]:
    """Per-spot inputs built from the truth: ``local`` = [latent, mean latent of each k nearest] and
    ``all`` = that plus the true local context fields, the long-range fields (computed from the truth
    in every world, driving nothing where the world has none) and own-content x neighbourhood products."""
    a = sim["adata"]
    latent = np.asarray(a.obsm["true_latent_morphology"], np.float64)
    xy = sample.coords
    local = [latent] + [spatial.knn_mean(latent, xy, k) for k in n_neighbors]
    comp = np.asarray(a.obsm["true_composition"], np.float64)
    compart = np.asarray(a.obsm["true_compartments"], np.float64)
    ctx = np.asarray(a.obsm["true_context"], np.float64)
    ci = {c: i for i, c in enumerate(CELL_TYPES)}
    tumour = comp[:, ci["tumour_epithelial"]]
    immune = comp[:, ci["T_cell"]] + comp[:, ci["B_cell"]]
    if "true_long_range_context" in a.obsm:
        long_range = np.asarray(a.obsm["true_long_range_context"], np.float64)
    else:  # the same fields, from this slide's truth (no lymphoid structures: their field is 0)
        xy_um = xy * 0.5
        none = {"distance": np.full((len(xy), 1), np.inf), "decay_um": np.ones(1)}
        long_range = _long_range_fields(xy_um, compart, tumour, immune, none, 0.0)
    slide_mean = np.tile(comp.mean(0), (len(comp), 1))
    products = tumour[:, None] * np.concatenate([ctx, long_range], 1)
    return {"local": np.concatenate(local, 1),
            "all": np.concatenate(local + [ctx, long_range, products, slide_mean], 1)}


def linear_sufficiency(meta: pd.DataFrame, samples: list, sims: list[dict], n_folds: int = 3, seed: int = 0) -> dict:
    """Held-out-patient PCC against the expected expression: ridge on the local truth vs on all of it."""
    from .calibration import probe_pcc

    inputs = {s.sample_id: truth_inputs(s, sim) for s, sim in zip(samples, sims)}
    latent = {s.sample_id: np.asarray(sim["adata"].obsm["true_latent_morphology"], np.float64)
              for s, sim in zip(samples, sims)}
    out = {}
    for name, fn in (("pcc_latent_own", lambda s: latent[s.sample_id]),
                     ("pcc_latent_local", lambda s: inputs[s.sample_id]["local"]),
                     ("pcc_all_truth", lambda s: inputs[s.sample_id]["all"])):
        out[name] = probe_pcc(meta, samples, n_folds=n_folds, seed=seed, inputs=fn, target="expected")["pcc"]
    out["local_context_gain"] = out["pcc_latent_local"] - out["pcc_latent_own"]
    out["linear_sufficiency_gap"] = out["pcc_all_truth"] - out["pcc_latent_local"]
    return out


# ------------------------------------------------------------------------ 4. real-data confounds
def hallmark_scores(sample) -> np.ndarray:
    """(N_qc, P) Hallmark scores the upstream way: log1p(CP10k), z-score per gene within the slide, mean
    over each pathway's member genes (``stflib.pathways.pathway_targets``); QC-passed spots."""
    from .. import pathways as P

    expr = log_cp10k(sample, sample.genes)[_qc(sample)]
    membership = P.membership_matrix(P.hallmarks(), sample.genes)
    return P.pathway_targets(expr, membership.matrix)


def depth_figures(samples: list) -> dict:
    """Median over slides of |r(PC1 of the Hallmark scores, log depth)| and of Moran's I of log depth."""
    from .calibration import morans_i, spot_pitch_px

    rs, mis = [], []
    for s in samples:
        keep = _qc(s)
        depth = np.log(np.asarray(s.counts[keep].sum(1)).ravel())
        scores = hallmark_scores(s)
        z = scores - scores.mean(0)
        pc1 = np.linalg.svd(z, full_matrices=False)[0][:, 0]
        rs.append(abs(np.corrcoef(pc1, depth)[0, 1]))
        mis.append(float(morans_i(depth[:, None], s.coords[keep], spot_pitch_px(s))[0]))
    return {"depth_pc1_abs_r": float(np.median(rs)), "depth_morans_i": float(np.median(mis))}


def _study(meta: pd.DataFrame) -> pd.Series:
    return pd.Series(meta["dataset_title"].astype(str).to_numpy(), index=meta["id"].astype(str))


def study_figures(meta: pd.DataFrame, samples: list, sims: list[dict], backbone_study: str = "ctranspath",
                  backbone_probe: str = "gigapath") -> dict:
    """The study's predictability from ``backbone_study`` features (spot-level accuracy of a logistic
    regression on PCA-50, patient-held-out folds) and the cross-study ratio of ``backbone_probe``'s
    ridge: for each patient, PCC on its spots of a probe trained on the other patients of its study
    (within) and of one trained on the other studies (across); ratio of the means."""
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from ..data import patient_groups
    from .calibration import ridge_probe

    study = _study(meta)
    if study.nunique() < 2:
        return {}
    groups = patient_groups(meta)
    ids = [s.sample_id for s in samples]
    feats = {s.sample_id: sim["features"][backbone_study] for s, sim in zip(samples, sims)}
    correct, total = 0, 0
    patients = sorted(groups.unique())
    for k in range(3):  # 3 patient-held-out folds
        test_p = set(patients[k::3])
        tr = [i for i in ids if groups[i] not in test_p]
        te = [i for i in ids if groups[i] in test_p]
        xtr = np.concatenate([feats[i] for i in tr])
        ytr = np.concatenate([[study[i]] * len(feats[i]) for i in tr])
        clf = make_pipeline(StandardScaler(), PCA(50, random_state=0), LogisticRegression(max_iter=500))
        clf.fit(xtr, ytr)
        for i in te:
            correct += int((clf.predict(feats[i]) == study[i]).sum())
            total += len(feats[i])
    by_id = {s.sample_id: s for s in with_features(samples, sims, backbone_probe)}
    hvg = _fold_hvgs(samples, 50)  # the evaluated genes of the whole cohort
    within, across = [], []
    for p in patients:
        test = [i for i in ids if groups[i] == p]
        st = study[test[0]]
        same = [i for i in ids if study[i] == st and groups[i] != p]
        other = [i for i in ids if study[i] != st]
        y = np.concatenate([log_cp10k(by_id[i], hvg)[_qc(by_id[i])] for i in test])
        xte = np.concatenate([by_id[i].features[_qc(by_id[i])] for i in test])
        for train, sink in ((same, within), (other, across)):
            xtr = np.concatenate([by_id[i].features[_qc(by_id[i])] for i in train])
            ytr = np.concatenate([log_cp10k(by_id[i], hvg)[_qc(by_id[i])] for i in train])
            sink.append(float(np.nanmean(metrics.pearson_columns(ridge_probe(xtr, ytr, xte), y))))
    return {"study_accuracy": correct / total, "pcc_within_study": float(np.mean(within)),
            "pcc_across_studies": float(np.mean(across)),
            "cross_study_ratio": float(np.mean(across) / np.mean(within))}


# --------------------------------------------------------------------------------- 5. calibration
def calibration_rows(meta: pd.DataFrame, samples: list, sims: list[dict], backbones: Sequence[str],
                     n_folds: int = 3, seed: int = 0) -> list[dict]:
    """HEST-Bench's ridge per stand-in, own features and [own, mean of the 6 nearest], against anchors."""
    from .calibration import probe_pcc

    rows = []
    for name in backbones:
        ss = with_features(samples, sims, name)
        own = probe_pcc(meta, ss, n_folds=n_folds, seed=seed)["pcc"]
        ctx = probe_pcc(meta, ss, n_folds=n_folds, seed=seed, context=True, n_neighbors=6)["pcc"]
        read, coad, source = HEST_BENCH_BOWEL[name]
        gain = ctx / own - 1.0
        rows.append(dict(backbone=name, probe_pcc=own, probe_pcc_context=ctx, context_gain_relative=gain,
                         anchor_read=read, anchor_coad=coad,
                         probe_within_anchor=bool(read - BOWEL_TOLERANCE <= own <= coad + BOWEL_TOLERANCE),
                         gain_within_anchor=bool(CONTEXT_GAIN_RANGE[0] <= gain <= CONTEXT_GAIN_RANGE[1]),
                         anchor_source=source))
    return rows
