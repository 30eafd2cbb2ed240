"""Evaluation metrics on held-out patients, all on the log1p(CP10k) scale.

- ``pcc_hvg50``: HEST-Bench-compatible: for each of the 50 most variable genes of the *training*
  fold, the Pearson correlation between predicted and measured expression across all valid spots of
  the held-out slides (pooled), averaged over the 50 genes.
- ``pcc_all``: the same over the whole gene vocabulary.
- ``mse``: mean squared error over valid spots and all genes.
- ``pathway_pcc_truth`` (simulator only): Pearson correlation, per pathway, between the model's
  pathway scores and the simulator's true pathway activities, pooled over held-out spots, averaged.
- ``pcc_hvg50_within_slide``: ``pcc_hvg50`` within each held-out slide, averaged over slides (the pooled
  figure also counts the shifts between patients as signal; this one is the spatial pattern alone).
- ``pcc_pathway_genes``: the pooled PCC on the pathway- and context-gene panel
  (:func:`stflib.panels.pathway_context_panel`): the genes the simulator drives through pathway activity and spatial
  context, outside the 50 HVGs (which are mostly cell-type composition); on real data the Hallmark
  member genes outside the HVGs.
- ``collapse_ratio``: predicted / true spatial variance within a slide (HVGs; 1 = no collapse,
  0 = a constant map per slide), averaged over slides.
- ``collapse_ratio_noise_free`` (simulator only): predicted / *expected* (noise-free) spatial variance
  within a slide (HVGs), averaged over slides: the counting noise is not in the denominator, so 1 is
  the spread of the truth a model can learn. NaN for a scale-free loss (``GeneLoss.scale_free``: the
  loss leaves the prediction's spread free, so its spread says nothing about collapse).
- ``noise_ceiling_*`` (simulator only): the PCC an oracle reaches by predicting the simulator's
  expected expression, i.e. the best any model can do given the counting noise (``_hvg50``, ``_all``,
  ``_pathway_genes`` on the panel);
  ``collapse_ratio_oracle`` is that oracle's collapse ratio (below 1: counting noise adds variance).

A gene whose *prediction* is constant scores PCC 0 (a collapsed model earns nothing); a gene whose
*measurement* is constant over the held-out spots has no PCC and is left out of the means.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stflib.panels import pathway_context_panel
from stflib.registry import Registry

EPS = 1e-12


@dataclass(frozen=True)
class Metric:
    label: str              # short column label for tables and figures
    higher_is_better: bool
    description: str


# The one owner of metric names: metrics.json keys that are summarised per run. results/summary.csv,
# the run printout and the book's tables and findings read this registry.
METRICS: Registry[Metric] = Registry("metric")
METRICS.register("pcc_hvg50", Metric("PCC, 50 HVGs", True, "mean PCC over the training fold's 50 most variable genes, held-out patients"))
METRICS.register("pcc_all", Metric("PCC, all genes", True, "mean PCC over the whole gene vocabulary, held-out patients"))
METRICS.register("mse", Metric("MSE (log1p CP10k)", False, "mean squared error over valid held-out spots and all genes"))
METRICS.register("pathway_pcc_truth", Metric("PCC with true pathways", True, "pathway scores vs the simulator's true activities"))
METRICS.register("pathway_pcc_truth_matched", Metric("PCC with true pathways (matched)", True,
                                                                "for each true pathway, the token that correlates best "
                                                                "with it on the training slides, scored on the held-out "
                                                                "spots (matched_pathway_pcc)"))
METRICS.register("ccc_hvg50", Metric("CCC, 50 HVGs", True, "mean Lin's concordance over the training fold's 50 most "
                                                           "variable genes, held-out patients (log1p CP10k)"))
METRICS.register("pathway_ccc_truth", Metric("CCC with true pathways", True,
                                             "pathway scores on the truth's scale (a per-pathway line fitted on the "
                                             "training slides) vs the true activities, Lin's concordance, held-out spots"))
METRICS.register("pathway_pcc_truth_within", Metric("within-slide PCC with true pathways", True,
                                                    "pathway scores vs true activities after removing each held-out "
                                                    "slide's mean from both"))
METRICS.register("pathway_pcc_target", Metric("PCC with pathway targets", True,
                                              "pathway scores vs the measured pathway targets (the run's recipe), "
                                              "held-out spots"))
METRICS.register("pcc_hvg50_within_slide", Metric("PCC within slide, 50 HVGs", True, "pcc_hvg50 computed per slide, then averaged"))
# the second panel: genes whose variation is pathway activity and spatial context rather than cell-type
# composition (94 % of the HVGs' variance in the default world), so pathway and context effects can show
METRICS.register("pcc_pathway_genes", Metric("PCC, pathway and context genes", True,
                                             "mean PCC over the pathway- and context-gene panel (pathway_context_panel: "
                                             "the genes the simulator drives through pathway activity and spatial "
                                             "context, outside the 50 HVGs; on real data the Hallmark members outside "
                                             "them), pooled over held-out spots"))
METRICS.register("collapse_ratio", Metric("collapse ratio", True, "predicted / true spatial variance within a slide (1 = no collapse)"))
# read against the noise-free truth, 1 is the whole learnable spread (the noisy truth's spread includes
# counting noise no model should reproduce); above 1 a model spreads more than the biology does
METRICS.register("collapse_ratio_noise_free", Metric("collapse ratio vs noise-free truth", True,
                                                     "predicted / expected (noise-free) spatial variance within a "
                                                     "slide on the 50 HVGs, mean over slides (1 = the learnable "
                                                     "spread; simulator only; NaN for scale-free losses)"))
METRICS.register("noise_ceiling_hvg50", Metric("noise ceiling, 50 HVGs", True, "pcc_hvg50 of the simulator's expected expression"))
METRICS.register("noise_ceiling_pathway_genes", Metric("noise ceiling, pathway and context genes", True,
                                                       "pcc_pathway_genes of the simulator's expected expression"))
# the oracle's own collapse ratio: the expected expression varies less than the noisy counts, so
# even a perfect model stays below 1; a model's collapse_ratio is read against this
METRICS.register("collapse_ratio_oracle", Metric("oracle collapse ratio", True,
                                                 "collapse_ratio of the simulator's expected expression (the best a "
                                                 "model can show)"))
METRICS.register("moran_i_pred_median", Metric("Moran's I predicted (median)", True, "median Moran's I of the predicted HVG maps"))
METRICS.register("moran_i_true_median", Metric("Moran's I measured (median)", True, "median Moran's I of the measured HVG maps"))
METRICS.register("moran_rank_spearman", Metric("Moran's I rank Spearman", True, "Spearman of predicted vs measured Moran's I over HVGs"))
METRICS.register("train_pcc_hvg50", Metric("train PCC, 50 HVGs", True, "pcc_hvg50 on the training slides (kept checkpoint)"))
METRICS.register("train_mse_ratio", Metric("train MSE / mean predictor", False, "training MSE over the training mean predictor's"))
METRICS.register("pathway_ceiling", Metric("pathway ceiling", True, "ridge from the same inputs fit to the true activities, held-out PCC"))
METRICS.register("train_seconds", Metric("train time (s)", False, "wall time of training"))
METRICS.register("peak_memory_mb", Metric("peak memory (MiB)", False,
                                          "peak memory of training and prediction: GPU tensors on CUDA, the "
                                          "process's resident set on CPU (peak_memory_kind says which)"))


def pearson_columns(pred: np.ndarray, true: np.ndarray, constant_pred: float = 0.0) -> np.ndarray:
    """Per-column Pearson correlation of two (N, K) arrays.

    Columns where ``true`` is constant give NaN; columns where only ``pred`` is constant give
    ``constant_pred`` (0 by default).
    """
    pred = np.asarray(pred, np.float64)
    true = np.asarray(true, np.float64)
    if pred.shape != true.shape or pred.ndim != 2:
        raise ValueError(f"pred and true must be (N, K) arrays of the same shape, got {pred.shape} and {true.shape}")
    if len(pred) < 2:
        return np.full(pred.shape[1], np.nan)
    pc = pred - pred.mean(0)
    tc = true - true.mean(0)
    sp = np.sqrt((pc ** 2).sum(0))
    st = np.sqrt((tc ** 2).sum(0))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (pc * tc).sum(0) / (sp * st)
    scale_p = np.maximum(np.abs(pred).max(0), 1.0)
    scale_t = np.maximum(np.abs(true).max(0), 1.0)
    const_t = st <= 1e-9 * scale_t * np.sqrt(len(true))
    const_p = sp <= 1e-9 * scale_p * np.sqrt(len(pred))
    r = np.where(const_p, constant_pred, r)
    r = np.where(const_t, np.nan, r)
    return np.clip(r, -1.0, 1.0)


def ccc_columns(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Per-column Lin's concordance correlation coefficient of two (N, K) arrays:
    2 cov / (var_pred + var_true + (mean_pred - mean_true)^2) (population moments). Unlike the PCC it
    drops with any offset or scale between prediction and truth (1 only when they are equal); NaN where
    ``true`` is constant."""
    pred = np.asarray(pred, np.float64)
    true = np.asarray(true, np.float64)
    if pred.shape != true.shape or pred.ndim != 2:
        raise ValueError(f"pred and true must be (N, K) arrays of the same shape, got {pred.shape} and {true.shape}")
    if len(pred) < 2:
        return np.full(pred.shape[1], np.nan)
    mp, mt = pred.mean(0), true.mean(0)
    vp, vt = pred.var(0), true.var(0)
    cov = ((pred - mp) * (true - mt)).mean(0)
    denom = vp + vt + (mp - mt) ** 2  # 0 only when true is constant (NaN below); NaN predictions stay NaN
    scale_t = np.maximum(np.abs(true).max(0), 1.0)
    const_t = np.sqrt(vt) <= 1e-9 * scale_t
    with np.errstate(invalid="ignore", divide="ignore"):
        c = 2.0 * cov / denom
    return np.where(const_t, np.nan, np.clip(c, -1.0, 1.0))


