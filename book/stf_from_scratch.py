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
# # STF from scratch
#
# ```{admonition} In this chapter
# :class: tip
# **You will learn** to write the whole STF forward pass in plain tensor code, to read its attention
# mask quadrant by quadrant, and to show by computation why the pathway bottleneck needs two layers.
#
# **Prerequisites**: {doc}`model` (the pieces and their names); matrix products, softmax and
# LayerNorm.
# ```

# %% tags=["remove-input"]
from stflib.report import pages

pages.run_time_note("stf_from_scratch")

# %% [markdown]
# ## Motivation
#
# The library's model (`stflib/models/stf.py`) is written for speed and for every option of the
# ablation grid: batches of slides with padding, three attention implementations, neighbour
# restriction, ZINB heads. Under all that, the model is a few equations. This chapter writes them
# out, one function per idea, in `stflib/report/scratch.py`, runs them on a slide of 5 spots with
# 3 pathways and token width 8, and checks that they give the library's numbers when they are given
# the library's weights. The test suite checks the same (`tests/test_book_from_scratch.py`), for
# all 15 sets of information flows.
#
# ## The idea
#
# One slide of $S$ spots with frozen features $f_s \in \mathbb{R}^F$ and coordinates $(x_s, y_s)$;
# $P$ pathway tokens; token width $D$; $H$ heads.
#
# 1. Patch tokens $h_s = W_\text{proj} f_s + b + g \cdot \text{PE}(x_s, y_s)$.
# 2. The sequence $[z_1 \dots z_P \mid h_1 \dots h_S]$ of $T = P + S$ tokens goes through $L$
#    pre-norm transformer layers whose attention obeys a $T \times T$ mask with four quadrants.
# 3. Pathway scores $\text{score}_{s,p} = \tau \cos(h_s^{(L)}, z_p)$ with a learnable temperature $\tau$.
# 4. Genes $\hat y_s = W_\text{rec}\, \text{LN}(\text{score}_s) + b_\text{rec}$.
#
# The functions below read their weights from a dict named like the library's parameters, so a
# trained model's `state_dict()` runs in them unchanged.
#
# ## Runnable code
#
# ### Patch tokens and the positional encoding

# %%
import numpy as np
import pandas as pd
import torch

from stflib.report import scratch

pages.show_source(scratch.patch_tokens, scratch.positional_encoding)

# %% [markdown]
# A toy slide: 5 spots on two rows of a Visium-like grid (100 µm apart, in pixels at 0.5 µm/px),
# features of width 6, 3 pathways, token width 8 (so 8/4 = 2 frequencies per axis), 2 heads, 2
# layers, 4 genes. `init_weights` gives every parameter the library's shape and starting value.

# %%
torch.manual_seed(0)
S, F_DIM, P, D, H, L, G = 5, 6, 3, 8, 2, 2, 4
features = torch.randn(S, F_DIM)
coords = torch.tensor([[0, 0], [200, 0], [400, 0], [100, 173], [300, 173]], dtype=torch.float32)
w = scratch.init_weights(F_DIM, G, num_pathways=P, dim=D, n_layers=L, n_heads=H)
torch.set_printoptions(precision=2, sci_mode=False)
print("positional encoding (S x D), gain", float(w["position.gain"]))
print(scratch.positional_encoding(coords, D, w["position.gain"]))
print("patch tokens = projection + encoding (S x D)")
print(scratch.patch_tokens(features, w) + scratch.positional_encoding(coords, D, w["position.gain"]))

# %% [markdown]
# ### The interaction mask
#
# Rows are queries, columns keys, over $[\text{pathways} \mid \text{patches}]$. The four
# quadrants are `p2p` (pathways read pathways), `p2h` (pathways read patches), `h2p` (patches read
# pathways) and `h2h` (patches read patches); the diagonal is always on, so a token whose quadrants
# are all off keeps its own value.

# %%
pages.show_source(scratch.interaction_mask)
labels = [f"z{p}" for p in range(P)] + [f"h{s}" for s in range(S)]
for name, quads in {"full": scratch.QUADRANTS, "pathway bottleneck (no h2h)": ("p2p", "p2h", "h2p")}.items():
    print(name)
    print(pd.DataFrame(scratch.interaction_mask(P, S, quads).int().numpy(), index=labels, columns=labels)
          .to_string())

