"""Calibration probes of a (simulated or real) HEST cohort: is the task neither trivial nor hopeless?

The book's data chapter calls these to show, per simulator world, how the simulated cohort
compares with real anchors. All probes are model-free (never an STF model) and all use ONE ridge
probe, ``stflib.models.baselines.RidgeProbe`` (HEST-Bench's StandardScaler -> PCA(256) -> ridge with
alpha = 100 / (n_components * n_genes)), the same model as the ``ridge_probe`` baseline arm:

- ``probe_pcc``: the probe from frozen features to log1p(CP10k) of the 50 most variable genes of
  the training patients, patient-held-out folds; the score is the mean over genes of the PCC across
  the pooled held-out spots (``stflib.metrics.pearson_columns``, the runs' PCC), averaged over
  folds. ``context=True`` uses [own features, mean of the k = 6 nearest neighbours' features]
  (``stflib.spatial.with_neighbour_mean``), the input of the context-matched baseline arms;
  ``inputs`` takes any per-sample input (the noise-free latent, the true context fields ...).
- ``noise_ceiling``: the same PCC between the simulator's expected expression (its ZINB mean) and
  the observed counts: the best any predictor can do. ``latent`` inputs give the second ceiling:
  what the images can tell at most (ridge on the noise-free morphology latent).
- ``pathway_ceiling``: the probe from inputs to the 50 true pathway activities (held-out patients),
  the ceiling against which ``pathway_pcc_truth`` is read; ``pathway_visibility`` classifies each
  pathway as visible in morphology, visible only through context, or invisible.
- ``morans_i`` / ``pathway_morans_i``: spatial autocorrelation (hex-neighbour weights).
- ``calibration_report(data_dir)`` runs them all; ``anchor_table(report)`` sets each figure beside
  its real anchor (``ANCHORS``) with the anchor's source.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from .. import data as stdata
from .. import spatial
from .. import metrics

# Real anchors of the calibration: (low, high) and where the range comes from.
ANCHORS: dict[str, tuple[float, float, str]] = {
    "probe_pcc": (0.08, 0.31, "HEST-Bench (Jaume et al. 2024) ridge leaderboard 08.30.24, bowel tasks: from READ "
                  "with ResNet50 (0.081) to COAD with Virchow (0.311), mean PCC over 50 HVGs; per encoder see "
                  "stflib.sim.truth.HEST_BENCH_BOWEL"),
    "context_gain_relative": (0.10, 0.20, "STFlow (Huang et al., ICML 2025): spatial context over spot-only "
                              "foundation-model probes on HEST-1k, about +18 % relative; target +10-20 %"),
    "median_umis": (3000.0, 20000.0, "Visium CRC sections in HEST-1k: median UMIs per spot 3k-20k"),
    "zero_fraction": (0.6, 0.95, "Visium raw count matrices: 60-95 % zero entries"),
}


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
    from stflib.data.decoded import read_sample  # names an unreadable file

    samples = [read_sample(data_dir, str(sid), backbone=backbone, cache=False) for sid in meta["id"]]
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
    return spatial.spot_pitch(sample.coords)


def truth_obsm(data_dir: str | Path, sample, key: str) -> np.ndarray:
    """``obsm[key]`` of a simulated sample's h5ad, rows aligned with ``sample.barcodes``."""
    import anndata as ad

    a = ad.read_h5ad(Path(data_dir) / "st" / f"{sample.sample_id}.h5ad", backed="r")
    if key not in a.obsm:
        raise ValueError(f"sample {sample.sample_id} has no obsm[{key!r}] (not simulated, or an older simulator); "
                         f"present: {', '.join(a.obsm.keys())}")
    rows = a.obs_names.get_indexer([str(b) for b in sample.barcodes])
    if (rows < 0).any():
        raise ValueError(f"sample {sample.sample_id}: {int((rows < 0).sum())} barcodes not in its h5ad")
    return np.asarray(a.obsm[key], np.float64)[rows]


