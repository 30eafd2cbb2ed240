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
# # Spatial context: whole slide or neighbourhood

# %% tags=["remove-input"]
from stflib.report import pages

pages.page_banner("context")

# %% [markdown]
# ## Motivation
#
# The seed's `--n-neighbors` flag: instead of attending to every spot of the slide, each spot's
# patch-to-patch attention is restricted to its k nearest spots (k = 6 is the first hexagonal ring
# of Visium, 18 the second). The simulator puts part of each spot's expression in its
# neighbourhood (the data chapter measures the probe's gain from neighbour features), so local
# context is where the signal is; whole-slide attention must find it among hundreds of spots.
#
# ## The idea
#
# Four arms at the reference otherwise: whole-slide attention (`n_neighbors` 0, the seed's
# default and this axis's reference), k = 6, k = 18 (the grid's reference configuration, chosen on
# validation patients), and k = 6 with the PCC loss. Local mode scales linearly with the slide,
# which is what it was designed for (slides too large for whole-slide attention).
#
# ## Runnable code
#
# The numbers below are read from `results/summary.csv` (one row per run, written by
# `python -m stflib collect` after `python -m stflib ablate params/context`); nothing is typed by
# hand. Re-run one arm with
# `papermill notebooks/ablation.ipynb out.ipynb -f params/context/whole-slide.yaml -p fold 0`.

# %% [markdown]
# ## What we measured

# %%
from stflib.report import pages, results, tables

pages.axis_report("context")

# %% [markdown]
# ### Against the HEST-Bench probe
#
# The same folds and seeds, so the context arms can be compared pair by pair with the strongest
# baseline of the baselines page, HEST-Bench's ridge probe (which sees one spot at a time); the
# columns are those of the table above, the Holm family being the four context arms:

# %%
tables.show_table(tables.deltas_to(results.load_summary(), [("context", arm) for arm in ["whole-slide", "k6", "k18", "k6_pcc"]],
                               reference=("baselines", "ridge_probe")).round(4), "context-vs-ridge-probe")

# %% [markdown]
# **What we expected before running the grid.** If neighbourhood context is what carries the extra signal, restricting attention to it should
# help rather than hurt, and by more than the fold spread.
#
# ## Key takeaways
#
# Written by `stflib.report.findings.takeaways` from this page's paired intervals (a difference is a finding
# when its Holm-adjusted p-value across the arms of the axis is below 0.05):

# %%
pages.show_takeaways("context")

# %% [markdown]
# ## References
#
# {cite}`jaume2024hest`
