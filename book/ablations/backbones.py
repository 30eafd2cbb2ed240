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
# # Backbones (simulated stand-ins)

# %% tags=["remove-input"]
from stflib import book

book.page_banner("backbones")

# %% [markdown]
# ## Motivation
#
# Which frozen foundation model produces the patch features. On real data this is usually the
# largest effect in HEST-Bench.
#
# ## The idea
#
# Six arms, one per backbone name, each with the simulator's stand-in features of that backbone's
# width. **These are not real embeddings**: the simulator maps each spot's latent morphology
# through a fixed random network and adds noise whose level follows HEST-Bench's published
# ranking of the encoders (see the data chapter). This axis therefore checks that STF turns more
# informative features into better predictions; it says nothing new about the real encoders.
#
# ## Runnable code
#
# The numbers below are read from `results/summary.csv` (one row per run, written by
# `python -m stflib collect` after `python -m stflib ablate params/backbones`); nothing is typed by
# hand. Re-run one arm with
# `papermill notebooks/ablation.ipynb out.ipynb -f params/backbones/resnet50.yaml -p fold 0`.

# %% [markdown]
# ## What we measured

# %%
from stflib import book

book.axis_report("backbones")

# %% [markdown]
# **What we expected before running the grid.** The expected ordering is the one we put in (ResNet-50 noisiest, GigaPath and Hibou-L least
# noisy); a model that did not follow it would be failing to use its inputs.
#
# ## Key takeaways
#
# Written by `stflib.book.takeaways` from this page's paired intervals (a difference is a finding
# when its Holm-adjusted p-value across the arms of the axis is below 0.05):

# %%
book.show_takeaways("backbones")

# %% [markdown]
# ## References
#
# {cite}`jaume2024hest`