# %% [markdown]
# ### Attention and one transformer layer
#
# Scaled dot-product attention per head, with blocked entries set to $-\infty$ before the softmax.
# The library's default adds one learnable number per head to the logits of patch queries for the
# pathway keys (`h2p_logit`, starting at $-\log P$, so that the $P$ pathway keys together start with
# the weight of one key); the original STF has no such offset.

# %%
pages.show_source(scratch.attention, scratch.block)

# %% [markdown]
# ### The encoder, the cosine scores and the gene reconstructor

# %%
pages.show_source(scratch.layer_weights, scratch.encode, scratch.forward)

# %%
out = scratch.forward(features, coords, w, n_heads=H)
print(f"temperature tau at the start: {float(out['temperature']):.1f} "
      f"(log_tau = {float(w['scorer.log_tau']):.3f}, capped at 100)")
print("pathway scores (S x P) = tau x cosine, so each lies in [-tau, tau]")
print(out["pathway_scores"])
print("genes (S x G)")
print(out["genes"])

# %% [markdown]
# That is the whole model: the code above, without blank lines, comments and docstrings, counts

# %%
print(f"{pages.source_lines(scratch)} lines (stflib/report/scratch.py, with the weight initialiser and the "
      "influence measurement below)")

# %% [markdown]
# ### The same numbers as the library
#
# The library's `SpatialTranscriptFormer` with the same sizes takes the from-scratch weights
# (`load_state_dict`), and both compute the same genes:

# %%
from stflib.models import SpatialTranscriptFormer

library = SpatialTranscriptFormer(F_DIM, G, num_pathways=P, token_dim=D, n_heads=H, n_layers=L,
                                  interactions="all", n_neighbors=0).eval()
library.load_state_dict(w)
with torch.no_grad():
    theirs = library(features[None], coords[None])
print("max |library - from scratch|, genes:", float((theirs.genes[0] - out["genes"]).abs().max()),
      "| pathway scores:", float((theirs.pathway_scores[0] - out["pathway_scores"]).abs().max()))

# %% [markdown]
# ### Where the library's default departs from the original STF
#
# The original STF (the design this book re-implements, {doc}`glossary <glossary>`) differs from
# the library's default in four places, each an ablation arm of its own:
#
# | piece | original STF | library default | ablation page |
# |---|---|---|---|
# | scores read against | the encoded pathway tokens, `x[:P]` (`readout="contextual"`) | the learnable tokens `pathway_tokens` (`"shared"`) | {doc}`ablations/pathway_readout` |
# | patches' logits for pathway keys | plain softmax | + `h2p_logit`, starting at $-\log P$ | {doc}`ablations/h2p_balance` |
# | gene head input | the raw scores | LayerNorm over the $P$ scores | the {doc}`model` chapter |
# | positional frequencies | up to 100 rad per unit, no gain | up to 12 rad, gain 0.5 | {doc}`ablations/positional_encoding` |
#
# The original STF's read-out is one argument here:

# %%
contextual = scratch.forward(features, coords, w, n_heads=H, readout="contextual")
print("genes with the original STF's read-out (same weights):")
print(contextual["genes"])

# %% [markdown]
# ### The bottleneck's two hops, computed
#
# Without `h2h`, can spot 0 influence spot 4 at all? Nudge spot $i$'s features by a small amount
# and measure how far every spot's patch token moves after each layer (`influence`): entry
# $(i, j)$ is the movement of spot $j$'s token per unit nudge of spot $i$.

# %%
pages.show_source(scratch.influence)

# %%
spots = [f"h{s}" for s in range(S)]
for name, quads in {"pathway bottleneck (no h2h)": ("p2p", "p2h", "h2p"), "full": scratch.QUADRANTS}.items():
    for layer, matrix in enumerate(scratch.influence(features, coords, w, H, quads), start=1):
        print(f"{name}, after layer {layer}: rows = nudged spot, columns = moved spot")
        print(pd.DataFrame(matrix.numpy(), index=spots, columns=spots).round(3).to_string())

# %%
bottleneck = scratch.influence(features, coords, w, H, ("p2p", "p2h", "h2p"))
off = ~torch.eye(S, dtype=torch.bool)
print(f"bottleneck: largest effect of one spot on another after layer 1: {float(bottleneck[0][off].max()):.3g}; "
      f"after layer 2: smallest {float(bottleneck[1][off].min()):.3g}")

