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
# # Which pathway tokens score the patches

# %% tags=["remove-input"]
from stflib.report import pages

pages.page_banner("pathway_readout")

# %% [markdown]
# ## Motivation
#
# A pathway score is the cosine between a spot's encoded patch token and a pathway token, times a
# learnable temperature. In the original STF the pathway token is the *encoder's output*: with `p2h` on it
# has read the slide's patches, so the direction that scores pathway $p$ differs from slide to
# slide. The auxiliary loss is a PCC across the spots of each slide, so it cannot see what this
# does between slides: each slide's scores may carry their own offset and scale. The truth metric,
# `pathway_pcc_truth`, and the pathway ceiling it is read against pool the held-out slides, where
# those per-slide offsets act as noise.
#
# ## The idea
#
# Score the encoded patches against the learnable pathway tokens themselves, as they enter the
# encoder (`pathway_readout: shared`, the default): one direction per pathway, the same on every
# slide, so a score means the same thing on every slide. Nothing else changes: the pathway tokens
# still read the patches (`p2h`) and each other (`p2p`), and the patches read what they gathered
# (`h2p`) in the layers before the last. Two arms, both with the Hallmark initialisation and
# auxiliary weight 0.5, the arm whose tokens are named and supervised: the original STF's read-out
# (`contextual`, the reference of this axis) and the shared one (`shared`). The reference STF of
# the other axes uses the shared read-out.
#
# ## Runnable code
#
# The numbers below are read from `results/summary.csv` (one row per run, written by
# `python -m stflib collect` after `python -m stflib ablate params/pathway_readout`); nothing is
# typed by hand. Re-run one arm with
# `papermill notebooks/ablation.ipynb out.ipynb -f params/pathway_readout/contextual.yaml -p fold 0`.

# %% [markdown]
# ## What we measured

# %%
pages.axis_report("pathway_readout")

# %% [markdown]
# **Where the scores vary.** For each arm, over its runs' held-out patients: the pathway PCC with
# the truth pooled over every spot (`pathway_pcc_truth`), the same after subtracting each slide's
# mean from scores and truth (only the pattern inside each slide counts), and the share of each
# pathway's variance that lies between the slides' means, for the scores and for the truth
# (`stflib.report.pathway_bounds.slide_levels`; `python -m stflib pathway-bounds --slide-levels
# pathway_readout` reads the runs' `predictions.h5ad` into `results/ceilings/`). A read-out
# whose scores carry slide offsets that the truth does not have shows a pooled PCC below its
# within-slide PCC.

# %%
from stflib.report import pages, pathway_bounds, results, tables

shown = results.page_summary()  # the results folder's real runs where it has any, else the simulated ones
folders = results.runs_root(shown)
pages.optional_section(
    lambda: tables.show_table(pathway_bounds.slide_levels("pathway_readout", folders).round(3),
                              "pathway-readout-slide-levels"),
    "The slide levels", "python -m stflib pathway-bounds --slide-levels pathway_readout" + pages.runs_option(shown))

# %% [markdown]
# **How far the gene predictions spread.** The contextual read-out's gene maps vary more within a
# slide (`collapse_ratio`). Whether that is pattern or scale: `explained_share` is the spread a
# calibrated prediction with the run's correlations would have, `calibration_slope` the truth's
# slope on the predictions (1 calibrated, below 1 more spread than the accuracy warrants), as on
# the losses page (`python -m stflib spread pathway_readout`).

# %%
pages.spread_section("pathway_readout", shown)

# %% [markdown]
# **What we expected before running the grid.** The shared read-out was chosen on validation
# patients only, in an exploratory comparison over 3 folds and 2 seeds: there the named tokens
# matched the simulator's activities better with the shared read-out and the gene PCC did not
# move. On the test folds we expected `pathway_pcc_truth` to rise, and its share of the pathway
# ceiling with it, with `pcc_hvg50` unchanged.
#
# ## Key takeaways
#
# Written by `stflib.report.findings.takeaways` from this page's paired intervals (a difference is a finding
# when its Holm-adjusted p-value across the arms of the axis is below 0.05):

# %%
pages.show_takeaways("pathway_readout")

# %% [markdown]
# ## References
#
# {cite}`vaswani2017attention,liberzon2015hallmark`
