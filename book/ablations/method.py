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
# why arms are compared in pairs, how the Holm correction decides what is a finding (worked by hand
# on one axis), how large an effect the grid can detect, why the patient and not the training
# {term}`seed` is the unit, and how to add an arm of your own.
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
# - Every arm runs on the same three patient {term}`fold`s with the same two training seeds. A
#   **pair** is one (fold, seed): the arm and the reference saw the same held-out patients and the
#   same random initialisation, so their difference removes what the fold contributes.
# - Over the pairs: the mean difference, its 95 % t interval and the paired t-test. The p-values of
#   an axis's arms are corrected for their number with **Holm's** step-down method
#   {cite}`holm1979simple`; a difference is a **finding** when its Holm-adjusted p-value is below 0.05.
#
# ## Runnable code
#
# ### One axis, pair by pair
#
# The pathways axis (Hallmark initialisation of the gene reconstructor and the auxiliary pathway
# loss): the paired differences in `pcc_hvg50` of each arm to the reference, from
# `results/summary.csv`.

# %%
import numpy as np
import pandas as pd
from IPython.display import Markdown, display
from scipy import stats

from stflib.grid.axes import ARMS
from stflib.report.results import axis_rows, load_summary
from stflib.report.tables import paired_deltas

AXIS, METRIC = "pathways", "pcc_hvg50"
summary = load_summary()
reference = ARMS[AXIS].reference
rows = axis_rows(summary, AXIS)
wide = rows.pivot_table(index=["fold", "seed"], columns="arm", values=METRIC)
differences = wide.drop(columns=reference).sub(wide[reference], axis=0)
print(f"axis {AXIS}, reference {reference}: {len(wide)} pairs (fold, seed)")
differences.round(4)

# %% [markdown]
# ### Holm by hand
#
# For each arm, the paired t-test's p-value. Then sort the $m$ p-values, multiply the $i$-th
# smallest ($i = 1 \dots m$) by $m - i + 1$, make the sequence non-decreasing (a running maximum),
# cap at 1. An arm is a finding when its adjusted value is below 0.05. The smallest p-value faces
# the strictest bar (Bonferroni's $0.05 / m$), the next one a looser bar, and so on: the family of
# $m$ comparisons keeps a 5 % chance of any false finding.

# %%
m = differences.shape[1]
p = pd.Series({arm: stats.ttest_1samp(differences[arm].dropna(), 0.0).pvalue for arm in differences}, name="p")
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
# With $n$ pairs whose differences have standard deviation $s$, a paired t-test at level $\alpha$
# detects a true mean difference $\delta$ with 80 % probability when
# $\delta \geq (t_{1-\alpha/2,\,n-1} + t_{0.8,\,n-1})\, s / \sqrt{n}$. Holm's first step uses
# $\alpha = 0.05 / m$. Below, for each arm of the axis, that minimal detectable difference with its
# own $s$, beside the observed mean difference:

# %%
rows_power = {}
for arm in differences:
    d = differences[arm].dropna()
    n, s = len(d), d.std(ddof=1)
    mde = lambda alpha: (stats.t.ppf(1 - alpha / 2, n - 1) + stats.t.ppf(0.8, n - 1)) * s / np.sqrt(n)  # noqa: E731
    rows_power[arm] = {"pairs": n, "sd of differences": s, "observed mean difference": d.mean(),
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
# The two seeds of a fold share its test patients. If the held-out patients are what varies most,
# the six pairs carry little more information than the three folds. The same comparison with one
# difference per fold (the mean over its seeds), next to the six-pair one:

# %%
per_fold = differences.groupby(level="fold").mean()
unit = pd.DataFrame({
    "6 pairs: p": {a: stats.ttest_1samp(differences[a].dropna(), 0).pvalue for a in differences},
    "3 folds: p": {a: stats.ttest_1samp(per_fold[a].dropna(), 0).pvalue for a in per_fold},
    "sd between folds": per_fold.std(ddof=1),
    "sd between seeds within a fold": differences.groupby(level="fold").std(ddof=1).mean(),
})
unit.round(4)

# %% [markdown]
# Where the spread between folds is larger than between seeds, the fold-level test is the honest
# one, and the six-pair p-values are optimistic. The book prints the pair-level intervals and
# reminds, on every results page, that its pairs are not independent patients
# {cite}`bouthillier2021variance`.
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
#    `python -m stflib ablate params/losses --folds 3 --seeds 0,1`, then `python -m stflib collect`.
# 4. `make book`: the losses page, the findings and this page now include the arm, paired with the
#    reference on the same (fold, seed), and Holm now corrects over one more comparison.
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
# How many pairs would the grid need to detect, at Holm's first step, the smallest observed
# difference of this axis with 80 % power, if the sd of the differences stayed as measured?
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
# More pairs from the same three folds would shrink only the seed part of the noise; the patient
# part needs more patients.
# ````
#
# ## Key takeaways
#
# - An arm differs from its axis's reference in one choice; it is compared with it pair by pair on
#   the same held-out patients and seeds.
# - A finding survives Holm's correction over the arms of its axis; the hand computation above
#   reproduces the library's.
# - With six pairs, only large effects are detectable; a null result is not an equivalence.
# - The patient is the unit of replication: seeds within a fold are not independent patients.
#
# ## References
#
# {cite}`holm1979simple,bouthillier2021variance`
