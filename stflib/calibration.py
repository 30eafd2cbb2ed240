"""Calibration probes of a (simulated or real) HEST cohort: is the task neither trivial nor hopeless?

The book's data chapter calls these to show that the simulated cohort behaves like real HEST-1k
bowel data. All probes are model-free (never an STF model):

- ``probe_pcc``: HEST-Bench's linear probe (StandardScaler -> PCA(256) -> ridge with HEST-Bench's
  alpha = 100 / (n_components * n_genes)) from frozen features to log1p(CP10k) of the 50 most
  variable genes of the training patients, patient-held-out folds; the score is the mean over
  genes of the PCC across the pooled held-out spots, averaged over folds. ``context=True`` uses
  [own features, mean of the hex neighbours' features] instead (is spatial context informative?).
- ``noise_ceiling``: the same PCC between the simulator's expected expression (its ZINB mean)
  and the observed counts, same genes/transform/held-out spots: the best any predictor can do.
- ``pathway_morans_i``: Moran's I (hex-neighbour weights) of the true pathway fields per slide.
- ``calibration_report(data_dir)`` runs them all and returns a dict of figures.

Measured on the default preset, seed 0 (16 slides, 12 patients, 9,656 spots, 3 patient folds):
probe PCC (ctranspath stand-in) 0.378 (target 0.25-0.50); with [own, neighbour mean] 0.488
(context gain +0.110, target >= 0.03); noise ceiling 0.624 (clearly < 1); Moran's I of the true
pathway fields: median 0.87, 50/50 >= 0.3; median UMIs per spot 6,374; 69% zero entries.
Probe PCC by stand-in backbone: resnet50 0.290, ctranspath 0.378, phikon 0.388, hibou-b 0.386,
hibou-l 0.434, gigapath 0.446 (HEST-Bench's ordering).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from . import data as stdata


# ----------------------------------------------------------------------------------------- loading
def load_cohort(data_dir: str | Path, backbone: str | None = "ctranspath",
                sample_ids: Sequence[str] | None = None) -> tuple[pd.DataFrame, list]:
    """(metadata DataFrame, list of ``HestSample``) for every sample of ``data_dir/metadata.csv``."""
    data_dir = Path(data_dir)
    meta_path = data_dir / "metadata.csv"
    if not meta_path.is_file():
        raise FileNotFoundError(f"no metadata.csv in {data_dir}: is it a HEST-layout cohort?")
    meta = pd.read_csv(meta_path)
    if sample_ids is not None:
        meta = meta[meta["id"].astype(str).isin([str(s) for s in sample_ids])]
    samples = [stdata.read_hest_sample(data_dir, str(sid), backbone=backbone) for sid in meta["id"]]
    return meta.reset_index(drop=True), samples


def gene_columns(sample, genes: Sequence[str]) -> np.ndarray:
    """Column index of each of ``genes`` in ``sample.genes`` (-1 where absent)."""
    index = {str(g): i for i, g in enumerate(sample.genes)}
    return np.array([index.get(str(g), -1) for g in genes])


def log_cp10k(sample, genes: Sequence[str], expected: bool = False) -> np.ndarray:
    """log1p(CP10k) of ``genes`` (library = all genes) from counts, or from the true expected counts."""
    cols = gene_columns(sample, genes)
    if expected:
        if "expected_counts" not in sample.truth:
            raise ValueError(f"sample {sample.sample_id} has no simulator truth (layers['expected_counts'])")
        mat = np.asarray(sample.truth["expected_counts"], np.float64)
    else:
        mat = sample.counts
    library = np.asarray(mat.sum(1), np.float64).reshape(-1)
    scale = np.divide(1e4, library, out=np.zeros_like(library), where=library > 0)
    out = np.zeros((len(library), len(cols)), np.float64)
    ok = cols >= 0
    sub = mat[:, cols[ok]]
    sub = sub.toarray() if hasattr(sub, "toarray") else np.asarray(sub)
    out[:, ok] = np.log1p(sub * scale[:, None])
    return out


def spot_pitch_px(sample) -> float:
    """Centre-to-centre spot distance in full-res pixels (Visium: 100 um), from the metadata or coords."""
    pitch_um = float(sample.metadata.get("inter_spot_dist", 100.0) or 100.0)
    if np.isfinite(sample.pixel_size_um) and sample.pixel_size_um > 0:
        return pitch_um / sample.pixel_size_um
    from scipy.spatial import cKDTree

    d, _ = cKDTree(sample.coords).query(sample.coords, k=2)
    return float(np.median(d[:, 1]))


def neighbour_mean(values: np.ndarray, coords: np.ndarray, pitch: float) -> np.ndarray:
    """Mean of each spot's hex neighbours' rows of ``values`` (its own row when it has none)."""
    from .simulate import hex_neighbours

    adj = hex_neighbours(np.asarray(coords, np.float64), pitch)
    deg = np.asarray(adj.sum(1)).reshape(-1)
    nb = adj @ values
    out = np.array(values, dtype=np.float64, copy=True)
    has = deg > 0
    out[has] = nb[has] / deg[has, None]
    return out


# ------------------------------------------------------------------------------------------ probes
def ridge_probe(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, n_components: int = 256) -> np.ndarray:
    """HEST-Bench's probe: StandardScaler -> PCA(n_components) -> Ridge(alpha=100/(d * n_targets))."""
    from sklearn.decomposition import PCA
    from sklearn.linear_model import Ridge
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x_train)
    xtr, xte = scaler.transform(x_train), scaler.transform(x_test)
    k = int(min(n_components, xtr.shape[0], xtr.shape[1]))
    solver = "covariance_eigh" if xtr.shape[0] > 2 * xtr.shape[1] else "full"  # both exact; fastest for the shape
    pca = PCA(n_components=k, svd_solver=solver).fit(xtr)
    xtr, xte = pca.transform(xtr), pca.transform(xte)
    reg = Ridge(alpha=100.0 / (k * y_train.shape[1]), fit_intercept=True).fit(xtr, y_train)
    return reg.predict(xte)