# %% [markdown]
# In the bottleneck, after one layer the off-diagonal entries are exactly zero: in layer 1 a patch
# reads the pathway tokens as they entered the layer, which have not yet seen any patch. The pathway
# tokens read the patches in layer 1 (`p2h`), and the patches read those updated tokens in layer 2
# (`h2p`): two hops, so the library refuses a bottleneck with one layer. With `h2h`, one layer
# suffices.
#
# ## Exercises
#
# ```{exercise}
# :label: scratch-ex-h2p
# Switch `h2p` off as well (`quadrants=("p2p", "p2h")`). After two layers, which off-diagonal
# entries of the influence matrix are non-zero? Does the gene prediction of a spot then depend on
# any other spot, with the shared read-out? With the contextual one?
# ```
#
# ````{solution} scratch-ex-h2p
# :class: dropdown
# None: without `h2p` and `h2h` no patch ever reads another token, so its token depends on its own
# features only. With the shared read-out the scores are computed against `pathway_tokens`, so the
# genes depend on the spot alone. With the contextual read-out the encoded pathway tokens (which
# read every patch through `p2h`) become the scoring directions, so every spot's genes depend on the
# whole slide, through its scoring directions only:
#
# ```python
# only = ("p2p", "p2h")
# print(scratch.influence(features, coords, w, H, only)[-1])   # diagonal only
# nudged = features.clone(); nudged[0] += 1.0
# for readout in ("shared", "contextual"):
#     a = scratch.forward(features, coords, w, H, only, readout)["genes"][4]
#     b = scratch.forward(nudged, coords, w, H, only, readout)["genes"][4]
#     print(readout, float((a - b).abs().max()))               # 0 for shared, > 0 for contextual
# ```
# ````
#
# ```{exercise}
# :label: scratch-ex-temperature
# The scores are $\tau \cos(\cdot)$ with $\tau = 10$ at the start. Why does the library put a
# LayerNorm over the $P$ scores before the gene head, and what would $\tau$ do to the gene head's
# first steps without it?
# ```
#
# ```{solution} scratch-ex-temperature
# :class: dropdown
# Without the LayerNorm the gene head's inputs are $\tau$ times cosines that share a large common
# component across pathways, so a change of $\tau$ rescales every gene at once and the first
# gradient steps mostly move that common part. The LayerNorm removes the spot's mean over pathways
# and divides by their spread, so the head reads O(1) contrasts between pathways whatever $\tau$ is.
# ```
#
# ```{exercise}
# :label: scratch-ex-count
# Count the parameters of `init_weights(6, 4, 3, 8, 2, 2)` by hand (projection, gain, pathway
# tokens, per layer: two LayerNorms, qkv, out, the 4x MLP, the h2p offset; final LayerNorm,
# temperature, score LayerNorm, reconstructor) and check with `sum(v.numel() for v in w.values())`.
# ```
#
# ````{solution} scratch-ex-count
# :class: dropdown
# Projection $8 \cdot 6 + 8 = 56$; gain 1; tokens $3 \cdot 8 = 24$. Per layer: LayerNorms
# $2 \cdot 16 = 32$, qkv $24 \cdot 8 + 24 = 216$, out $64 + 8 = 72$, MLP $32 \cdot 8 + 32 + 8 \cdot
# 32 + 8 = 552$, offset 2: 874, twice is 1,748. Final LayerNorm 16, temperature 1, score LayerNorm
# 6, reconstructor $4 \cdot 3 + 4 = 16$. Total 1,868:
#
# ```python
# sum(v.numel() for v in scratch.init_weights(6, 4, 3, 8, 2, 2).values())
# ```
# ````
#
# ## What we measured
#
# - The from-scratch forward pass gives the library's genes and pathway scores to floating-point
#   precision with the same weights (printed above; the tests check all 15 quadrant sets and both
#   read-outs).
# - The influence matrices show the two hops: with `h2h` off, no spot reaches another after one
#   layer, every spot reaches every other after two.
#
# ## Key takeaways
#
# - STF is a projection, a positional code, a masked transformer over $[\text{pathways} \mid
#   \text{patches}]$, cosine scores with a temperature that starts at 10, and a linear gene head.
# - The mask's four quadrants are four lines of code; the diagonal keeps every row's softmax defined.
# - In the bottleneck, spot-to-spot information needs a layer to reach the pathway tokens and a
#   layer to come back.
#
# ## References
#
# {cite}`vaswani2017attention`
