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
# # Reference: parameters, registries and API
#
# ```{admonition} On this page
# :class: tip
# **You will find** every parameter of the ablation notebook, every axis and arm of the grid, the
# registries of models, losses and backbones, and the library's public API, all generated from the
# code. **Prerequisites**: none; the {doc}`glossary` defines the terms.
# ```
#
# Everything on this page is generated from the code at build time: the notebook's parameters
# come from `stflib.config.PARAMETERS`, the ablation arms from `stflib.grid.axes.ARMS`, the models,
# losses and backbones from their registries, and the API tables from the modules' signatures and
# docstrings.
#
# ## The ablation notebook's parameters
#
# `papermill notebooks/ablation.ipynb out.ipynb -p NAME VALUE` sets any of these; the original STF's flags
# keep their names (in snake_case) and defaults.

# %%
import pandas as pd
from IPython.display import Markdown

from stflib import config_text
from stflib.backbones import BACKBONES
from stflib.grid.axes import ARMS
from stflib.losses import loss_table
from stflib.models import model_table
from stflib.report import pages

Markdown(config_text.parameters_table())

# %% [markdown]
# ## The ablation grid
#
# One YAML file per arm in `params/<axis>/<arm>.yaml` (and the same grid for real data in
# `params/hest/`), written by `stflib.grid.params.write_params` from this table; each axis's arms
# are compared with its reference arm:

# %%
print(f"{len(ARMS)} axes, {sum(len(axis.arms) for axis in ARMS.values())} arms")
pd.DataFrame({"reference": {name: axis.reference for name, axis in ARMS.items()},
              "arms": {name: ", ".join(axis.arms) for name, axis in ARMS.items()}}).rename_axis("axis")

# %% [markdown]
# ## Registries
#
# Models, losses and backbones are looked up by name from one table each:

# %%
model_table()

# %%
loss_table()

# %%
pd.DataFrame([{"name": name, "feature_dim": spec.feature_dim, "timm architecture": spec.timm_name,
               "hub repository": spec.hub_repo, "normalisation mean": spec.mean}
              for name, spec in BACKBONES.items()])

# %% [markdown]
# ## API
#
# The public functions and classes of each `stflib` module, with their signatures and the first
# line of their docstrings.

# %%
for module_name in pages.API_MODULES:
    table = pages.api_table(module_name)
    display(Markdown(f"### `stflib.{module_name}`"))
    display(table[["signature", "summary"]].style.hide(axis="index"))