def calibrated_ccc(train_pred: np.ndarray, train_true: np.ndarray, pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Per column: Lin's CCC of ``pred`` with ``true`` after putting ``pred`` on ``true``'s scale by a line
    (intercept, slope) fitted by least squares on the training pair (``train_pred``, ``train_true``).

    For scores whose units are their own (cosine scores against a simulator's activity units), the CCC
    of the raw scores says nothing; the line is fitted on other patients than the ones scored, so the CCC
    still drops when the held-out maps are offset or scaled differently from the training ones."""
    tp, tt = np.asarray(train_pred, np.float64), np.asarray(train_true, np.float64)
    dp = tp - tp.mean(0)
    slope = np.divide((dp * (tt - tt.mean(0))).sum(0), (dp ** 2).sum(0), out=np.zeros(tp.shape[1]),
                      where=(dp ** 2).sum(0) > EPS)
    intercept = tt.mean(0) - slope * tp.mean(0)
    return ccc_columns(np.asarray(pred, np.float64) * slope + intercept, true)


def nanmean(x) -> float:
    """Mean over finite values; NaN when there are none."""
    x = np.asarray(x, np.float64)
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else float("nan")


def to_log_cp10k(pred: np.ndarray, space: str, library_size: np.ndarray | None = None) -> np.ndarray:
    """Bring a model's output to the evaluation scale log1p(CP10k).

    space: ``"log"`` (already log1p CP10k), ``"cp10k"`` (-> log1p(clamp(pred, 0))) or ``"counts"``
    (a ZINB mean ``mu`` in counts: -> log1p(mu / library_size * 1e4); ``library_size`` (N,) total UMIs).
    """
    pred = np.asarray(pred, np.float64)
    if space == "log":
        return pred
    if space == "cp10k":
        return np.log1p(np.clip(pred, 0.0, None))
    if space == "counts":
        if library_size is None:
            raise ValueError("space 'counts' needs library_size")
        lib = np.maximum(np.asarray(library_size, np.float64), 1.0)[:, None]
        return np.log1p(np.clip(pred, 0.0, None) / lib * 1e4)
    raise ValueError(f"unknown space {space!r}; allowed: log, cp10k, counts")


def collapse_ratio(pred: np.ndarray, true: np.ndarray, slide_ids: np.ndarray, columns=None) -> float:
    """Mean over slides of sum_g Var_spots(pred) / sum_g Var_spots(true) (on ``columns``)."""
    pred, true = np.asarray(pred, np.float64), np.asarray(true, np.float64)
    if columns is not None:
        pred, true = pred[:, columns], true[:, columns]
    ratios = []
    for s in np.unique(slide_ids):
        m = slide_ids == s
        if m.sum() < 2:
            continue
        vt = true[m].var(0).sum()
        if vt > EPS:
            ratios.append(pred[m].var(0).sum() / vt)
    return nanmean(ratios)


def per_slide_pcc(pred: np.ndarray, true: np.ndarray, slide_ids: np.ndarray, columns=None) -> float:
    """Mean over slides of the mean per-gene PCC within the slide (a within-slide, spatial PCC)."""
    pred, true = np.asarray(pred), np.asarray(true)
    if columns is not None:
        pred, true = pred[:, columns], true[:, columns]
    vals = [nanmean(pearson_columns(pred[slide_ids == s], true[slide_ids == s])) for s in np.unique(slide_ids)]
    return nanmean(vals)


def _correlation_matrix(scores: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(P_true, P_pred) PCC of every true pathway with every token over the same spots."""
    s = np.asarray(scores, np.float64)
    t = np.asarray(truth, np.float64)
    s = (s - s.mean(0)) / np.maximum(s.std(0), EPS)
    t = (t - t.mean(0)) / np.maximum(t.std(0), EPS)
    return (t.T @ s) / len(s)


def matched_pathway_pcc(scores: np.ndarray, truth: np.ndarray, train_scores: np.ndarray | None = None,
                        train_truth: np.ndarray | None = None) -> float:
    """For each true pathway, the PCC of its matched token on the spots of ``scores``; averaged.

    A name-free diagnostic: do the tokens span the true pathway activities at all? The match is the token
    that correlates best with the pathway on ``train_scores``/``train_truth`` (the training slides), so the
    held-out figure is not chosen on the spots it is scored on. Without the training pair the token is
    chosen on the scored spots themselves: the maximum of 50 noisy correlations, biased upward.
    """
    corr = _correlation_matrix(scores, truth)
    ok = np.asarray(truth, np.float64).std(0) > EPS
    if train_scores is None or train_truth is None:
        picked = corr.max(1)
    else:
        best = _correlation_matrix(train_scores, train_truth).argmax(1)
        picked = corr[np.arange(len(corr)), best]
    return nanmean(picked[ok]) if ok.any() else float("nan")


def evaluate(
    pred: np.ndarray,
    true: np.ndarray,
    genes: list[str],
    hvg: list[str],
    slide_ids: np.ndarray,
    pathway_scores: np.ndarray | None = None,
    pathway_truth: np.ndarray | None = None,
    expected: np.ndarray | None = None,
    panel: list[str] | None = None,
    scale_free: bool = False,
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """All metrics for held-out spots.

    pred, true, expected: (N, G) log1p(CP10k) over the valid held-out spots (``expected``: the
    simulator's expected expression on the same scale, for the noise ceiling and the noise-free
    collapse ratio); slide_ids (N,); pathway_scores (N, P) and pathway_truth (N, P) aligned by pathway
    (same order, same names). ``panel``: the genes of ``pcc_pathway_genes`` (default
    :func:`stflib.panels.pathway_context_panel` of ``genes`` and ``hvg``, from the simulator when ``expected`` is
    given, else from the measured genes; genes outside the vocabulary are ignored). ``scale_free``: the
    run's loss leaves the prediction's spread free (``GeneLoss.scale_free``): ``collapse_ratio_noise_free``
    is then NaN. Returns (metrics, per-gene arrays ``pcc``, ``mse``, ``ceiling``, ``is_hvg``,
    ``is_panel``; ``pathway_pcc``).
    """
    pred = np.asarray(pred, np.float64)
    true = np.asarray(true, np.float64)
    slide_ids = np.asarray(slide_ids)
    genes = [str(g) for g in genes]
    index = {g: i for i, g in enumerate(genes)}
    missing = [g for g in hvg if g not in index]
    if missing:
        raise ValueError(f"HVGs not in the gene vocabulary: {missing[:5]}")
    hvg_idx = np.array([index[g] for g in hvg], int)
    is_hvg = np.zeros(len(genes), bool)
    is_hvg[hvg_idx] = True
    if panel is None:
        panel = pathway_context_panel(genes, hvg, "simulator" if expected is not None else "measured")
    panel_idx = np.array([index[g] for g in panel if g in index], int)
    is_panel = np.zeros(len(genes), bool)
    is_panel[panel_idx] = True
    pcc = pearson_columns(pred, true)
    gene_mse = ((pred - true) ** 2).mean(0)
    out: dict[str, float] = {
        "pcc_hvg50": nanmean(pcc[hvg_idx]),
        "pcc_all": nanmean(pcc),
        "mse": float(gene_mse.mean()),
        "mse_hvg50": float(gene_mse[hvg_idx].mean()),
        "ccc_hvg50": nanmean(ccc_columns(pred[:, hvg_idx], true[:, hvg_idx])),
        "pcc_hvg50_within_slide": per_slide_pcc(pred, true, slide_ids, hvg_idx),
        "pcc_pathway_genes": nanmean(pcc[panel_idx]),  # NaN for an empty panel
        "n_pathway_genes": int(len(panel_idx)),
        "collapse_ratio": collapse_ratio(pred, true, slide_ids, hvg_idx),
        "collapse_ratio_noise_free": float("nan"),
        "n_test_spots": int(len(pred)),
        "n_test_slides": int(len(np.unique(slide_ids))),
        "n_genes": int(len(genes)),
    }
    arrays: dict[str, np.ndarray] = {"pcc": pcc, "mse": gene_mse, "is_hvg": is_hvg, "is_panel": is_panel}
    out["pathway_pcc_truth"] = float("nan")
    out["pathway_pcc_truth_matched"] = float("nan")
    if pathway_scores is not None and pathway_truth is not None:
        pathway_scores = np.asarray(pathway_scores, np.float64)
        pathway_truth = np.asarray(pathway_truth, np.float64)
        if len(pathway_scores) == len(pathway_truth) and pathway_scores.shape[1]:
            out["pathway_pcc_truth_matched"] = matched_pathway_pcc(pathway_scores, pathway_truth)
        if pathway_scores.shape == pathway_truth.shape:
            ppcc = pearson_columns(pathway_scores, pathway_truth)
            arrays["pathway_pcc"] = ppcc
            out["pathway_pcc_truth"] = nanmean(ppcc)
    if expected is not None:
        ceiling = pearson_columns(np.asarray(expected, np.float64), true)
        arrays["ceiling"] = ceiling
        out["noise_ceiling_hvg50"] = nanmean(ceiling[hvg_idx])
        out["noise_ceiling_all"] = nanmean(ceiling)
        out["noise_ceiling_pathway_genes"] = nanmean(ceiling[panel_idx])
        out["collapse_ratio_oracle"] = collapse_ratio(expected, true, slide_ids, hvg_idx)
        if not scale_free:
            out["collapse_ratio_noise_free"] = collapse_ratio(pred, expected, slide_ids, hvg_idx)
    return out, arrays


# ------------------------------------------------------------------------------- spatial patterning
def spatial_weights(coords: np.ndarray, k: int = 6):
    """Binary, symmetric k-nearest-neighbour weights (N, N) sparse: w_ij = 1 if j is among i's k
    nearest spots or i among j's. k=6 is the ring of a Visium hexagonal grid (squidpy's grid graph)."""
    import scipy.sparse as sp

    from stflib.spatial import knn_indices

    coords = np.asarray(coords, np.float64)
    n = len(coords)
    if k < 1:
        raise ValueError(f"spatial_weights: k must be >= 1, got {k}")
    if n < 2:
        return sp.csr_matrix((n, n))
    nn = knn_indices(coords, k)  # (n, min(k, n-1)), the spot itself excluded
    rows = np.repeat(np.arange(n), nn.shape[1])
    w = sp.csr_matrix((np.ones(nn.size), (rows, nn.reshape(-1))), shape=(n, n))
    return ((w + w.T) > 0).astype(np.float64)


def morans_i(values: np.ndarray, weights) -> np.ndarray:
    """Moran's I of each column of ``values`` (N, K) under spatial ``weights`` (N, N):
    I = N / sum(w) * sum_ij w_ij z_i z_j / sum_i z_i^2, z the centred values (NaN for a constant column).
    +1: neighbours alike (smooth patches); 0: no spatial pattern; the expectation under no pattern is -1/(N-1)."""
    x = np.asarray(values, np.float64)
    if x.ndim != 2 or x.shape[0] != weights.shape[0]:
        raise ValueError(f"morans_i: values must be (N, K) with N = {weights.shape[0]} spots, got {x.shape}")
    z = x - x.mean(0)
    total = float(weights.sum())
    denom = (z ** 2).sum(0)
    num = (z * (weights @ z)).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = len(x) / total * num / denom if total > 0 else np.full(x.shape[1], np.nan)
    return np.where(denom > EPS, out, np.nan)


def moran_summary(pred: np.ndarray, true: np.ndarray, coords: np.ndarray, slide_ids: np.ndarray,
                  k: int = 6) -> dict[str, float]:
    """How well predictions keep which genes are spatially patterned.

    Per slide, Moran's I of each gene's predicted and measured map (``spatial_weights`` with ``k``
    neighbours); per gene, the mean over slides. Returns the medians over genes of the predicted and the
    measured I (``moran_i_pred_median``, ``moran_i_true_median``: a prediction smoother than the tissue
    has the higher I) and ``moran_rank_spearman``, the Spearman correlation between them over genes
    (1: the model ranks the patterned genes as the tissue does).
    """
    import warnings

    from scipy.stats import spearmanr

    pred = np.asarray(pred, np.float64)
    true = np.asarray(true, np.float64)
    slide_ids = np.asarray(slide_ids)
    i_pred, i_true = [], []
    for s in np.unique(slide_ids):
        m = slide_ids == s
        if m.sum() < 3:
            continue
        w = spatial_weights(np.asarray(coords)[m], k)
        i_pred.append(morans_i(pred[m], w))
        i_true.append(morans_i(true[m], w))
    nan = float("nan")
    if not i_pred:
        return {"moran_i_pred_median": nan, "moran_i_true_median": nan, "moran_rank_spearman": nan}
    with warnings.catch_warnings():  # a gene constant on every slide stays NaN and is dropped below
        warnings.simplefilter("ignore", RuntimeWarning)
        gene_pred = np.nanmean(np.vstack(i_pred), 0)
        gene_true = np.nanmean(np.vstack(i_true), 0)
    both = np.isfinite(gene_pred) & np.isfinite(gene_true)
    rho = float(spearmanr(gene_pred[both], gene_true[both])[0]) if both.sum() >= 3 else nan
    return {
        "moran_i_pred_median": float(np.median(gene_pred[both])) if both.any() else nan,
        "moran_i_true_median": float(np.median(gene_true[both])) if both.any() else nan,
        "moran_rank_spearman": rho,
    }



def training_fit(preds: list[np.ndarray], trues: list[np.ndarray], hvg_columns) -> dict[str, float]:
    """How well a model fits its own training slides (best checkpoint), on log1p(CP10k).

    ``preds``/``trues``: one (N_i, G) array of valid spots per training slide. Returns
    ``train_pcc_hvg50`` (per-gene PCC over the pooled training spots, mean over the 50 HVG columns,
    as ``pcc_hvg50`` is computed on held-out spots) and ``train_mse_ratio`` (the model's MSE over all
    genes divided by the MSE of the training mean profile: < 1 means it fits better than the mean).
    """
    if not preds:
        return {"train_pcc_hvg50": float("nan"), "train_mse_ratio": float("nan")}
    pred = np.concatenate(preds).astype(np.float64)
    true = np.concatenate(trues).astype(np.float64)
    if pred.shape != true.shape:
        raise ValueError(f"training_fit: predictions {pred.shape} and targets {true.shape} differ")
    cols = np.asarray(hvg_columns, int)
    mean_mse = float(((true - true.mean(0)) ** 2).mean())
    mse = float(((pred - true) ** 2).mean())
    return {
        "train_pcc_hvg50": nanmean(pearson_columns(pred[:, cols], true[:, cols])),
        "train_mse_ratio": mse / mean_mse if mean_mse > 0 else float("nan"),
    }
