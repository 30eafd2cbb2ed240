"""Held-out evaluation of a trained arm: the metrics of ``metrics.json`` from its predictions.

``evaluate_predictions`` pools the valid held-out spots of every test slide and computes the
metrics of ``stflib.metrics.evaluate`` (with the simulator's true pathway activities and expected
expression where the cohort has them; on the second gene panel, ``gene_panel``; with the noise-free
collapse ratio left out for a scale-free loss, ``GeneLoss.scale_free``), the fit on the training slides and ``pathway_ceiling``:
how much of the true pathway activity the arm's inputs hold at all.

``pathway_ceiling`` depends only on the fold's inputs and truth, never on the arm's model, and its
ridge costs as much as a third of a run (one eigendecomposition of a 4,096 x 4,096 Gram matrix with
the neighbourhood mean): it is cached by content (``ceiling_key``) under ``$STFLIB_CACHE/pathway_ceiling``,
so the grid's many arms on one fold and backbone compute it once.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from stflib import metrics as M
from stflib import spatial
from stflib.config import RunConfig
from stflib.io import write_json
from stflib.losses import LOSSES
from stflib.models import baselines
from stflib.models.baselines import ridge_path
from stflib.panels import pathway_context_panel
from stflib.sim.cohort import cache_dir
from stflib.spatial import with_neighbour_mean
from stflib.train.fold import FoldData, uses_context_features

# the default cohort's validation PCC peaks at 1e5 on every fold (4,096 features with the neighbourhood
# mean); the grid reaches two decades past it so the choice is never its upper edge
CEILING_ALPHAS = tuple(10.0 ** np.arange(-1, 8))


def pathway_ceiling(fold: FoldData, cfg: RunConfig, alphas=CEILING_ALPHAS, cache: bool = True) -> float:
    """How much of the simulator's true pathway activity the arm's inputs hold: a ridge from the same
    (standardised) features, plus the mean of the k nearest spots' features when the arm uses
    ``n_neighbors``, fit directly to the true activities on the training slides, its penalty chosen on
    the validation slides, scored on the test slides (mean over pathways of the PCC over spots).
    The reference for ``pathway_pcc_truth``; NaN without simulator truth. ``cache``: read and write
    the value under ``ceiling_key`` (the same inputs give the same value, bit for bit)."""
    if not fold.truth_pathway_names:
        return float("nan")
    splits = (fold.train_ids, fold.val_ids, fold.test_ids)
    if any(fold.items[i].get("true_pathways") is None for ids in splits for i in ids):
        return float("nan")
    # per-spot baselines with n_neighbors already carry [own, neighbour mean] in their features
    k = 0 if uses_context_features(cfg) else cfg.n_neighbors
    path = cache_dir() / "pathway_ceiling" / f"{ceiling_key(fold, k, alphas)}.json" if cache else None
    if path is not None and path.is_file():
        try:
            value = json.loads(path.read_text())["pathway_ceiling"]
            return float("nan") if value is None else float(value)
        except (OSError, ValueError, KeyError, TypeError):
            pass  # an unreadable entry is computed again and overwritten

    def stack(ids):
        X, A = [], []
        for i in ids:
            it = fold.items[i]
            v = it["valid"].cpu().numpy().astype(bool)
            f = it["features"].cpu().numpy().astype(np.float64)
            if k:
                f = with_neighbour_mean(f, it["coords"].cpu().numpy(), k)
            X.append(f[v])
            A.append(it["true_pathways"].cpu().numpy().astype(np.float64)[v])
        return np.concatenate(X), np.concatenate(A)

    (X, A), (Xv, Av), (Xt, At) = (stack(ids) for ids in splits)
    xm, am, Ws = ridge_path(X, A, alphas)
    val = [M.nanmean(M.pearson_columns((Xv - xm) @ W + am, Av)) for W in Ws]
    W = Ws[int(np.nanargmax(val))]
    value = M.nanmean(M.pearson_columns((Xt - xm) @ W + am, At))
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json({"pathway_ceiling": value, "n_neighbors": k, "alphas": list(alphas),
                    "slides": [list(ids) for ids in splits]}, path)
    return value


# the modules whose code computes the ceiling from its inputs: an edit to any of them is a new key
_CEILING_CODE = (__file__, M.__file__, spatial.__file__, baselines.__file__)


def ceiling_key(fold: FoldData, k: int, alphas=CEILING_ALPHAS) -> str:
    """Content hash of everything ``pathway_ceiling`` reads: per slide of the train, validation and
    test splits (in order) its id, features, coordinates, valid mask and true activities; ``k``, the
    penalties and the source of the modules that compute it. Model, loss and seed are not in it: the
    ceiling does not depend on them."""
    h = hashlib.blake2b(digest_size=16)
    for source in _CEILING_CODE:
        h.update(Path(source).read_bytes())
    h.update(json.dumps({"k": int(k or 0), "alphas": [float(a) for a in alphas]}).encode())
    for ids in (fold.train_ids, fold.val_ids, fold.test_ids):
        h.update(b"split")
        for i in ids:
            it = fold.items[i]
            h.update(str(i).encode() + b"\0")
            for name in ("features", "coords", "valid", "true_pathways"):
                a = np.ascontiguousarray(it[name].cpu().numpy())
                h.update(f"{name}{a.dtype}{a.shape}".encode())
                h.update(a.tobytes())
    return h.hexdigest()


def expected_log(sample, genes: list[str]) -> np.ndarray | None:
    """The simulator's expected expression of ``genes`` on log1p(CP10k) (None for real data)."""
    exp = sample.truth.get("expected_counts") if sample.truth else None
    if exp is None:
        return None
    exp = np.asarray(exp, np.float64)
    index = {str(g): i for i, g in enumerate(sample.genes)}
    cols = np.array([index.get(g, -1) for g in genes])
    sub = np.where(cols >= 0, exp[:, np.maximum(cols, 0)], 0.0)
    lib = np.maximum(exp.sum(1, keepdims=True), 1e-9)
    return np.log1p(sub / lib * 1e4)


