"""The computations behind ``python -m stflib chapters``: one function per teaching chapter, each
returning ``{file name: DataFrame | dict | image}`` for :func:`stflib.report.chapters.write`. They load
the simulated cohort (generating it on first use) and fit the chapters' demonstration models; the
chapters read what they wrote and compute nothing slow themselves.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

BACKBONE = "ctranspath"
SLIDE = "SIM000"


def _cohort():
    from stflib.sim import calibration, default_cohort

    root = default_cohort("default")
    meta, samples = calibration.load_cohort(root, backbone=BACKBONE)
    return root, meta, samples, {s.sample_id: s for s in samples}


def _fold0(meta, by_id):
    from stflib.data import patient_folds, select_genes

    train_ids, test_ids = patient_folds(meta, 3, seed=0)[0]
    train, test = [by_id[i] for i in train_ids], [by_id[i] for i in test_ids]
    vocab, hvg = select_genes(train, n_genes=1000, n_hvg=50)
    return train, test, vocab, hvg


def _num(x) -> float | int | str | list:
    """JSON-friendly numbers (numpy scalars -> Python)."""
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return float(x)
    return x


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------


def compute_data() -> dict:
    """The data chapter: the cohort's slides, one slide's fields, one patch per compartment, counts."""
    import anndata as ad

    from stflib.data import read_hest_sample
    from stflib.sim import default_cohort

    root = default_cohort("default")
    meta = pd.read_csv(root / "metadata.csv")
    sample = read_hest_sample(root, SLIDE, backbone=BACKBONE, load_patches=True)
    truth, names = sample.truth, sample.truth_names
    obs = ad.read_h5ad(root / "st" / f"{SLIDE}.h5ad", backed="r").obs
    pathways = {name: i for i, name in enumerate(names["pathway_activity"])}
    cell_types = list(names["composition"])
    fields = pd.DataFrame({"x": sample.coords[:, 0], "y": sample.coords[:, 1],
                           "dominant compartment": obs["compartment"].astype(str).to_numpy(),
                           "tumour epithelial fraction": truth["composition"][:, cell_types.index("tumour_epithelial")],
                           "T-cell fraction": truth["composition"][:, cell_types.index("T_cell")],
                           "UMIs per spot": np.asarray(sample.counts.sum(1)).ravel()})
    for p in ["HALLMARK_EPITHELIAL_MESENCHYMAL_TRANSITION", "HALLMARK_HYPOXIA", "HALLMARK_INFLAMMATORY_RESPONSE",
              "HALLMARK_E2F_TARGETS"]:
        fields["true " + p.removeprefix("HALLMARK_").lower()] = truth["pathway_activity"][:, pathways[p]]

    labels = fields["dominant compartment"].to_numpy()
    present = [c for c in ["tumour", "stroma", "immune_aggregate", "normal_mucosa", "muscle", "necrosis"] if c in labels]
    strip = np.concatenate([np.asarray(sample.patches[np.flatnonzero(labels == c)[0]])[::2, ::2] for c in present], axis=1)

    counts = sample.counts.toarray()
    mean, var = counts.mean(0), counts.var(0)
    expressed = mean > 0
    genes = pd.DataFrame({"mean": mean[expressed], "variance": var[expressed]})
    facts_ = {"slide": SLIDE, "n_slides": int(len(meta)), "n_patients": int(meta["patient"].nunique()),
              "n_spots": int(meta["spots_under_tissue"].sum()), "compartments": present,
              "patch_px": int(strip.shape[0]),
              "median_umis": float(np.median(counts.sum(1))), "zero_fraction": float(np.mean(counts == 0)),
              "overdispersed_share": float(np.mean(var[expressed] > mean[expressed]))}
    cohort = meta[["id", "patient", "oncotree_code", "spots_under_tissue", "pixel_size_um_estimated"]]
    return {"facts": facts_, "cohort": cohort.set_index("id"), "slide_fields": fields, "gene_mean_variance": genes,
            "patches.png": strip}


# ---------------------------------------------------------------------------------------------
# targets and pathways
# ---------------------------------------------------------------------------------------------

QC_RULES = {"UMIs >= 200": dict(min_genes=0, max_mito_fraction=1.0),
            "detected genes >= 100": dict(min_umis=0, max_mito_fraction=1.0),
            "mito fraction <= 0.3": dict(min_umis=0, min_genes=0)}


def qc_table(slides) -> pd.DataFrame:
    """Spots failing each QC rule alone, and all rules together, per slide."""
    from stflib.data import qc_mask

    rows = {}
    for s in slides:
        row = {"spots": s.n_spots}
        row.update({rule: int((~qc_mask(s.counts, s.genes, **kw)).sum()) for rule, kw in QC_RULES.items()})
        row["fail (any rule)"] = int((~qc_mask(s.counts, s.genes)).sum())
        rows[s.sample_id] = row
    return pd.DataFrame(rows).T


def compute_targets_and_pathways() -> dict:
    """The targets chapter: QC on every slide and on a damaged copy, normalisation, HVGs per fold,
    the Hallmark coverage and the auxiliary targets against the simulator's true activities."""
    import dataclasses

    import scipy.sparse as sp
    import torch
    from scipy import stats

    from stflib.data import (SlideDataset, library_size, normalize_cp10k, patient_folds, qc_mask, select_genes)
    from stflib.losses import mse_loss
    from stflib.pathways import hallmarks, membership_matrix, pathway_targets, short_name
    from stflib.sim import calibration

    _, meta, samples, by_id = _cohort()
    sample = by_id[SLIDE]
    out: dict = {}
    qc = qc_table(samples)
    qc.loc["total"] = qc.sum()
    out["qc"] = qc

    counts = sample.counts
    lib = library_size(counts)
    detected = np.diff((counts > 0).tocsr().indptr)
    mito = np.char.startswith(sample.genes.astype(str), "MT-")
    mito_fraction = library_size(counts[:, np.flatnonzero(mito)]) / lib
    out["qc_distributions"] = pd.DataFrame({"UMIs per spot": lib, "detected genes per spot": detected,
                                            "mitochondrial fraction": mito_fraction})

    rng = np.random.default_rng(0)
    dense = counts.toarray()
    thin = np.argsort(sample.coords[:, 0])[-25:]
    dense[thin] = rng.binomial(dense[thin].astype(int), 0.01)
    dying = rng.choice(np.setdiff1d(np.arange(sample.n_spots), thin), 10, replace=False)
    dense[np.ix_(dying, np.flatnonzero(mito))] += dense[dying].sum(1, keepdims=True) / mito.sum()
    damaged = dataclasses.replace(sample, counts=sp.csr_matrix(dense.astype(np.float32)))
    out["qc_damaged"] = qc_table([damaged])
    item = SlideDataset([damaged], [str(g) for g in sample.genes[:200]], log_transform=True)[0]
    valid, target = item["valid"][None], item["targets"][None]
    pred = target + 0.1 * torch.randn(target.shape, generator=torch.Generator().manual_seed(0))
    wild = pred.clone()
    wild[~valid] = 100.0
    mask_facts = {"valid": int(valid.sum()), "spots": int(valid.shape[1]),
                  "mse_masked": float(mse_loss(pred, target, valid)), "mse_masked_wild": float(mse_loss(wild, target, valid)),
                  "mse_unmasked": float(mse_loss(pred, target)), "mse_unmasked_wild": float(mse_loss(wild, target))}

    slide_vocab, _ = select_genes([sample], n_genes=1000, n_hvg=50)
    raw = counts[:, calibration.gene_columns(sample, slide_vocab)].toarray()
    cp10k = normalize_cp10k(raw, lib)
    log_cp = normalize_cp10k(raw, lib, log1p=True)
    gene = int(np.argmax(stats.skew(cp10k, axis=0)))
    out["skewed_gene"] = pd.DataFrame({"raw counts": raw[:, gene], "CP10k": cp10k[:, gene], "log1p(CP10k)": log_cp[:, gene]})

    def corr_with_library(m, k=50):
        return float(np.median([np.corrcoef(m[:, j], lib)[0, 1] for j in range(k)]))

    def top_variance_share(m, k=10):
        v = np.sort(m.var(0))[::-1]
        return float(v[:k].sum() / v.sum())

    out["normalisation"] = pd.DataFrame({
        "median corr. with library size (top 50 genes)": [corr_with_library(m) for m in (raw, cp10k, log_cp)],
        "variance share of the 10 most variable genes": [top_variance_share(m) for m in (raw, cp10k, log_cp)],
    }, index=["raw counts", "CP10k", "log1p(CP10k)"])

    folds = patient_folds(meta, 3, seed=0)
    train_ids, test_ids = folds[0]
    train = [by_id[i] for i in train_ids]
    vocab, hvg = select_genes(train, n_genes=1000, n_hvg=50)
    vocab_all, hvg_all = select_genes(samples, n_genes=1000, n_hvg=50)
    _, hvg_long = select_genes(train, n_genes=1000, n_hvg=100)
    _, hvg_all_long = select_genes(samples, n_genes=1000, n_hvg=100)
    rank = lambda g, ranking: ranking.index(g) + 1 if g in ranking else "> 100"  # noqa: E731
    hvg_facts = {"train_slides": len(train_ids), "test_ids": list(test_ids), "hvg": list(hvg),
                 "changed": sorted(set(hvg) - set(hvg_all)), "entering": sorted(set(hvg_all) - set(hvg)),
                 "vocab_changed": len(set(vocab) - set(vocab_all)),
                 "ranks": {g: [rank(g, hvg_long), rank(g, hvg_all_long)] for g in sorted(set(hvg) ^ set(hvg_all))}}
    rows = []
    for k, (tr_ids, te_ids) in enumerate(folds):
        _, h = select_genes([by_id[i] for i in tr_ids], n_genes=1000, n_hvg=50)
        rows.append({"fold": k, "held-out slides": len(te_ids), "HVGs changed": len(set(h) - set(hvg_all)),
                     "overlap (Jaccard)": len(set(h) & set(hvg_all)) / len(set(h) | set(hvg_all))})
    out["hvg_folds"] = pd.DataFrame(rows).set_index("fold")
    out["vocabulary"] = {"fold": 0, "genes": list(vocab)}

    membership = membership_matrix(hallmarks(), vocab, min_genes=5)
    log_vocab = calibration.log_cp10k(sample, vocab)
    valid = qc_mask(sample.counts, sample.genes)
    targets = pathway_targets(log_vocab, membership.matrix, valid)
    truth_index = {n: i for i, n in enumerate(sample.truth_names["pathway_activity"])}
    truth = sample.truth["pathway_activity"][:, [truth_index[n] for n in membership.names]]
    recovery = pd.DataFrame({
        "PCC(target, truth)": [np.corrcoef(targets[valid, p], truth[valid, p])[0, 1] for p in range(len(membership.names))],
        "genes in vocabulary": membership.matrix.sum(1).astype(int),
    }, index=pd.Index([short_name(n) for n in membership.names], name="pathway"))
    out["pathway_recovery"] = recovery
    order = list(recovery.index)
    best, worst = recovery["PCC(target, truth)"].idxmax(), recovery["PCC(target, truth)"].idxmin()
    maps = pd.DataFrame({"x": sample.coords[:, 0], "y": sample.coords[:, 1]})
    for name in (best, worst):
        maps[f"{name} target"] = targets[:, order.index(name)]
        maps[f"{name} truth"] = truth[:, order.index(name)]
    out["pathway_maps"] = maps
    out["facts"] = {"slide": SLIDE, "n_slides": len(samples), "n_patients": int(meta["patient"].nunique()),
                    "n_spots": int(sample.n_spots), "n_genes": int(len(sample.genes)),
                    "skewed_gene": str(slide_vocab[gene]), "mask": mask_facts, "hvg": hvg_facts,
                    "valid_spots": int(valid.sum()), "best": best, "worst": worst,
                    "spearman_recovery_genes": float(stats.spearmanr(recovery["genes in vocabulary"],
                                                                     recovery["PCC(target, truth)"])[0])}
    return out


