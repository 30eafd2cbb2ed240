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
# # Model size

# %% tags=["remove-input"]
from stflib.report import pages

pages.page_banner("model_size")

# %% [markdown]
# ## Motivation
#
# How much capacity the interaction model needs. The original STF's default preset is "small
# interaction, CTransPath, 4 layers".
#
# ## The idea
#
# Three arms on the CTransPath stand-in: tiny (64-wide, 2 layers), small (256-wide, 4 layers, the
# original STF's preset) and medium (384-wide, 6 layers).
#
# ## Runnable code
#
# The numbers below are read from `results/summary.csv` (one row per run, written by
# `python -m stflib collect` after `python -m stflib ablate params/model_size`); nothing is typed by
# hand. Re-run one arm with
# `papermill notebooks/ablation.ipynb out.ipynb -f params/model_size/small.yaml -p fold 0`.

# %% [markdown]
# ## What we measured

# %%
from stflib.report import pages

pages.axis_report("model_size")

# %% [markdown]
# **What we expected before running the grid.** With a dozen training slides, capacity is rarely the bottleneck; larger models cost time (see the
# training-time column) and may overfit.
#
# ## Key takeaways
#
# Written by `stflib.report.findings.takeaways` from this page's paired intervals (a difference is a finding
# when its Holm-adjusted p-value across the arms of the axis is below 0.05):

# %%
pages.show_takeaways("model_size")

# %% [markdown]
# ## References
#
# {cite}`jaume2024hest`
