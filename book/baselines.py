# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Baselines
#
# ## Motivation
#
# A number such as "mean PCC 0.3 over 50 genes" means nothing alone: it depends on the cohort, the
# encoder, the genes, the folds. STF's claims (that attention between spots and a pathway bottleneck
# help) are only claims relative to simpler models trained and scored the same way. This chapter
# presents those models, from the floor (predict the average) to two slide-level multiple-instance
# learners, sizes them on the default cohort, and runs the two cheapest ones here: HEST-Bench's
# linear probe and a briefly trained ABMIL, whose attention we look at.
#
# ## The idea
#
# Every baseline reads the same frozen features of the same spots and is scored on the same
# log1p(CP10k) targets. They differ in **what they see** and **what they output**:
#
# | model | sees | outputs | reference |
# |---|---|---|---|
# | mean expression (`mean`) | nothing | the training mean, at every spot | the floor |
# | HE2RNA-style regression (`he2rna`) | one spot | that spot's genes, one linear layer | {cite}`schmauch2020he2rna` |
# | per-spot MLP (`mlp`) | one spot | that spot's genes, one hidden layer | generic |
# | HEST-Bench probe (`RidgeProbe`) | one spot | StandardScaler, PCA to 256, ridge | {cite}`jaume2024hest` |
# | ABMIL (`abmil`) | the bag of a slide's spots | one profile per slide (gated attention pooling) | {cite}`ilse2018abmil` |
# | TransMIL (`transmil`) | the bag, with spot-to-spot attention | one profile per slide (class token) | {cite}`shao2021transmil` |
# | STF (`interaction`) | the slide's spots and 50 pathway tokens | every spot's genes | this book |
#
# - **HE2RNA** {cite}`schmauch2020he2rna` predicted bulk RNA-seq of TCGA tumours from tiles of the
#   whole slide; the seed keeps its core, a direct regression from frozen tile features to genes,
#   applied per spot. The **MLP** adds one nonlinear layer.
# - **HEST-Bench's probe** {cite}`jaume2024hest` is the reference point of the field's benchmark:
#   standardise the features, project them on 256 principal components, fit a ridge regression with
#   $\alpha = 100 / (256 \cdot G)$ (here `stflib.models.RidgeProbe`, scikit-learn, no gradient descent).
# - **ABMIL** {cite}`ilse2018abmil` weighs the spots of a slide by a learned gated attention,
#   $a_s \propto \exp\big(w^\top(\tanh(V h_s) \odot \sigma(U h_s))\big)$, and regresses the slide's
#   mean expression from $\sum_s a_s h_s$.
# - **TransMIL** {cite}`shao2021transmil` lets spots attend to each other with Nyström attention
#   {cite}`xiong2021nystromformer` and adds a pyramid position encoding (PPEG: depth-wise
#   convolutions). TransMIL folds its token list into a square for PPEG; `stflib` places each spot
#   in its real Visium array cell instead, so the convolutions mix spots that are neighbours on the
#   tissue.
#
# **One protocol for every model.** Each fold's training patients are split once, by patient,
# into *fitting* and *validation* patients (`val_fraction`, at least 3 validation patients on the
# default cohort); the test patients are never seen before scoring. Every model is fitted on the
# fitting patients only and makes its one choice on the validation patients only: torch models
# their checkpoint (the median of the last three validation PCCs over the 50 HVGs), the ridge probe
# its penalty $\alpha$ (HEST-Bench's value and $10^{-2} \ldots 10^{5}$, by the same validation PCC),
# the mean predictor nothing. The standalone probe below is the plain HEST-Bench recipe on the
# training patients, for reference.
#
# **Why the comparison is fair.** All models go through the same runner as STF: the same slides,
# patient-grouped folds, gene vocabulary and 50 HVGs of the training fold, the same QC mask (masked
# spots are out of every loss and metric), the same targets and the same metrics on the same
# held-out spots. The slide-level models (ABMIL, TransMIL) are trained on each slide's mean profile
# and their one prediction per slide is copied to every spot for scoring: they are the seed's
# "global" mode, and they can only be right about differences *between* slides. Within a slide their
# map is flat, so they test how much of the pooled PCC comes from slide-level differences alone.
#
# ## Runnable code
#
# ### The default cohort, fold 0

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch


