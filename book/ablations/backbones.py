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
from stflib.report import pages

pages.page_banner("backbones")

# %% [markdown]
# ## Motivation
#
# Which frozen foundation model produces the patch features. On real data this is usually the
# largest effect in HEST-Bench.
#
# ## The idea
#
# Six arms, one per backbone name, each with the simulator's stand-in features of that backbone's
# width. **These are not real embeddings, and the stand-ins differ only by planted noise**: the
# simulator maps each spot's noise-free latent morphology through a fixed random network, and the
# one thing that changes from name to name is the noise level we set (`stflib.simulate.BACKBONES`),
# ordered after HEST-Bench's published ranking of the encoders (see the data chapter, which also
# shows the ridge-probe score of each stand-in). The ranking below is therefore the noise table
# read back, and on this cohort the axis is a **pipeline check**: it verifies that STF turns less
# noisy features into better predictions, and it says nothing about the real encoders. On real
# HEST-1k the same axis is a finding (the real-data grid, `params/hest/backbones`), and there the
# order can differ from our table: on HEST-Bench's COAD task CTransPath scores below ResNet-50.
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
from stflib.report import pages

pages.axis_report("backbones")

# %% [markdown]
# **What we expected before running the grid.** The expected ordering is the one we put in (ResNet-50 noisiest, GigaPath and Hibou-L least
# noisy); a model that did not follow it would be failing to use its inputs.
#
# ## Key takeaways
#
# Written by `stflib.report.findings.takeaways` from this page's paired intervals (a difference is a finding
# when its Holm-adjusted p-value across the arms of the axis is below 0.05):

# %%
pages.show_takeaways("backbones")

# %% [markdown]
# On simulated data the backbone ranking is the planted noise table: a pipeline check, not a
# comparison of encoders. Only the real-HEST grid can rank real encoders (see the real-data chapter).
#
# ## References
#
# {cite}`jaume2024hest`
