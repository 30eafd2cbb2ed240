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
# # Evaluation
#
# ```{admonition} In this chapter
# :class: tip
# **You will learn** every metric the book reports, defined once: what it measures, its ideal
# value, and the ceiling the simulated data put below that ideal; why pooled and within-slide PCC
# differ; and when a low {term}`collapse ratio` is a collapse and when it is just accuracy.
#
# **Prerequisites**: {doc}`targets_and_pathways` (log1p CP10k, the 50 HVGs, QC masks).
# ```

# %% tags=["remove-input"]
from stflib.report import pages

pages.run_time_note("evaluation")

# %% [markdown]
# ## Motivation
#
# "PCC 0.34" is a statement about a metric, a gene set, a set of spots and a data set. Before any
# result page, this chapter fixes what each number means, what a perfect model would score, and
# what the best possible model can score on these data. Every metric is computed on the
# *held-out patients* of a {term}`fold`, on log1p(CP10k) of the QC-passed spots, by
# `stflib.metrics.evaluate`; the registry `stflib.metrics.METRICS` owns their names.
#
# ## The idea
#
# - **{term}`PCC`** (Pearson correlation) of one gene: predicted vs measured values across spots.
#   `pcc_hvg50` averages it over the training fold's 50 {term}`HVG`s, with the held-out slides'
#   spots *pooled*; `pcc_hvg50_within_slide` computes it inside each slide, then averages.
#   Pooling rewards getting differences *between* slides right; within-slide PCC asks only for the
#   spatial pattern.
# - **MSE** on log1p(CP10k): magnitude as well as pattern.
# - **{term}`collapse ratio`**: per held-out slide, the summed variance across spots of the
#   predictions over that of the measurements; averaged over slides. 1 means the predicted maps
#   vary as much as the measured ones; 0 means one profile everywhere.
# - **Ceilings.** On simulated data the expected expression (before counting noise) is known, so
#   the best any model can do is measurable: `noise_ceiling_hvg50` is the `pcc_hvg50` of the expected
#   expression itself, `collapse_ratio_oracle` its collapse ratio, and `pathway_ceiling` a ridge fit to
#   the true pathway activities from the same inputs.
#
# ## Runnable code
#
# ### Every metric, once
#
# The registry's entries with their direction, and for each the ideal value and the ceiling it is
# read against. The ceilings' values are the means over the reference STF's runs in
# `results/summary.csv` (they depend on the held-out patients, not on the model).

# %%
import numpy as np
import pandas as pd
from IPython.display import Markdown, display

from stflib.metrics import METRICS, collapse_ratio, pearson_columns, per_slide_pcc
from stflib.report.results import load_summary
from stflib.report.tables import markdown_table

IDEAL = {"pcc_hvg50": "1", "pcc_all": "1", "mse": "0", "pathway_pcc_truth": "1", "pathway_pcc_truth_matched": "1",
         "pcc_hvg50_within_slide": "1", "collapse_ratio": "1 (with calibrated, perfect predictions)",
         "noise_ceiling_hvg50": "(a ceiling)", "collapse_ratio_oracle": "(a ceiling)",
         "moran_i_pred_median": "the measured maps' value", "moran_i_true_median": "(a property of the data)",
         "moran_rank_spearman": "1", "train_pcc_hvg50": "(a diagnostic: the fit)", "train_mse_ratio": "< 1",
         "pathway_ceiling": "(a ceiling)", "train_seconds": "(a cost)", "pcc_pathway_genes": "1",
         "collapse_ratio_noise_free": "1 (the spread of the learnable, noise-free truth)",
         "noise_ceiling_pathway_genes": "(a ceiling)"}
CEILING = {"pcc_hvg50": "noise_ceiling_hvg50", "pcc_hvg50_within_slide": "noise_ceiling_hvg50",
           "collapse_ratio": "collapse_ratio_oracle", "pathway_pcc_truth": "pathway_ceiling",
           "pathway_pcc_truth_matched": "pathway_ceiling", "pcc_pathway_genes": "noise_ceiling_pathway_genes"}
summary = load_summary()
reference = summary[(summary["axis"] == "interactions") & (summary["arm"] == "full") & (summary["world"] == "default")]
rows = []
for name, metric in METRICS.items():
    ceiling = CEILING.get(name)
    value = f"{reference[ceiling].mean():.3f} (`{ceiling}`)" if ceiling in reference else "-"
    rows.append({"metric": name, "label": metric.label, "higher is better": "yes" if metric.higher_is_better
                 else "no", "definition": metric.description, "ideal": IDEAL.get(name, "-"), "ceiling here": value})
display(Markdown(markdown_table(pd.DataFrame(rows), code_columns=("metric",))))

# %% [markdown]
# ### PCC pooled and within slides, on numbers you can print
#
# Two slides of four spots, one gene. The prediction gets the difference between the slides right
# and the pattern inside each slide wrong:

