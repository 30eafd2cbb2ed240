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

# %% tags=["remove-input"]
from stflib.report import pages

pages.page_banner("baselines")

# %% [markdown]
# ## Motivation
#
# Is the transformer worth it? The same data, targets, folds and metrics for simple and
# established alternatives (see the baselines chapter).
#
# ## The idea
#
# STF at its defaults against HE2RNA-style linear regression, a per-spot MLP, HEST-Bench's probe
# (standardise, PCA 256, ridge), ABMIL and TransMIL (slide-level models, whose per-slide output is
# compared with every spot of the slide), and the mean-expression floor.
#
# ## Runnable code
#
# The numbers below are read from `results/summary.csv` (one row per run, written by
# `python -m stflib collect` after `python -m stflib ablate params/baselines`); nothing is typed by
# hand. Re-run one arm with
# `papermill notebooks/ablation.ipynb out.ipynb -f params/baselines/stf.yaml -p fold 0`.

# %% [markdown]
# ## What we measured

# %%
from stflib.report import figures, pages, results

pages.axis_report("baselines")

# %% [markdown]
# ### Diagnosis: does each model fit its training data?
#
# The torch models below share the loss, the targets, the optimiser and the schedule, so their
# training-loss curves are directly comparable. A model whose training loss stays high while a
# per-spot MLP's falls is under-fitting (an optimisation or architecture problem), not
# over-fitting; a model whose validation PCC peaks early and then falls is over-fitting or
# optimising something other than the metric.

# %%
folders = results.runs_root(results.page_summary())  # the shown runs' folders (a real cohort's, where shown)
pages.optional_section(
    lambda: figures.plot_histories(results.histories("baselines", ["stf", "mlp", "he2rna"], fold=0, results_dir=folders)),
    "The training histories", "python -m stflib ablate params/baselines")

# %% [markdown]
# **What we expected before running the grid.** Per-spot models see only a spot's own features; STF can also use its neighbours'. Slide-level
# models predict one profile per slide, so their spot-level correlation within a slide is near
# zero by construction: they are included to show the floor of ignoring space, not as
# competitors.
#
# ## Key takeaways
#
# Written by `stflib.report.findings.takeaways` from this page's paired intervals (a difference is a finding
# when its Holm-adjusted p-value across the arms of the axis is below 0.05):

# %%
pages.show_takeaways("baselines")

# %% [markdown]
# ## References
#
# {cite}`jaume2024hest`
