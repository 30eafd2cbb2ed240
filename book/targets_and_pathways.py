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
# # Targets and pathways
#
# ## Motivation
#
# STF does not map a patch straight to ~1,000 genes. It first scores 50 named biological
# processes, the MSigDB Hallmark gene sets, and reconstructs genes from those scores. This chapter
# shows the gene sets the model is built on and the auxiliary pathway targets the seed derives
# from the measured expression.
#
# ## The idea
#
# A Hallmark set is a list of gene symbols. Restricted to the genes a model predicts, the sets
# become a binary pathway-by-gene membership matrix. The seed's auxiliary target for a pathway at
# a spot is the mean, over the pathway's member genes, of each gene's expression z-scored across
# the slide: every gene gets an equal vote, so abundant housekeeping genes cannot dominate.

# %%
import numpy as np
import pandas as pd

from stflib.pathways import hallmarks, membership_matrix, pathway_targets, short_name

gene_sets = hallmarks()
sizes = pd.Series({short_name(name): len(genes) for name, genes in gene_sets.items()}, name="genes")
print(f"{len(gene_sets)} Hallmark sets, {len(set().union(*gene_sets.values()))} distinct genes")
sizes.sort_values(ascending=False).head(10).to_frame()

# %% [markdown]
# ## Runnable code: targets on a toy slide
#
# Three spots, a vocabulary of five genes, two pathways. Gene `B` has no spatial variation, so
# after z-scoring it contributes nothing, whatever its magnitude.

# %%
toy_sets = {"PATHWAY_1": ["A", "B", "C"], "PATHWAY_2": ["D", "E"]}
membership = membership_matrix(toy_sets, ["A", "B", "C", "D", "E"], min_genes=2)
expression = np.array([[1.0, 100.0, 0.0, 5.0, 1.0],
                       [2.0, 100.0, 1.0, 3.0, 1.0],
                       [3.0, 100.0, 2.0, 1.0, 1.0]])
pd.DataFrame(pathway_targets(expression, membership.matrix), columns=membership.names)

# %% [markdown]
# ## Key takeaways
#
# - The 50 Hallmark sets ship with `stflib` and load offline; `read_gmt` reads any newer release.
# - Auxiliary pathway targets are z-scored, mean-aggregated projections of the expression: a
#   spatial pattern, not a magnitude.
#
# ## References
#
# Liberzon et al. (2015), *The Molecular Signatures Database Hallmark Gene Set Collection*, Cell Systems.