# %%
slide = np.array(["A"] * 4 + ["B"] * 4)
measured = np.array([1.0, 2.0, 3.0, 4.0, 11.0, 12.0, 13.0, 14.0])[:, None]
predicted = np.array([4.0, 3.0, 2.0, 1.0, 14.0, 13.0, 12.0, 11.0])[:, None]
print(f"pooled PCC {pearson_columns(predicted, measured)[0]:.3f}; "
      f"within-slide PCC {per_slide_pcc(predicted, measured, slide):.3f}")

# %% [markdown]
# Pooled, the prediction looks excellent; within each slide it is exactly wrong. Slide-level models
# (ABMIL, TransMIL) can only earn the pooled kind: their map is flat within a slide.
#
# ### The collapse ratio, and why below 1 is not always a collapse

# %%
flat = np.array([2.5] * 4 + [12.5] * 4)[:, None]
half = np.concatenate([2.5 + 0.5 * (measured[:4, 0] - 2.5), 12.5 + 0.5 * (measured[4:, 0] - 12.5)])[:, None]
for name, p in {"measured itself": measured, "half the amplitude": half, "slide means (flat)": flat}.items():
    print(f"{name:>20}: collapse ratio {collapse_ratio(p, measured, slide):.2f}, "
          f"within-slide PCC {per_slide_pcc(p, measured, slide):.2f}")

# %% [markdown]
# A prediction at half the amplitude keeps the pattern (PCC 1) with a quarter of the variance.
# That is what a good model *should* do when it cannot be sure: the best prediction under squared
# error is the conditional mean, which varies within a slide only by the share of the measured
# variance it can explain. So a model's collapse ratio is read beside two figures
# (`stflib.report.spread`): its **explained share** (the collapse ratio a calibrated model of its
# accuracy would show) and its **calibration slope** (the truth's least-squares slope on the
# predictions: above 1 the maps are too flat for their accuracy, below 1 they overshoot). On the
# simulated cohort even the expected expression stays below 1 (`collapse_ratio_oracle`): counting
# noise adds variance to the measurements that no prediction can have.

# %%
from stflib.paths import measurement_dir
from stflib.report import spread
from stflib.report.tables import show_table

# the project's committed measurement unless the results folder has its own (stflib.paths.measurement_dir)
baseline_spread = spread.spread_table("baselines", measurement_dir("ceilings").parent)
shown = [a for a in ("stf", "mlp", "ridge_probe", "ridge_probe_k18", "seed_defaults") if a in baseline_spread.index]
show_table(baseline_spread.loc[shown].round(3), "evaluation-spread")
display(Markdown(" ".join(spread.describe(baseline_spread, arm, f"`{arm}`") for arm in shown)))

# %% [markdown]
# ### Pathway metrics
#
# `pathway_pcc_truth` correlates each named pathway token's scores with the simulator's true
# activity of the pathway of the same name (held-out spots pooled), averaged over pathways: do the
# tokens mean their names? `pathway_pcc_truth_matched` first matches tokens to pathways one to one
# as well as possible: do the tokens span the true activities at all, whatever their names?
# Neither exists on real data, which has no true activities.
#
# ## Exercises
#
# ```{exercise}
# :label: evaluation-ex-pooled
# A model predicts each held-out slide's *measured* mean profile at every spot (the slide-mean
# oracle of the {doc}`baselines` chapter). What are its within-slide PCC and its collapse ratio?
# Why can its pooled PCC still be well above 0?
# ```
#
# ```{solution} evaluation-ex-pooled
# :class: dropdown
# Within a slide it is constant: within-slide PCC 0 (a constant has no correlation; the library
# scores it 0) and collapse ratio 0. Pooled over slides its values differ between slides exactly as
# the slides' means do, so it correlates with every gene whose mean differs between slides.
# ```
#
# ```{exercise}
# :label: evaluation-ex-ratio
# Use `collapse_ratio` to show that multiplying a prediction's deviations from its slide means by
# $a$ multiplies its collapse ratio by $a^2$ and leaves its within-slide PCC unchanged (for $a > 0$).
# ```
#
# ````{solution} evaluation-ex-ratio
# :class: dropdown
# ```python
# for a in (0.5, 1.0, 2.0):
#     p = np.concatenate([2.5 + a * (measured[:4, 0] - 2.5), 12.5 + a * (measured[4:, 0] - 12.5)])[:, None]
#     print(a, collapse_ratio(p, measured, slide), per_slide_pcc(p, measured, slide))
# ```
# Variances scale with the square of a factor; correlations do not depend on scale.
# ````
#
# ## What we measured
#
# - The metric table is generated from `stflib.metrics.METRICS`; the ceilings' values are the means
#   over the reference runs in `results/summary.csv`.
# - The toy numbers above are computed with the library's own metric functions.
# - The spread table reads `results/ceilings/spread_baselines.csv` (`python -m stflib spread baselines`).
#
# ## Key takeaways
#
# - `pcc_hvg50` pools held-out spots across slides; within-slide PCC is the spatial question.
# - Every accuracy metric has a ceiling below its ideal on these data; read results against it.
# - A collapse ratio below 1 is expected of an accurate but uncertain model; compare it with the
#   explained share and the calibration slope before calling it a collapse.
#
# ## References
#
# {cite}`jaume2024hest,moran1950`
