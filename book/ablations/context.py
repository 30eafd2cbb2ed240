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
# # Spatial context: whole slide or neighbourhood
#
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
# Four arms at the seed's defaults otherwise: whole-slide attention (`n_neighbors` 0, the
# default), k = 6, k = 18, and k = 6 with the PCC loss. Local mode scales linearly with the slide,
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
from stflib import book

book.axis_report("context")

# %% [markdown]
# ### Against the HEST-Bench probe
#
# The same folds, so the context arms can be compared fold by fold with the strongest baseline of
# the baselines page, HEST-Bench's ridge probe (which sees one spot at a time):

# %%
book.deltas_to(book.load_summary(), [("context", arm) for arm in ["whole-slide", "k6", "k18", "k6_pcc"]],
               reference=("baselines", "ridge_probe")).round(3)

# %% [markdown]
# **What we expected before running the grid.** If neighbourhood context is what carries the extra signal, restricting attention to it should
# help rather than hurt, and by more than the fold spread.
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