from stflib.data import SlideDataset, collate_slides, patient_folds, qc_mask, select_genes
from stflib.losses import mse_loss
from stflib.metrics import pearson_columns
from stflib.models import MODELS, MeanExpression, RidgeProbe, build_model, model_table
from stflib.models.baselines import visium_grid
from stflib.report.figures import spot_maps
from stflib.sim import calibration, default_cohort
from stflib.spatial import hex_neighbours

root = default_cohort("default")
meta, samples = calibration.load_cohort(root, backbone="ctranspath")
by_id = {s.sample_id: s for s in samples}
train_ids, test_ids = patient_folds(meta, 3, seed=0)[0]
train, test = [by_id[i] for i in train_ids], [by_id[i] for i in test_ids]
vocab, hvg = select_genes(train, n_genes=1000, n_hvg=50)
feature_dim = samples[0].features.shape[1]
print(f"fold 0: {len(train)} training slides, {len(test)} held-out slides of other patients; "
      f"features {feature_dim}-d (CTransPath stand-in); vocabulary {len(vocab)} genes, {len(hvg)} HVGs")

# %% [markdown]
# ### Sizes
#
# Every torch model is built by name with `build_model`, with the cohort's feature width and
# vocabulary and each model's default hyper-parameters (those the ablation grid uses):

# %%
SEES = {"interaction": "slide + pathway tokens", "he2rna": "one spot", "mlp": "one spot",
        "abmil": "bag of spots", "transmil": "bag of spots", "mean": "nothing"}
OUTPUT = {"interaction": "per spot", "he2rna": "per spot", "mlp": "per spot", "abmil": "per slide",
          "transmil": "per slide", "mean": "per spot (constant)"}
sizes = {}
for name in SEES:
    if MODELS[name].kind == "torch":
        model = build_model(name, feature_dim, len(vocab))
        sizes[name] = sum(p.numel() for p in model.parameters() if p.requires_grad)
sizes["mean"] = len(vocab)  # fitted, not trained: one number per gene (the training mean profile)
zoo = model_table().set_index("name")
zoo["sees"] = pd.Series(SEES)
zoo["output"] = pd.Series(OUTPUT)
zoo["trainable parameters"] = pd.Series(sizes).astype("Int64")
zoo.loc["ridge_probe", ["sees", "output"]] = ["one spot", "per spot"]
zoo[["class", "sees", "output", "trainable parameters", "reference"]]

# %% [markdown]
# The ridge probe has no gradient-trained weights; its fitted arrays are counted below, once it is
# fitted. The sizes differ widely (table above), so a comparison on a small cohort also asks
# whether extra capacity is used or only memorises the training slides.
#
# ### HEST-Bench's probe on held-out patients
#
# Inputs are the features of the QC-passed spots; targets the log1p(CP10k) of the 50 HVGs of the
# training fold (`calibration.log_cp10k`); the score of a gene is its Pearson correlation across
# all held-out spots, pooled over the held-out slides, as in HEST-Bench.

# %%
def stack(slides, fn):
    """Rows of fn(slide) for the QC-passed spots of every slide, concatenated."""
    return np.concatenate([fn(s)[qc_mask(s.counts, s.genes)] for s in slides])


x_train, y_train = stack(train, lambda s: s.features), stack(train, lambda s: calibration.log_cp10k(s, hvg))
x_test, y_test = stack(test, lambda s: s.features), stack(test, lambda s: calibration.log_cp10k(s, hvg))
probe = RidgeProbe().fit(x_train, y_train)
pred = probe.predict(x_test)
pcc = pd.Series(pearson_columns(pred, y_test), index=hvg, name="PCC").sort_values()
fitted = probe.pipeline
n_fitted = sum(a.size for a in (fitted["scale"].mean_, fitted["scale"].scale_, fitted["pca"].components_,
                                fitted["pca"].mean_, fitted["ridge"].coef_))