# ------------------------------------------------------------------------------------------ probes
def ridge_probe(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, n_components: int = 256) -> np.ndarray:
    """HEST-Bench's probe, fit and applied: ``RidgeProbe`` exactly as the ``ridge_probe`` baseline arm builds
    it (no intercept, HEST-Bench's setting: the PCA scores are centred, so an intercept would only add
    the training mean to every prediction, which no PCC sees, up to the lsqr solver's tolerance)."""
    from ..models.baselines import RidgeProbe

    return RidgeProbe(n_components=n_components).fit(x_train, y_train).predict(x_test)


def _folds(meta: pd.DataFrame, n_folds: int, seed: int) -> list[tuple[list[str], list[str]]]:
    return stdata.patient_folds(meta, n_folds, seed=seed)


def _fold_hvgs(train: list, n_hvg: int) -> list[str]:
    _, hvg = stdata.select_genes(train, n_genes=1000, n_hvg=n_hvg)
    return hvg


def _stack(samples: list, fn) -> np.ndarray:
    return np.concatenate([fn(s) for s in samples], 0)


def _inputs(sample, context: bool, n_neighbors: int = 6) -> np.ndarray:
    x = np.asarray(sample.features, np.float64)
    return spatial.with_neighbour_mean(x, sample.coords, n_neighbors) if context else x


def _qc(sample) -> np.ndarray:
    return stdata.qc_mask(sample.counts, sample.genes)


def probe_pcc(meta: pd.DataFrame, samples: list, n_folds: int = 3, context: bool = False, n_hvg: int = 50,
              seed: int = 0, n_components: int = 256, inputs=None, n_neighbors: int = 6,
              target: str = "counts") -> dict:
    """The HEST-Bench probe on patient-held-out folds (see the module docstring).

    ``inputs``: None (the samples' features; with ``context`` [own, mean of the ``n_neighbors``
    nearest]) or a callable ``sample -> (N, F)`` array. ``target``: ``counts`` (the measurement) or
    ``expected`` (the simulator's expected counts, for probes of what the truth can tell). Returns ``{'pcc': mean over folds of the mean
    over genes, 'per_fold': [...], 'per_gene': {gene: mean PCC over the folds where it was an HVG}}``.
    """
    if target not in ("counts", "expected"):
        raise ValueError(f"target {target!r}; allowed: counts, expected")
    expected = target == "expected"
    by_id = {s.sample_id: s for s in samples}
    if inputs is None:
        missing = [s.sample_id for s in samples if s.features is None]
        if missing:
            raise ValueError(f"samples without features (read them with a backbone): {missing[:5]}")
        inputs = lambda s: _inputs(s, context, n_neighbors)  # noqa: E731
    per_fold, per_gene = [], {}
    for train_ids, test_ids in _folds(meta, n_folds, seed):
        train = [by_id[str(i)] for i in train_ids]
        test = [by_id[str(i)] for i in test_ids]
        hvg = _fold_hvgs(train, n_hvg)
        xtr = _stack(train, lambda s: inputs(s)[_qc(s)])
        ytr = _stack(train, lambda s: log_cp10k(s, hvg, expected=expected)[_qc(s)])
        xte = _stack(test, lambda s: inputs(s)[_qc(s)])
        yte = _stack(test, lambda s: log_cp10k(s, hvg, expected=expected)[_qc(s)])
        # the runs' PCC: NaN for a gene constant over the held-out spots (skipped by the nan-means), 0 for a
        # constant prediction (it explains nothing)
        r = metrics.pearson_columns(ridge_probe(xtr, ytr, xte, n_components), yte)
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
        per_fold.append(float(np.nanmean(metrics.pearson_columns(y_true, y))))
    return {"pcc": float(np.mean(per_fold)), "per_fold": per_fold}


def morans_i(values: np.ndarray, coords: np.ndarray, pitch: float) -> np.ndarray:
    """Moran's I of each column of ``values`` (N, P) with binary hex-neighbour weights."""
    w = spatial.hex_neighbours(coords, pitch)
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


def expression_morans_i(samples: list, genes: Sequence[str]) -> pd.Series:
    """Mean over slides of Moran's I of log1p(CP10k) of ``genes`` (QC-passed spots)."""
    rows = []
    for s in samples:
        keep = _qc(s)
        rows.append(morans_i(log_cp10k(s, genes)[keep], np.asarray(s.coords)[keep], spot_pitch_px(s)))
    return pd.Series(np.nanmean(np.stack(rows), 0), index=list(genes), name="morans_i")


