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
# The original STF's `--n-neighbors` flag: instead of attending to every spot of the slide, each spot's
# patch-to-patch attention is restricted to its k nearest spots (k = 6 is the first hexagonal ring
# of Visium, 18 the second). The simulator puts part of each spot's expression in its
# neighbourhood (the data chapter measures the probe's gain from neighbour features), so local
# context is where the signal is; whole-slide attention must find it among hundreds of spots.
#
# ## The idea
#
# Four arms at the reference otherwise: whole-slide attention (`n_neighbors` 0, the original STF's
# default and this axis's reference), k = 6, k = 18 (the grid's reference configuration, chosen on
# validation patients), and k = 6 with the PCC loss. Local mode scales linearly with the slide,
# which is what it was designed for (slides too large for whole-slide attention).
#
# ## Runnable code
#
# The numbers below are read from `results/summary.csv` (one row per run, written by
# `python -m stflib collect` after `python -m stflib ablate params/context`) and, for the latent
# ceilings, from `results/ceilings/latent_default.csv` (written by `python -m stflib ceilings`);
# nothing is typed by hand. Re-run one arm with
# `papermill notebooks/ablation.ipynb out.ipynb -f params/context/whole-slide.yaml -p fold 0`.

# %% [markdown]
# ## What we measured

# %%
from stflib.report import pages, results, tables

pages.axis_report("context")

# %% [markdown]
# ### Against the simple models that read the same neighbourhood
#
# Each row is one neighbourhood: STF's arm that reads it, and the ridge probe and the MLP of the
# baselines page fed [own features, mean of the k nearest spots' features], the same k. The first
# row is matched only on the simple models' side: STF has no per-spot arm, its "no neighbourhood"
# arm is whole-slide attention (every spot attends to every spot of the slide), while the probe and
# the MLP of that row see no neighbour at all. `stf_minus_ridge_probe` and `stf_minus_mlp` are STF
# minus the simple model, one difference per held-out patient fold: the runs are paired by fold and
# seed (the same held-out patients, the same seed), and the differences of a fold's seeds are
# averaged, since the seeds share the fold's patients. Over the folds (`_folds`): the 95 % t interval
# (`_ci_low`, `_ci_high`), conditional on this cohort's patients and the training budget, the folds
# STF wins (`_wins`) and the paired t-test's p-value Holm-adjusted across every comparison of the
# table (`_p_holm`); `missing` names the arms with no completed run yet.

# %%
from IPython.display import Markdown, display

from stflib.report import context

summary = results.page_summary()
matched = context.context_matched_table(summary)
tables.show_table(matched.round(4), "context-matched")
if context.missing_line(matched):
    display(Markdown(context.missing_line(matched)))

# %% [markdown]
# ### Between the latent ceiling and the oracle
#
# Two ceilings frame these numbers, both on the runs' held-out patients and 50 HVGs. The **oracle
# ceiling** is recorded by every run (`noise_ceiling_hvg50`): the PCC of the simulator's expected
# expression with the measured counts, what no model can beat because of the counting noise. The
# **latent ceiling** is what the patches can tell a linear read-out at most: the `ridge_probe` arm,
# with its own fit and validation-chosen penalty, on the simulator's noise-free latent morphology
# instead of the backbone's features, with the latents' mean over the same k nearest spots for
# k > 0, and once more with the simulator's true context fields added (`latent_true_context`).
# Each ceiling below is a mean over the runs of the row's arms, a run counting with its own fold's
# value.

# %%
latent = context.load_latent_ceilings()
ceilings = context.ceiling_table(summary, latent)
tables.show_table(ceilings.round(4), "context-ceilings")
display(Markdown(context.ceiling_notes(summary, latent)))
display(Markdown(context.describe_ceilings(ceilings)))

# %% [markdown]
# Every context arm and every context-matched simple model, with the ceilings of its neighbourhood
# (points: mean over the held-out patient folds, each fold the mean of its seeds' runs; bars: 95 % t
# interval over the folds):

# %%
import matplotlib.pyplot as plt

from stflib.report import figures

intervals = context.arm_intervals(summary)
if intervals["runs"].gt(0).any():
    figures.plot_context(intervals, ceilings, context.oracle_ceiling(summary))
    plt.show()
display(Markdown("**Reading, generated from the tables above.** " + context.describe_matched(matched, ceilings)))

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
