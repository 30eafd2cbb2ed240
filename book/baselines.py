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
# ```{admonition} In this chapter
# :class: tip
# **You will learn** the models STF is compared with, from the floor (the training mean) to
# slide-level multiple-instance learners, what each sees and outputs, and why the comparison is fair.
#
# **Prerequisites**: {doc}`evaluation`, {doc}`training`.
# ```

# %% tags=["remove-input"]
from stflib.report import pages

pages.run_time_note("baselines")

# %% [markdown]
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
#   whole slide; the original STF keeps its core, a direct regression from frozen tile features to genes,
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
# and their one prediction per slide is copied to every spot for scoring: they are the original STF's
# "global" mode, and they can only be right about differences *between* slides. Within a slide their
# map is flat, so they test how much of the pooled PCC comes from slide-level differences alone.
#
# ## Runnable code
#
# The probe, the references, Moran's I and the ABMIL demonstration below are fitted once on the
# default cohort's fold 0 by `python -m stflib chapters --chapter baselines`, which writes what this
# page shows into `results/chapters/baselines/`; the model sizes and TransMIL's grid are computed
# here.
#
# ### The default cohort, fold 0

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from stflib.models import MODELS, build_model, model_table
from stflib.models.mil import visium_grid
from stflib.report import chapters
from stflib.report.figures import spot_maps

facts = chapters.facts("baselines")
feature_dim, n_vocab, n_hvg = facts["feature_dim"], facts["vocab"], facts["n_hvg"]
print(f"fold 0: {facts['train_slides']} training slides, {facts['test_slides']} held-out slides of other patients; "
      f"features {feature_dim}-d (CTransPath stand-in); vocabulary {n_vocab} genes, {n_hvg} HVGs")

# %% [markdown]
# ### Sizes
#
# Every torch model is built by name with `build_model`, with the cohort's feature width and
# vocabulary and each model's default hyper-parameters (those the ablation grid uses). What each
# model sees and outputs is part of its registry entry (`stflib.models.MODELS`), so a model added
# to the registry appears here with no edit to this page:

# %%
sizes = {}
for name, spec in MODELS.items():
    if spec.kind == "torch":
        model = build_model(name, feature_dim, n_vocab)
        sizes[name] = sum(p.numel() for p in model.parameters() if p.requires_grad)
sizes["mean"] = n_vocab  # fitted, not trained: one number per gene (the training mean profile)
zoo = model_table().set_index("name")
zoo["trainable parameters"] = pd.Series(sizes).astype("Int64")
zoo[["class", "sees", "outputs", "trainable parameters", "reference"]]

# %% [markdown]
# The ridge probe has no gradient-trained weights; its fitted arrays are counted below. The sizes
# differ widely (table above), so a comparison on a small cohort also asks whether extra capacity
# is used or only memorises the training slides.
#
# ### HEST-Bench's probe on held-out patients
#
# Inputs are the features of the QC-passed spots; targets the log1p(CP10k) of the 50 HVGs of the
# training fold (`calibration.log_cp10k`); the score of a gene is its Pearson correlation across
# all held-out spots, pooled over the held-out slides, as in HEST-Bench.