def _percentiles(values: np.ndarray) -> dict:
    return {"median": float(np.nanmedian(values)), "p90": float(np.nanpercentile(values, 90))}


def real_morans_i(shared_data: str | Path) -> dict:
    """Median and 90th percentile of Moran's I (hex-neighbour weights) of the genes of the real Visium sections in
    ``shared_data/real_st`` (each as shipped, log-normalised or z-scored: Moran's I is scale-free);
    {} when the folder is absent."""
    import anndata as ad

    out = {}
    root = Path(shared_data) / "real_st"
    brain = root / "squidpy_mouse_brain" / "test_data.h5ad"
    if brain.is_file():
        a = ad.read_h5ad(brain)
        x = a.X.toarray() if hasattr(a.X, "toarray") else np.asarray(a.X)
        xy = np.asarray(a.obsm["spatial"], np.float64)
        out["squidpy_mouse_brain (49 spots, 1,999 genes)"] = _percentiles(morans_i(x, xy, spatial.spot_pitch(xy)))
    breast = root / "stlearn_breast" / "test_data.h5"
    if breast.is_file():
        try:
            a = ad.read_h5ad(breast)
        except Exception:  # noqa: BLE001  (not an AnnData file: skip this anchor)
            a = None
        if a is not None and "spatial" in a.obsm:
            x = a.X.toarray() if hasattr(a.X, "toarray") else np.asarray(a.X)
            xy = np.asarray(a.obsm["spatial"], np.float64)
            out["stlearn_breast (316 spots, 100 genes)"] = _percentiles(morans_i(x, xy, spatial.spot_pitch(xy)))
    return out


def pathway_ceiling(meta: pd.DataFrame, samples: list, inputs, n_folds: int = 3, seed: int = 0,
                    n_components: int = 256) -> dict:
    """The probe from ``inputs(sample)`` to the 50 true pathway activities, patient-held-out folds.

    Returns ``{'pcc': mean over folds of the mean over pathways, 'per_pathway': {name: mean PCC}}``:
    what a model's ``pathway_pcc_truth`` can reach from those inputs with a linear read-out.
    """
    by_id = {s.sample_id: s for s in samples}
    names = samples[0].truth_names.get("pathway_activity") or [f"P{i}" for i in
                                                                 range(samples[0].truth["pathway_activity"].shape[1])]
    per_fold, per_path = [], []
    for train_ids, test_ids in _folds(meta, n_folds, seed):
        train = [by_id[str(i)] for i in train_ids]
        test = [by_id[str(i)] for i in test_ids]
        xtr = _stack(train, lambda s: inputs(s)[_qc(s)])
        ytr = _stack(train, lambda s: np.asarray(s.truth["pathway_activity"], np.float64)[_qc(s)])
        xte = _stack(test, lambda s: inputs(s)[_qc(s)])
        yte = _stack(test, lambda s: np.asarray(s.truth["pathway_activity"], np.float64)[_qc(s)])
        r = metrics.pearson_columns(ridge_probe(xtr, ytr, xte, n_components), yte)
        per_fold.append(float(np.nanmean(r)))
        per_path.append(r)
    return {"pcc": float(np.mean(per_fold)), "per_fold": per_fold,
            "per_pathway": dict(zip(names, np.nanmean(np.stack(per_path), 0).tolist()))}


VISIBLE_PCC = 0.5  # a pathway is "visible in morphology" when the noise-free latent predicts it this well
CONTEXT_PCC_GAIN = 0.1  # ... "visible only through context" when the neighbourhood adds at least this
CONTEXT_MIN_PCC = 0.3  # ... and reaches at least this (a gain between two useless probes is not visibility)


