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
# # The model
#
# ```{admonition} In this chapter
# :class: tip
# **You will learn** the pieces of SpatialTranscriptFormer (patch and pathway tokens, the
# interaction mask, cosine pathway scores, the gene reconstructor), how the library's default
# departs from {term}`the original STF`, and what an attention map of a trained model shows.
#
# **Prerequisites**: {doc}`problem`, {doc}`targets_and_pathways`; transformers and attention at the
# level of {cite}`vaswani2017attention`.
# ```

# %% tags=["remove-input"]
from stflib.report import pages

pages.run_time_note("model")

# %% [markdown]
# ## Motivation
#
# A per-spot regression treats every spot alone. SpatialTranscriptFormer (STF) lets spots exchange
# information, but forces part or all of that exchange through 50 tokens named after Hallmark
# pathways, and predicts genes only from each spot's similarity to those tokens. This chapter builds
# the model piece by piece with the library's own classes (`stflib/models/stf.py`, which reads top
# to bottom) and checks each piece's shapes and promises.
#
# ## The idea
#
# For a slide with $S$ spots and $P$ pathways, with token width $D$:
#
# 1. **Patch tokens**: a linear projection of the frozen features, plus a 2-D positional encoding
#    of the spot's $(x, y)$, normalised with the statistics of the slide's valid spots only.
# 2. **Pathway tokens**: $P$ learnable vectors, one per Hallmark set.
# 3. **Encoder**: pre-norm transformer layers over the sequence $[\text{pathways} \mid \text{patches}]$
#    of $T = P + S$ tokens, with a $T \times T$ attention mask made of four quadrants
#    (`p2p`, `p2h`, `h2p`, `h2h`).
# 4. **Cosine scoring**: $\text{score}_{s,p} = \tau \cos(h_s, z_p)$, with a learnable temperature $\tau$.
# 5. **Gene reconstructor**: $\hat{y}_s = W \,\text{score}_s + b$, $W \in \mathbb{R}^{G \times P}$,
#    optionally initialised from the Hallmark membership; under the ZINB loss, extra heads give the
#    dropout probability $\pi$ and inverse dispersion $\theta$, and the mean is offset by the
#    spot's library size.
#
# ## Runnable code
#
# ### The architecture
#
# Drawn by `stflib.report.pages.architecture_figure` with the library's own `interaction_mask` in
# the encoder (red labels: the flows that are on; the lines split pathway from patch tokens).

# %%
fig = pages.architecture_figure()

# %% [markdown]
# ### The four information flows as masks
#
# `interaction_mask` returns the boolean mask (True = a query may attend to a key). The diagonal
# is always allowed: a token whose quadrants are all off keeps its own value instead of producing
# an empty softmax (NaN).

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from stflib.models import SpatialTranscriptFormer, interaction_mask, model_table
from stflib.pathways import hallmarks, membership_matrix

variants = {"full (all)": "all", "pathway bottleneck": "p2p,p2h,h2p", "p2h only + h2p": "p2h,h2p",
            "patches only (h2h)": "h2h"}
