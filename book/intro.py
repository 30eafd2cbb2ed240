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
# # SpatialTranscriptFormer, ablation by ablation
#
# ## Quick start
#
# ```bash
# python -m stflib ablate params   # the whole grid: every arm x held-out patient fold (6 folds, one seed)
# python -m stflib collect                               # one table of all runs: results/summary.csv
# ```
#
# One arm alone, for example the pathway bottleneck on the first patient fold:
#
# ```bash
# papermill notebooks/ablation.ipynb out.ipynb -f params/interactions/bottleneck.yaml -p fold 0
# ```
#
# Runs land in `results/<axis>/<arm>/fold<k>/` (seed 0) and `results/<axis>/<arm>/fold<k>-seed<s>/`
# (other seeds), each with its `metrics.json` and `run.json`; the grid resumes where it stopped and
# re-runs runs whose library code changed. `make book` builds this book from the committed results,
# `make book RESULTS=<dir>` from another results folder. Runs on a data folder in HEST-1k's layout
# (`python -m stflib ablate params/hest --set data_dir=<folder>`) land in
# `results/real/<cohort>/<axis>/<arm>/fold<k>/`; where a results folder has them, the results pages show
# them, under a banner naming the cohort, in place of the simulated runs.

# %% [markdown]
# ## What the grid found
#
# The headline, written by `stflib.report.findings.headline` from `results/summary.csv` when this
# page was built (the {doc}`Findings page <ablations/findings>` has every finding with its interval
# and the worlds where it holds; this introduction types no result itself):

# %% tags=["remove-input"]
from IPython.display import Markdown, display

from stflib.report import findings, pages, results

summary = results.page_summary()  # the results folder's real runs where it has any, else the simulated ones
if results.is_real(summary):
    display(Markdown(pages.data_note(summary)))
display(Markdown(findings.headline(summary)))

# %% [markdown]
# ## About this book
#
# This book teaches **SpatialTranscriptFormer** (STF), a model that predicts spatially resolved gene
# expression (10x Visium spots) from the frozen features of a pathology foundation model applied to
# H&E patches. STF routes everything through 50 learnable tokens, one per MSigDB Hallmark pathway
# {cite}`liberzon2015hallmark`, and four information flows between pathways and patches (`p2p`,
# `p2h`, `h2p`, `h2h`) that can each be switched off.
#
# Every chapter has the same skeleton: what you will learn, its prerequisites and its run time; the
# motivation, the idea, runnable code that calls the tested library `stflib`, exercises with
# solutions (in the Foundations part), what we measured, key takeaways and references. Every number
# and figure is produced by the code in this repository, from the results files it commits: the
# book reads, commands compute (`python -m stflib chapters` for what the teaching chapters show,
# `python -m stflib ablate` and `collect` for the grid), so building it trains nothing. The
# {doc}`glossary` defines the book's terms; "{term}`the original STF`" is the design this book
# re-implements, not a random {term}`seed`. The {doc}`pitfalls` page collects the mistakes that are
# easy to make.
#
# ```{tableofcontents}
# ```
#
# ## How to cite and how to reproduce
#
# Cite the book and its library with the metadata in `CITATION.cff` at the repository's root (GitHub
# shows it as "Cite this repository"); cite SpatialTranscriptFormer and HEST-1k through the
# references in each chapter. To reproduce every number: clone the repository, run the two quick-start
# commands above (on the simulated cohort they need no data and no GPU), then `make book`. Each run's
# `run.json` records the library version (`code_version`) that produced it, and every results page
# says when committed runs come from an earlier version than the one that built the page.
