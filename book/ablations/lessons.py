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
# # What we learned
#
# ```{admonition} On this page
# :class: tip
# **You will learn** what the grid says about STF's design as a whole: what the design buys, what
# it does not, and which conclusions are properties of the simulator rather than of the model.
#
# **Prerequisites**: {doc}`method`, {doc}`findings`.
# ```
#
# Every sentence with a number on this page is written by `stflib.report.conclusions.lessons` from
# `results/summary.csv` and the worlds' truth report `results/worlds/truth.csv`; the connecting prose
# states only what those numbers imply.

# %% tags=["remove-input"]
from IPython.display import Markdown, display

from stflib.report import conclusions, pages, results
from stflib.report.tables import markdown_table

summary = results.page_summary()
truth = conclusions.world_truth()
lesson = conclusions.lessons(summary, truth)
pages.page_banner()

# %% [markdown]
# ## How good is the reference STF?

# %% tags=["remove-input"]
display(Markdown(lesson["level"] + " " + lesson.get("baselines", "")))

# %% [markdown]
# ## What STF's design buys, and what it does not

# %% tags=["remove-input"]
display(Markdown("\n\n".join(lesson[k] for k in ("flows", "buys", "costs", "null", "inputs") if k in lesson)))

# %% [markdown]
# Read with the {doc}`findings <findings>` and each axis's page: a design choice "buys" something
# only where its interval excludes zero after the correction over its axis's arms; the arms listed as
# making no measurable difference may still differ by less than the grid can see
# ({doc}`method`, power).
#
# ## What is a property of the simulator

# %% tags=["remove-input"]
display(Markdown(lesson.get("simulator", "")))

# %% tags=["remove-input"]
display(Markdown(truth[["share_composition", "share_pathway", "share_context", "observable_share", "patient_share",
                        "local_context_gain"]].round(3).rename_axis("world").reset_index()
                 .pipe(lambda t: markdown_table(t, code_columns=("world",)))))

# %% [markdown]
# The table is the worlds' truth, measured before any model was trained (the {doc}`../data`
# chapter explains each column). Two consequences for reading the grid:
#
# - **Spatial context.** A gain from letting spots talk (through `h2h`, neighbours or pathway tokens)
#   is, in the default world, the averaging-out of per-spot feature noise: the default world has
#   almost no context biology to find. Only the `long-range-context` world can show a model using
#   context as biology, and only against the `no-context` world as the negative control.
# - **Named pathway tokens.** Whether a token recovers the pathway it is named after can only be
#   judged where pathway activity is observable (`pathway-visible`), against permuted gene sets.
#
# ## How robust are the findings to the simulator's assumptions?

# %% tags=["remove-input"]
display(Markdown(lesson.get("robustness", "No finding has been re-run in another world yet.")))

# %% [markdown]
# ## Key takeaways
#
# - The numbers above are the book's conclusions; each comes with its interval on its axis page.
# - What the default world cannot show (context biology, named pathways) is not evidence against
#   the design; it is a limit of the data it was tested on.
# - On real HEST-1k the same commands run the same grid ({doc}`../real_hest`).