print(f"{len(x_train):,} training spots, {len(x_test):,} held-out spots; {n_fitted:,} fitted numbers")
print(f"mean PCC over the {len(hvg)} HVGs: {pcc.mean():.3f} (median {pcc.median():.3f}, "
      f"range {pcc.min():.3f} to {pcc.max():.3f})")
fig, ax = plt.subplots(figsize=(5, 2.8))
ax.hist(pcc, bins=15, color="C0")
ax.axvline(pcc.mean(), color="C3", ls="--", lw=1, label=f"mean {pcc.mean():.3f}")
ax.set_xlabel("PCC on held-out patients (per HVG)")
ax.set_ylabel("genes")
ax.legend(frameon=False)
pd.concat([pcc.tail(5), pcc.head(5)]).rename("PCC").to_frame().round(3)

# %% [markdown]
# The probe as HEST-Bench runs it has no intercept (`fit_intercept=False`: PCC does not care about a
# constant). Because the PCA scores are centred on the training spots, the missing intercept is
# exactly the training mean, so adding it gives the intercept model without refitting. Next to it,
# two references that need no features at all:
#
# - the **floor**: `MeanExpression`, the training mean at every spot; its PCC is 0 by definition
#   (a constant has no correlation) and its MSE is the one to beat;
# - the **slide-mean oracle**: each held-out slide's *measured* mean profile copied to all its spots.
#   No slide-level model (ABMIL, TransMIL) can do better than knowing every slide's mean exactly, so
#   its pooled PCC is the ceiling of the global mode on this fold.

# %%
floor_pred = MeanExpression().fit(x_train, y_train).predict(x_test)
slide_means = np.concatenate([
    np.repeat(calibration.log_cp10k(s, hvg)[qc_mask(s.counts, s.genes)].mean(0, keepdims=True),
              int(qc_mask(s.counts, s.genes).sum()), axis=0) for s in test])
with_intercept = pred + y_train.mean(0)
rows = {
    "floor (training mean)": (0.0, floor_pred),
    "ridge probe (no intercept, as HEST-Bench)": (pcc.mean(), pred),
    "ridge probe + training mean": (np.nanmean(pearson_columns(with_intercept, y_test)), with_intercept),
    "slide-mean oracle (ceiling of global models)": (np.nanmean(pearson_columns(slide_means, y_test)),
                                                     slide_means),
}
pd.DataFrame({name: {"mean PCC, 50 HVGs": r, "MSE (log1p CP10k)": float(((p - y_test) ** 2).mean())}
              for name, (r, p) in rows.items()}).T.round(3)

# %% [markdown]
# ### Predicted and measured: the best gene on a held-out slide

# %%
best = pcc.index[-1]
slide = test[0]
valid = qc_mask(slide.counts, slide.genes)
measured = calibration.log_cp10k(slide, [best])[:, 0]
predicted = probe.predict(slide.features)[:, hvg.index(best)] + y_train.mean(0)[hvg.index(best)]
r = np.corrcoef(measured[valid], predicted[valid])[0, 1]
fig = spot_maps(slide.coords[valid], {f"{best}, measured (log1p CP10k)": measured[valid],
                                            f"{best}, probe + training mean (PCC {r:.2f})": predicted[valid]},
                     ncols=2)
print(f"held-out slide {slide.sample_id} (patient {meta.set_index('id').loc[slide.sample_id, 'patient']}), "
      f"{int(valid.sum())} valid spots")

# %% [markdown]
# ### Spatial patterning: Moran's I of predicted and measured maps
#
# PCC asks whether a gene goes up where it should; it does not ask whether the predicted map is as
# patchy as the tissue. Moran's I does: for one gene on one slide, with $z$ the centred values and
# $w_{ij} = 1$ for neighbouring spots (each spot's 6 nearest, the ring of the Visium grid),
# $I = \frac{N}{\sum_{ij} w_{ij}} \frac{\sum_{ij} w_{ij} z_i z_j}{\sum_i z_i^2}$:
# near 1 for smooth patches, near 0 for salt-and-pepper noise. `stflib.metrics.moran_summary`
# computes it per held-out slide for the predicted and the measured maps of the 50 HVGs, averages each
# gene over slides and reports the median I of each and the Spearman correlation between them over
# genes: does the model keep *which* genes are spatially patterned? Every run's `metrics.json` carries
# the same three numbers (`moran_i_pred_median`, `moran_i_true_median`, `moran_rank_spearman`).

