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
# The 15 non-empty subsets of `{p2p, p2h, h2p, h2h}`, every other parameter at its default. `full`
# (all four) and `bottleneck` (`p2p,p2h,h2p`) are the original STF's named variants. Note that the
# gene prediction reads only the patch tokens: an arm where patches can neither read pathways
# (`h2p`) nor each other (`h2h`) predicts from its own features alone. With the default read-out
# (`pathway_readout: shared`, see the `pathway_readout` chapter) the patches are scored against the
# learnable pathway tokens, not the encoded ones, so what the pathway tokens gather through `p2p`
# and `p2h` reaches a prediction only through `h2p` in a later layer: without `h2p`, `p2p` and
# `p2h` change nothing, by construction. Subsets that differ only in such flows are the **same
# model** (bit-identical predictions from the same seed; `stflib.models.equivalence`, checked
# against the model by `tests/test_equivalence.py`): the grid runs one arm per model and the tables
# below show it once, with the arms that are the same model beside it, so the Holm correction
# counts distinct models only.
#
# Under the original STF's `contextual` read-out the encoded pathway tokens score the patches, so
# every flow can act on a prediction and the 15 subsets are 15 models: the second axis of this
# page, `interactions_contextual`, is the factorial where each flow can act.
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
# The 15 subsets form a factorial design over four on/off flows, so each flow's main effect can be
# estimated from all of them at once: in every (fold, seed), the mean over the 8 subsets that have
# the flow minus the mean over the 7 that do not, averaged over the seeds of each fold; then the
# mean over the folds with its 95 % t interval, the paired t-test's p-value Holm-adjusted across the
# four flows (`p_holm`; `finding` when below 0.05) and the folds where the effect is positive
# (`wins`). A subset that is the same model as another fills its cell with that model's runs. This
# pools many arms, so it is less noisy than any single pairwise comparison above. Under the default
# read-out a main effect of `p2p` or `p2h` can only come through the subsets that also have `h2p`.
# With `p2h`, pathway tokens read the slide's patches and so become slide-specific; without it they
# are the same learned vectors for every slide.

# %%
if pages.has_runs("interactions"):  # a results folder may not have run this axis (a real cohort's, say)
    tables.show_table(tables.quadrant_effects(results.page_summary()).round(4), "interactions-main-effects")

# %% [markdown]
# ### The factorial where each flow can act: the contextual read-out
#
# The same 15 subsets with `pathway_readout: contextual` (`params/interactions_contextual/`), each
# compared with `full` under that read-out, and the four flows' main effects over the 15 distinct
# models.

# %%
CONTEXTUAL = "interactions_contextual"
pages.axis_report(CONTEXTUAL)
if pages.has_runs(CONTEXTUAL):
    tables.show_table(tables.quadrant_effects(results.page_summary(), axis=CONTEXTUAL).round(4),
                      "interactions-contextual-main-effects")

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
# Under the contextual read-out (`interactions_contextual`, every flow able to act):

# %%
pages.show_takeaways(CONTEXTUAL)

# %% [markdown]
# ## References
#
# {cite}`jaume2024hest`
