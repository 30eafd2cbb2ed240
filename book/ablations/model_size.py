# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Model size
#
# ## Motivation
#
# How much capacity the interaction model needs. The seed's default preset is "small
# interaction, CTransPath, 4 layers".
#
# ## The idea
#
# Three arms on the CTransPath stand-in: tiny (64-wide, 2 layers), small (256-wide, 4 layers, the
# seed's preset) and medium (384-wide, 6 layers).
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
from stflib import book

book.axis_report("model_size")

# %% [markdown]
# **What we expected before running the grid.** With a dozen training slides, capacity is rarely the bottleneck; larger models cost time (see the
# training-time column) and may overfit.
#
# ## Key takeaways
#
# - The generated reading above states which differences exceed their fold spread; only those
#   are findings on this cohort.
# - Results on the simulated cohort test whether a design choice can use the structure we built
#   in; they do not replace the same grid on real HEST-1k (see the real-data chapter).
#
# ## References
#
# {cite}`jaume2024hest`
