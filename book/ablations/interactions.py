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
# # Information flows (interactions)

# %% tags=["remove-input"]
from stflib.report import pages

pages.page_banner("interactions")

# %% [markdown]
# ## Motivation
#
# The original STF's central knob: which of the four information flows between pathway tokens and patch
# tokens are on. The full model lets everything attend to everything; the pathway bottleneck (no
# `h2h`) forces every spot-to-spot message through a named pathway token; subsets without `p2h` or
# `h2p` cut the pathways off from the patches in one direction.
#
# ## The idea
#
# Every non-empty subset of `{p2p, p2h, h2p, h2h}` (15 arms) is trained on the same folds with
# every other parameter at its default. `full` (all four) and `bottleneck` (`p2p,p2h,h2p`) are the
# original STF's named variants. Note that the gene prediction reads only the patch tokens: an arm where
# patches can neither read pathways (`h2p`) nor each other (`h2h`) predicts from its own features
# alone. With the default read-out (`pathway_readout: shared`, see the `pathway_readout` chapter)
# the patches are scored against the learnable pathway tokens, not the encoded ones, so what the
# pathway tokens gather through `p2p` and `p2h` reaches a prediction only through `h2p` in a later
# layer: without `h2p`, `p2p` and `p2h` change nothing, by construction. (Under the original STF's
# `contextual` read-out they would still rotate each slide's scoring directions.)
#
# ## Runnable code
#
# The numbers below are read from `results/summary.csv` (one row per run, written by
# `python -m stflib collect` after `python -m stflib ablate params/interactions`); nothing is typed by
# hand. Re-run one arm with
# `papermill notebooks/ablation.ipynb out.ipynb -f params/interactions/full.yaml -p fold 0`.

# %% [markdown]
# ## What we measured

# %%
from stflib.report import pages, results, tables

pages.axis_report("interactions")

# %% [markdown]
# ### Which flow matters? Main effects over the 15-subset design
#
# The 15 arms form a factorial design over four on/off flows, so each flow's main effect can be
# estimated from all arms at once: in every (fold, seed) pair, the mean over the 8 arms that have
# the flow minus the mean over the 7 that do not; then the mean over pairs with its 95 % t interval,
# the paired t-test's p-value Holm-adjusted across the four flows (`p_holm`; `finding` when below
# 0.05) and the pairs where the effect is positive (`wins`). This pools many arms, so it is less
# noisy than any single pairwise comparison above. With `p2h`, pathway tokens read the slide's patches and so become
# slide-specific; without it they are the same learned vectors for every slide.

# %%
tables.show_table(tables.quadrant_effects(results.load_summary()).round(4), "interactions-main-effects")

# %% [markdown]
# **What we expected before running the grid.** What the table can and cannot say: the simulated cohort rewards spatial context (see the data
# chapter), so arms that let information move between spots (through `h2h` directly, or through
# `p2h` then `h2p`) should beat arms that cannot. A difference smaller than its fold spread is not a
# finding.
#
# ## Key takeaways
#
# Written by `stflib.report.findings.takeaways` from this page's paired intervals (a difference is a finding
# when its Holm-adjusted p-value across the arms of the axis is below 0.05):

# %%
pages.show_takeaways("interactions")

# %% [markdown]
# ## References
#
# {cite}`jaume2024hest`
