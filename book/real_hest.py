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
# # Running it on real HEST-1k
#
# ```{admonition} In this chapter
# :class: tip
# **You will learn** how to run the same grid on the real HEST-1k bowel-cancer subset: select, download, plan,
# extract features once, run, and compare with published numbers.
#
# **Prerequisites**: {doc}`data`, {doc}`ablations/method`; a GPU and a Hugging Face token for the real data.
# ```

# %% tags=["remove-input"]
from stflib.report import pages

pages.run_time_note("real_hest")

# %% [markdown]
# ## Motivation
#
# Everything in this book runs by default on a simulated cohort, because the real data cannot be
# downloaded where the book is built. The code path is the same for real data: this chapter is the
# recipe for running the grid on the HEST-1k bowel-cancer subset on a GPU or a cluster, and the
# published numbers to compare against.
#
# ## The idea
#
# 1. **Select** the cohort from HEST-1k's metadata: human, Bowel, Visium, oncotree COAD / READ /
#    COADREAD (`stflib.data.select_samples`).
# 2. **Download** only those samples (`st/<id>.h5ad`, `patches/<id>.h5`, `metadata/<id>.json`) from
#    the gated Hugging Face dataset `MahmoodLab/hest` with your token in `HF_TOKEN`
#    (`stflib.data.download_hest`). It keeps HEST's `HEST_v1_1_0.csv` and writes `metadata.csv`, the
#    loader's list, with the downloaded rows only.
# 3. **Plan** before spending GPU hours: the dry run checks the folder (samples, patient groups and
#    folds, features per backbone, weights), lists the runs, estimates their GPU time from
#    `results/bench/` and prints the exact command for each missing piece.
# 4. **Extract features once** per backbone on a GPU (mixed precision, resumable per sample).
#    Weights are never fetched at run time; put them in `$STFLIB_WEIGHTS_DIR/<backbone>/` or pass `--weights`.
#    The `params/hest/` files use **H-Optimus-0** (`h-optimus-0`, a ViT-g/14 with 1,536-d features):
#    its weights are Apache-2.0 and need no manual approval, and it has the best average of HEST-Bench's
#    published ridge leaderboard (08.30.24). H-Optimus-1 (the same network; higher bowel figures reported
#    by its vendor) and UNI2-h need an approved academic request; UNI and PLIP are registered as well.
#    Any of them is one value: `--set backbone=uni2-h`.
# 5. **Run the grid** with `params/hest/` (every arm on a GPU); the data folder is given once, with
#    `--set data_dir=...`, on a local Dask cluster, an existing scheduler, or SLURM:
#
# ```bash
# python -m stflib ablate params/hest --folds 3 --dry-run --set data_dir=/data/hest
# python -m stflib extract-features --data-dir /data/hest --backbone h-optimus-0
# python -m stflib ablate params/hest --folds 3 --set data_dir=/data/hest \
#     --cluster slurm --cluster-config slurm.yaml      # or --scheduler tcp://scheduler:8786
# python -m stflib collect
# ```
#
# The SLURM YAML names the partition, account, cores, memory, GPUs, walltime and number of jobs
# (`stflib.grid.cluster`; the README has an example); the workers need the repository, the data and the
# results folder on a shared file system. The cohort is a parameter (`organ`, `species`, `technology`,
# `oncotree`), so the same recipe runs on another HEST organ, e.g. `--set organ=Breast --set oncotree=IDC`.
#
# **Your own sections** enter the same way: `python -m stflib import-visium` writes a Space Ranger
# folder (or an AnnData with `obsm['spatial']`) plus its H&E image as one HEST-1k sample, with patches
# of 112 um (224 px at 0.5 um/px) around each spot, keyed by barcode.
#
# ## Runnable code: the cohort in the real metadata
#
# The cell below reads HEST-1k's metadata CSV when it is available (set `STFLIB_HEST_METADATA`, or
# keep it as `hest/HEST_v1_1_0.csv` in the reference-data folder, `$STFLIB_DATA`).

# %%
import os
from pathlib import Path

import pandas as pd

from stflib.data import find_hest_metadata, patient_groups, select_samples
from stflib.paths import data_dir
from stflib.report.results import repo_root

root = repo_root()
metadata_csv = find_hest_metadata(data_dir() / "hest/HEST_v1_1_0.csv", root.parent / "shared/data/hest/HEST_v1_1_0.csv")
if metadata_csv is None:
    print("HEST-1k metadata CSV not found; download HEST_v1_1_0.csv from the HEST repository's assets.")
else:
    cohort = select_samples(metadata_csv)
    groups = patient_groups(cohort)
    print(f"{len(cohort)} samples, {cohort['spots_under_tissue'].sum():,} spots under tissue, "
          f"{groups.nunique()} patient groups")
    display(cohort.groupby("oncotree_code").agg(samples=("id", "size"), spots=("spots_under_tissue", "sum")))

# %% [markdown]
# The grid's fold count is the same everywhere (the notebook's `n_folds` and `ablate --folds`):

# %%
from stflib import config

print(f"n_folds = {config.PARAM_BY_NAME['n_folds'].default}; "
      f"cohort filter: {config.describe_cohort(config.defaults())}")

