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
# # Log transform of the targets
#
# ## Motivation
#
# Expression is heavy-tailed: a few highly expressed genes dominate an MSE on CP10k. The seed's
# `--log-transform` trains on log1p(CP10k) instead.
#
# ## The idea
#
# Two arms, `off` (CP10k targets) and `on` (log1p CP10k targets). Both are evaluated on log1p CP10k.
#
# ## Runnable code
#
# The numbers below are read from `results/summary.csv` (one row per run, written by
# `python -m stflib collect` after `python -m stflib ablate params/log_transform`); nothing is typed by
# hand. Re-run one arm with
# `papermill notebooks/ablation.ipynb out.ipynb -f params/log_transform/off.yaml -p fold 0`.

# %% [markdown]
# ## What we measured

# %%
from stflib import book

book.axis_report("log_transform")

# %% [markdown]
# **What we expected before running the grid.** Training on the scale the metric uses usually helps; without the transform, the loss is dominated
# by the few genes with the largest counts.
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
