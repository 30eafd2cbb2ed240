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
# # Positional encoding

# %% tags=["remove-input"]
from stflib.report import pages

pages.page_banner("positional_encoding")

# %% [markdown]
# ## Motivation
#
# Patch tokens carry their position on the slide through a 2-D encoding of (x, y). Without one,
# attention is permutation-invariant: a spot cannot tell a near neighbour from a far one.
#
# ## The idea
#
# Three arms: the original STF's 2-D sinusoidal encoding, a learned encoding, and none.
#
# ## Runnable code
#
# The numbers below are read from `results/summary.csv` (one row per run, written by
# `python -m stflib collect` after `python -m stflib ablate params/positional_encoding`); nothing is typed by
# hand. Re-run one arm with
# `papermill notebooks/ablation.ipynb out.ipynb -f params/positional_encoding/sinusoidal.yaml -p fold 0`.

# %% [markdown]
# ## What we measured

# %%
from stflib.report import pages

pages.axis_report("positional_encoding")

# %% [markdown]
# **What we expected before running the grid.** Absolute position is not biologically meaningful across slides (tissue is placed anywhere on the
# capture area), so the encoding can only help through relative structure; a small or null effect
# is a plausible outcome.
#
# ## Key takeaways
#
# Written by `stflib.report.findings.takeaways` from this page's paired intervals (a difference is a finding
# when its Holm-adjusted p-value across the arms of the axis is below 0.05):

# %%
pages.show_takeaways("positional_encoding")

# %% [markdown]
# ## References
#
# {cite}`jaume2024hest`
