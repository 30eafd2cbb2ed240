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
# # Depth correction of the pathway targets

# %% tags=["remove-input"]
from stflib.report import pages

pages.page_banner("depth_correction")

# %% [markdown]
# ## Motivation
#
# On real HEST-1k bowel slides sequencing depth drives the shared component of Hallmark scores
# (|r| 0.93 with the first principal component), and regressing depth out removes about half their
# variance. A model trained on such targets can learn depth instead of biology. The `depth-confounded`
# world plants a spatially smooth capture-efficiency field with the same signature (see the data
# chapter), so the correction can be tested where the truth is known.
#
# ## The idea
#
# `depth_correction: regress` replaces each slide's pathway targets by their residuals on
# [1, log total UMIs] over its QC-passed spots, before training (`stflib.train.targets`); `none` keeps
# them. It applies to the auxiliary loss's targets and to `target: pathways`.
#
# ## Runnable code
#
# `papermill notebooks/ablation.ipynb out.ipynb -p world depth-confounded -p target pathways -p depth_correction regress`.
# The paired comparison on the depth-confounded world is on the page
# [Pathways as targets](target.ipynb) (`results/interpretability/depth.csv`).

# %% [markdown]
# ## What we measured

# %%
pages.axis_report("depth_correction", metric="pathway_pcc_truth")

# %% [markdown]
# ## Key takeaways

# %%
pages.show_takeaways("depth_correction", metric="pathway_pcc_truth")

# %% [markdown]
# ## References
#
# {cite}`jaume2024hest`
