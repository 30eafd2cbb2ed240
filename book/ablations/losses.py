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

# %% tags=["remove-input"]
from stflib.report import pages

pages.page_banner("losses")

# %% [markdown]
# ## Motivation
#
# The original STF trains with MSE by default and offers PCC, MSE + PCC and a ZINB likelihood on raw
# counts. The metric is a correlation, so a loss that rewards the spatial pattern should help;
# ZINB models the counts' noise but has to learn library-size-offset rates.
#
# ## The idea
#
# Four arms, identical except for `loss` (with `pcc_weight` 1 for MSE + PCC). Every model's output is
# converted to log1p CP10k before evaluation, so the arms are scored on the same scale.
#
# ## Runnable code
#
# The numbers below are read from `results/summary.csv` (one row per run, written by
# `python -m stflib collect` after `python -m stflib ablate params/losses`); nothing is typed by
# hand. Re-run one arm with
# `papermill notebooks/ablation.ipynb out.ipynb -f params/losses/mse.yaml -p fold 0`.

# %% [markdown]
# ## What we measured

# %%
from stflib.report import pages, results

pages.axis_report("losses")

# %% [markdown]
# ### How large is each term of the training loss?
#
# A weight such as `pcc_weight` or `pathway_loss_weight` acts relative to the other terms. The
# table gives each term's value at the first epoch of fold 0 (from the runs' `history.csv`): when
# one term is orders of magnitude larger than another, the smaller one barely moves the gradients.

# %%
from IPython.display import display

shown = results.page_summary()  # the results folder's real runs where it has any, else the simulated ones
pages.optional_section(lambda: display(results.loss_terms("losses", ["mse", "mse_pcc", "pcc"],
                                                          results_dir=results.runs_root(shown)).round(3)),
                       "The loss terms", "python -m stflib ablate params/losses")

# %% [markdown]
# ### Pattern or scale?
#
# A loss can leave the spatial pattern intact and change only how far the predictions spread.
# `collapse_ratio` (the predicted over the measured within-slide variance of the 50 HVGs) cannot
# tell the two apart; `stflib.report.spread` can: `explained_share` is the collapse ratio a
# prediction with the run's correlations would show if it were calibrated, and
# `calibration_slope` is the truth's least-squares slope on the predictions within each slide (1
# calibrated, above 1 flatter than the run's accuracy warrants, below 1 more spread). The figures
# are the mean over each arm's runs, computed from their `predictions.h5ad` by
# `python -m stflib spread losses` (`results/ceilings/spread_losses.csv`).

# %%
pages.spread_section("losses", shown)

# %% [markdown]
# Read the table by its columns: the arms share their explained share (the pattern) and differ in
# their slope (the scale). A PCC term is blind to scale, so with it only the MSE term and the
# weight decay set how far the predictions spread.
#
# **What we expected before running the grid.** PCC-based losses optimise (a slide-level version of) the metric itself; MSE optimises magnitude.
# The ZINB arm's result depends on how well a per-gene dispersion fits the simulator's counts,
# which are ZINB by construction: a favourable setting for it, stated so that it is not over-read.
#
# ## Key takeaways
#
# Written by `stflib.report.findings.takeaways` from this page's paired intervals (a difference is a finding
# when its Holm-adjusted p-value across the arms of the axis is below 0.05):

# %%
pages.show_takeaways("losses")

# %% [markdown]
# ## References
#
# {cite}`jaume2024hest`