# %%
from stflib.metrics import moran_summary, morans_i, spatial_weights

coords_test = stack(test, lambda s: s.coords)
slide_of_spot = stack(test, lambda s: np.full(len(s.coords), s.sample_id, dtype=object))
moran = moran_summary(with_intercept, y_test, coords_test, slide_of_spot)
print(f"ridge probe + training mean, {len(test)} held-out slides: median Moran's I predicted "
      f"{moran['moran_i_pred_median']:.3f}, measured {moran['moran_i_true_median']:.3f}; "
      f"Spearman over the 50 HVGs {moran['moran_rank_spearman']:.3f}")
first = slide_of_spot == test[0].sample_id
weights = spatial_weights(coords_test[first])
fig, ax = plt.subplots(figsize=(3.6, 3.4))
ax.scatter(morans_i(y_test[first], weights), morans_i(with_intercept[first], weights), s=12, color="C0")
ax.axline((0, 0), slope=1, color="0.6", lw=1, ls="--")
ax.set_xlabel("Moran's I, measured")
ax.set_ylabel("Moran's I, predicted")
ax.set_title(f"50 HVGs on held-out slide {test[0].sample_id}", fontsize=9)

# %% [markdown]
# Points above the diagonal are genes the probe draws smoother than the tissue; a cloud along the
# diagonal means the probe ranks the patterned genes as the tissue does.
#
# ### ABMIL: where a slide-level model looks
#
# ABMIL is trained here on the training slides' mean log1p(CP10k) profiles of the 50 HVGs (MSE),
# with features standardised on the training spots. To keep this page fast, each step sees a random
# bag of 128 spots per slide, a common MIL practice; the attention map is then computed on all the
# spots of a held-out slide. This is an illustration, not the trained comparison.

# %%
torch.manual_seed(0)
batch = collate_slides([SlideDataset(train, hvg, log_transform=True)[i] for i in range(len(train))])
spots = batch["valid"]                                           # (B, S): QC-passed and not padding
mu, sd = batch["features"][spots].mean(0), batch["features"][spots].std(0)
features = (batch["features"] - mu) / sd
slide_target = (batch["targets"] * spots[..., None]).sum(1) / spots.sum(1, keepdim=True)   # (B, G)
abmil = build_model("abmil", feature_dim, len(hvg), dropout=0.0)
optimiser = torch.optim.AdamW(abmil.parameters(), lr=1e-3)
generator = torch.Generator().manual_seed(0)
losses = []
for step in range(150):
    bag = torch.randint(0, features.shape[1], (128,), generator=generator)
    out = abmil(features[:, bag], batch["coords"][:, bag], pad_mask=~spots[:, bag])
    loss = mse_loss(out.genes, slide_target[:, None])            # (B, 1, G) per-slide predictions
    optimiser.zero_grad()
    loss.backward()
    optimiser.step()
    losses.append(loss.item())
print(f"training MSE on slide means: first step {losses[0]:.3f}, last step {losses[-1]:.4f}")

item = collate_slides([SlideDataset([slide], hvg, log_transform=True)[0]])
with torch.no_grad():
    out = abmil((item["features"] - mu) / sd, item["coords"], pad_mask=~item["valid"], return_attention=True)
attention = out.attention[0][0, 0, 0].numpy()                    # (S,), sums to 1 over valid spots
cell_types = list(slide.truth_names["composition"])
composition = slide.truth["composition"]
fields = {"ABMIL attention x number of spots": attention * valid.sum()}
for ct in ("tumour_epithelial", "fibroblast"):
    fields[f"true {ct.replace('_', ' ')} fraction"] = composition[:, cell_types.index(ct)]