fig, axes = plt.subplots(1, len(variants), figsize=(3.0 * len(variants), 3.2))
for ax, (title, quads) in zip(axes, variants.items()):
    mask = interaction_mask(num_pathways=6, num_spots=14, interactions=quads)
    ax.imshow(mask.numpy(), cmap="Greys", vmin=0, vmax=1)
    ax.axhline(5.5, color="C3", lw=1)
    ax.axvline(5.5, color="C3", lw=1)
    ax.set_title(f"{title}\n({quads})", fontsize=9)
    ax.set_xlabel("keys: pathways | patches", fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
axes[0].set_ylabel("queries", fontsize=8)
fig.tight_layout()

# %% [markdown]
# Rows are queries, columns keys, black = allowed; the red lines separate the 6 pathway tokens
# from the 14 patch tokens. In the **pathway bottleneck** (no `h2h`) a patch sees only the pathway
# tokens and itself, so information moves between spots in two hops (patch -> pathway in one layer,
# pathway -> patch in the next): this is why the original STF requires at least two layers without `h2h`.

# %%
try:
    SpatialTranscriptFormer(feature_dim=16, num_genes=8, interactions="p2p,p2h,h2p", n_layers=1)
except ValueError as err:
    print(err)

# %% [markdown]
# ### A forward pass on a simulated slide
#
# Two slides of different sizes are padded into one batch; `pad_mask` is True on padding.

# %%
torch.manual_seed(0)
features = torch.randn(2, 120, 768)          # (B, S, D_backbone): CTransPath-sized features
coords = torch.rand(2, 120, 2) * 5000        # (B, S, 2) spot centres in pixels
pad_mask = torch.zeros(2, 120, dtype=torch.bool)
pad_mask[1, 90:] = True                      # the second slide has 90 spots
gene_sets = hallmarks()
genes = sorted(set().union(*gene_sets.values()))[:1000]
membership = membership_matrix(gene_sets, genes, min_genes=1)

model = SpatialTranscriptFormer(feature_dim=768, num_genes=len(genes), num_pathways=len(membership.names),
                                pathway_init=membership, n_layers=2, token_dim=256, n_heads=4)
out = model(features, coords, pad_mask, return_attention=True)
print("genes", tuple(out.genes.shape), "| pathway scores", tuple(out.pathway_scores.shape),
      "| attention maps", len(out.attention), "layers of", tuple(out.attention[0].shape))
print("padding predicts exactly zero:", bool((out.genes[1, 90:] == 0).all()),
      "| all finite:", bool(torch.isfinite(out.genes).all()))

# %% [markdown]
# Where the parameters are: the encoder and the gene reconstructor dominate; the pathway tokens
# themselves are $P \times D$ numbers.

# %%
parts = {"projection": model.project, "positional encoding": model.position,
         "encoder": model.encoder, "cosine scorer": model.scorer, "gene reconstructor": model.reconstructor}
counts = {name: sum(p.numel() for p in part.parameters()) for name, part in parts.items()}
counts["pathway tokens"] = model.pathway_tokens.numel()
pd.Series(counts, name="parameters").to_frame().assign(share=lambda t: (t.parameters / t.parameters.sum()).round(3))

# %% [markdown]
# ### Two designs: pathways that reconstruct genes, or pathways as the target
#
# The model above is the original STF's design (`target = "genes"`): the pathway scores are an inner
# layer and only the genes are supervised (an auxiliary loss on the scores is optional). The upstream
# SpatialTranscriptFormer has since moved to the other design (`target = "pathways"`): the pathway
# scores *are* the prediction, trained against targets computed from each spot's counts, and the gene
# reconstructor is not used. The upstream's targets, which `stflib.pathways.pathway_targets` computes:
# log1p CP10k, every gene z-scored over the slide's spots, then the mean over each pathway's member
# genes. Each target is therefore centred on every slide, and a pathway's score on a spot says how far
# its member genes sit above their slide average there.

# %%
from stflib.data.dataset import normalize_cp10k
from stflib.pathways import pathway_targets

rng = np.random.default_rng(0)
counts = rng.poisson(rng.gamma(0.5, 4.0, size=(1, len(genes))), size=(90, len(genes))).astype(np.float32)
expression = np.log1p(normalize_cp10k(counts))           # (S, G) log1p CP10k of the 90 spots of slide 2
targets = pathway_targets(expression, membership.matrix)  # (S, P): what target="pathways" regresses on
print("targets", targets.shape, "| largest slide mean of a pathway:", float(np.abs(targets.mean(0)).max().round(6)))
scores = out.pathway_scores[1, :90].detach()              # (S, P) the model's pathway scores on the same spots
# the run divides each pathway's targets by their sd over the training slides first (stflib.train.targets)
scaled = torch.as_tensor(targets / targets.std(0).clip(1e-6))
print("target='pathways' loss of the untrained model (MSE on the scores):",
      round(float(torch.nn.functional.mse_loss(scores, scaled)), 3))

# %% [markdown]
# The two designs are scored on the same things: the pathway maps against the simulator's true
# activities (`pathway_pcc_truth`), and genes where the design predicts them. With `target = "pathways"`
# two choices of the upstream matter and are parameters too: `pathway_subset` (all 50 Hallmarks or
# a 14-pathway colorectal subset) and `depth_correction` (`regress` removes each slide's log total
# UMIs from the targets, since sequencing depth moves every pathway of a spot together). The
# {doc}`ablations/target` and {doc}`ablations/depth_correction` pages measure both designs on the same
# folds.

# %% [markdown]
# ### Biological initialisation of the gene reconstructor
#
# With `pathway_init`, $W_{g,p} = m_{p,g} / n_g$, where $n_g$ is the number of pathways gene $g$
# belongs to: each member gene starts as the *mean* of its pathways' scores, so a gene in many
# Hallmarks is not amplified by its count, and genes in no pathway start at zero.

# %%
W = model.reconstructor.weight.detach().numpy()            # (G, P)
m = membership.matrix                                        # (P, G)
expected = (m / np.maximum(m.sum(0, keepdims=True), 1)).T
print("reconstructor weights equal the normalised membership:", np.allclose(W, expected))
fig, ax = plt.subplots(figsize=(8, 2.6))
ax.imshow(W[:200].T, aspect="auto", cmap="Blues")
ax.set_xlabel("first 200 genes of the vocabulary")
ax.set_ylabel("pathway")
ax.set_title("initial gene-reconstructor weights (pathway_init)", fontsize=9)

# %% [markdown]
# ### Starting at the mean: initialisation and scales
#
# A model that starts away from the training mean spends its first steps undoing its own
# initialisation, and a positional code that hashes every spot gives the encoder noise to
# memorise. Three choices make the untrained STF predict the mean and see tissue-scale position:
#
# - **A zero gene head.** Without `pathway_init` the reconstructor's weights and bias start at zero,
#   and the training loop wraps every model so that it predicts per-gene *standardised* targets
#   (`train.StandardizedOutput`: output $\times$ the training fold's per-gene sd $+$ its per-gene
#   mean). At step 0 every spot predicts the training mean profile (MSE ratio 1).
# - **Normalised pathway scores.** Cosine scores share a large common component across the 50
#   pathways of a spot and differ little across spots; the gene head reads them through a
#   LayerNorm over the pathways (`ScoreNorm`, with a learnable per-pathway gain and shift), so
#   its inputs are O(1) whatever the cosine temperature. The pathway scores that the auxiliary loss
#   and the truth comparison see are the raw cosine scores.
# - **A positional encoding at tissue scale.** The original STF's frequencies reached 100 rad per unit of
#   normalised coordinate, so two adjacent spots got nearly unrelated codes; now the shortest
#   wavelength is about four spot pitches (12 rad), and a learnable gain (starting at 0.5) keeps the
#   encoding's norm below the projected features'. Left: how similar two spots' codes are as a
#   function of their distance, for both. Right: the scores before and after the normalisation
#   for the model above.

# %%
from stflib.models.stf import encoding_similarity

distance = np.linspace(0, 12, 121)
fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
for max_freq, label in ((100.0, "original STF: up to 100 rad (0.06 pitch wavelength)"), (12.0, "now: up to 12 rad (~4 pitches)")):
    axes[0].plot(distance, encoding_similarity(distance, max_freq=max_freq), label=label)
axes[0].set_xlabel("distance between two spots (spot pitches)")
axes[0].set_ylabel("cosine of their encodings")
axes[0].legend(fontsize=8)
with torch.no_grad():
    raw = out.pathway_scores[0, :90].detach()
    normed = model.score_norm(raw)
axes[1].hist(raw.flatten().numpy(), bins=40, alpha=0.6, label=f"cosine scores (mean {float(raw.mean()):.2f}, sd over spots {float(raw.std(0).mean()):.2f})")
axes[1].hist(normed.flatten().numpy(), bins=40, alpha=0.6, label=f"after ScoreNorm (sd over spots {float(normed.std(0).mean()):.2f})")
axes[1].set_xlabel("value")
axes[1].legend(fontsize=7)
fig.tight_layout()
print(f"adjacent spots: cosine {encoding_similarity([1.0], max_freq=100.0)[0]:.2f} (original STF) vs "
      f"{encoding_similarity([1.0], max_freq=12.0)[0]:.2f} (now)")

# %% [markdown]
# ### How much a patch reads the pathway tokens
#
# With local context each patch's softmax runs over the $P$ pathway keys (`h2p`) and its $k$
# nearest spots plus itself (`h2h`). When the logits are still about equal, the pathway keys take
# $P / (P + k + 1)$ of its attention: 72 % for 50 pathways and the reference's 18 neighbours, all
# of it on tokens that are the same for every spot of the slide. `balance_h2p` (the default) adds one
# learnable offset per head and layer to a patch's logits for the pathway keys, starting at
# $-\log P$: the $P$ keys then start with the weight of one key, $1 / (k + 2)$, and training moves
# the offset. Left: the share at a uniform start as a function of the neighbourhood. Right: the share
# measured in the untrained model above, now with the reference's 18 neighbours, for every valid
# spot and layer, with the original STF's plain softmax and with the offset. The `h2p_balance` chapter
# measures what the offset buys on the test folds.

# %%
from stflib import config as C

k = np.arange(0, 61)
P = len(membership.names)
fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
axes[0].plot(k, P / (P + k + 1), label="plain softmax (original STF)")
axes[0].plot(k, 1 / (k + 2), label="offset -log P (balance_h2p)")
axes[0].axvline(C.REFERENCE_NEIGHBOURS, color="grey", ls=":", lw=1)
axes[0].set_xlabel("neighbours k of each patch (h2h)")
axes[0].set_ylabel("pathway keys' share of attention")
axes[0].legend(fontsize=8)
valid = ~pad_mask
for balance in (False, True):
    torch.manual_seed(0)
    local = SpatialTranscriptFormer(feature_dim=768, num_genes=len(genes), num_pathways=P, pathway_init=membership,
                                    n_layers=2, token_dim=256, n_heads=4, n_neighbors=C.REFERENCE_NEIGHBOURS,
                                    balance_h2p=balance)
    with torch.no_grad():
        maps = local(features, coords, pad_mask, return_attention=True).attention  # layers x (B,H,T,T)
    share = torch.stack([m[:, :, P:, :P].sum(-1).mean(1) for m in maps])  # (layers, B, S), mean over heads
    values = share[:, valid].flatten().numpy()
    axes[1].hist(values, bins=40, alpha=0.6, label=f"{'offset' if balance else 'plain'}: median {np.median(values):.2f}")
axes[1].set_xlabel("pathway keys' share of a patch's attention (untrained)")
axes[1].legend(fontsize=8)
fig.tight_layout()

# %% [markdown]
# ### Which pathway tokens score the patches
#
# A pathway score is $\tau \cos(\text{patch}_s, \text{pathway}_p)$. In the original STF the pathway
# token is the encoder's *output*: with `p2h` it has read the slide's patches, so each slide scores
# its spots against its own 50 directions. The auxiliary loss, a PCC inside each slide, cannot see
# what that does between slides, while `pathway_pcc_truth` pools the held-out slides.
# `pathway_readout: shared` (the default) scores the encoded patches against the learnable pathway
# tokens as they enter the encoder, the same 50 directions on every slide; the pathway tokens still
# read the patches and pass what they gathered to them through `h2p` in the layers before the last.
# Below: the cosine between pathway $p$'s encoded token on the two slides of the batch above
# (untrained model), the directions the original STF's read-out would use. The shared read-out's are the
# same on both slides by construction (cosine 1). The `pathway_readout` chapter measures the
# slide offsets this leaves in trained models' scores and what the shared read-out buys.

# %%
encoded = {}
hook = model.encoder.register_forward_hook(lambda module, args, output: encoded.update(x=output[0]))
with torch.no_grad():
    model(features, coords, pad_mask)
hook.remove()
P = len(membership.names)
between_slides = torch.nn.functional.cosine_similarity(encoded["x"][0, :P], encoded["x"][1, :P], dim=-1).numpy()
fig, ax = plt.subplots(figsize=(5, 2.8))
ax.hist(between_slides, bins=25, range=(-1, 1))
ax.axvline(1.0, color="grey", ls=":", lw=1, label="shared read-out (cosine 1)")
ax.set_xlabel("cosine of pathway p's encoded token, slide 1 vs slide 2")
ax.set_ylabel("pathways")
ax.legend(fontsize=8)
print(f"median cosine between the two slides' encoded pathway tokens: {np.median(between_slides):.2f}")

# %% [markdown]
# ### The attention implementations agree
#
# The reference implementation builds one dense $T \times T$ mask, as the original code does with
# `nn.TransformerEncoder`; its cost is $O(T^2)$ whatever the mask. The fast path uses the fused
# kernel with no mask when all four flows are on, and exploits the quadrant structure when `h2h`
# is off ($O(P \cdot S)$). Same weights, same input, three implementations:

# %%
rows = []
for quads in ["all", "p2p,p2h,h2p", "p2h,h2p", "p2p,h2h"]:
    torch.manual_seed(1)
    ref_model = SpatialTranscriptFormer(768, 50, num_pathways=8, token_dim=32, n_heads=4, interactions=quads,
                                        attention_impl="reference")
    fast_model = SpatialTranscriptFormer(768, 50, num_pathways=8, token_dim=32, n_heads=4, interactions=quads,
                                         attention_impl="fast")
    fast_model.load_state_dict(ref_model.state_dict())
    ref, fast = ref_model(features, coords, pad_mask).genes, fast_model(features, coords, pad_mask).genes
    rows.append({"interactions": quads, "max |fast - reference|": float((ref - fast).abs().max())})
pd.DataFrame(rows)

# %% [markdown]
# ### Attention maps from a trained model
#
# A pathway-bottleneck STF trained for a few seconds on the `tiny` simulated cohort with the
# library's training loop (`stflib.train.run`, the code the ablation notebook runs; see
# {doc}`training`), then asked for its attention on a held-out slide (`return_attention=True`).
# The run is made once by `python -m stflib chapters --chapter model`, which commits the
# head-averaged attention of the last layer; this page draws it. Top: the attention over
# $[\text{pathways} \mid \text{patches}]$, rows = queries and columns = keys, with its four quadrants
# drawn at the same size and labelled with the share of their rows' weight; the patch-to-patch
# block is blocked (grey) apart from the diagonal, as the mask demands. Bottom: where three pathway
# tokens look on the slide (the three whose attention varies most). This is a small demonstration
# model; `papermill notebooks/ablation.ipynb out.ipynb -p return_attention True` draws the same
# figure for a full run.

# %%
from stflib import plots
from stflib.report import chapters

demo = chapters.facts("model")
attention = chapters.table("model", "attention_last_layer").to_numpy()
slide_coords = chapters.table("model", "attention_coords").to_numpy()
print(f"held-out slide {demo['slide']}: {demo['spots']} spots; {demo['layers']} layers of attention maps "
      f"{tuple(demo['shape'])}; trained for at most {demo['max_steps']} steps")
fig = plots.attention_maps([attention[None]], slide_coords, len(demo["pathways"]), demo["pathways"])

# %% [markdown]
# ### The model zoo
#
# Every model is built by name from one registry (`stflib.models.MODELS`), the same table the
# parameter files use:

# %%
from IPython.display import Markdown, display

from stflib.report.tables import markdown_table

display(Markdown(markdown_table(model_table(), code_columns=("name", "class"))))

# %% [markdown]
# ## What we measured
#
# - The masks, the padding behaviour (exact zeros, no NaN) and the biological initialisation are
#   printed above from the code; the test suite checks them for all 15 non-empty interaction
#   subsets, in train and eval mode, including that blocked quadrants pass no gradient.
# - The fast attention paths match the dense-mask reference to floating-point precision (table
#   above), with and without the `h2p` offset; their speed and memory are measured in the
#   performance chapter.
# - The pathway keys' share of an untrained patch's attention, plain softmax vs offset, is measured
#   in the figure above on the simulated slide.
# - The attention map of a briefly trained bottleneck model respects the mask: its blocked
#   patch-to-patch block carries no weight.
#
# The {doc}`stf_from_scratch` chapter writes the whole forward pass in plain tensor code and
# checks it against this model; {doc}`training` trains it.
#
# ## Exercises
#
# ```{exercise}
# :label: model-ex-share
# With a plain softmax and logits that are still about equal, what share of a patch's attention do
# the $P$ pathway keys take when the patch also sees itself and $k$ neighbours? With the
# `balance_h2p` offset $-\log P$ on the pathway logits?
# ```
#
# ````{solution} model-ex-share
# :class: dropdown
# Plain: $P / (P + k + 1)$, since every key has the same weight. With the offset, each pathway
# key's weight is multiplied by $e^{-\log P} = 1/P$, so together they weigh as one key:
# $1 / (1 + k + 1) = 1/(k + 2)$. Check against the left panel of the figure above:
#
# ```python
# P, k = 50, C.REFERENCE_NEIGHBOURS
# print(P / (P + k + 1), 1 / (k + 2))
# ```
# ````
#
# ```{exercise}
# :label: model-ex-padding
# Why does the model return exactly zero genes on padding spots, and why must padding never be a
# *key* that real spots attend to?
# ```
#
# ```{solution} model-ex-padding
# :class: dropdown
# The outputs are masked (`masked_fill`) on padding so that no loss or metric can see them. As keys,
# padding tokens would add made-up features to every real spot's attention, and a slide's
# prediction would depend on how much it was padded in its batch; the attention plan removes
# padding from every query's keys.
# ```
#
# ## Key takeaways
#
# - STF is a small transformer over $[\text{pathways} \mid \text{patches}]$ whose mask decides who
#   can talk to whom; genes are a linear read-out of cosine pathway scores.
# - Without `h2h`, every spot-to-spot message passes through a named pathway token, in two layers.
# - Two designs share this model: the original STF supervises genes through the pathway scores
#   (`target = "genes"`); the upstream's current design supervises the scores directly against
#   per-slide pathway targets (`target = "pathways"`), and the target pages compare them.
# - The Hallmark initialisation makes each gene start as the mean score of its pathways.
# - Untrained, STF predicts the training mean (zero head on standardised targets), its gene head
#   reads normalised scores, and its positional code varies at tissue scale, not from spot to spot.
# - With the reference's 18 neighbours, 50 pathway keys take about three quarters of an untrained
#   patch's attention under the original STF's plain softmax; the `balance_h2p` offset starts them at the
#   weight of one key (figure above). The `h2p_balance` chapter reads what that buys on the test folds.
# - With `p2h`, the encoder's output pathway tokens differ from slide to slide (figure above), so the
#   original STF's read-out scores each slide against its own directions; the default scores every slide
#   against the same learnable tokens, and the `pathway_readout` chapter measures the difference.
#
# ## References
#
# {cite}`vaswani2017attention,liberzon2015hallmark,eraslan2019dca`
