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
# # The ablation method
#
# ```{admonition} In this chapter
# :class: tip
# **You will learn** how an ablation is set up ({term}`axis`, {term}`arm`, {term}`reference`),
# why arms are compared on the same held-out patients, why the held-out patient {term}`fold` and not
# the training {term}`seed` is the unit, how the Holm correction decides what is a finding (worked
# by hand on one axis), how large an effect the grid can detect, and how to add an arm of your own.
#
# **Prerequisites**: {doc}`../evaluation`, {doc}`../training`; a paired t-test.
# ```

# %% tags=["remove-input"]
from stflib.report import pages

pages.run_time_note("ablations/method")

# %% [markdown]
# ## Motivation
#
# An ablation changes one design choice and keeps everything else. With many choices, a few
# patients and noisy training, most differences between two runs are noise. The method below is
# how the book separates the differences it can vouch for from the rest.
#
# ## The idea
#
# - An **axis** is one design choice (the information flows, the loss, the backbone, ...). Its
#   **arms** are the values it can take, each a set of notebook parameters that differ from the
#   defaults only on that choice (`stflib.grid.axes.ARMS`, one YAML file per arm under `params/`).
#   One arm per axis is the **reference**, the library's default for that choice.
# - Every arm runs on the same patient {term}`fold`s with the same training seeds. In each fold the
#   arm's metric minus the reference's, run by run on the same seed, removes what the fold's held-out
#   patients contribute; the differences of a fold's seeds are then **averaged**, giving one paired
#   difference per fold. The fold is the unit because the seeds of a fold share its test patients
#   and vary only the initialisation: what says whether an effect carries over to new patients is
#   how it varies from one group of held-out patients to the next.
# - Over the folds: the mean difference, its 95 % t interval and the paired t-test. The interval is
#   conditional on this cohort's patients and the training budget: it describes other held-out
#   groups of the same cohort, trained for as long. The p-values of an axis's arms are corrected for
#   their number with **Holm's** step-down method {cite}`holm1979simple`; a difference is a
#   **finding** when its Holm-adjusted p-value is below 0.05. An arm whose unadjusted interval
#   excludes zero but is not a finding after Holm is reported as such, not as "no difference".
# - Arms that are the same computation by the model's construction (some subsets of the information
#   flows, `stflib.models.equivalence`) are one model: it is run and shown once, with its aliases,
#   and counted once in the Holm family.
#
# ## Runnable code
#
# ### One axis, fold by fold
#
# The pathways axis (Hallmark initialisation of the gene reconstructor and the auxiliary pathway
# loss; in a results folder that did not run it, the first axis it ran, named in the output): the
# paired differences in `pcc_hvg50` of each arm to the reference, run by run (fold, seed), then
# averaged over the seeds of each fold, from `results/summary.csv`.

# %%
import numpy as np
import pandas as pd
from scipy import stats

from stflib.grid.axes import ARMS
from stflib.report.results import page_summary
from stflib.report.tables import distinct_axis_rows, paired_deltas

AXIS, METRIC = "pathways", "pcc_hvg50"
summary = page_summary()  # the results folder's real runs where it has any, else the simulated ones
if not ((summary["axis"] == AXIS) & (summary["world"] == "default")).any():
    # a results folder that did not run the pathways axis (a real cohort's few arms): the first axis it ran
    AXIS = next(a for a in ARMS if a in set(summary.loc[summary["world"] == "default", "axis"]))
reference = ARMS[AXIS].reference
rows = distinct_axis_rows(summary, AXIS)  # each distinct model once, as the library pairs them
wide = rows.pivot_table(index=["fold", "seed"], columns="arm", values=METRIC)
differences = wide.drop(columns=reference).sub(wide[reference], axis=0)  # per (fold, seed)
per_fold = differences.groupby(level="fold").mean()  # the unit: one difference per held-out fold
print(f"axis {AXIS}, reference {reference}: {len(wide)} runs per arm, {len(per_fold)} folds "
      f"x {wide.index.get_level_values('seed').nunique()} seeds")
per_fold.round(4)