def pearson_per_gene(y: np.ndarray, y_hat: np.ndarray) -> np.ndarray:
    """PCC per column; NaN where either side is constant."""
    y, y_hat = np.asarray(y, np.float64), np.asarray(y_hat, np.float64)
    yc, hc = y - y.mean(0), y_hat - y_hat.mean(0)
    den = np.sqrt((yc ** 2).sum(0) * (hc ** 2).sum(0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (yc * hc).sum(0) / den, np.nan)


def _folds(meta: pd.DataFrame, n_folds: int, seed: int) -> list[tuple[list[str], list[str]]]:
    return stdata.patient_folds(meta, n_folds, seed=seed)


def _fold_hvgs(train: list, n_hvg: int) -> list[str]:
    _, hvg = stdata.select_genes(train, n_genes=1000, n_hvg=n_hvg)
    return hvg


def _stack(samples: list, fn) -> np.ndarray:
    return np.concatenate([fn(s) for s in samples], 0)


def _inputs(sample, context: bool) -> np.ndarray:
    x = np.asarray(sample.features, np.float64)
    if not context:
        return x
    return np.concatenate([x, neighbour_mean(x, sample.coords, spot_pitch_px(sample))], 1)


def _qc(sample) -> np.ndarray:
    return stdata.qc_mask(sample.counts, sample.genes)


def probe_pcc(meta: pd.DataFrame, samples: list, n_folds: int = 3, context: bool = False, n_hvg: int = 50,
              seed: int = 0, n_components: int = 256) -> dict:
    """The HEST-Bench probe on patient-held-out folds (see the module docstring).

    Returns ``{'pcc': mean over folds of the mean over genes, 'per_fold': [...], 'per_gene':
    {gene: mean PCC over the folds where it was an HVG}}``.
    """
    by_id = {s.sample_id: s for s in samples}
    missing = [s.sample_id for s in samples if s.features is None]
    if missing:
        raise ValueError(f"samples without features (read them with a backbone): {missing[:5]}")
    per_fold, per_gene = [], {}
    for train_ids, test_ids in _folds(meta, n_folds, seed):
        train = [by_id[str(i)] for i in train_ids]
        test = [by_id[str(i)] for i in test_ids]
        hvg = _fold_hvgs(train, n_hvg)
        xtr = _stack(train, lambda s: _inputs(s, context)[_qc(s)])
        ytr = _stack(train, lambda s: log_cp10k(s, hvg)[_qc(s)])
        xte = _stack(test, lambda s: _inputs(s, context)[_qc(s)])
        yte = _stack(test, lambda s: log_cp10k(s, hvg)[_qc(s)])
        r = pearson_per_gene(yte, ridge_probe(xtr, ytr, xte, n_components))
        per_fold.append(float(np.nanmean(r)))
        for g, v in zip(hvg, r):
            per_gene.setdefault(g, []).append(v)
    return {"pcc": float(np.mean(per_fold)), "per_fold": per_fold,
            "per_gene": {g: float(np.nanmean(v)) for g, v in per_gene.items()}}


def noise_ceiling(meta: pd.DataFrame, samples: list, n_folds: int = 3, n_hvg: int = 50, seed: int = 0) -> dict:
    """PCC between the true expected expression and the observed counts (same genes, transform and
    held-out spots as ``probe_pcc``): the best a predictor of the spot's expected expression can get."""
    by_id = {s.sample_id: s for s in samples}
    per_fold = []
    for train_ids, test_ids in _folds(meta, n_folds, seed):
        train = [by_id[str(i)] for i in train_ids]
        test = [by_id[str(i)] for i in test_ids]
        hvg = _fold_hvgs(train, n_hvg)
        y = _stack(test, lambda s: log_cp10k(s, hvg)[_qc(s)])
        y_true = _stack(test, lambda s: log_cp10k(s, hvg, expected=True)[_qc(s)])
        per_fold.append(float(np.nanmean(pearson_per_gene(y, y_true))))
    return {"pcc": float(np.mean(per_fold)), "per_fold": per_fold}


def morans_i(values: np.ndarray, coords: np.ndarray, pitch: float) -> np.ndarray:
    """Moran's I of each column of ``values`` (N, P) with binary hex-neighbour weights."""
    from .simulate import hex_neighbours

    w = hex_neighbours(np.asarray(coords, np.float64), pitch)
    z = np.asarray(values, np.float64)
    z = z - z.mean(0)
    num = (z * (w @ z)).sum(0)
    den = (z ** 2).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, len(z) / w.sum() * num / den, np.nan)


