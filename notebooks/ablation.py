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
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # One ablation arm of SpatialTranscriptFormer
#
# This notebook trains and evaluates **one arm** of the ablation grid and writes its results into
# `output_dir`: `metrics.json`, `per_gene.csv`, `history.csv`, the held-out predictions as AnnData
# (`predictions.h5ad`: obs = spots, var = genes, `obsm['spatial']`) and the figures below.
#
# ```bash
# python -m stflib run -p interactions p2p,p2h                              # live progress, final metrics
# papermill notebooks/ablation.ipynb out.ipynb -p interactions p2p,p2h      # one parameter
# papermill notebooks/ablation.ipynb out.ipynb -f params/losses/pcc.yaml    # an arm of the grid
# python -m stflib ablate params/ --folds 3                                 # the whole grid (Dask)
# ```
#
# With `data_dir = None` it runs on the embedded simulated colorectal-cancer Visium cohort
# (HEST-1k layout, generated on first use); `-p data_dir /path/to/hest` runs it on real HEST-1k.
# All the code lives in `stflib` (`stflib.train.run` is the whole run); the parameters are the
# seed's flags in snake_case (table: `stflib.config_text.parameters_table()`).

# %%
# the names that exist before the parameters: every name defined after this cell (the parameters cell
# and the one papermill injects after it) is a parameter, so an unknown one can be stopped
_before_parameters = set(globals())

# %% tags=["parameters"]
model = 'interaction'  # model: SpatialTranscriptFormer (interaction) or a baseline
backbone = 'resnet50'  # frozen foundation-model backbone whose cached features are used
token_dim = 128  # transformer embedding dimension
n_heads = 4  # attention heads
n_layers = 2  # transformer layers (at least 2 without h2h: the depth rule of the seed)
num_pathways = 50  # pathway bottleneck tokens (the Hallmarks covered by the gene vocabulary when ...
pathway_init = False  # initialise the gene reconstructor from MSigDB Hallmark membership
loss = 'mse'  # gene loss
pcc_weight = 1.0  # weight of the PCC term in mse_pcc
pathway_loss_weight = 0.0  # weight of the auxiliary pathway loss (lambda_aux)
interactions = 'all'  # enabled attention quadrants: all, full, bottleneck, or a subset of p2p,p2h,h2p,h2h ...
log_transform = True  # True: train on log1p(CP10k); False: on CP10k (both standardised per gene inside the ...
return_attention = False  # return attention maps (diagnostics; the notebook plots them)
n_neighbors = None  # None: the reference (18 for STF with h2h, else 0); 0: patches attend to the whole ...
global_context = 0  # STF with n_neighbors k > 0: also attend to this many random spots of the same slide ...
positional_encoding = 'sinusoidal'  # 2D positional encoding of the patch tokens
balance_h2p = True  # STF: a learnable per-head offset on the patches attention logits for the pathway keys, ...
pathway_readout = 'shared'  # STF: score the encoded patches against the learnable pathway tokens shared by every ...
pathway_sets = 'hallmark'  # gene sets of pathway_init and the auxiliary target: hallmark, or the negative control ...
pathway_subset = 'all'  # named pathways: all (every Hallmark the vocabulary covers) or colorectal (the upstream ...
target = 'genes'  # genes: the pathway scores reconstruct the genes (the auxiliary pathway loss optional); ...
depth_correction = 'none'  # pathway targets: none, or regress (each slides log total counts regressed out of its ...
output_mode = 'dense'  # dense: one prediction per spot; global: one (mean-pooled) prediction per slide
standardize_features = True  # z-score each feature with the training folds mean and sd (as HEST-Benchs probe does)
center_targets = True  # standardise every gene with the training folds mean and sd: the model predicts ...
dropout = 0.0  # dropout (0 on CPU: attention dropout is ~4x slower)
data_dir = None  # HEST-1k style folder; None: the embedded simulated cohort (generated on first use)
preset = 'default'  # simulated cohort preset used when data_dir is None
world = 'default'  # simulator world (named assumptions, stflib.simulate.WORLDS) used when data_dir is None
n_genes = 1000  # gene vocabulary size (the most expressed genes of the training fold; the 50 evaluation ...
organ = 'Bowel'  # cohort filter: organ(s) as HEST spells them (None: any)
species = 'Homo sapiens'  # cohort filter: species (None: any)
technology = 'Visium'  # cohort filter: st_technology, exact (Visium excludes Visium HD; None: any)
oncotree = 'COAD,READ,COADREAD'  # cohort filter: OncoTree code(s) (None: any)
qc_min_umis = 200.0  # spot QC: minimum total UMIs (failing spots are masked out of losses and metrics)
qc_min_genes = 100  # spot QC: minimum detected genes
n_folds = 3  # patient-grouped folds
fold = 0  # which fold is held out for testing
split = 'patient'  # held-out unit: patient (n_folds patient-grouped folds) or study (leave one study out: ...
val_fraction = 0.3  # fraction of the training slides (whole patients) held out for model selection (>is 3 ...
epochs = None  # optional cap in passes over the training slides (None: max_steps alone ends training)
max_steps = 400  # optimiser steps of the schedule (cosine decay ends here; early stopping may end sooner)
eval_every = 25  # optimiser steps between validation evaluations
patience = 4  # early-stopping patience in evaluations without a better smoothed validation PCC (0: off)
batch_size = 2  # slides per optimiser step (padded, with a padding mask)
crop_spots = 256  # training only: a random subset of this many spots per slide and step (0: whole ...
lr = 0.001  # AdamW peak learning rate
weight_decay = 0.1  # AdamW weight decay
warmup_steps = 50  # linear warm-up optimiser steps before cosine decay
grad_clip = 1.0  # gradient-norm clipping (0: off)
seed = 0  # random seed (weights, batching)
device = 'auto'  # auto, cpu, cuda, cuda:N or mps
output_dir = 'out'  # where metrics.json, predictions.h5ad and figures go
time_limit_s = 0.0  # stop training after this many seconds (0: no limit)
progress = True  # show a progress bar
torch_threads = 0  # torch CPU threads of this run (0: the torch default; the grid runner sets one per run)
prediction_genes = 'all'  # genes kept in predictions.h5ad: all, or the 50 evaluation HVGs (hvg50, as the grid ...
figures = 'all'  # figures written into output_dir: all, or book (only gene_maps.png, the one the book ...

