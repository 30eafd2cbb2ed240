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
# # Losses
#
# ```{admonition} In this chapter
# :class: tip
# **You will learn** what each of the original STF's losses rewards (MSE, PCC, MSE + PCC, ZINB,
# the auxiliary pathway loss), why MSE alone rewards spatial collapse, and why every term is
# computed on per-gene standardised targets.
#
# **Prerequisites**: {doc}`targets_and_pathways`; Pearson correlation; likelihoods.
# ```

# %% tags=["remove-input"]
from stflib.report import pages

pages.run_time_note("losses")

# %% [markdown]
# ## Motivation
#
# What a model learns depends on what it is penalised for. Spot-level expression is noisy, sparse
# and heavy-tailed; a model can lower its mean squared error by predicting every spot's average
# (spatial collapse), and the metric the field reports (per-gene Pearson correlation across spots)
# does not care about scale at all. The original STF offers four gene losses and an auxiliary pathway loss;
# this chapter shows what each one rewards.
#
# ## The idea
#
# All losses take (B, S, G) tensors and a `valid` mask (B, S): padding and QC-failed spots count
# for nothing.
#
# - **MSE**: $\frac{1}{|V|G}\sum_{s \in V, g} (\hat y_{sg} - y_{sg})^2$, magnitude at each spot.
# - **PCC**: $1 - \overline{r}$, where $r$ is the Pearson correlation of a gene's predicted and
#   measured values across one slide's valid spots, averaged over slides and genes. Scale-free;
#   a constant prediction scores $r = 0$.
# - **MSE + PCC**: $\text{MSE} + \alpha(1 - \overline{r})$.
# - **ZINB**: the negative log-likelihood of the raw counts under a zero-inflated negative binomial
#   with mean $\mu$ (offset by the spot's library size), inverse dispersion $\theta$ and dropout
#   probability $\pi$ {cite}`eraslan2019dca`.
# - **Auxiliary pathway loss**: $\lambda\,(1 - \text{PCC}(\text{pathway scores}, \text{targets}))$,
#   with the original STF's z-scored, mean-aggregated Hallmark targets (see {doc}`targets_and_pathways`).
#
# ## Runnable code

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from scipy import stats

from stflib.losses import loss_table, mse_loss, pcc_loss, zinb_nll
from stflib.report import chapters

loss_table()

# %% [markdown]
# ### MSE rewards collapse, PCC does not
#
# One simulated slide, its most variable gene (log1p CP10k; the values are read from
# `results/chapters/losses/`, written by `python -m stflib chapters --chapter losses` from the
# default cohort's first slide). Three predictions: the truth's spatial pattern at half its
# amplitude, the slide mean everywhere (collapse), and the truth plus noise. Every loss below is
# computed live, by the library's functions.

# %%
facts = chapters.facts("losses")
vectors = chapters.table("losses", "genes")
y = torch.tensor(vectors["log1p CP10k, most variable gene"].to_numpy(), dtype=torch.float32).view(1, -1, 1)  # (B=1, S, G=1)
rng = np.random.default_rng(0)
predictions = {
    "pattern, half amplitude": y.mean() + 0.5 * (y - y.mean()),
    "slide mean (collapsed)": torch.full_like(y, float(y.mean())),
    "truth + noise": y + torch.tensor(rng.normal(0, float(y.std()), y.shape), dtype=torch.float32),
}
table = pd.DataFrame({name: {"MSE": float(mse_loss(p, y)), "1 - PCC": float(pcc_loss(p, y))}
                      for name, p in predictions.items()}).T
print(f"gene {facts['variable_gene']} of slide {facts['slide']}: {facts['spots']} spots")
table.round(3)

# %% [markdown]
# The collapsed prediction has a respectable MSE but the worst possible correlation (a constant
# has none; the loss treats it as $r = 0$, so $1 - r = 1$). The half-amplitude pattern has a perfect
# correlation but pays in MSE. MSE + PCC asks for both.
#
# ### Counts are zero-inflated and overdispersed
#
# The ZINB loss models raw counts directly. For one moderately expressed gene of the slide (the
# 200th most expressed) we fit, by maximum likelihood with a constant mean, a Poisson, a negative
# binomial and a ZINB (using the library's `zinb_nll`) and compare their average negative
# log-likelihoods.

# %%
x = vectors["UMIs, moderately expressed gene"].to_numpy()
y_counts = torch.tensor(x, dtype=torch.float32).view(1, -1, 1)
params = torch.zeros(3, requires_grad=True)   # log mu, log theta, logit pi
optimiser = torch.optim.Adam([params], lr=0.05)
for _ in range(600):
    optimiser.zero_grad()
    mu, theta, pi = params[0].exp(), params[1].exp(), torch.sigmoid(params[2])
    nll = zinb_nll(y_counts, mu.expand_as(y_counts), theta.expand_as(y_counts), pi.expand_as(y_counts))
    nll.backward()
    optimiser.step()
