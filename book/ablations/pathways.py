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
# # Biological initialisation and the auxiliary pathway loss

# %% tags=["remove-input"]
from stflib.report import pages

pages.page_banner("pathways")

# %% [markdown]
# ## Motivation
#
# Two of the original STF's ways to make the pathway tokens mean their names: initialising the gene
# reconstructor from the Hallmark membership (`pathway_init`), and the auxiliary loss that asks
# each token's scores to correlate with its Hallmark's z-scored, mean-aggregated expression
# (`pathway_loss_weight`). On the simulator we can also ask whether the scores track the *true*
# pathway activity (`pathway_pcc_truth`).
#
# ## The idea
#
# A 2 x 2 design: initialisation off/on crossed with auxiliary weight 0/0.5.
#
# ## Runnable code
#
# The numbers below are read from `results/summary.csv` (one row per run, written by
# `python -m stflib collect` after `python -m stflib ablate params/pathways`); nothing is typed by
# hand. Re-run one arm with
# `papermill notebooks/ablation.ipynb out.ipynb -f params/pathways/init-off_aux-0.yaml -p fold 0`.

# %% [markdown]
# ## What we measured

# %%
from stflib.report import pages, results

pages.axis_report("pathways")

# %% [markdown]
# ### How large is each term of the training loss?
#
# A weight such as `pcc_weight` or `pathway_loss_weight` acts relative to the other terms. The
# table gives each term's value at the first epoch of fold 0 (from the runs' `history.csv`): when
# one term is orders of magnitude larger than another, the smaller one barely moves the gradients.

# %%
from IPython.display import display

pages.optional_section(
    lambda: display(results.loss_terms("pathways", ["init-off_aux-0", "init-off_aux-0.5", "init-on_aux-0.5"],
                                       results_dir=results.runs_root(results.page_summary())).round(3)),
    "The loss terms", "python -m stflib ablate params/pathways")

# %% [markdown]
# ### How much of the true activity could the tokens carry?
#
# A run's `pathway_ceiling` is a ridge from the arm's inputs fit *directly* to the simulator's true
# activities, which no model sees: the tokens learn their names only from the auxiliary targets.
# `python -m stflib pathway-bounds` (`stflib.report.pathway_bounds`) adds, per fold and on the same
# inputs and patients, the same ridge fit to the auxiliary targets, and the auxiliary targets'
# own correlation with the truth. The Hallmark-initialised arm with auxiliary weight 0.5 against them:

# %%
from IPython.display import Markdown, display

from stflib.report import pathway_bounds, tables

summary = results.page_summary()
bounds = pathway_bounds.load_pathway_bounds()
if bounds is None:
    print("no results/ceilings/pathway_default.csv yet: run `python -m stflib pathway-bounds`")
else:
    table = pathway_bounds.bounds_table(summary, bounds)
    tables.show_table(table.round(3), "pathways-bounds")
    display(Markdown(pathway_bounds.describe_bounds(table)))

# %% [markdown]
# **What we expected before running the grid.** Gene accuracy and pathway fidelity can move in opposite directions: read both columns. The
# auxiliary targets are computed from the measured (noisy) expression, so they are themselves
# only an estimate of the true activity.
#
# ## Key takeaways
#
# Written by `stflib.report.findings.takeaways` from this page's paired intervals (a difference is a finding
# when its Holm-adjusted p-value across the arms of the axis is below 0.05):

# %%
pages.show_takeaways("pathways")

# %% [markdown]
# ## References
#
# {cite}`jaume2024hest`