def gene_panel(genes: list[str], hvg: list[str], simulated: bool) -> list[str]:
    """The genes of ``pcc_pathway_genes`` (``stflib.panels.pathway_context_panel``): the simulator's
    pathway- and context-driven genes when the cohort carries the simulator's truth (``simulated``: its
    expected expression), else the Hallmark members among the measured genes; the HVGs left out."""
    return pathway_context_panel(genes, hvg, "simulator" if simulated else "measured")


def evaluate_predictions(fold: FoldData, cfg: RunConfig, preds: list[dict], train_preds: list[dict],
                         pathway_names: list[str] | None) -> tuple[dict, dict]:
    """(metrics, per-gene arrays) of the held-out predictions ``preds`` (and the training slides'
    ``train_preds`` for the training fit). ``pathway_names``: the model's token names, matched to
    the simulator's pathways (None: unnamed tokens, only the name-free best-match diagnostic)."""
    v = [p["valid"] for p in preds]
    pred = np.concatenate([p["pred"][m] for p, m in zip(preds, v)])
    true = np.concatenate([p["true"][m] for p, m in zip(preds, v)])
    slide_ids = np.concatenate([np.full(m.sum(), p["sample_id"], dtype=object) for p, m in zip(preds, v)])
    scores = truth = None
    if fold.truth_pathway_names and all(p["pathway_scores"] is not None for p in preds):
        scores = np.concatenate([p["pathway_scores"][m] for p, m in zip(preds, v)])
        tp = np.concatenate([fold.items[p["sample_id"]]["true_pathways"].cpu().numpy()[m] for p, m in zip(preds, v)])
        tindex = {n: i for i, n in enumerate(fold.truth_pathway_names)}
        if pathway_names and len(pathway_names) == scores.shape[1] and all(n in tindex for n in pathway_names):
            truth = tp[:, [tindex[n] for n in pathway_names]]
        else:  # unnamed tokens: only the name-free (best-match) diagnostic
            truth = tp
    expected = None
    exp_parts = [expected_log(fold.samples[p["sample_id"]], fold.genes) for p in preds]
    if all(e is not None for e in exp_parts):
        expected = np.concatenate([e[m] for e, m in zip(exp_parts, v)])
    # a scale-free loss (1 - PCC) leaves each gene's spread free: its spread is not read against the truth's
    scale_free = LOSSES[cfg.loss].scale_free
    with np.errstate(invalid="ignore"):  # target "pathways": the gene predictions are NaN, so are their metrics
        metrics, arrays = M.evaluate(pred, true, fold.genes, fold.hvg, slide_ids, scores, truth, expected,
                                     panel=gene_panel(fold.genes, fold.hvg, expected is not None),
                                     scale_free=scale_free)
        metrics.update(M.training_fit([p["pred"][p["valid"]] for p in train_preds],
                                      [p["true"][p["valid"]] for p in train_preds], fold.hvg_columns))
    metrics.update(pathway_metrics(fold, preds, train_preds, pathway_names))
    metrics["pathway_ceiling"] = pathway_ceiling(fold, cfg)
    return metrics, arrays