# %% [markdown]
# ## The GPU bill before the GPU
#
# What will the whole `params/hest/` grid cost? The cell below answers with the dry run's own timing model
# (`stflib.grid.plan`: each run's optimiser steps at its `max_steps`, each step timed by the committed
# benchmarks in `results/bench/` at the slide's spot count, plus the whole-slide evaluations), applied
# to the cohort that the grid's filter selects from **HEST-1k's metadata** above, with the real cohort's
# spot counts (`spots_under_tissue`): no data folder, no download and no training are needed, so it is
# computed when the book is built, in about a second (`stflib.grid.bill.grid_bill`). From the same
# figures, `stflib.grid.cluster.suggest_config` proposes the SLURM configuration to pass as
# `--cluster-config`: one GPU and 8 cores a job, a walltime that covers a job's share of the grid with a
# 1.5x margin, and memory for the cohort a run holds (features and the vocabulary's counts, targets and
# predictions).

# %%
from stflib.grid import cluster
from stflib.grid.bill import grid_bill

if metadata_csv is None:
    print("HEST-1k metadata CSV not found: no bill (it is computed from the real cohort's spot counts)")
else:
    bill = grid_bill(metadata_csv)
    print(bill.text())
    slurm = cluster.suggest_config(bill.run_seconds, bill.spots, bill.feature_dim)
    print(f"\nslurm.yaml (python -m stflib ablate params/hest --cluster slurm --cluster-config slurm.yaml ...):\n"
          f"{cluster.config_yaml(slurm)}")
    print("the job's SLURM directives:")
    print("\n".join(line for line in cluster.job_script(slurm).splitlines() if line.startswith("#SBATCH")))

# %% [markdown]
# The estimate is an upper bound (early stopping ends most runs sooner). Before the first GPU hour, the
# same path can be rehearsed on a laptop at the cohort's scale: `python -m stflib rehearse` writes 55
# simulated slides with the real metadata's quirks (slides without a patient label, one section
# sequenced twice, Ensembl ids, mouse rows, spots without a patch); the README's section *Rehearsing the
# real-data path* gives the commands and what each took.
#
# ## Runnable code: importing a real Visium section
#
# The squidpy test crop of a 10x mouse-brain section (49 spots; its matrix is log-normalised, so it is
# imported with `--expression log1p` and a warning) goes through the importer when the project's
# reference data is beside the repository. The patches are cut at HEST's scale from an image of
# ~0.73 um/px, so they are upsampled 1.5x.

# %%
import tempfile
import warnings

import h5py
import matplotlib.pyplot as plt

from stflib.data.visium import import_visium

real_st = Path(os.environ.get("STFLIB_SHARED_DATA") or root.parent / "shared/data") / "real_st/squidpy_mouse_brain"
if not real_st.is_dir():
    print(f"reference data not found at {real_st}: skipping the import example")
else:
    out = Path(tempfile.mkdtemp()) / "my_sections"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        row = import_visium(out, "MB1", patient="P1", organ="Brain", oncotree="healthy", species="Mus musculus",
                            image=real_st / "test_img.jpg", adata=real_st / "test_data.h5ad", expression="log1p")
    for w in caught:
        print("warning:", str(w.message).replace(str(real_st) + "/", ""))
    display(pd.read_csv(out / "metadata.csv").drop(columns="source").T)
    with h5py.File(out / "patches" / "MB1.h5") as f:
        fig, axes = plt.subplots(1, 4, figsize=(9, 2.4))
        for ax, img, barcode in zip(axes, f["img"][:4], f["barcode"][:4, 0]):
            ax.imshow(img)
            ax.set_title(barcode.decode(), fontsize=8)
            ax.axis("off")
        fig.suptitle("112 um patches around the first four spots (224 px at 0.5 um/px)", fontsize=9)

# %% [markdown]
# ## What we measured: the reference to beat
#
# HEST-Bench's published results for the two bowel tasks (ridge regression on PCA-256 of frozen
# features, mean Pearson correlation over the 50 most variable genes, patient-held-out), for the
# backbones this book uses where they were benchmarked (Hibou was not). These numbers are quoted
# from the benchmark, not produced by this repository; the file
# `book/data/hest_bench_published.csv` keeps them with their source.

# %%
published = pd.read_csv(root / "book/data/hest_bench_published.csv")
published.drop(columns="source").set_index("model")

# %% [markdown]
# The simulated cohort is calibrated so that the same probe on its CTransPath stand-in lands in
# the range of the real benchmark's results (see the data chapter): the real numbers above, not
# the simulated ones, are what a model must beat on real tissue.
#
# ## Key takeaways
#
# - Real and simulated data share one reader, one feature cache and one notebook; only `data_dir`
#   (given once, on the command line), the cohort filter and `backbone` change.
# - `ablate --dry-run` says what is missing, with the command that makes it, before any GPU time is spent.
# - One's own Visium sections become HEST samples with `import-visium`; a coarse image (Space
#   Ranger's hires/lowres) is accepted, with a warning that says how much the patches are upsampled.
# - On real bowel cancer the published probe is far from saturated, and rectal (READ) samples are
#   harder than colon (COAD): the table above gives the exact figures.
#
# ## References
#
# HEST-1k and HEST-Bench {cite}`jaume2024hest`; Space Ranger's spatial outputs (10x Genomics documentation); backbones {cite}`wang2022ctranspath,filiot2023phikon,xu2024gigapath,he2016resnet`.
