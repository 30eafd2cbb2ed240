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
# # Ablation results
#
# Every design choice of STF is an axis; every arm of an axis was trained on the same patient folds
# of the simulated cohort and evaluated on held-out patients. This page shows all axes at once;
# each axis has its own page with tables, figures and maps.
#
# ## How the grid was run
#
# `python -m stflib ablate params --folds 3` runs each (arm, fold) through
# `notebooks/ablation.ipynb` with papermill, on a Dask cluster (a local one by default), into
# `results/<axis>/<arm>/fold<k>/`; `python -m stflib collect` writes `results/summary.csv`, which
# this page reads. (Arms with identical parameters, such as the default STF that is the reference of
# several axes, are trained once and copied; the training minutes count each copy.)

# %%
import pandas as pd

from stflib import book

summary = book.load_summary()
runs = summary.groupby("axis").agg(arms=("arm", "nunique"), runs=("fold", "size"),
                                   train_minutes=("train_seconds", lambda s: s.sum() / 60))
runs.loc["all axes"] = [len(summary[["axis", "arm"]].drop_duplicates()), len(summary), summary["train_seconds"].sum() / 60]
runs.astype({"arms": int, "runs": int}).round(1)

# %% [markdown]
# ## Every arm against its axis's reference
#
# Each dot is an arm's fold-paired difference in `pcc_hvg50` to the seed's default for that axis
# (the reference arm), with the standard deviation of the paired difference over folds. Green
# arms beat the reference on average; an interval that crosses zero is not a finding.

# %%
deltas = book.overview(summary, book.AXIS_REFERENCES)
fig = book.plot_overview(deltas)

# %%
deltas.round(3)
