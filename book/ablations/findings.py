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
# The grid's axes and their dozens of arms make many comparisons; with a handful of runs per arm, most
# differences between arms are fold and seed noise. This page says, in one place, which differences
# the grid can vouch for, how large they are, in which simulated worlds they hold, and which design
# choices made no measurable difference.
#
# ## The idea
#
# Every arm is compared with its axis's reference arm (the original STF's default for that choice) on the
# same held-out patient folds and training seeds. The unit is the **fold**: in each fold the arm's
# metric minus the reference's, run by run on the same seed, averaged over the fold's seeds, so the
# difference removes what the fold's patients contribute and a seed (which varies only the
# initialisation) is not counted as a new group of patients. Over the folds we take the mean
# difference with its 95 % t interval and the paired t-test (`scipy.stats.ttest_1samp`); the
# interval is conditional on this cohort's patients and the training budget. The p-values are
# corrected for the number of distinct arms of the axis with Holm's step-down method
# (`statsmodels.stats.multitest.multipletests`); arms that are the same computation by the model's
# construction are one model, shown once with their aliases and counted once. **A difference is a
# finding when its Holm-adjusted p-value is below 0.05** (the printed intervals are the unadjusted
# 95 % ones: an arm that is not a finding after Holm but whose unadjusted interval excludes zero is
# listed as such, apart from the arms that made no measurable difference). `python -m stflib
# collect` prints every finding derived over the folds beside the earlier derivation over
# (fold, seed) pairs (`results/findings_by_unit.csv`). For every finding of the default simulated
# world, the same comparison in the other worlds of the simulator says whether it depends on the
# simulator's assumptions: it *holds* in a world where the difference has the same sign and its
# 95 % interval excludes zero, is *reversed* where the interval excludes zero on the other side, and
# is *inconclusive* where the interval crosses zero. An inconclusive world is absence of evidence
# there (a few patient folds can miss a small effect), weaker than a reversed one; the matrix says
# how many folds each world's intervals are over where they differ from the default world's.
#
# ## Runnable code
#
# ```bash
# python -m stflib ablate params   # the grid: 6 patient folds, one seed (resumes)
# python -m stflib collect                               # results/summary.csv
# ```
#
# Every sentence below is written by `stflib.report.findings.findings_text` from `results/summary.csv`.

# %% [markdown]
# ## What we measured

# %%
from IPython.display import Markdown, display

# the runs this page is about (the results folder's real runs where it has any, else the simulated ones);
# the matrix and the reality check below set every world, and the real runs, side by side
summary = results.page_summary()
everything = results.load_summary()
display(Markdown(findings.findings_text(summary)))

# %% tags=["remove-input"]
# Findings read through the worlds (stflib.report.controls): every default-world comparison beside the
# same comparison in each simulated world, ordered by the world's role, and on real data where it ran
from stflib.report import controls
from stflib.sim.worlds import WORLDS

cells = controls.world_cells(everything)
roles = "; ".join(f"`{w}` ({WORLDS[w].role}{' for ' + WORLDS[w].about if WORLDS[w].about else ''})"
                  for w in dict.fromkeys(cells["world"]) if w in WORLDS)
display(Markdown("### Findings by worlds\n\nEach row is an arm against its axis's reference in the default world; each "
                 f"column a world: {roles}" + ("; `real`: runs on a real data folder" if controls.REAL_WORLD in
                                             set(cells["world"]) else "") + ". A cell is the paired difference "
                 "with its 95 % interval, *not run* where the arm or its reference has no run there, and "
                 "*budget-limited* where more than half of either arm's runs stopped at the step cap."))
tables.show_table(controls.findings_matrix(cells), "findings-by-worlds")
if controls.folds_text(cells):
    display(Markdown(controls.folds_text(cells)))
if controls.not_run_text(cells):
    display(Markdown(controls.not_run_text(cells)))
display(Markdown("What each pattern means, by the rules below (the first that applies, read per biology the "
                 "axis is about: a negative control removes or weakens it, a positive control makes it strong):"))
tables.show_table(controls.rule_table(), "findings-rules")
display(Markdown(controls.readings_text(controls.readings(cells))))

# %% tags=["remove-input"]
# Simulation against reality: where the results hold runs on real data (world `real`), whether the
# simulator predicted each real outcome (same sign, overlapping intervals) and which world came closest
check = controls.reality_check(cells)
if check.empty:
    display(Markdown("### Simulation against reality\n\nNo run on real data in these results yet, so no finding "
                     "can be checked against reality: runs with `--set data_dir=<HEST folder>` add a `real` column."))
else:
    display(Markdown("### Simulation against reality"))
    tables.show_table(check, "findings-simulation-vs-reality")
    display(Markdown(controls.reality_text(check)))

# %% tags=["remove-input"]
# The second metric panel: the same matrix on the pathway- and context-gene panel, once runs record it
if "pcc_pathway_genes" in everything and everything["pcc_pathway_genes"].notna().any():
    display(Markdown("### Findings by worlds on the pathway- and context-gene panel"))
    panel_cells = controls.world_cells(everything, metric="pcc_pathway_genes")
    tables.show_table(controls.findings_matrix(panel_cells), "findings-by-worlds-pathway-genes")
    display(Markdown(controls.readings_text(controls.readings(panel_cells))))
else:
    display(Markdown("The runs in these results predate the second metric panel (`pcc_pathway_genes`, "
                     "`collapse_ratio_noise_free`): its matrix appears once the grid is re-run."))

# %% [markdown]
# ### Robustness across simulated worlds
#
# For each finding of the default world that was re-run in other worlds (the robustness subset,
# `stflib.grid.axes.ROBUSTNESS_ARMS`): the worlds where it holds, is inconclusive or is reversed,
# each with that world's paired difference and 95 % interval, and the worlds where the arm or its
# reference was not run.

# %% tags=["remove-input"]
verdicts = findings.world_verdicts(summary)  # computed once, formatted twice below
robustness = findings.world_robustness(summary, verdicts=verdicts)
unchecked = findings.unchecked_findings(summary, verdicts=verdicts)
if robustness.empty and results.is_real(summary):
    display(Markdown("The runs shown are real data: the simulated worlds are set beside them in the matrix "
                     "and in *Simulation against reality* above."))
elif robustness.empty:
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
if unchecked and not results.is_real(summary):  # real runs are set beside the worlds above instead
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