def _pooled(fold: FoldData, preds: list[dict], key: str) -> np.ndarray:
    """``key`` of every slide of ``preds`` over its valid spots, stacked (``true_pathways`` from the fold)."""
    if key == "true_pathways":
        return np.concatenate([fold.items[p["sample_id"]]["true_pathways"].cpu().numpy()[p["valid"]] for p in preds])
    return np.concatenate([p[key][p["valid"]] for p in preds]).astype(np.float64)


def pathway_metrics(fold: FoldData, preds: list[dict], train_preds: list[dict],
                    pathway_names: list[str] | None) -> dict[str, float]:
    """The pathway maps' metrics that need the training slides or the measured targets, NaN where a run
    has no pathway scores (or the cohort no truth):

    - ``pathway_pcc_truth_matched``: the token matched to each true pathway on the *training* slides,
      scored on the held-out spots (``stflib.metrics.matched_pathway_pcc``);
    - ``pathway_ccc_truth``: named tokens, Lin's CCC with the true activity after a per-pathway line from
      scores to activity fitted on the training slides (``stflib.metrics.calibrated_ccc``);
    - ``pathway_pcc_truth_within``: named tokens, the PCC with the truth after removing each held-out
      slide's mean from both (the within-slide pattern, all the per-slide targets can teach);
    - ``pathway_pcc_target``: named tokens, the PCC with the measured pathway targets of the run's recipe
      (subset, depth correction) over the held-out spots.
    """
    nan = float("nan")
    out = {"pathway_pcc_truth_matched": nan, "pathway_ccc_truth": nan, "pathway_pcc_truth_within": nan,
           "pathway_pcc_target": nan}
    parts = preds + train_preds
    if not parts or any(p.get("pathway_scores") is None for p in parts):
        return out
    scores, train_scores = _pooled(fold, preds, "pathway_scores"), _pooled(fold, train_preds, "pathway_scores")
    if all(p.get("pathway_targets") is not None for p in preds) and pathway_names \
            and preds[0]["pathway_targets"].shape[1] == scores.shape[1]:
        out["pathway_pcc_target"] = M.nanmean(M.pearson_columns(scores, _pooled(fold, preds, "pathway_targets")))
    if not fold.truth_pathway_names or any(fold.items[p["sample_id"]].get("true_pathways") is None for p in parts):
        return out
    truth, train_truth = _pooled(fold, preds, "true_pathways"), _pooled(fold, train_preds, "true_pathways")
    out["pathway_pcc_truth_matched"] = M.matched_pathway_pcc(scores, truth, train_scores, train_truth)
    tindex = {n: i for i, n in enumerate(fold.truth_pathway_names)}
    if pathway_names and len(pathway_names) == scores.shape[1] and all(n in tindex for n in pathway_names):
        cols = [tindex[n] for n in pathway_names]
        out["pathway_ccc_truth"] = M.nanmean(M.calibrated_ccc(train_scores, train_truth[:, cols], scores, truth[:, cols]))
        slides = np.concatenate([np.full(p["valid"].sum(), j) for j, p in enumerate(preds)])
        out["pathway_pcc_truth_within"] = M.nanmean(M.pearson_columns(
            _centre_by(scores, slides), _centre_by(truth[:, cols], slides)))
    return out


def _centre_by(x: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """``x`` with each group's column means removed."""
    x = np.array(x, np.float64)
    for g in np.unique(groups):
        x[groups == g] -= x[groups == g].mean(0)
    return x