mu_hat, theta_hat, pi_hat = float(params[0].exp()), float(params[1].exp()), float(torch.sigmoid(params[2]))
poisson_nll = -stats.poisson.logpmf(x, x.mean()).mean()
mean, var = x.mean(), x.var()
r_mom = mean**2 / max(var - mean, 1e-6)       # negative binomial by the method of moments
nb_nll = -stats.nbinom.logpmf(x, r_mom, r_mom / (r_mom + mean)).mean()
print(f"gene {facts['count_gene']}: mean {mean:.2f}, variance {var:.2f}, zeros {np.mean(x == 0):.0%}")
pd.Series({"Poisson": poisson_nll, "negative binomial (moments)": nb_nll, "ZINB (fitted, zinb_nll)": float(nll)},
          name="mean NLL per spot").round(3).to_frame()

# %%
values = np.arange(0, int(np.percentile(x, 99.5)) + 1)
nb0 = stats.nbinom.pmf(values, theta_hat, theta_hat / (theta_hat + mu_hat))
zinb_pmf = (1 - pi_hat) * nb0 + pi_hat * (values == 0)
fig, ax = plt.subplots(figsize=(5, 3))
ax.hist(x, bins=np.arange(values.max() + 2) - 0.5, density=True, color="lightgrey", label="observed")
ax.plot(values, stats.poisson.pmf(values, mean), "o-", ms=3, label="Poisson")
ax.plot(values, zinb_pmf, "s-", ms=3, label=f"ZINB (pi={pi_hat:.2f}, theta={theta_hat:.2f})")
ax.set_xlabel("UMI count of one gene in one spot")
ax.set_ylabel("probability")
ax.legend(frameon=False)

# %% [markdown]
# ### One scale for every term
#
# The training loop standardises every gene with the training fold's mean and sd (of log1p CP10k,
# or of CP10k with `log_transform=False`) and computes the MSE on that scale, so a gene with sd 3
# and one with sd 215 CP10k weigh the same, the mean predictor's MSE is 1, and the PCC term
# ($\le 2$) and the auxiliary term act at their nominal weights instead of vanishing next to an
# MSE in the hundreds. Below: each term's size on the first training batch before the first step
# and after training (best checkpoint), for STF with `mse_pcc`, Hallmark initialisation and
# auxiliary weight 0.5, on the `tiny` cohort with a short step budget (the run is made once by
# `python -m stflib chapters --chapter losses`; the grid's runs use the full budget on the `default`
# cohort, and their terms are in every run's `metrics.json` under `loss_terms`).

# %%
terms = chapters.table("losses", "loss_terms").rename(index={"mse": "MSE (standardised)",
                                                              "pcc": "1 - PCC", "aux": "1 - PCC(pathways)"})
print(f"at most {facts['max_steps']} optimiser steps on the tiny cohort")
terms.round(3)

# %% [markdown]
# ## Exercises
#
# ```{exercise}
# :label: losses-ex-scale
# Multiply the "pattern, half amplitude" prediction's deviations from the mean by 2 (so it equals
# the truth). Which of the two losses changes, and to what?
# ```
#
# ````{solution} losses-ex-scale
# :class: dropdown
# MSE drops to 0; 1 - PCC stays 0 (it was already a perfect correlation). PCC cannot see the
# amplitude, MSE can:
#
# ```python
# p = y.mean() + 1.0 * (y - y.mean())
# print(float(mse_loss(p, y)), float(pcc_loss(p, y)))
# ```
# ````
#
# ```{exercise}
# :label: losses-ex-mask
# Give `mse_loss` a `valid` mask that leaves out the second half of the spots, and predict 100 on
# those spots. Does the loss change?
# ```
#
# ````{solution} losses-ex-mask
# :class: dropdown
# No: masked spots count for nothing.
#
# ```python
# valid = torch.ones(y.shape[:2], dtype=torch.bool); valid[:, y.shape[1] // 2:] = False
# wild = y.clone(); wild[~valid] = 100.0
# print(float(mse_loss(y, y, valid)), float(mse_loss(wild, y, valid)))   # both 0
# ```
# ````
#
# ## What we measured
#
# The loss tables above are computed at build time on one slide's gene, read from the committed
# file; the loss terms of the short training run are read from `results/chapters/losses/`. Which loss gives the best
# held-out correlation when training STF is an ablation axis: see the losses page of the ablation
# results, where every arm is trained on the same folds.
#
# ## Key takeaways
#
# - MSE alone rewards predicting averages; PCC alone ignores scale. Adding PCC to MSE does not by
#   itself restore the scale: the losses results page measures how far each loss's predictions
#   spread against what their accuracy warrants.
# - ZINB fits raw counts (sparsity and overdispersion) and needs the spot's library size as an
#   offset; its predictions are converted to log1p CP10k for evaluation like every other model's.
# - Every loss is mask-aware: padding and QC-failed spots never pull predictions toward zero.
# - On per-gene standardised targets all terms are O(1): `pcc_weight` and `pathway_loss_weight` act.
#
# ## References
#
# {cite}`eraslan2019dca`
