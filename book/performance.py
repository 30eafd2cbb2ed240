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
# # Performance: attention cost and the grid's cost
#
# ```{admonition} In this chapter
# :class: tip
# **You will learn** what the attention costs in time and memory for each set of information flows, why the
# bottleneck is linear in the number of spots, and what the grid cost to run.
#
# **Prerequisites**: {doc}`model`, {doc}`stf_from_scratch`.
# ```

# %% tags=["remove-input"]
from stflib.report import pages

pages.run_time_note("performance")

# %% [markdown]
# ## Motivation
#
# A Visium slide has ~3,000 spots; a Visium HD slide binned at 16 µm has more than 100,000. The
# original implementation builds one dense $T \times T$ attention mask ($T = P + S$) and hands it
# to `nn.TransformerEncoder`, so its time and memory grow with $T^2$ whatever the mask says. Which
# flows are on changes what the model computes; it should also change what it costs.
#
# ## The idea
#
# - **All four flows on**: no mask is needed, so the fused `scaled_dot_product_attention` kernel
#   runs without one.
# - **No `h2h` (the pathway bottleneck)**: the $S \times S$ block is empty apart from the diagonal.
#   Pathway queries attend over $P + S$ keys ($O(P \cdot S)$); each patch query attends over the
#   $P$ pathway keys plus itself, a $(P + 1)$-way softmax per spot. Nothing of size $T \times T$ is
#   ever built, so time and memory grow linearly in $S$.
# - The test suite checks that both fast paths give the same outputs and gradients as the dense
#   reference for all 15 interaction subsets (see the model chapter for a live check).
#
# ## Runnable code
#
# `python -m stflib bench attention --threads 1 --clock cpu --json results/bench/attention_cpu.json`
# measures one training step (forward and backward) on one slide, each configuration in a fresh
# process: time is the best of the measured steps in CPU seconds of one thread (robust to other
# work on a shared machine), memory is the peak resident memory above the process's baseline.
# The page reads the committed measurements:

# %%
import json

import matplotlib.pyplot as plt
import pandas as pd

from stflib.report import results, tables

root = results.repo_root()
bench = pd.DataFrame(json.loads((root / "results/bench/attention_cpu.json").read_text()))
measured = bench.dropna(subset=["seconds"]).assign(memory_GB=lambda t: t["peak_bytes"] / 2**30)
table = measured.pivot_table(index="S", columns="mode", values=["seconds", "memory_GB"])
table.round(3)

# %%
fig, (ax_time, ax_mem) = plt.subplots(1, 2, figsize=(10, 3.6))
for mode, rows in measured.groupby("mode"):
    ax_time.loglog(rows["S"], rows["seconds"], "o-", label=mode)
    ax_mem.loglog(rows["S"], rows["memory_GB"], "o-", label=mode)
ax_time.set_xlabel("spots per slide S")
ax_time.set_ylabel("seconds per training step (1 CPU thread)")
ax_mem.set_xlabel("spots per slide S")
ax_mem.set_ylabel("peak memory (GB)")
ax_time.legend(frameon=False)
fig.tight_layout()

# %% [markdown]
# ## What we measured
#
# The ratios the design promises, computed from the same file: full mode against the dense-mask
# reference at every size both could run, and the bottleneck's growth when the slide doubles.

# %%
wide = measured.pivot_table(index="S", columns="mode", values=["seconds", "peak_bytes"])
lines = []
if {"full", "reference"} <= set(measured["mode"]):
    ratio = (wide["seconds"]["full"] / wide["seconds"]["reference"]).dropna()
    lines.append("full / reference time: " + ", ".join(f"S={s}: {r:.2f}" for s, r in ratio.items()))
bott = wide.xs("bottleneck", axis=1, level=1).dropna() if "bottleneck" in set(measured["mode"]) else None
if bott is not None:
    for s in bott.index:
        if 2 * s in bott.index:
            lines.append(f"bottleneck S={s}->{2 * s}: time x{bott.loc[2 * s, 'seconds'] / bott.loc[s, 'seconds']:.2f}, "
                         f"memory x{bott.loc[2 * s, 'peak_bytes'] / bott.loc[s, 'peak_bytes']:.2f}")
    largest = bott.index.max()
    lines.append(f"bottleneck at S={largest}: {bott.loc[largest, 'seconds']:.1f} s per step, "
                 f"{bott.loc[largest, 'peak_bytes'] / 2**30:.2f} GB")
skipped = bench[bench["seconds"].isna()] if "note" in bench else bench.iloc[:0]
for _, row in skipped.iterrows():
    lines.append(f"{row['mode']} S={row['S']}: {row['note']}")
print("\n".join(lines))

# %% [markdown]
# ### The grid's cost
#
# Training time of every run of the ablation grid, from `results/summary.csv`:

# %%
try:
    summary = results.load_summary()
except FileNotFoundError as err:
    print(err)
else:
    # runs in the other simulator worlds are one row per world, not mixed into the default world's axes
    row = summary["axis"].where(summary["world"] == "default", "world " + summary["world"].astype(str))
    cost = summary.groupby(row)["train_seconds"].agg(["count", "median", "sum"])
    cost.columns = ["runs", "median seconds per run", "total seconds"]
    cost.loc["all"] = [len(summary), summary["train_seconds"].median(), summary["train_seconds"].sum()]
    display(cost.round(1))