# %%
pcc = chapters.table("baselines", "probe_pcc")["PCC"].sort_values()
print(f"{facts['train_spots']:,} training spots, {facts['test_spots']:,} held-out spots; {facts['probe_fitted']:,} fitted numbers")
print(f"mean PCC over the {len(pcc)} HVGs: {pcc.mean():.3f} (median {pcc.median():.3f}, "
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
chapters.table("baselines", "references").round(3)

# %% [markdown]
# ### Predicted and measured: the best gene on a held-out slide

# %%
best_map = chapters.table("baselines", "best_gene_map", index_col=None)
best = facts["best_gene"]
r = np.corrcoef(best_map["measured"], best_map["predicted"])[0, 1]
fig = spot_maps(best_map[["x", "y"]].to_numpy(), {f"{best}, measured (log1p CP10k)": best_map["measured"].to_numpy(),
                                                   f"{best}, probe + training mean (PCC {r:.2f})": best_map["predicted"].to_numpy()},
                ncols=2)
print(f"held-out slide {facts['slide']} (patient {facts['patient']}), {facts['valid_spots']} valid spots")

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
# A printable example first: a 6 x 6 square grid of spots (4 nearest neighbours each) with a smooth
# gradient and with a checkerboard.

# %%
from stflib.metrics import morans_i, spatial_weights

grid = np.array([(x, y) for y in range(6) for x in range(6)], dtype=float)
values = np.column_stack([grid[:, 0] + grid[:, 1], (grid.sum(1) % 2) * 2 - 1])   # gradient, checkerboard
print(pd.DataFrame(values[:, 1].reshape(6, 6).astype(int)).to_string(header=False, index=False))
print("Moran's I, gradient and checkerboard:", morans_i(values, spatial_weights(grid, k=4)).round(2))

# %%
moran = facts["moran"]
print(f"ridge probe + training mean, {facts['test_slides']} held-out slides: median Moran's I predicted "
      f"{moran['moran_i_pred_median']:.3f}, measured {moran['moran_i_true_median']:.3f}; "
      f"Spearman over the 50 HVGs {moran['moran_rank_spearman']:.3f}")
first = chapters.table("baselines", "moran_first_slide")
fig, ax = plt.subplots(figsize=(3.6, 3.4))
ax.scatter(first["measured"], first["predicted"], s=12, color="C0")
ax.axline((0, 0), slope=1, color="0.6", lw=1, ls="--")
ax.set_xlabel("Moran's I, measured")
ax.set_ylabel("Moran's I, predicted")
ax.set_title(f"50 HVGs on held-out slide {facts['slide']}", fontsize=9)

# %% [markdown]
# Points above the diagonal are genes the probe draws smoother than the tissue; a cloud along the
# diagonal means the probe ranks the patterned genes as the tissue does.
#
# ### ABMIL: where a slide-level model looks
#
# ABMIL was trained on the training slides' mean log1p(CP10k) profiles of the 50 HVGs (MSE), with
# features standardised on the training spots, for 150 steps; each step saw a random bag of 128
# spots per slide, a common MIL practice. The attention map was then computed on all the spots of a
# held-out slide. This is an illustration, not the trained comparison.

# %%
attention = chapters.table("baselines", "abmil_attention", index_col=None)
print(f"training MSE on slide means: first step {facts['abmil_first_loss']:.3f}, last step {facts['abmil_last_loss']:.4f}")
weights = attention["ABMIL attention x number of spots"]
fig = spot_maps(attention[["x", "y"]].to_numpy(), {c: attention[c].to_numpy() for c in attention.columns[2:]}, ncols=3)
print(f"attention weights: max {weights.max():.2f}x, min {weights.min():.3f}x the uniform weight")
chapters.table("baselines", "abmil_correlation").sort_values("PCC(attention, fraction)").round(2).T

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
# own cell, and hexagonal neighbours should be adjacent cells. On seven spots you can print:

# %%
pitch = 100.0
toy = np.array([(0, 0), (1, 0), (2, 0), (0.5, np.sqrt(3) / 2), (1.5, np.sqrt(3) / 2), (1, np.sqrt(3)), (2, np.sqrt(3))]) * pitch
cells, height, width = visium_grid(torch.tensor(toy, dtype=torch.float32)[None], torch.ones(1, len(toy), dtype=torch.bool))
print(pd.DataFrame(np.column_stack([toy.round(1), cells[0].numpy()]), columns=["x", "y", "row", "column"]).to_string())
g = facts["grid"]
print(f"held-out slide {facts['slide']}: {g['spots']} spots -> {g['cells']} distinct cells on a {g['height']} x "
      f"{g['width']} grid; {g['pairs']} hexagonal neighbour pairs, |cell offsets| {g['offsets']} "
      "(adjacent on the array: (0, 2) in a row, (1, 1) across rows)")
transmil = build_model("transmil", feature_dim, n_hvg, dropout=0.0, n_heads=8)
with torch.no_grad():
    out = transmil(torch.randn(1, len(toy), feature_dim), torch.tensor(toy, dtype=torch.float32)[None])
print("TransMIL output:", tuple(out.genes.shape), "(one profile for the slide)")

# %% [markdown]
# ## Exercises
#
# ```{exercise}
# :label: baselines-ex-oracle
# Why is the slide-mean oracle's pooled PCC above 0 although it predicts one profile per slide?
# What would its within-slide PCC be?
# ```
#
# ```{solution} baselines-ex-oracle
# :class: dropdown
# Pooled over held-out slides, its values differ between slides as the slides' means do, which
# correlates with every gene whose mean differs between slides. Within a slide it is constant, so
# its within-slide PCC is 0 (see {doc}`evaluation`).
# ```
#
# ```{exercise}
# :label: baselines-ex-moran
# On the 6 x 6 toy grid above, what Moran's I does a constant map have, and why does the library
# need a convention for it?
# ```
#
# ```{solution} baselines-ex-moran
# :class: dropdown
# Its centred values are all zero, so $\sum_i z_i^2 = 0$ and $I$ is 0/0, undefined: a flat
# prediction has no spatial pattern to compare, and the summary must say how it treats it.
# ```
#
# ## What we measured
#
# - Sizes: the table above, from `build_model` with the default cohort's dimensions.
# - HEST-Bench's probe on fold 0 of the simulated cohort (fitted by `python -m stflib chapters`):
#   the per-gene PCC distribution and its mean are printed above, with the best gene's map on a
#   held-out slide. The mean-expression floor scores
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
