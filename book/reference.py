# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Reference: parameters, registries and API
#
# Everything on this page is generated from the code at build time: the notebook's parameters
# come from `stflib.config.PARAMETERS`, the ablation arms from `stflib.ablation.ARMS`, the models,
# losses and backbones from their registries, and the API tables from the modules' signatures and
# docstrings.
#
# ## The ablation notebook's parameters
#
# `papermill notebooks/ablation.ipynb out.ipynb -p NAME VALUE` sets any of these; the seed's flags
# keep their names (in snake_case) and defaults.

# %%
import pandas as pd
from IPython.display import Markdown

from stflib import ablation, book, config
from stflib.backbones import BACKBONES
from stflib.losses import loss_table
from stflib.models import model_table

Markdown(config.parameters_table())

# %% [markdown]
# ## The ablation grid
#
# One YAML file per arm in `params/<axis>/<arm>.yaml` (and the same grid for real data in
# `params/hest/`), written by `stflib.ablation.write_params` from this table:

# %%
rows = [{"axis": axis, "arm": arm, "overrides": ", ".join(f"{k}={v}" for k, v in over.items()) or "(defaults)"}
        for axis, arms in ablation.ARMS.items() for arm, over in arms.items()]
grid = pd.DataFrame(rows)
print(f"{grid['axis'].nunique()} axes, {len(grid)} arms")
grid.groupby("axis")["arm"].apply(", ".join).to_frame("arms")

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
for module_name in book.API_MODULES:
    table = book.api_table(module_name)
    display(Markdown(f"### `stflib.{module_name}`"))
    display(table[["signature", "summary"]].style.hide(axis="index"))
