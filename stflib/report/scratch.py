"""SpatialTranscriptFormer from scratch: the whole forward pass of one slide in plain tensor code.

The book's "STF from scratch" chapter shows these functions one by one; ``tests/test_book_from_scratch.py``
copies a ``stflib.models.SpatialTranscriptFormer``'s weights (its ``state_dict``) into them and checks
that the outputs are equal. One slide, no padding, no neighbour restriction (``n_neighbors=0``), no
dropout: S spots, P pathways, D token width, H heads, G genes. The weights are a dict of tensors
named as the library's parameters, so ``model.state_dict()`` is a valid argument.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

QUADRANTS = ("p2p", "p2h", "h2p", "h2h")


def patch_tokens(features: Tensor, w: dict) -> Tensor:
    """(S, F) frozen features -> (S, D) tokens: one linear projection."""
    return features @ w["project.weight"].T + w["project.bias"]


def positional_encoding(coords: Tensor, dim: int, gain: Tensor, min_freq: float = 0.5, max_freq: float = 12.0) -> Tensor:
    """(S, 2) spot centres -> (S, D): sin and cos of x and y at D/4 geometric frequencies, after
    centring the slide and dividing by one pooled standard deviation."""
    xy = coords - coords.mean(0)
    xy = xy / (xy.pow(2).sum() / (2 * len(xy))).sqrt()
    k = dim // 4
    freqs = min_freq * (max_freq / min_freq) ** (torch.arange(k) / max(k - 1, 1))
    angles = xy[:, :, None] * freqs  # (S, 2, D/4)
    return gain * torch.cat([angles.sin(), angles.cos()], -1).reshape(len(xy), dim)


def interaction_mask(P: int, S: int, quadrants: tuple[str, ...]) -> Tensor:
    """(P+S, P+S) bool over [pathways | patches], True = the row (query) may read the column (key)."""
    allowed = torch.zeros(P + S, P + S, dtype=torch.bool)
    allowed[:P, :P] = "p2p" in quadrants
    allowed[:P, P:] = "p2h" in quadrants
    allowed[P:, :P] = "h2p" in quadrants
    allowed[P:, P:] = "h2h" in quadrants
    return allowed | torch.eye(P + S, dtype=torch.bool)  # every token may read itself


def attention(x: Tensor, mask: Tensor, w: dict, n_heads: int, P: int, h2p_offset: Tensor | None) -> Tensor:
    """Masked multi-head self-attention over the (T, D) tokens x."""
    T, D = x.shape
    q, k, v = (x @ w["qkv.weight"].T + w["qkv.bias"]).view(T, 3, n_heads, D // n_heads).permute(1, 2, 0, 3)
    logits = q @ k.transpose(-1, -2) / math.sqrt(D // n_heads)  # (H, T, T)
    if h2p_offset is not None:  # one learnable offset per head on the patches' logits for the pathway keys
        logits[:, P:, :P] += h2p_offset.view(-1, 1, 1)
    weights = logits.masked_fill(~mask, float("-inf")).softmax(-1)
    return (weights @ v).transpose(0, 1).reshape(T, D) @ w["out.weight"].T + w["out.bias"]


def block(x: Tensor, mask: Tensor, w: dict, n_heads: int, P: int) -> Tensor:
    """One pre-norm transformer layer: x + attention(LN(x)), then x + MLP(LN(x))."""
    ln = lambda t, name: F.layer_norm(t, t.shape[-1:], w[f"{name}.weight"], w[f"{name}.bias"])  # noqa: E731
    x = x + attention(ln(x, "norm1"), mask, w, n_heads, P, w.get("h2p_logit"))
    hidden = F.gelu(ln(x, "norm2") @ w["ff.0.weight"].T + w["ff.0.bias"])
    return x + hidden @ w["ff.3.weight"].T + w["ff.3.bias"]


def layer_weights(w: dict, prefix: str) -> dict:
    """The weights under ``prefix`` with the prefix removed (``encoder.layers.0.qkv.weight`` -> ``qkv.weight``)."""
    return {name[len(prefix):]: value for name, value in w.items() if name.startswith(prefix)}


def encode(features: Tensor, coords: Tensor, w: dict, n_heads: int, quadrants: tuple[str, ...]) -> list[Tensor]:
    """The tokens [pathways | patches] before the first layer and after each layer, (T, D) each."""
    P, D = w["pathway_tokens"].shape
    x = torch.cat([w["pathway_tokens"], patch_tokens(features, w) + positional_encoding(coords, D, w["position.gain"])])
    mask = interaction_mask(P, len(features), quadrants)
    states = [x]
    for i in range(sum(name.endswith("norm1.weight") for name in w)):
        states.append(block(states[-1], mask, layer_weights(w, f"encoder.layers.{i}."), n_heads, P))
    return states


def forward(features: Tensor, coords: Tensor, w: dict, n_heads: int, quadrants: tuple[str, ...] = QUADRANTS,
            readout: str = "shared") -> dict[str, Tensor]:
    """One slide's (S, F) features and (S, 2) coordinates -> pathway scores (S, P) and genes (S, G)."""
    P, D = w["pathway_tokens"].shape
    x = encode(features, coords, w, n_heads, quadrants)[-1]
    x = F.layer_norm(x, (D,), w["encoder.norm.weight"], w["encoder.norm.bias"])
    pathways = x[:P] if readout == "contextual" else w["pathway_tokens"]  # whom the patches are scored against
    tau = w["scorer.log_tau"].clamp(max=math.log(100.0)).exp()  # learnable temperature, capped at 100
    scores = tau * F.normalize(x[P:], dim=-1, eps=1e-6) @ F.normalize(pathways, dim=-1, eps=1e-6).T  # (S, P)
    z = F.layer_norm(scores, (P,), w["score_norm.norm.weight"], w["score_norm.norm.bias"])
    genes = z @ w["reconstructor.weight"].T + w["reconstructor.bias"]  # (S, G)
    return {"pathway_scores": scores, "genes": genes, "temperature": tau}