def pathway_visibility(morphology: dict, with_context: dict) -> pd.DataFrame:
    """Per pathway: PCC from the noise-free latent (own spot) and from [latent, neighbours' mean latent,
    true context fields], and a class: ``morphology`` (>= ``VISIBLE_PCC`` from the own latent),
    ``context only`` (the neighbourhood adds >= ``CONTEXT_PCC_GAIN`` and reaches >= ``CONTEXT_MIN_PCC``),
    else ``invisible``. Both are held-out-patient PCCs pooled over patients, so patient offsets that
    no input shows keep even the noise-free latent below 1 (or below 0) for many pathways."""
    df = pd.DataFrame({"own_latent": pd.Series(morphology), "with_context": pd.Series(with_context)})
    df["context_adds"] = df["with_context"] - df["own_latent"]
    df["visible"] = np.where(df["own_latent"] >= VISIBLE_PCC, "morphology",
                             np.where((df["context_adds"] >= CONTEXT_PCC_GAIN) & (df["with_context"] >= CONTEXT_MIN_PCC),
                                      "context only", "invisible"))
    df.index = [str(i).removeprefix("HALLMARK_") for i in df.index]
    return df.sort_values("with_context", ascending=False)


def calibration_report(data_dir: str | Path, backbone: str = "resnet50", n_folds: int = 3, seed: int = 0,
                       backbones: Sequence[str] | None = None, n_neighbors: int = 6, truth: bool = True,
                       feature_pathway_ceiling: bool = True) -> dict:
    """All calibration figures of a cohort as a dict (see the module docstring).

    Keys: ``probe_pcc`` (own features of ``backbone``), ``probe_pcc_context`` ([own, mean of the
    ``n_neighbors`` nearest]), ``context_gain`` and ``context_gain_relative``, ``median_umis``,
    ``zero_fraction``, ``expression_morans_i_median`` (the 50 HVGs of the whole cohort) and
    ``expression_morans_i_vocabulary`` (median, p90 over its 1,000 most expressed genes), ``n_samples``,
    ``n_spots``, ``n_patients``, ``seconds``; for simulated cohorts (``truth``): ``noise_ceiling``,
    ``latent_ceiling`` (ridge on the noise-free latent morphology), ``latent_context_ceiling`` (latent
    + the true context fields) and ``context_biology_gain`` (their difference), ``morans_i`` (per
    pathway), ``morans_i_median``, ``morans_i_fraction_ge_0.3``, ``pathway_ceiling`` (input ->
    mean PCC to the true activities) and ``pathway_visibility`` (per pathway, see
    ``pathway_visibility``; the ceilings from ``backbone``'s features only with
    ``feature_pathway_ceiling``); with ``backbones``, ``probe_pcc_by_backbone`` and
    ``pathway_ceiling_by_backbone`` (own features of each stand-in).
    """
    t0 = time.time()
    meta, samples = load_cohort(data_dir, backbone=backbone)
    own = probe_pcc(meta, samples, n_folds=n_folds, seed=seed)
    ctx = probe_pcc(meta, samples, n_folds=n_folds, seed=seed, context=True, n_neighbors=n_neighbors)
    report = {
        "data_dir": str(data_dir), "backbone": backbone, "n_folds": n_folds, "n_neighbors": n_neighbors,
        "n_samples": len(samples), "n_spots": int(sum(len(s.barcodes) for s in samples)),
        "n_patients": int(stdata.patient_groups(meta).nunique()),
        "probe_pcc": own["pcc"], "probe_pcc_per_fold": own["per_fold"],
        "probe_pcc_context": ctx["pcc"], "context_gain": ctx["pcc"] - own["pcc"],
        "context_gain_relative": ctx["pcc"] / own["pcc"] - 1.0,
        "probe_pcc_per_gene": own["per_gene"],
    }
    report.update(counts_summary(samples))
    vocabulary, hvg = stdata.select_genes(samples, n_genes=1000, n_hvg=50)
    report["expression_morans_i_median"] = float(expression_morans_i(samples, hvg).median())
    report["expression_morans_i_vocabulary"] = _percentiles(expression_morans_i(samples, vocabulary).to_numpy())
    simulated = all("expected_counts" in s.truth and "pathway_activity" in s.truth for s in samples)
    if truth and simulated:
        report["noise_ceiling"] = noise_ceiling(meta, samples, n_folds=n_folds, seed=seed)["pcc"]
        latent = {s.sample_id: truth_obsm(data_dir, s, "true_latent_morphology") for s in samples}
        context = {s.sample_id: truth_obsm(data_dir, s, "true_context") for s in samples}
        latent_nb = {s.sample_id: spatial.with_neighbour_mean(latent[s.sample_id], s.coords, n_neighbors)
                     for s in samples}
        with_ctx = lambda s: np.concatenate([latent_nb[s.sample_id], context[s.sample_id]], 1)  # noqa: E731
        report["latent_ceiling"] = probe_pcc(meta, samples, n_folds=n_folds, seed=seed,
                                             inputs=lambda s: latent[s.sample_id])["pcc"]
        report["latent_context_ceiling"] = probe_pcc(
            meta, samples, n_folds=n_folds, seed=seed,
            inputs=lambda s: np.concatenate([latent[s.sample_id], context[s.sample_id]], 1))["pcc"]
        report["context_biology_gain"] = report["latent_context_ceiling"] - report["latent_ceiling"]
        mi = pathway_morans_i(samples)
        report["morans_i"] = {k: float(v) for k, v in mi.items()}
        report["morans_i_median"] = float(mi.median())
        report["morans_i_fraction_ge_0.3"] = float((mi >= 0.3).mean())
        morph = pathway_ceiling(meta, samples, lambda s: latent[s.sample_id], n_folds, seed)
        full = pathway_ceiling(meta, samples, with_ctx, n_folds, seed)
        report["pathway_ceiling"] = {"noise-free latent": morph["pcc"],
                                     "latent + neighbours + true context": full["pcc"]}
        if feature_pathway_ceiling:
            own_pw = pathway_ceiling(meta, samples, lambda s: np.asarray(s.features, np.float64), n_folds, seed)
            ctx_pw = pathway_ceiling(meta, samples, lambda s: _inputs(s, True, n_neighbors), n_folds, seed)
            report["pathway_ceiling"].update({f"{backbone} own features": own_pw["pcc"],
                                              f"{backbone} own + neighbours": ctx_pw["pcc"]})
        report["pathway_visibility"] = pathway_visibility(morph["per_pathway"], full["per_pathway"]).to_dict("index")
    if backbones:
        by, by_pw = {}, {}
        for name in backbones:
            m, ss = (meta, samples) if name == backbone else load_cohort(data_dir, backbone=name)
            by[name] = own["pcc"] if name == backbone else probe_pcc(m, ss, n_folds=n_folds, seed=seed)["pcc"]
            if truth and simulated:
                if name == backbone and "pathway_ceiling" in report and f"{name} own features" in report["pathway_ceiling"]:
                    by_pw[name] = report["pathway_ceiling"][f"{name} own features"]
                else:
                    by_pw[name] = pathway_ceiling(m, ss, lambda s: np.asarray(s.features, np.float64),
                                                  n_folds, seed)["pcc"]
        report["probe_pcc_by_backbone"] = by
        if by_pw:
            report["pathway_ceiling_by_backbone"] = by_pw
    report["seconds"] = time.time() - t0
    return report


def anchor_table(reports: dict[str, dict]) -> pd.DataFrame:
    """One row per (world, figure): the measured value, the anchor's range, inside it or not, the source.

    ``reports``: world name -> ``calibration_report``. Figures with no real anchor (the ceilings,
    the context-biology gain) are listed with their measured value and an empty range.
    """
    rows = []
    for world, r in reports.items():
        for key, (lo, hi, source) in ANCHORS.items():
            if key in r:
                v = float(r[key])
                rows.append(dict(world=world, figure=key, measured=v, anchor_low=lo, anchor_high=hi,
                                 within=bool(lo <= v <= hi), source=source))
        for key in ("probe_pcc_context", "noise_ceiling", "latent_ceiling", "latent_context_ceiling",
                    "context_biology_gain", "expression_morans_i_median", "morans_i_median"):
            if key in r:
                rows.append(dict(world=world, figure=key, measured=float(r[key]), anchor_low=np.nan,
                                 anchor_high=np.nan, within=None, source="simulator truth (no real anchor)"))
    return pd.DataFrame(rows)