# %%
# Validate first: an unknown parameter (papermill -p or -f) or a bad value (an unknown quadrant, model,
# loss or backbone) stops the run here, with one line naming it and the allowed values.
given = {name: value for name, value in globals().items() if name not in _before_parameters and not name.startswith("_")}
from stflib import config, config_text  # noqa: E402

cfg = config.RunConfig.from_params(given)
config.check_data_dir(cfg.data_dir)
print(config_text.format_config(cfg))

# %%
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from stflib import plots, train

warnings.filterwarnings("ignore", message="IProgress not found")  # no ipywidgets: tqdm draws a text bar instead
figures = Path(cfg.output_dir)
figures.mkdir(parents=True, exist_ok=True)
result = train.run(cfg)  # load the fold, train (early stopping on held-out training patients), evaluate, write

# %% [markdown]
# ## Metrics on held-out patients
# All on log1p(CP10k). `pcc_hvg50`: mean PCC over the 50 most variable genes of the training fold
# (HEST-Bench); `pathway_pcc_truth`: predicted pathway scores vs the simulator's true activities;
# `collapse_ratio`: predicted / true spatial variance (0 = a flat map); `noise_ceiling_hvg50`: what
# an oracle that knows the simulator's expected expression reaches; `moran_i_*_median`: median over the
# 50 HVGs of Moran's I of the predicted and the measured maps (spatial patterning, 6 nearest spots) and
# `moran_rank_spearman` whether the model ranks the patterned genes as the tissue does.

# %%
keys = ["pcc_hvg50", "pcc_all", "ccc_hvg50", "mse", "pathway_pcc_truth", "pathway_ccc_truth", "pathway_pcc_truth_matched",
        "pathway_pcc_truth_within", "pathway_pcc_target", "pcc_hvg50_within_slide", "collapse_ratio",
        "noise_ceiling_hvg50", "moran_i_pred_median", "moran_i_true_median", "moran_rank_spearman", "n_params",
        "train_seconds", "peak_memory_mb", "epochs_run", "best_epoch"]
pd.Series({k: result.metrics.get(k) for k in keys}, name=f"{cfg.model} fold {cfg.fold}").to_frame()

# %%
if cfg.figures == "all":  # the grid's runs write only the figure the book shows (figures = 'book')
    fig = plots.learning_curve(result.history, title=f"{cfg.model}, fold {cfg.fold}")
    fig.savefig(figures / "learning_curve.png", dpi=100, bbox_inches="tight")

# %%
if cfg.target == "genes" and cfg.figures == "all":  # with target=pathways the model predicts no genes
    fig = plots.per_gene_pcc(result.per_gene, title="per-gene PCC on held-out patients")
    fig.savefig(figures / "per_gene_pcc.png", dpi=100, bbox_inches="tight")

# %% [markdown]
# ## Predicted vs measured maps
# The four HVGs the model predicts best, on the first held-out slide (same colour scale per gene).

# %%
if cfg.target == "genes":
    top = result.per_gene[result.per_gene["is_hvg"]].sort_values("pcc", ascending=False)["gene"].head(4).tolist()
    fig = plots.spatial_maps(result.adata, top)
    fig.savefig(figures / "gene_maps.png", dpi=100, bbox_inches="tight")

# %%
if cfg.figures == "all":
    fig = plots.pathway_maps(result.adata)
    fig.savefig(figures / "pathway_maps.png", dpi=100, bbox_inches="tight")

# %% [markdown]
# ## Which read-out shows where a pathway is active (simulator only)
# Per-slide PCC with the true activity maps of the pathway scores, attention rollout from the pathway
# tokens, and gradient saliency (`stflib.interpret`; `python -m stflib interpretability` compares them
# over worlds and folds). Computed with `return_attention=True` (one backward pass per pathway and slide).

# %%
if cfg.return_attention and cfg.data_dir is None and cfg.model == "interaction":
    from stflib.interpret import interpret_run

    readouts = interpret_run(result)
    print(readouts.groupby("method")["pcc"].mean().round(3).to_string() if len(readouts)
          else "no named pathway tokens to compare with the truth (pathway_init, an auxiliary loss or target=pathways names them)")

# %% [markdown]
# ## Attention (with `return_attention=True`)
# Head-averaged attention of the last layer on the first held-out slide: the quadrant matrix
# [pathways | patches] and where three pathway tokens look.

# %%
first = result.predictions[0]
if cfg.return_attention and first.get("attention"):
    n_spots = len(first["pred"])
    coords = result.adata.obsm["spatial"][: n_spots]
    names = result.model.config.pathway_names
    n_p = len(names) if names else cfg.num_pathways
    fig = plots.attention_maps(first["attention"], coords, n_p, names)
    fig.savefig(figures / "attention.png", dpi=100, bbox_inches="tight")
else:
    print("attention maps: run with -p return_attention True (SpatialTranscriptFormer only)")

# %%
plt.close("all")
print(f"wrote {sorted(p.name for p in Path(cfg.output_dir).iterdir())}")