# %% [markdown]
# ### Holm by hand
#
# For each arm, the paired t-test's p-value over the folds. Then sort the $m$ p-values, multiply
# the $i$-th smallest ($i = 1 \dots m$) by $m - i + 1$, make the sequence non-decreasing (a running
# maximum), cap at 1. An arm is a finding when its adjusted value is below 0.05. The smallest p-value faces
# the strictest bar (Bonferroni's $0.05 / m$), the next one a looser bar, and so on: the family of
# $m$ comparisons keeps a 5 % chance of any false finding.

# %%
m = per_fold.shape[1]
p = pd.Series({arm: stats.ttest_1samp(per_fold[arm].dropna(), 0.0).pvalue for arm in per_fold}, name="p")
by_hand = p.sort_values().to_frame()
by_hand["rank i"] = np.arange(1, m + 1)
by_hand["multiplier m - i + 1"] = m - by_hand["rank i"] + 1
by_hand["p x multiplier"] = by_hand["p"] * by_hand["multiplier m - i + 1"]
by_hand["Holm-adjusted (running max, cap 1)"] = by_hand["p x multiplier"].cummax().clip(upper=1.0)
library = paired_deltas(summary, AXIS, reference, METRIC)
by_hand["library's p_holm"] = library["p_holm"]
by_hand["finding"] = by_hand["Holm-adjusted (running max, cap 1)"] < 0.05
by_hand.round(4)

# %%
agree = np.allclose(by_hand["Holm-adjusted (running max, cap 1)"], by_hand["library's p_holm"], atol=1e-9)
print(f"the hand computation {'equals' if agree else 'differs from'} the library's p_holm "
      "(stflib.report.stats.holm, statsmodels' multipletests)")
uncorrected = by_hand.index[by_hand["p"] < 0.05].tolist()
print(f"below 0.05 without correction: {uncorrected or 'none'}; findings after Holm: "
      f"{by_hand.index[by_hand['finding']].tolist() or 'none'}")

# %% [markdown]
# ### Power: how large an effect can the grid see?
#
# With $n$ folds whose differences have standard deviation $s$, a paired t-test at level $\alpha$
# detects a true mean difference $\delta$ with 80 % probability when
# $\delta \geq (t_{1-\alpha/2,\,n-1} + t_{0.8,\,n-1})\, s / \sqrt{n}$. Holm's first step uses
# $\alpha = 0.05 / m$. Below, for each arm of the axis, that minimal detectable difference with its
# own $s$, beside the observed mean difference:

# %%
rows_power = {}
for arm in per_fold:
    d = per_fold[arm].dropna()
    n, s = len(d), d.std(ddof=1)
    mde = lambda alpha: (stats.t.ppf(1 - alpha / 2, n - 1) + stats.t.ppf(0.8, n - 1)) * s / np.sqrt(n)  # noqa: E731
    rows_power[arm] = {"folds": n, "sd of differences": s, "observed mean difference": d.mean(),
                       "detectable at 0.05": mde(0.05), f"detectable at 0.05/{m} (Holm's first step)": mde(0.05 / m)}
power = pd.DataFrame(rows_power).T
power.round(4)

# %% [markdown]
# An arm whose observed difference is far below the detectable one was never going to be a finding
# on this grid, whatever its true effect: its "no measurable difference" is a statement about the
# grid's size, not an equivalence.
#
# ### The patient, not the seed, is the unit
#
# The seeds of a fold share its test patients. If the held-out patients are what varies most, the
# (fold, seed) pairs carry little more information than the folds, and treating them as independent
# (the book's earlier derivation) gives intervals that are too narrow. The fold-level test the book
# uses, next to that pair-level one (`python -m stflib collect` prints the same comparison for every
# finding of the grid and writes it to `results/findings_by_unit.csv`):

# %%
by_pair = paired_deltas(summary, AXIS, reference, METRIC, unit="pair")
unit = pd.DataFrame({
    f"{len(differences)} (fold, seed) pairs: p": by_pair["p_value"],
    f"{len(per_fold)} folds: p": library["p_value"],
    "sd between folds": per_fold.std(ddof=1),
    "sd between seeds within a fold": differences.groupby(level="fold").std(ddof=1).mean(),
})
unit.round(4)