def init_weights(feature_dim: int, num_genes: int, num_pathways: int, dim: int, n_layers: int, n_heads: int,
                 h2p_balance: bool = True, seed: int = 0) -> dict[str, Tensor]:
    """Fresh weights with the library's shapes and starting values: temperature 10, gain 0.5, the
    h2p offset at -log P, LayerNorms at (1, 0); random projections; the gene head random too (the
    library starts it at zero or at the Hallmark membership) so that a printed output is not all zeros."""
    g = torch.Generator().manual_seed(seed)
    rand = lambda *shape: torch.randn(*shape, generator=g) / math.sqrt(shape[-1])  # noqa: E731
    w = {"project.weight": rand(dim, feature_dim), "project.bias": torch.zeros(dim),
         "position.gain": torch.tensor(0.5), "pathway_tokens": 0.02 * torch.randn(num_pathways, dim, generator=g)}
    for i in range(n_layers):
        p = f"encoder.layers.{i}."
        w |= {p + "norm1.weight": torch.ones(dim), p + "norm1.bias": torch.zeros(dim),
              p + "qkv.weight": rand(3 * dim, dim), p + "qkv.bias": torch.zeros(3 * dim),
              p + "out.weight": rand(dim, dim), p + "out.bias": torch.zeros(dim),
              p + "norm2.weight": torch.ones(dim), p + "norm2.bias": torch.zeros(dim),
              p + "ff.0.weight": rand(4 * dim, dim), p + "ff.0.bias": torch.zeros(4 * dim),
              p + "ff.3.weight": rand(dim, 4 * dim), p + "ff.3.bias": torch.zeros(dim)}
        if h2p_balance:
            w[p + "h2p_logit"] = torch.full((n_heads,), -math.log(num_pathways))
    w |= {"encoder.norm.weight": torch.ones(dim), "encoder.norm.bias": torch.zeros(dim),
          "scorer.log_tau": torch.tensor(math.log(10.0)),
          "score_norm.norm.weight": torch.ones(num_pathways), "score_norm.norm.bias": torch.zeros(num_pathways),
          "reconstructor.weight": rand(num_genes, num_pathways), "reconstructor.bias": torch.zeros(num_genes)}
    return w


def influence(features: Tensor, coords: Tensor, w: dict, n_heads: int, quadrants: tuple[str, ...],
              eps: float = 1e-3) -> list[Tensor]:
    """How far each spot's patch token moves, layer by layer, when one other spot's features move:
    entry [i, j] of layer l is |change of spot j's token after l layers| when spot i's features are
    nudged by ``eps``. Zero means no path from spot i to spot j in l layers."""
    P, S = w["pathway_tokens"].shape[0], len(features)
    base = encode(features, coords, w, n_heads, quadrants)
    out = [torch.zeros(S, S) for _ in base[1:]]
    for i in range(S):
        nudged = features.clone()
        nudged[i] += eps
        for layer, (a, b) in enumerate(zip(base[1:], encode(nudged, coords, w, n_heads, quadrants)[1:])):
            out[layer][i] = (b[P:] - a[P:]).norm(dim=-1) / eps
    return out
