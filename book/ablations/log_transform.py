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
# # Log transform of the targets

# %% tags=["remove-input"]
from stflib.report import pages

pages.page_banner("log_transform")

# %% [markdown]
# ## Motivation
#
# Expression is heavy-tailed: a few highly expressed genes dominate an MSE on CP10k. The original STF's
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
from stflib.report import pages

pages.axis_report("log_transform")

# %% [markdown]
# **How far the predictions spread.** Both arms are scored on log1p CP10k, but the `off` arm is
# trained on standardised CP10k, and its predictions are brought to the log scale afterwards.
# `explained_share` is the within-slide spread a calibrated prediction with the run's correlations
# would show and `calibration_slope` the truth's slope on the predictions (1 calibrated, below 1
# more spread than the accuracy warrants; `stflib.report.spread`, from the runs'
# `predictions.h5ad` by `python -m stflib spread log_transform`), so a higher `collapse_ratio` is
# read as pattern or as overshoot.

# %%
from stflib.report import results

pages.spread_section("log_transform", results.page_summary())

# %% [markdown]
# **What we expected before running the grid.** Training on the scale the metric uses usually helps; without the transform, the loss is dominated
# by the few genes with the largest counts.
#
# ## Key takeaways
#
# Written by `stflib.report.findings.takeaways` from this page's paired intervals (a difference is a finding
# when its Holm-adjusted p-value across the arms of the axis is below 0.05):

# %%
pages.show_takeaways("log_transform")

# %% [markdown]
# ## References
#
# {cite}`jaume2024hest`