# %% [markdown]
# Where the spread between folds is larger than between seeds, the pair-level p-values are
# optimistic: they count a seed as if it were a new group of patients. The book's intervals,
# p-values and Holm decisions are the fold-level ones {cite}`bouthillier2021variance`; more seeds
# sharpen each fold's mean, only more folds (more patients) sharpen the interval.
#
# ### Add an arm, end to end, on the tiny cohort
#
# 1. Add the arm to its axis in `stflib/grid/axes.py` (`ARMS`), say a loss arm
#    `"mse_pcc_2": {"loss": "mse_pcc", "pcc_weight": 2.0}`, and write its parameter file:
#    `python -c "from stflib.grid.params import write_params; write_params('params')"`
#    (or write `params/losses/mse_pcc_2.yaml` by hand: `loss: mse_pcc` and `pcc_weight: 2.0`).
# 2. Try it on the `tiny` cohort first (4 slides, seconds per run):
#    `python -m stflib run -f params/losses/mse_pcc_2.yaml -p preset tiny -p max_steps 40 -p output_dir out/tiny/mse_pcc_2`.
# 3. Run it on the grid's folds and seeds, with the reference's runs already there:
#    `python -m stflib ablate params/losses`, then `python -m stflib collect`.
# 4. `make book`: the losses page, the findings and this page now include the arm, paired with the
#    reference fold by fold (seeds averaged within a fold), and Holm now corrects over one more
#    comparison (unless the arm is the same model as an existing one: then it is listed as its alias).
#
# ## Exercises
#
# ```{exercise}
# :label: method-ex-holm
# Three arms have p-values 0.010, 0.020 and 0.040. Which are findings under Holm at 0.05? Under
# Bonferroni? Without correction?
# ```
#
# ```{solution} method-ex-holm
# :class: dropdown
# Holm: $0.010 \times 3 = 0.030$, $0.020 \times 2 = 0.040$, $0.040 \times 1 = 0.040$; all three
# adjusted values are below 0.05, so all three are findings. Bonferroni multiplies all by 3: 0.030,
# 0.060, 0.120, so only the first. Without correction all three, but with a chance of a false
# finding in the family well above 5 %.
# ```
#
# ```{exercise}
# :label: method-ex-power
# How many folds would the grid need to detect, at Holm's first step, the smallest observed
# difference of this axis with 80 % power, if the sd of the fold differences stayed as measured?
# ```
#
# ````{solution} method-ex-power
# :class: dropdown
# Solve $(t_{1-\alpha/2,n-1} + t_{0.8,n-1})\,s/\sqrt{n} \le |\delta|$ for $n$, with
# $\alpha = 0.05/m$:
#
# ```python
# arm = power["observed mean difference"].abs().idxmin()
# d, s = abs(power.loc[arm, "observed mean difference"]), power.loc[arm, "sd of differences"]
# n = next(n for n in range(3, 10_000)
#          if (stats.t.ppf(1 - 0.05 / m / 2, n - 1) + stats.t.ppf(0.8, n - 1)) * s / np.sqrt(n) <= d)
# print(arm, n)
# ```
#
# More seeds in the same folds would shrink only the seed part of each fold's mean; the patient
# part needs more folds, that is, more patients.
# ````
#
# ## Key takeaways
#
# - An arm differs from its axis's reference in one choice; it is compared with it fold by fold on
#   the same held-out patients, the seeds of a fold averaged.
# - A finding survives Holm's correction over the distinct arms of its axis; the hand computation
#   above reproduces the library's.
# - With a handful of folds, only large effects are detectable; a null result is not an equivalence,
#   and an unadjusted interval that excludes zero is reported as such.
# - The patient is the unit of replication: seeds within a fold are not independent patients, and
#   the intervals are conditional on this cohort's patients and the training budget.
#
# ## References
#
# {cite}`holm1979simple,bouthillier2021variance`
