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
# # Balancing the pathway keys (h2p)

# %% tags=["remove-input"]
from stflib.report import pages

pages.page_banner("h2p_balance")

# %% [markdown]
# ## Motivation
#
# In the `h2p` flow each patch reads the pathway tokens. With local context (`n_neighbors` 18), a
# patch's softmax runs over 50 pathway keys and 19 patch keys (its 18 neighbours and itself). At
# a uniform start the 50 pathway tokens take 50 / 69 = 72 % of that attention, and they are the
# same 50 vectors for every spot of the slide, so most of what a spot reads from the start is a
# slide-wide constant rather than its neighbourhood.
#
# ## The idea
#
# Each layer learns one logit offset per head, added to a patch's scores for the pathway keys
# (`balance_h2p`, the default). It starts at $-\log P$, so the $P$ pathway keys together start with
# the weight of a single neighbour (5 % of the attention with 18 neighbours), and training can move
# it. The flow stays on and stays switchable: with `h2p` off there is no offset. Two arms: the
# original STF's plain softmax (`plain`, `balance_h2p: false`) and the offset (`balanced`, the default STF).
# The model chapter shows the share of attention at the start as a function of the neighbourhood.
#
# ## Runnable code
#
# The numbers below are read from `results/summary.csv` (one row per run, written by
# `python -m stflib collect` after `python -m stflib ablate params/h2p_balance`); nothing is typed by
# hand. Re-run one arm with
# `papermill notebooks/ablation.ipynb out.ipynb -f params/h2p_balance/plain.yaml -p fold 0`.

# %% [markdown]
# ## What we measured

# %%
pages.axis_report("h2p_balance")

# %% [markdown]
# **What we expected before running the grid.** The offset was adopted on validation patients
# only: the reference search in the model chapter scores the plain softmax (its
# `{"balance_h2p": false}` row) against the offset, and an exploratory comparison over 3 folds x
# 2 seeds found the same gain as switching `h2p` off altogether. On the test folds we expected a
# gain of a similar size and no change in how well the pathway tokens match the simulator's
# activities, since the pathway tokens themselves attend as before.
#
# ## Key takeaways
#
# Written by `stflib.report.findings.takeaways` from this page's paired intervals (a difference is a finding
# when its Holm-adjusted p-value across the arms of the axis is below 0.05):

# %%
pages.show_takeaways("h2p_balance")

# %% [markdown]
# ## References
#
# {cite}`vaswani2017attention,jaume2024hest`
