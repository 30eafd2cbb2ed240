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
# # Findings

# %% tags=["remove-input"]
from stflib.grid.axes import axis_references
from stflib.report import findings, pages, results, tables

pages.page_banner()

# %% [markdown]
# ## Motivation
#
# Nine axes and dozens of arms make many comparisons; with a handful of runs per arm, most
# differences between arms are fold and seed noise. This page says, in one place, which differences
# the grid can vouch for, how large they are, in which simulated worlds they hold, and which design
# choices made no measurable difference.
#
# ## The idea
#
# Every arm is compared with its axis's reference arm (the original STF's default for that choice) on the
# same patient folds and training seeds, so each (fold, seed) is a *pair* and the paired difference
# removes what the folds have in common. Over the pairs we take the mean difference with its 95 %
# t interval and the paired t-test (`scipy.stats.ttest_1samp`), and correct the p-values for the
# number of arms of the axis with Holm's step-down method
# (`statsmodels.stats.multitest.multipletests`). **A difference is a finding when its Holm-adjusted
# p-value is below 0.05** (the printed intervals are the unadjusted 95 % ones). For every finding of
# the default simulated world, the same comparison in the other worlds of the simulator says
# whether it depends on the simulator's assumptions: it *holds* in a world where the difference has
# the same sign and its 95 % interval excludes zero, is *reversed* where the interval excludes zero
# on the other side, and is *inconclusive* where the interval crosses zero. The other worlds run one
# seed per fold (3 pairs), so an inconclusive world is weaker evidence than a reversed one.
#
# ## Runnable code
#
# ```bash
# python -m stflib ablate params --folds 3 --seeds 0,1   # the grid (resumes)
# python -m stflib collect                               # results/summary.csv
# ```
#
# Every sentence below is written by `stflib.report.findings.findings_text` from `results/summary.csv`.

# %% [markdown]
# ## What we measured

# %%
from IPython.display import Markdown, display

summary = results.load_summary()
display(Markdown(findings.findings_text(summary)))

# %% [markdown]
# ### Robustness across simulated worlds
#
# For each finding of the default world that was re-run in other worlds (the robustness subset,
# `stflib.grid.axes.ROBUSTNESS_ARMS`): the worlds where it holds, is inconclusive or is reversed,
# each with that world's paired difference and 95 % interval, and the worlds where the arm or its
# reference was not run.

# %%
verdicts = findings.world_verdicts(summary)  # computed once, formatted twice below
robustness = findings.world_robustness(summary, verdicts=verdicts)
unchecked = findings.unchecked_findings(summary, verdicts=verdicts)
if robustness.empty:
    display(Markdown("No finding of the default world has been re-run in another world."))
else:
    # Markdown, not a DataFrame: the cells hold each world's interval and must wrap, not be cut off;
    # a column with no entry in any row ("-" throughout) is said in a sentence instead, to leave room
    empty = [c for c in robustness.columns if (robustness[c] == "-").all()]
    # one column names the finding, so the worlds' columns get the page's width
    finding = (robustness["axis"] + ": `" + robustness["arm"] + "` vs `" + robustness["reference"] + "` "
               + robustness["effect (default world)"])
    shown = robustness.drop(columns=["axis", "arm", "reference", "effect (default world)", *empty])
    display(Markdown(tables.markdown_table(shown.assign(**{"finding (default world)": finding})
                                           [["finding (default world)", *shown.columns]])))
    if empty:
        display(Markdown("No finding has an entry under " + " or ".join(f"*{c}*" for c in empty) + "."))
    display(Markdown(tables.csv_link(robustness, "findings-robustness")))
if unchecked:
    display(Markdown("Findings not re-run in any other world (their arms are outside the robustness "
                     "subset): " + ", ".join(f"`{u}`" for u in unchecked) + "."))

# %% [markdown]
# ### Every comparison
#
# All arms against their axis's reference (the table behind the sentences above):

# %%
tables.show_table(tables.overview(summary, axis_references()).set_index(["axis", "arm"]).round(4), "findings-all-comparisons")

# %% [markdown]
# ### Runs to read with care
#
# Per axis: runs that used their whole step budget (`max_steps`) instead of stopping early (they might have gone on
# improving), and runs whose fit on their own training slides is below both simple models (MLP and
# ridge probe) of the same fold and seed. "Not recorded" counts runs whose results do not hold the
# columns a flag needs.

# %%
tables.show_table(tables.flag_counts(summary), "findings-run-flags")

# %% [markdown]
# ## Key takeaways
#
# Generated by `stflib.report.findings.headline` from the same comparisons:

# %%
display(Markdown(findings.headline(summary)))

# %% [markdown]
# ## References
#
# {cite}`jaume2024hest`
