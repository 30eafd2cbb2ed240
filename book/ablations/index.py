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
# # Ablation results

# %% tags=["remove-input"]
from stflib.report import pages

pages.page_banner()

# %% [markdown]
# Every design choice of STF is an axis; every arm of an axis was trained on the same patient folds
# of the simulated cohort and evaluated on held-out patients. This page shows all axes at once;
# each axis has its own page with tables, figures and maps.
#
# ## How the grid was run
#
# `python -m stflib ablate params` runs each (arm, fold, seed) through
# `notebooks/ablation.ipynb` with papermill, on a Dask cluster (a local one by default), into
# `results/<axis>/<arm>/fold<k>/` (seed 0) and `fold<k>-seed<s>/` (other seeds);
# `python -m stflib collect` writes `results/summary.csv`, which this page reads. (Arms with identical parameters, such as the default STF that is the reference of
# several axes, are trained once and copied; the training minutes count each copy.)

# %%
from stflib.grid.axes import axis_references
from stflib.report import figures, results, tables

summary = results.page_summary()
runs = summary.groupby("axis").agg(arms=("arm", "nunique"), runs=("fold", "size"), folds=("fold", "nunique"),
                                   seeds=("seed", "nunique"), train_minutes=("train_seconds", lambda s: s.sum() / 60))
runs.loc["all axes"] = [len(summary[["axis", "arm"]].drop_duplicates()), len(summary), summary["fold"].nunique(),
                        summary["seed"].nunique(), summary["train_seconds"].sum() / 60]
runs.astype({"arms": int, "runs": int, "folds": int, "seeds": int}).round(1)

# %% [markdown]
# ## Every arm against its axis's reference
#
# Each dot is an arm's paired difference in `pcc_hvg50` to the original STF's default for that axis (the
# reference arm): the mean over (fold, seed) pairs with its 95 % t interval. Green arms beat the
# reference on average. A filled dot is a finding: its paired t-test p-value, Holm-adjusted across
# the arms of its axis, is below 0.05; an open dot is not. The findings are listed, in words, on
# the [findings page](findings).

# %%
deltas = tables.overview(summary, axis_references())
fig = figures.plot_overview(deltas)

# %%
tables.show_table(deltas.set_index(["axis", "arm"]).round(4), "overview-paired-differences")