fig = spot_maps(slide.coords[valid], {k: v[valid] for k, v in fields.items()}, ncols=3)
corr = pd.Series({ct: np.corrcoef(attention[valid], composition[valid, i])[0, 1] for i, ct in enumerate(cell_types)},
                 name="PCC(attention, fraction)")
print(f"attention weights: max {attention.max() * valid.sum():.2f}x, min {attention[valid].min() * valid.sum():.3f}x "
      "the uniform weight")
corr.sort_values().round(2).to_frame().T

# %% [markdown]
# The attention is a weighting of spots for one slide-level answer, learned from a handful of slide means:
# which spots it favours (the correlations with the true cell-type fractions above) says what the
# model found predictive of differences between slides, not where any gene is expressed. Its
# prediction on this slide is still one profile, the same at every spot.
#
# ### TransMIL's grid
#
# PPEG needs a 2-D layout. `visium_grid` turns spot centres into integer Visium array cells (rows
# $\sqrt{3}/2$ pitches apart, alternate rows shifted by half a pitch); every spot should get its
# own cell, and hexagonal neighbours should be adjacent cells:

# %%
coords = torch.as_tensor(slide.coords, dtype=torch.float32)[None]
cells, height, width = visium_grid(coords, torch.ones(1, len(slide.coords), dtype=torch.bool))
cells = cells[0].numpy()
print(f"{len(cells)} spots -> {len({tuple(c) for c in cells})} distinct cells on a {height} x {width} grid")
pairs = hex_neighbours(slide.coords, calibration.spot_pitch_px(slide)).tocoo()
offsets = {tuple(int(v) for v in d) for d in np.abs(cells[pairs.row] - cells[pairs.col])}
print(f"{pairs.nnz} hexagonal neighbour pairs; |cell offsets| found: {sorted(offsets)} "
      "(adjacent on the array: (0, 2) in a row, (1, 1) across rows)")
transmil = build_model("transmil", feature_dim, len(hvg), dropout=0.0)
with torch.no_grad():
    out = transmil(item["features"], item["coords"], pad_mask=~item["valid"])
print("TransMIL output:", tuple(out.genes.shape), "(one profile for the slide)")

# %% [markdown]
# ## What we measured
#
# - Sizes: the table above, from `build_model` with the default cohort's dimensions.
# - HEST-Bench's probe on fold 0 of the simulated cohort: the per-gene PCC distribution and its mean
#   are printed above, with the best gene's map on a held-out slide. The mean-expression floor scores
#   PCC 0 and sets the MSE to beat; the slide-mean oracle bounds what any slide-level model can
#   reach on the pooled metric.
# - Moran's I of the probe's predicted and the measured maps of the 50 HVGs on the held-out slides:
#   the medians and their rank correlation printed above, per gene on the first held-out slide in the
#   scatter plot.
# - ABMIL's attention on a held-out slide, after a short training on slide means, and how it lines up
#   with the simulator's true cell-type fractions.
#
# The trained comparison of all baselines against STF, over every fold, with the same runner and
# metrics, is on the baselines page of the ablation results.
#
# ## Key takeaways
#
# - The floor (PCC 0) and HEST-Bench's linear probe bracket what a useful model must beat; the probe
#   is fast, has one penalty to choose (on the validation patients, like every model's choice), and is
#   a strong reference on frozen features.
# - Per-spot models (HE2RNA-style, MLP, probe) see one spot; slide-level models (ABMIL, TransMIL) see
#   a bag but answer once per slide, so they can only explain differences between slides.
# - PCC and spatial patterning are different questions: Moran's I of predicted vs measured maps tells
#   whether a model keeps which genes form patches in the tissue, and how much smoother it draws them.
# - Every baseline shares STF's data, targets, QC masks, patient folds and metrics: differences in
#   the ablation results come from the models.
#
# ## References
#
# {cite}`schmauch2020he2rna,jaume2024hest,ilse2018abmil,shao2021transmil,xiong2021nystromformer`
