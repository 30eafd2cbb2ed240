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
# One arm per registered backbone (`stflib.backbones.BACKBONES`), each with the simulator's stand-in
# features of that encoder's width. **These are not real embeddings.** The simulator maps each spot's
# noise-free latent morphology through a fixed random network and adds noise; per encoder we set how
# much information survives (`StandIn`: noise, stain sensitivity, output noise), calibrated with
# HEST-Bench's own ridge protocol so that each stand-in's probe lands inside its encoder's published
# bowel range (READ to COAD; see the data chapter's calibration table). Those ranges overlap heavily
# (the `anchor_read` and `anchor_coad` columns of the table below), so the order of the stand-ins inside
# them is ours, not a measurement of the encoders. On this cohort the axis is therefore a **pipeline check**: does STF turn
# more informative features into better predictions? On real HEST-1k the same axis is a finding (the
# real-data grid, `params/hest/backbones`), and there the order can differ: on HEST-Bench's COAD task
# CTransPath scores below ResNet-50.
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
# **What we expected before running the grid.** STF's difference should follow the information planted
# in each stand-in (its ridge probe); a model that did not follow it would be failing to use its inputs.
# The table below sets the two side by side, ordered by the planted information, and the sentence under
# it is generated from their rank correlation.

# %%
pages.standin_check()

# %% [markdown]
# ## Key takeaways
#
# Written by `stflib.report.findings.takeaways` from this page's paired intervals (a difference is a finding
# when its Holm-adjusted p-value across the arms of the axis is below 0.05):

# %%
pages.show_takeaways("backbones")

# %% [markdown]
# On simulated data the backbone ranking is the planted information read back: a pipeline check, not a
# comparison of encoders. Only the real-HEST grid can rank real encoders (see the real-data chapter).
#
# ## References
#
# {cite}`jaume2024hest`