# ---------------------------------------------------------------------------------------------
# baselines
# ---------------------------------------------------------------------------------------------


def compute_baselines() -> dict:
    """The baselines chapter: HEST-Bench's probe on fold 0, its references, Moran's I, a briefly
    trained ABMIL's attention and TransMIL's grid check."""
    import torch

    from stflib.data import SlideDataset, collate_slides, qc_mask
    from stflib.losses import mse_loss
    from stflib.metrics import moran_summary, morans_i, pearson_columns, spatial_weights
    from stflib.models import MeanExpression, RidgeProbe, build_model
    from stflib.models.mil import visium_grid
    from stflib.sim import calibration
    from stflib.spatial import hex_neighbours

    _, meta, samples, by_id = _cohort()
    train, test, vocab, hvg = _fold0(meta, by_id)
    out: dict = {}

    def stack(slides, fn):
        return np.concatenate([fn(s)[qc_mask(s.counts, s.genes)] for s in slides])

    x_train, y_train = stack(train, lambda s: s.features), stack(train, lambda s: calibration.log_cp10k(s, hvg))
    x_test, y_test = stack(test, lambda s: s.features), stack(test, lambda s: calibration.log_cp10k(s, hvg))
    probe = RidgeProbe().fit(x_train, y_train)
    pred = probe.predict(x_test)
    out["probe_pcc"] = pd.DataFrame({"PCC": pearson_columns(pred, y_test)}, index=pd.Index(hvg, name="gene"))
    fitted = probe.pipeline
    n_fitted = sum(a.size for a in (fitted["scale"].mean_, fitted["scale"].scale_, fitted["pca"].components_,
                                    fitted["pca"].mean_, fitted["ridge"].coef_))
    floor_pred = MeanExpression().fit(x_train, y_train).predict(x_test)
    slide_means = np.concatenate([
        np.repeat(calibration.log_cp10k(s, hvg)[qc_mask(s.counts, s.genes)].mean(0, keepdims=True),
                  int(qc_mask(s.counts, s.genes).sum()), axis=0) for s in test])
    with_intercept = pred + y_train.mean(0)
    rows = {"floor (training mean)": (0.0, floor_pred),
            "ridge probe (no intercept, as HEST-Bench)": (float(np.nanmean(out["probe_pcc"]["PCC"])), pred),
            "ridge probe + training mean": (np.nanmean(pearson_columns(with_intercept, y_test)), with_intercept),
            "slide-mean oracle (ceiling of global models)": (np.nanmean(pearson_columns(slide_means, y_test)), slide_means)}
    out["references"] = pd.DataFrame({name: {"mean PCC, 50 HVGs": r, "MSE (log1p CP10k)": float(((p - y_test) ** 2).mean())}
                                      for name, (r, p) in rows.items()}).T

    best = out["probe_pcc"]["PCC"].idxmax()
    slide = test[0]
    valid = qc_mask(slide.counts, slide.genes)
    measured = calibration.log_cp10k(slide, [best])[:, 0]
    predicted = probe.predict(slide.features)[:, hvg.index(best)] + y_train.mean(0)[hvg.index(best)]
    out["best_gene_map"] = pd.DataFrame({"x": slide.coords[valid, 0], "y": slide.coords[valid, 1],
                                         "measured": measured[valid], "predicted": predicted[valid]})

    coords_test = stack(test, lambda s: s.coords)
    slide_of_spot = stack(test, lambda s: np.full(len(s.coords), s.sample_id, dtype=object))
    moran = moran_summary(with_intercept, y_test, coords_test, slide_of_spot)
    first = slide_of_spot == test[0].sample_id
    weights = spatial_weights(coords_test[first])
    out["moran_first_slide"] = pd.DataFrame({"measured": morans_i(y_test[first], weights),
                                             "predicted": morans_i(with_intercept[first], weights)},
                                            index=pd.Index(hvg, name="gene"))

    torch.manual_seed(0)
    batch = collate_slides([SlideDataset(train, hvg, log_transform=True)[i] for i in range(len(train))])
    spots = batch["valid"]
    mu, sd = batch["features"][spots].mean(0), batch["features"][spots].std(0)
    features = (batch["features"] - mu) / sd
    slide_target = (batch["targets"] * spots[..., None]).sum(1) / spots.sum(1, keepdim=True)
    feature_dim = samples[0].features.shape[1]
    abmil = build_model("abmil", feature_dim, len(hvg), dropout=0.0)
    optimiser = torch.optim.AdamW(abmil.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(150):
        bag = torch.randint(0, features.shape[1], (128,), generator=generator)
        o = abmil(features[:, bag], batch["coords"][:, bag], pad_mask=~spots[:, bag])
        loss = mse_loss(o.genes, slide_target[:, None])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    item = collate_slides([SlideDataset([slide], hvg, log_transform=True)[0]])
    with torch.no_grad():
        o = abmil((item["features"] - mu) / sd, item["coords"], pad_mask=~item["valid"], return_attention=True)
    attention = o.attention[0][0, 0, 0].numpy()
    cell_types = list(slide.truth_names["composition"])
    composition = slide.truth["composition"]
    att = pd.DataFrame({"x": slide.coords[valid, 0], "y": slide.coords[valid, 1],
                        "ABMIL attention x number of spots": attention[valid] * valid.sum()})
    for ct in ("tumour_epithelial", "fibroblast"):
        att[f"true {ct.replace('_', ' ')} fraction"] = composition[valid, cell_types.index(ct)]
    out["abmil_attention"] = att
    out["abmil_correlation"] = pd.DataFrame(
        {"PCC(attention, fraction)": [np.corrcoef(attention[valid], composition[valid, i])[0, 1] for i in range(len(cell_types))]},
        index=pd.Index(cell_types, name="cell type"))

    coords = torch.as_tensor(slide.coords, dtype=torch.float32)[None]
    cells, height, width = visium_grid(coords, torch.ones(1, len(slide.coords), dtype=torch.bool))
    cells = cells[0].numpy()
    pairs = hex_neighbours(slide.coords, calibration.spot_pitch_px(slide)).tocoo()
    offsets = sorted({tuple(int(v) for v in d) for d in np.abs(cells[pairs.row] - cells[pairs.col])})
    out["facts"] = {
        "train_slides": len(train), "test_slides": len(test), "feature_dim": int(feature_dim), "vocab": len(vocab),
        "n_hvg": len(hvg), "train_spots": int(len(x_train)), "test_spots": int(len(x_test)), "probe_fitted": int(n_fitted),
        "best_gene": best, "slide": slide.sample_id, "patient": str(meta.set_index("id").loc[slide.sample_id, "patient"]),
        "valid_spots": int(valid.sum()), "moran": {k: float(v) for k, v in moran.items()},
        "abmil_first_loss": losses[0], "abmil_last_loss": losses[-1],
        "grid": {"spots": len(cells), "cells": len({tuple(c) for c in cells}), "height": int(height), "width": int(width),
                 "pairs": int(pairs.nnz), "offsets": [list(o) for o in offsets]}}
    return out


# ---------------------------------------------------------------------------------------------
# losses and model: short runs of the library's training loop on the tiny cohort
# ---------------------------------------------------------------------------------------------


def compute_losses() -> dict:
    """The losses chapter: one spatially variable gene and one count vector of the default cohort's
    first slide (the chapter computes every loss on them live), and each loss term before and after
    a short training run on the tiny cohort."""
    from stflib import train
    from stflib.data import read_hest_sample
    from stflib.sim import default_cohort

    sample = read_hest_sample(default_cohort("default"), SLIDE)
    counts = sample.counts.toarray()
    library = counts.sum(1, keepdims=True)
    logcp = np.log1p(counts / np.maximum(library, 1) * 1e4)
    gene = int(np.argmax(logcp.var(0)))
    g = int(np.argsort(counts.mean(0))[-200])  # a moderately expressed gene
    vectors = pd.DataFrame({"log1p CP10k, most variable gene": logcp[:, gene], "UMIs, moderately expressed gene": counts[:, g]})
    run = train.run(preset="tiny", loss="mse_pcc", pcc_weight=1.0, pathway_init=True, pathway_loss_weight=0.5,
                    max_steps=80, eval_every=20, write=False, progress=False, log=None)
    terms = pd.DataFrame(run.metrics["loss_terms"])
    return {"genes": vectors, "loss_terms": terms,
            "facts": {"slide": SLIDE, "variable_gene": str(sample.genes[gene]), "count_gene": str(sample.genes[g]),
                      "spots": int(len(counts)), "max_steps": 80}}


def compute_model() -> dict:
    """The model chapter: a pathway-bottleneck STF trained briefly on the tiny cohort, its
    head-averaged attention of the last layer on a held-out slide."""
    from stflib import train

    demo = train.run(preset="tiny", backbone=BACKBONE, interactions="bottleneck", max_steps=60, eval_every=20,
                     return_attention=True, output_dir="demo-run", write=False, progress=False, log=None)
    held_out = demo.predictions[0]
    n = len(held_out["pred"])
    coords = demo.adata.obsm["spatial"][:n]
    names = list(demo.model.config.pathway_names)
    last = np.asarray(held_out["attention"][-1], dtype=float)
    last = last[0].mean(0) if last.ndim == 4 else last[0] if last.ndim == 3 else last
    T = len(names) + n
    last = last[:T, :T]
    return {"attention_last_layer": pd.DataFrame(last.astype(np.float32)),
            "attention_coords": pd.DataFrame(coords, columns=["x", "y"]),
            "facts": {"slide": str(held_out["sample_id"]), "spots": int(n), "layers": len(held_out["attention"]),
                      "shape": list(np.asarray(held_out["attention"][0]).shape), "pathways": names,
                      "max_steps": 60}}