# %% [markdown]
# How long the whole grid took on the machine that produced the committed results, from each
# run's `run.json`: the busy wall time (the hours during which at least one run was executing, so
# the gaps between the sessions of a resumed grid are left out and parallel runs count once) and
# the runs' own durations; runs with identical parameters in two axes were executed once and copied:

# %%
runs = results.grid_runs()
if runs.empty:
    print("no runs under results/")
else:
    executed = runs[~runs["copied"]]
    busy = tables.busy_hours(executed["started"], executed["finished"])
    print(f"{len(runs)} run folders, {len(executed)} executions ({(executed['status'] == 'ok').sum()} ok); "
          f"busy wall time {busy:.2f} h; sum of run durations {executed['seconds'].sum() / 3600:.2f} h")
    print(tables.grid_wall_verdict(runs))
    tables.show_table(tables.grid_cost(runs), "grid-cost-per-axis")
    trimmed = executed[executed["malloc_trim"].astype(bool)]
    if len(trimmed):
        print(f"{len(trimmed)} executions ({', '.join(sorted(trimmed['axis'].unique()))}) ran with Dask's malloc "
              "trimming (see below): they cost more hours here than the same runs cost with today's runner.")
    else:
        print("No committed execution ran with Dask's malloc trimming (see below): the busy wall time is what "
              "the grid costs with today's runner.")

# %% [markdown]
# The table is the grid's cost per axis from the runs' `run.json` (a run shared by two axes, such
# as the default STF, is executed once: it counts as an execution in the axis that ran it and as a
# run folder in both). `python -m stflib ablate params` reproduces the default
# world's grid (6 held-out patient folds, one seed) and `python -m stflib ablate --world all` the robustness worlds (`make grid`
# and `make grid-worlds`). The runs of one fold and backbone share their `pathway_ceiling`: its ridge
# on the features and their neighbourhood mean is a run's most expensive step after training, so it is
# computed once per fold, input and neighbourhood and read from `$STFLIB_CACHE/pathway_ceiling/` by
# every other arm.
#
# The last column counts the executions whose kernel inherited `MALLOC_TRIM_THRESHOLD_=65536` from
# Dask's worker processes. With it, glibc returned memory to the system after nearly every training
# step and much of each run's CPU time went to system calls; the runner now removes it
# (`stflib.grid.runner.kernel_environment`, which records the environment in `run.json`). A run
# executed again gives the same metrics up to the floating-point non-determinism of CPU training:
# the closed-form and numpy models exactly, the torch models within a few thousandths of PCC, which
# is why the grid repeats every arm over folds and seeds instead of trusting one execution.

# %% [markdown]
# ### On a GPU
#
# `python -m stflib bench gpu-check` runs the GPU paths in one command: the reference arm trained with
# mixed precision (AMP) on the `full` simulated preset, the attention benchmark at 16k-128k spots and
# each backbone's feature-extraction throughput. It writes `results/bench/reference_cuda.json`,
# `attention_cuda.json` and `backbones_cuda.json`; the CUDA figures appear below when those files
# exist (without a GPU the command runs a small CPU fallback into `*_cpu-check.json` files, which this
# page does not show). `ablate --dry-run` uses `attention_cuda.json` to estimate a grid's GPU-hours.

# %%
cuda_files = {name: root / f"results/bench/{name}_cuda.json" for name in ("reference", "attention", "backbones")}
if not any(path.is_file() for path in cuda_files.values()):
    print("no CUDA figures yet: results/bench/*_cuda.json appear after `python -m stflib bench gpu-check` on a GPU")
if cuda_files["reference"].is_file():
    ref = json.loads(cuda_files["reference"].read_text())
    print(f"reference arm on {ref['device_name']} ({ref['preset']} preset, {ref['epochs']} epochs max, AMP "
          f"{ref['amp']}): pcc_hvg50 {ref['pcc_hvg50']:.3f}, {ref['train_seconds']:.0f} s of training "
          f"({ref['epochs_run']} epochs run)")
if cuda_files["attention"].is_file():
    gpu = pd.DataFrame(json.loads(cuda_files["attention"].read_text()))
    if "seconds" in gpu:
        gpu = gpu.dropna(subset=["seconds"]).assign(memory_GB=lambda t: t["peak_bytes"] / 2**30)
        display(gpu.pivot_table(index="S", columns="mode", values=["seconds", "memory_GB"]).round(3))
if cuda_files["backbones"].is_file():
    display(pd.DataFrame(json.loads(cuda_files["backbones"].read_text()))
            [["backbone", "device_name", "precision", "batch_size", "patches_per_s"]].round(1))

# %% [markdown]
# ## Key takeaways
#
# - The dense-mask reference grows quadratically with the slide; the fused kernel (all flows) is
#   faster at every size measured, and the bottleneck grows linearly, which is what makes
#   whole-slide attention on Visium HD-sized slides possible on one machine.
# - Where the grid's time goes is in the table above; `python -m stflib bench gpu-check` measures the
#   same on a GPU, and this page shows its `results/bench/*_cuda.json` once they are committed.
#
# ## References
#
# {cite}`vaswani2017attention`