def pathway_morans_i(samples: list) -> pd.Series:
    """Mean over slides of Moran's I of each true pathway activity field (simulator truth)."""
    rows, names = [], None
    for s in samples:
        if "pathway_activity" not in s.truth:
            raise ValueError(f"sample {s.sample_id} has no true pathway activities (not simulated?)")
        names = s.truth_names.get("pathway_activity") or [f"P{i}" for i in range(s.truth["pathway_activity"].shape[1])]
        rows.append(morans_i(s.truth["pathway_activity"], s.coords, spot_pitch_px(s)))
    return pd.Series(np.nanmean(np.stack(rows), 0), index=names, name="morans_i")


def counts_summary(samples: list) -> dict:
    """Median UMIs per spot, fraction of zero entries, median per-gene detection rate, overdispersion."""
    lib = np.concatenate([np.asarray(s.counts.sum(1)).reshape(-1) for s in samples])
    nnz = sum(s.counts.nnz for s in samples)
    total = sum(s.counts.shape[0] * s.counts.shape[1] for s in samples)
    s = samples[0]
    x = s.counts
    mean = np.asarray(x.mean(0)).reshape(-1)
    var = np.asarray(x.multiply(x).mean(0)).reshape(-1) - mean ** 2
    expressed = mean > 0.1
    return {"median_umis": float(np.median(lib)), "zero_fraction": float(1 - nnz / total),
            "median_gene_detection": float(np.median(np.asarray((x > 0).mean(0)).reshape(-1))),
            "overdispersed_fraction": float(np.mean(var[expressed] > mean[expressed]))}


def calibration_report(data_dir: str | Path, backbone: str = "ctranspath", n_folds: int = 3, seed: int = 0,
                       backbones: Sequence[str] | None = None) -> dict:
    """All calibration figures of a cohort as a dict (see the module docstring).

    Keys: ``probe_pcc`` (own features), ``probe_pcc_context`` ([own, neighbour mean]),
    ``context_gain``, ``noise_ceiling`` (simulated cohorts only), ``morans_i`` (per pathway),
    ``morans_i_fraction_ge_0.3``, ``median_umis``, ``zero_fraction``, ``n_samples``, ``n_spots``,
    ``n_patients``, ``seconds``; with ``backbones``, ``probe_pcc_by_backbone``.
    """
    t0 = time.time()
    meta, samples = load_cohort(data_dir, backbone=backbone)
    own = probe_pcc(meta, samples, n_folds=n_folds, seed=seed)
    ctx = probe_pcc(meta, samples, n_folds=n_folds, seed=seed, context=True)
    report = {
        "data_dir": str(data_dir), "backbone": backbone, "n_folds": n_folds,
        "n_samples": len(samples), "n_spots": int(sum(len(s.barcodes) for s in samples)),
        "n_patients": int(stdata.patient_groups(meta).nunique()),
        "probe_pcc": own["pcc"], "probe_pcc_per_fold": own["per_fold"],
        "probe_pcc_context": ctx["pcc"], "context_gain": ctx["pcc"] - own["pcc"],
        "probe_pcc_per_gene": own["per_gene"],
    }
    report.update(counts_summary(samples))
    if all("expected_counts" in s.truth for s in samples):
        report["noise_ceiling"] = noise_ceiling(meta, samples, n_folds=n_folds, seed=seed)["pcc"]
    if all("pathway_activity" in s.truth for s in samples):
        mi = pathway_morans_i(samples)
        report["morans_i"] = {k: float(v) for k, v in mi.items()}
        report["morans_i_median"] = float(mi.median())
        report["morans_i_fraction_ge_0.3"] = float((mi >= 0.3).mean())
    if backbones:
        by = {}
        for name in backbones:
            m, ss = load_cohort(data_dir, backbone=name)
            by[name] = probe_pcc(m, ss, n_folds=n_folds, seed=seed)["pcc"]
        report["probe_pcc_by_backbone"] = by
    report["seconds"] = time.time() - t0
    return report
