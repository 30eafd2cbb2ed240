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
# # Information flows (interactions)
#
# ## Motivation
#
# The seed's central knob: which of the four information flows between pathway tokens and patch
# tokens are on. The full model lets everything attend to everything; the pathway bottleneck (no
# `h2h`) forces every spot-to-spot message through a named pathway token; subsets without `p2h` or
# `h2p` cut the pathways off from the patches in one direction.
#
# ## The idea
#
# Every non-empty subset of `{p2p, p2h, h2p, h2h}` (15 arms) is trained on the same folds with
# every other parameter at its default. `full` (all four) and `bottleneck` (`p2p,p2h,h2p`) are the
# seed's named variants. Note that the gene prediction reads only the patch tokens (cosine with the
# pathway tokens): an arm where patches can neither read pathways (`h2p`) nor each other (`h2h`)
# predicts from its own features alone, and the pathway tokens only rotate the read-out.
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
from stflib import book

book.axis_report("interactions")

# %% [markdown]
# ### Which flow matters? Main effects over the 15-subset design
#
# The 15 arms form a factorial design over four on/off flows, so each flow's main effect can be
# estimated from all arms at once: in every fold, the mean over the 8 arms that have the flow minus
# the mean over the 7 that do not; then the mean and spread over folds. This pools many arms, so it
# is less noisy than any single pairwise comparison above. An effect of the same sign in every
# fold (`folds_positive` 0 or 3) and larger than its spread is the strongest statement this grid
# can make about a flow. With `p2h`, pathway tokens read the slide's patches and so become
# slide-specific; without it they are the same learned vectors for every slide.

# %%
book.quadrant_effects(book.load_summary()).round(3)

# %% [markdown]
# **What we expected before running the grid.** What the table can and cannot say: the simulated cohort rewards spatial context (see the data
# chapter), so arms that let information move between spots (through `h2h` directly, or through
# `p2h` then `h2p`) should beat arms that cannot. A difference smaller than its fold spread is not a
# finding.
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
