"""SpatialTranscriptFormer: frozen patch features -> pathway bottleneck -> gene expression.

Read top to bottom, one class per idea:

1. ``ModelOutput``               what every model in ``stflib.models`` returns
2. ``parse_interactions`` /      the four information flows (p2p, p2h, h2p, h2h) and the
   ``interaction_mask``          (T, T) mask they define over the sequence [pathways | patches]
3. ``PositionalEncoding2D``      where each spot is on the slide (sinusoidal, learned, none)
4. ``AttentionPlan`` + ``attend_*``  the attention computations: ``reference`` (one dense T x T
                                 mask, like ``nn.TransformerEncoder``), ``explicit`` (the same, with
                                 the weights written out, for ``return_attention``) and ``fast``
                                 (exploits the quadrant structure: O(P*S) without h2h)
5. ``TransformerBlock``          a pre-norm encoder layer whose attention follows the plan
6. ``InteractionEncoder``        the stack of blocks + final norm
7. ``CosineScorer``              pathway scores = cos(patch, pathway) x learnable temperature,
                                 against the encoded or the shared pathway tokens
8. ``GeneReconstructor``         Linear(P -> G) on the normalised scores (``ScoreNorm``), zero or Hallmark init
9. ``ZINBHead``                  mu (library size as offset), gene-wise pi and theta for the ZINB loss
10. ``SpatialTranscriptFormer``  the model

Shapes: B slides, S spots (patches), P pathways, T = P + S tokens, D token_dim, H heads,
d = D / H, G genes, K neighbour slots. ``pad_mask`` is True on padding; ``valid = ~pad_mask``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Iterable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from stflib.models.registry import register_model

# ---------------------------------------------------------------------------------------------
# 1. What a model returns
# ---------------------------------------------------------------------------------------------


@dataclass
class ModelOutput:
    """Predictions of one forward pass (also returned by the baselines).

    genes: (B, S, G) per-spot expression, or (B, 1, G) in global mode; the ZINB mean ``mu`` under ZINB.
    pathway_scores: (B, S, P) cosine scores x temperature (0 on padding); None for models without pathways.
    pi, theta: (B, S, G) ZINB dropout probability and inverse dispersion, or None.
    attention: one (B, H, T, T) tensor per layer when ``return_attention=True``, else None.
    """

    genes: Tensor
    pathway_scores: Tensor | None = None
    pi: Tensor | None = None
    theta: Tensor | None = None
    attention: list[Tensor] | None = None

    def __getitem__(self, key: str):  # dict-style access, out["genes"]
        if key not in self.keys():
            raise KeyError(f"{key!r}; ModelOutput has {', '.join(self.keys())}")
        return getattr(self, key)

    def keys(self) -> list[str]:
        return [f.name for f in fields(self)]


# ---------------------------------------------------------------------------------------------
# 2. The four information flows and their mask
# ---------------------------------------------------------------------------------------------

QUADRANTS = ("p2p", "p2h", "h2p", "h2h")  # query->key: p2h = pathway queries read patch keys
# the seed's named interaction variants
NAMED_INTERACTIONS = {
    "all": QUADRANTS,
    "full": QUADRANTS,  # Full Interaction
    "bottleneck": ("p2p", "p2h", "h2p"),  # Pathway Bottleneck: no patch-patch attention
}


def parse_interactions(value: str | Iterable[str]) -> tuple[str, ...]:
    """``"all"``, ``"full"``, ``"bottleneck"``, ``"p2p,p2h"`` (or separated by spaces or ``+``) or a list
    such as ``["p2p", "p2h"]`` -> the enabled quadrants in canonical order (``QUADRANTS``)."""
    named = ", ".join(NAMED_INTERACTIONS)
    if value is None:
        raise ValueError(f"interactions: got None; allowed: {named} or a subset of {', '.join(QUADRANTS)}")
    if isinstance(value, str):
        key = value.strip().lower()
        if key in NAMED_INTERACTIONS:
            return NAMED_INTERACTIONS[key]
        items = [s for s in key.replace(",", " ").replace("+", " ").split() if s]
    elif isinstance(value, (list, tuple, set, frozenset)):
        items = [str(s).strip().lower() for s in value]
        if len(items) == 1 and items[0] in NAMED_INTERACTIONS:
            return NAMED_INTERACTIONS[items[0]]
    else:
        raise ValueError(f"interactions: expected a string or a list, got {type(value).__name__} {value!r}")
    for item in items:
        if item not in QUADRANTS:
            raise ValueError(f"interactions: unknown quadrant {item!r}; allowed: {', '.join(QUADRANTS)} (or {named})")
    if not items:
        raise ValueError(f"interactions: empty; allowed: a non-empty subset of {', '.join(QUADRANTS)} (or {named})")
    return tuple(q for q in QUADRANTS if q in items)


def check_depth(interactions: str | Iterable[str], n_layers: int) -> None:
    """The seed's depth rule: without h2h (the pathway bottleneck) patches reach each other only
    through the pathways, so layer 1 lets pathways gather from patches and layer 2 lets patches read
    the contextualised pathways: ``n_layers >= 2``. With h2h one layer is a complete model."""
    quadrants = parse_interactions(interactions)
    if "h2h" not in quadrants and n_layers < 2:
        raise ValueError(
            f"n_layers: interactions {','.join(quadrants)} (no h2h, the pathway bottleneck) need n_layers >= 2, "
            f"got n_layers={n_layers}: the seed's rule, layer 1 lets pathways gather from patches and layer 2 "
            "lets patches read the contextualised pathways"
        )
    if n_layers < 1:
        raise ValueError(f"n_layers: must be >= 1, got {n_layers}")


def check_neighbours(interactions: str | Iterable[str], n_neighbors: int) -> None:
    """``n_neighbors = k > 0`` restricts the h2h flow to each spot's k nearest spots: it needs h2h."""
    if n_neighbors < 0:
        raise ValueError(f"n_neighbors: must be >= 0, got {n_neighbors}")
    quadrants = parse_interactions(interactions)
    if n_neighbors > 0 and "h2h" not in quadrants:
        raise ValueError(f"n_neighbors={n_neighbors} restricts the h2h flow to the k nearest spots, but "
                         f"interactions {','.join(quadrants)} has no h2h; use n_neighbors=0 or add h2h")


def interaction_mask(num_pathways: int, num_spots: int, interactions: str | Iterable[str]) -> Tensor:
    """(T, T) bool, True = query row may attend to key column, over [pathways | patches].

        [ p2p  p2h ]     rows = queries, columns = keys
        [ h2p  h2h ]

    The diagonal is always True: every token keeps its own value, so a row whose quadrants are all
    off (e.g. patches with neither h2p nor h2h) is the identity, never an empty softmax (NaN).
    Note the polarity: ``nn.MultiheadAttention`` wants the negation (True = blocked).
    """
    quads = parse_interactions(interactions)
    P, T = num_pathways, num_pathways + num_spots
    allowed = torch.zeros(T, T, dtype=torch.bool)
    allowed[:P, :P] = "p2p" in quads
    allowed[:P, P:] = "p2h" in quads
    allowed[P:, :P] = "h2p" in quads
    allowed[P:, P:] = "h2h" in quads
    allowed.fill_diagonal_(True)
    return allowed


# ---------------------------------------------------------------------------------------------
# 3. Positional encoding of spot coordinates
# ---------------------------------------------------------------------------------------------


def normalise_coords(coords: Tensor, valid: Tensor) -> Tensor:
    """Centre each slide on its valid spots' mean and divide by their pooled std (one scale for x
    and y, so shapes are not stretched). Padding never enters the statistics and is returned as 0.
    (B, S, 2), (B, S) -> (B, S, 2)
    """
    w = valid.unsqueeze(-1).to(coords.dtype)  # (B, S, 1)
    n = w.sum(1, keepdim=True).clamp_min(1.0)  # (B, 1, 1)
    mean = (coords * w).sum(1, keepdim=True) / n
    centred = (coords - mean) * w
    var = (centred**2).sum((1, 2), keepdim=True) / (2 * n)  # pooled over x and y
    std = torch.where(var > 0, var.sqrt(), torch.ones_like(var))  # one spot: no scale to remove
    return centred / std


class PositionalEncoding2D(nn.Module):
    """2D encoding of normalised (x, y), added to the patch tokens.

    ``sinusoidal`` (default, the seed's): D/4 frequencies per axis, geometric from 0.5 to 12 rad per
    std unit of the normalised coordinates. A slide of ~25 spots across spans ~3.5 std units, so
    one spot pitch is ~0.14 units: the shortest wavelength (2 pi / 12 = 0.52) is ~4 pitches and the
    longest spans the slide. Tissue structure (glands, tumour fronts) lives at these scales; higher
    frequencies (the seed's 100 rad: adjacent spots' encodings had cosine 0.5) give each spot a
    random-looking code that the model can only memorise. The encoding is multiplied by a
    learnable ``gain`` that starts at 0.5, so its norm (0.5 sqrt(D/2)) sits below the projected
    content's (~sqrt(D/3) for z-scored features and PyTorch's default Linear init) instead of above it.
    ``learned``: learnable Fourier features (Li et al. 2021): a trainable Linear(2 -> D/2) sets the
    frequencies (initialised in the same range), then [cos | sin] -> MLP(D -> D).
    ``none``: no position (the ablation's control).
    """

    MODES = ("sinusoidal", "learned", "none")

    def __init__(self, dim: int, mode: str = "sinusoidal", min_freq: float = 0.5, max_freq: float = 12.0,
                 init_gain: float = 0.5):
        super().__init__()
        if mode not in self.MODES:
            raise ValueError(f"positional_encoding: unknown {mode!r}; allowed: {', '.join(self.MODES)}")
        self.mode, self.dim = mode, dim
        if mode == "sinusoidal":
            if dim % 4:
                raise ValueError(f"sinusoidal positional encoding needs token_dim divisible by 4, got {dim}")
            k = dim // 4
            freqs = min_freq * (max_freq / min_freq) ** (torch.arange(k) / max(k - 1, 1))
            self.register_buffer("freqs", freqs, persistent=False)  # (D/4,)
            self.gain = nn.Parameter(torch.tensor(float(init_gain)))
        elif mode == "learned":
            if dim % 2:
                raise ValueError(f"learned positional encoding needs an even token_dim, got {dim}")
            self.fourier = nn.Linear(2, dim // 2, bias=False)
            nn.init.normal_(self.fourier.weight, std=max_freq / 4)
            self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim))

    def forward(self, coords: Tensor, valid: Tensor) -> Tensor:  # (B,S,2), (B,S) -> (B,S,D)
        B, S, _ = coords.shape
        if self.mode == "none":
            return coords.new_zeros(B, S, self.dim)
        xy = normalise_coords(coords.float(), valid)
        if self.mode == "sinusoidal":
            angles = xy.unsqueeze(-1) * self.freqs  # (B, S, 2, D/4)
            enc = torch.cat([angles.sin(), angles.cos()], dim=-1)  # (B, S, 2, D/2)
            return self.gain * enc.reshape(B, S, self.dim)
        angles = self.fourier(xy)  # (B, S, D/2)
        return self.mlp(torch.cat([angles.cos(), angles.sin()], dim=-1)) / math.sqrt(2)


def encoding_similarity(distances: np.ndarray, dim: int = 256, max_freq: float = 12.0, pitch: float = 0.14) -> np.ndarray:
    """Cosine similarity of the sinusoidal encodings of two spots ``distances`` spot pitches apart
    (along x; ``pitch`` in normalised-coordinate units, ~0.14 on a 25-spot-wide slide). Shows at
    which distance the encoding stops telling spots apart (the model chapter's figure)."""
    pe = PositionalEncoding2D(dim, "sinusoidal", max_freq=max_freq)
    d = torch.as_tensor(np.asarray(distances, np.float64) * pitch, dtype=torch.float32)
    k = pe.freqs
    # one encoding at x = 0, the other at x = d (y equal): the y half of the code is identical
    a = torch.cat([torch.sin(0 * k), torch.cos(0 * k), torch.sin(0 * k), torch.cos(0 * k)])
    b = torch.stack([torch.cat([torch.sin(x * k), torch.cos(x * k), torch.sin(0 * k), torch.cos(0 * k)]) for x in d])
    return F.cosine_similarity(b, a.expand_as(b), dim=-1).numpy()


# ---------------------------------------------------------------------------------------------
# 4. Attention: what each query may see, and three ways to compute it
# ---------------------------------------------------------------------------------------------

ATTENTION_IMPLS = ("fast", "reference", "explicit")


def knn_neighbours(coords: Tensor, valid: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Each spot's own index followed by its k nearest valid spots (a KD-tree per slide, O(S log S)).

    Returns ``index`` (B, S, k+1) long into the spot axis (slot 0 = the spot itself) and
    ``index_valid`` (B, S, k+1) bool (False for slots a small slide or a padding spot cannot fill).
    """
    from stflib import spatial

    B, S, _ = coords.shape
    index = torch.arange(S).view(1, S, 1).repeat(B, 1, k + 1)
    index_valid = torch.zeros(B, S, k + 1, dtype=torch.bool)
    index_valid[:, :, 0] = True
    xy_all, valid_all = coords.detach().cpu().double().numpy(), valid.cpu().numpy()
    for b in range(B):
        rows = np.flatnonzero(valid_all[b])
        n_other = min(k, len(rows) - 1)
        if n_other <= 0:
            continue
        others = rows[spatial.knn_indices(xy_all[b, rows], n_other)]  # (n, n_other), nearest first
        index[b, rows, 1 : n_other + 1] = torch.from_numpy(others)
        index_valid[b, rows, 1 : n_other + 1] = True
    return index.to(coords.device), index_valid.to(coords.device)


@dataclass
class AttentionPlan:
    """Everything a layer needs to know about who may attend to whom (same for every layer).

    Semantics shared by all implementations: query i may read key j iff quadrant(i, j) is enabled
    and j is not padding, or j == i. In local-context mode the h2h quadrant is restricted to each
    spot's k nearest neighbours. Pathway tokens are never padding.
    """

    num_pathways: int
    quadrants: frozenset[str]
    key_valid: Tensor  # (B, T) bool
    has_padding: bool
    impl: str = "fast"
    neighbours: Tensor | None = None  # (B, S, K) long, local-context mode only
    neighbour_valid: Tensor | None = None  # (B, S, K) bool

    def dense_allowed(self) -> Tensor:
        """The (B, 1, T, T) bool mask, True = allowed: O(T^2) memory, for reference/explicit only."""
        B, T = self.key_valid.shape
        P, S = self.num_pathways, T - self.num_pathways
        quad = interaction_mask(P, S, self.quadrants).to(self.key_valid.device)  # (T, T)
        allowed = quad.unsqueeze(0) & self.key_valid.unsqueeze(1)  # (B, T, T)
        if self.neighbours is not None and "h2h" in self.quadrants:
            local = torch.zeros(B, S, S, dtype=torch.bool, device=allowed.device)
            # unfilled slots point to the spot itself, which is allowed anyway: scatter True everywhere
            local.scatter_(2, self.neighbours, True)
            allowed[:, P:, P:] &= local
        eye = torch.eye(T, dtype=torch.bool, device=allowed.device)
        return (allowed | eye).unsqueeze(1)


def h2p_key_offsets(h2p_logit: Tensor, P: int, T: int) -> Tensor:
    """(1, H, 1, T): a patch query's additive logits over the keys [pathways | patches], the head's
    learnable offset on the P pathway keys and 0 on the patch keys."""
    return F.pad(h2p_logit.view(1, -1, 1, 1).expand(1, -1, 1, P), (0, T - P))


def h2p_logit_block(h2p_logit: Tensor, P: int, T: int) -> Tensor:
    """(1, H, T, T): ``h2p_key_offsets`` on every patch query's row, 0 on the pathway queries' rows."""
    rows = h2p_key_offsets(h2p_logit, P, T).expand(-1, -1, T - P, -1)  # (1,H,S,T)
    return F.pad(rows, (0, 0, P, 0))


def attend_reference(q: Tensor, k: Tensor, v: Tensor, plan: AttentionPlan, dropout_p: float,
                     h2p_logit: Tensor | None = None) -> Tensor:
    """What ``nn.TransformerEncoder`` does with a (T, T) mask and a key-padding mask: merge them into
    one additive float mask of shape (B, H, T, T) and call the attention kernel. O(T^2) whatever
    the mask says. (B, H, T, d) -> (B, H, T, d)
    """
    B, H, T, _ = q.shape
    allowed = plan.dense_allowed()  # (B, 1, T, T)
    additive = torch.zeros(B, H, T, T, dtype=q.dtype, device=q.device)
    if h2p_logit is not None:
        additive = additive + h2p_logit_block(h2p_logit, plan.num_pathways, T)
    additive = additive.masked_fill(~allowed, float("-inf"))
    return F.scaled_dot_product_attention(q, k, v, attn_mask=additive, dropout_p=dropout_p)


def attend_explicit(q: Tensor, k: Tensor, v: Tensor, plan: AttentionPlan, dropout_p: float,
                    h2p_logit: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """softmax(q k^T / sqrt(d) + h2p offset + mask) v written out; returns the weights actually
    applied to v (after dropout, if any), so they are exactly the maps behind the prediction. (B, H, T, T)"""
    scale = q.shape[-1] ** -0.5
    scores = (q @ k.transpose(-2, -1)) * scale  # (B, H, T, T)
    if h2p_logit is not None:
        scores = scores + h2p_logit_block(h2p_logit, plan.num_pathways, scores.shape[-1])
    scores = scores.masked_fill(~plan.dense_allowed(), float("-inf"))
    weights = F.dropout(scores.softmax(-1), p=dropout_p)
    return weights @ v, weights


def _self_only(v: Tensor, dropout_p: float) -> Tensor:
    """A row whose only key is itself: softmax over one key is 1, so the output is its own value."""
    if dropout_p == 0.0:
        return v
    return F.dropout(torch.ones_like(v[..., :1]), p=dropout_p) * v


def attend_fast(q: Tensor, k: Tensor, v: Tensor, plan: AttentionPlan, dropout_p: float,
                h2p_logit: Tensor | None = None) -> Tensor:
    """Same result as ``attend_reference`` on every non-padding query, never a T x T tensor unless h2h
    needs one. Queries are split by group:

    - all four flows, whole-slide, no h2p offset: one fused kernel call, no mask (or a (B,1,1,T)
      key-padding mask); with the offset the pathway and patch queries go as below (two calls).
    - pathway queries (P rows): keys = pathways (p2p, else just itself) + valid patches (p2h);
      a (B,1,P,T) mask at most: O(P*T).
    - patch queries with h2h: keys = [pathways (h2p)] + valid patches; a (B,1,1,Tk) key mask;
      in local-context mode keys = [pathways] + k neighbours, gathered: O(S*(P+K)).
    - patch queries without h2h: keys = [P pathway tokens (h2p)] + the patch itself: a per-row
      softmax over P + 1 scores (the self score is the extra column): O(S*P).

    ``h2p_logit`` (H,), when given, is added to every patch query's logits for the pathway keys.
    """
    P = plan.num_pathways
    quads, local = plan.quadrants, plan.neighbours is not None
    key_mask = plan.key_valid[:, None, None, :] if plan.has_padding else None  # (B,1,1,T)

    if quads == frozenset(QUADRANTS) and not local and h2p_logit is None:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask, dropout_p=dropout_p)

    q_p, q_h = q[:, :, :P], q[:, :, P:]  # (B,H,P,d), (B,H,S,d)
    k_p, k_h = k[:, :, :P], k[:, :, P:]
    v_p, v_h = v[:, :, :P], v[:, :, P:]

    # -- pathway queries
    if "p2h" in quads:
        if "p2p" in quads:
            mask = key_mask
        else:  # itself + valid patches
            eye = torch.eye(P, dtype=torch.bool, device=q.device).expand(q.shape[0], P, P)
            patches = plan.key_valid[:, None, P:].expand(-1, P, -1)
            mask = torch.cat([eye, patches], dim=-1).unsqueeze(1)  # (B,1,P,T)
        out_p = F.scaled_dot_product_attention(q_p, k, v, attn_mask=mask, dropout_p=dropout_p)
    elif "p2p" in quads:
        out_p = F.scaled_dot_product_attention(q_p, k_p, v_p, dropout_p=dropout_p)
    else:
        out_p = _self_only(v_p, dropout_p)

    # -- patch queries
    if "h2h" in quads and local:
        out_h = _attend_neighbours(q_h, k_p, v_p, k_h, v_h, plan, dropout_p, h2p_logit)
    elif "h2h" in quads:
        patch_valid = plan.key_valid[:, P:]
        # a slide that is all padding would leave its patch rows with no key: let them see themselves
        patch_valid = patch_valid | ~patch_valid.any(1, keepdim=True)
        if "h2p" in quads:
            keys, values = k, v
            mask = torch.cat([plan.key_valid[:, :P], patch_valid], 1)[:, None, None] if plan.has_padding else None
            if h2p_logit is not None:  # (1,H,1,T) offsets on the pathway keys, -inf on padding
                offsets = h2p_key_offsets(h2p_logit, P, k.shape[2]).to(q.dtype)
                mask = offsets if mask is None else offsets.masked_fill(~mask, float("-inf"))
        else:
            keys, values = k_h, v_h
            mask = patch_valid[:, None, None] if plan.has_padding else None
        out_h = F.scaled_dot_product_attention(q_h, keys, values, attn_mask=mask, dropout_p=dropout_p)
    elif "h2p" in quads:
        scale = q.shape[-1] ** -0.5
        to_pathways = (q_h @ k_p.transpose(-2, -1)) * scale  # (B,H,S,P)
        if h2p_logit is not None:
            to_pathways = to_pathways + h2p_logit.view(1, -1, 1, 1)
        to_self = (q_h * k_h).sum(-1, keepdim=True) * scale  # (B,H,S,1)
        weights = F.dropout(torch.cat([to_pathways, to_self], -1).softmax(-1), p=dropout_p)  # (B,H,S,P+1)
        out_h = weights[..., :P] @ v_p + weights[..., P:] * v_h
    else:
        out_h = _self_only(v_h, dropout_p)
    return torch.cat([out_p, out_h], dim=2)


def _attend_neighbours(q_h, k_p, v_p, k_h, v_h, plan: AttentionPlan, dropout_p: float,
                       h2p_logit: Tensor | None = None) -> Tensor:
    """Local context: each patch reads [pathways (h2p)] + itself + its k nearest neighbours."""
    B, H, S, d = q_h.shape
    P, K = k_p.shape[2], plan.neighbours.shape[-1]
    scale = d**-0.5
    flat = plan.neighbours.reshape(B, 1, S * K, 1).expand(B, H, S * K, d)
    k_nb = k_h.gather(2, flat).view(B, H, S, K, d)  # (B,H,S,K,d)
    v_nb = v_h.gather(2, flat).view(B, H, S, K, d)
    to_nb = (q_h.unsqueeze(3) * k_nb).sum(-1) * scale  # (B,H,S,K)
    to_nb = to_nb.masked_fill(~plan.neighbour_valid[:, None], float("-inf"))
    if "h2p" in plan.quadrants:
        to_pathways = (q_h @ k_p.transpose(-2, -1)) * scale  # (B,H,S,P)
        if h2p_logit is not None:
            to_pathways = to_pathways + h2p_logit.view(1, -1, 1, 1)
        weights = F.dropout(torch.cat([to_pathways, to_nb], -1).softmax(-1), p=dropout_p)
        w_p, w_nb = weights[..., :P], weights[..., P:]
        return w_p @ v_p + (w_nb.unsqueeze(-1) * v_nb).sum(3)
    w_nb = F.dropout(to_nb.softmax(-1), p=dropout_p)
    return (w_nb.unsqueeze(-1) * v_nb).sum(3)


# ---------------------------------------------------------------------------------------------
# 5-6. Transformer layers over [pathways | patches]
# ---------------------------------------------------------------------------------------------


class TransformerBlock(nn.Module):
    """Pre-norm encoder layer: x + Attn(LN(x)), then x + FFN(LN(x)).

    Parameter-for-parameter the same computation as ``nn.TransformerEncoderLayer(norm_first=True,
    activation="gelu", batch_first=True)`` (tests check it), with attention chosen by the plan.
    ``h2p_logit_init``: when given, the block also learns one logit offset per head that is added to
    every patch query's scores for the pathway keys (the h2p quadrant), starting at this value.
    """

    def __init__(self, dim: int, n_heads: int, ff_mult: int = 4, dropout: float = 0.0,
                 h2p_logit_init: float | None = None):
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"token_dim ({dim}) must be divisible by n_heads ({n_heads})")
        self.n_heads, self.dropout = n_heads, dropout
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.ff = nn.Sequential(
            nn.Linear(dim, ff_mult * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(ff_mult * dim, dim)
        )
        self.drop = nn.Dropout(dropout)
        self.h2p_logit = None if h2p_logit_init is None else nn.Parameter(torch.full((n_heads,), float(h2p_logit_init)))

    def forward(self, x: Tensor, plan: AttentionPlan, need_weights: bool = False) -> tuple[Tensor, Tensor | None]:
        B, T, D = x.shape
        H = self.n_heads
        q, k, v = self.qkv(self.norm1(x)).view(B, T, 3, H, D // H).permute(2, 0, 3, 1, 4)  # 3 x (B,H,T,d)
        p = self.dropout if self.training else 0.0
        weights = None
        if need_weights or plan.impl == "explicit":
            a, weights = attend_explicit(q, k, v, plan, p, self.h2p_logit)
        elif plan.impl == "reference":
            a = attend_reference(q, k, v, plan, p, self.h2p_logit)
        else:
            a = attend_fast(q, k, v, plan, p, self.h2p_logit)
        x = x + self.drop(self.out(a.transpose(1, 2).reshape(B, T, D)))
        x = x + self.drop(self.ff(self.norm2(x)))
        return x, weights


class InteractionEncoder(nn.Module):
    """n_layers TransformerBlocks and a final LayerNorm (pre-norm stacks need one at the end)."""

    def __init__(self, dim: int, n_heads: int, n_layers: int, dropout: float = 0.0,
                 h2p_logit_init: float | None = None):
        super().__init__()
        self.layers = nn.ModuleList(TransformerBlock(dim, n_heads, dropout=dropout, h2p_logit_init=h2p_logit_init)
                                    for _ in range(n_layers))
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor, plan: AttentionPlan, need_weights: bool = False):
        maps = []
        for layer in self.layers:
            x, w = layer(x, plan, need_weights)
            maps.append(w)
        return self.norm(x), (maps if need_weights else None)


# ---------------------------------------------------------------------------------------------
# 7-9. Heads: pathway scores, genes, ZINB
# ---------------------------------------------------------------------------------------------


class CosineScorer(nn.Module):
    """scores[b, s, p] = tau * cos(patch_s, pathway_p). Cosine, not dot product, so a pathway's score
    depends on direction only (token norms cannot inflate it); tau = exp(log_tau) stays positive,
    starts at 10 and is capped at 100 (as CLIP does) to keep the softmax-free scores bounded.

    Which pathway tokens the encoded patches are scored against (``READOUTS``):

    - ``contextual`` (the seed): the encoder's output pathway tokens. With p2h they have read the
      slide's patches, so pathway p's direction, and with it the offset and scale of its scores,
      differs from slide to slide.
    - ``shared``: the learnable pathway tokens as they enter the encoder, one direction per pathway
      for every slide, so a score means the same on every slide. The encoded pathway tokens still
      reach the patches through h2p in the layers before the last.
    """

    READOUTS = ("contextual", "shared")

    def __init__(self, init_temperature: float = 10.0, max_temperature: float = 100.0):
        super().__init__()
        self.log_tau = nn.Parameter(torch.tensor(math.log(init_temperature)))
        self.max_log_tau = math.log(max_temperature)

    @property
    def temperature(self) -> Tensor:
        return self.log_tau.clamp(max=self.max_log_tau).exp()

    def forward(self, patches: Tensor, pathways: Tensor) -> Tensor:  # (B,S,D), (B,P,D) -> (B,S,P)
        cos = F.normalize(patches, dim=-1, eps=1e-6) @ F.normalize(pathways, dim=-1, eps=1e-6).transpose(1, 2)
        return cos * self.temperature


class GeneReconstructor(nn.Linear):
    """Linear(P -> G) on the normalised pathway scores: gene g = sum_p W[g, p] * z_p + b_g.

    Without ``membership`` W and b start at zero, so (under ``StandardizedOutput``) the model starts
    exactly at the training mean profile and learns deviations from it. With ``membership`` (P, G)
    0/1: W[g, p] = membership[p, g] / n_g where n_g is the number of pathways gene g belongs to,
    and b = 0. Each member gene starts as the *mean* of its pathways' normalised scores, so a gene
    in many Hallmarks (JUN, FOS, ...) is not amplified by its count, and the predicted gene sits on
    the same scale as one pathway score, just as the auxiliary targets are means (not sums) of
    z-scored genes. Genes in no pathway start at 0.
    """

    def __init__(self, num_pathways: int, num_genes: int, membership: np.ndarray | Tensor | None = None):
        super().__init__(num_pathways, num_genes)
        with torch.no_grad():
            self.bias.zero_()
            if membership is None:
                self.weight.zero_()
            else:
                m = torch.as_tensor(np.asarray(membership), dtype=torch.float32)
                if m.shape != (num_pathways, num_genes):
                    raise ValueError(
                        f"pathway_init: membership must be (num_pathways, num_genes) = ({num_pathways}, {num_genes}), "
                        f"got {tuple(m.shape)}"
                    )
                self.weight.copy_(membership_init(m))


class ScoreNorm(nn.Module):
    """LayerNorm over the P pathway scores of a spot with a learnable per-pathway gain and shift.

    Cosine scores share a large common component (every patch token is similar to every pathway
    token by about the same amount) with little spread across spots; the gene head reads the
    scores after this component is removed and the rest brought to unit scale, so its first
    steps move genes by O(1) standardised units. ``pathway_scores`` (the auxiliary loss, the truth
    comparison) stay the raw cosine scores.
    """

    def __init__(self, num_pathways: int):
        super().__init__()
        self.norm = nn.LayerNorm(num_pathways)

    def forward(self, scores: Tensor) -> Tensor:
        return self.norm(scores)


def membership_init(membership: Tensor) -> Tensor:
    """(P, G) 0/1 membership -> (G, P) reconstructor weight, each gene's column divided by its pathway count."""
    per_gene = membership.sum(0, keepdim=True).clamp_min(1.0)  # (1, G)
    return (membership / per_gene).T.contiguous()


class ZINBHead(nn.Module):
    """Zero-inflated negative binomial parameters, as scVI parametrises them.

    mu = library_size * exp(rate logit): the per-spot library size is an offset (as in a GLM), so
    the model learns expression *fractions*, not depth. exp (not softmax over the vocabulary)
    because the library size counts all genes while the vocabulary is a subset; the rate bias
    starts at each gene's log mean fraction on the training slides (``init_rate_bias``), so mu
    starts at the mean expression. theta (inverse dispersion) and pi (zero inflation) are one
    parameter per gene (scVI's ``dispersion="gene"``), not per spot from the same 50 scores: the
    spatial signal goes into mu. theta starts at softplus(2) ~ 2.1, pi at sigmoid(-3) ~ 0.05.
    The prediction is the expectation (1 - pi) mu.
    """

    def __init__(self, num_pathways: int, num_genes: int):
        super().__init__()
        self.pi_logit = nn.Parameter(torch.full((num_genes,), -3.0))
        self.theta_raw = nn.Parameter(torch.full((num_genes,), 2.0))

    def forward(self, scores: Tensor, rate_logit: Tensor, library_size: Tensor | None):
        log_lib = torch.zeros_like(rate_logit[..., :1]) if library_size is None else \
            library_size.clamp_min(1.0).log().unsqueeze(-1)  # (B,S,1); an empty spot gets offset 1
        mu = (log_lib + rate_logit.clamp(max=30.0)).exp()
        pi = torch.sigmoid(self.pi_logit).expand_as(mu)
        theta = (F.softplus(self.theta_raw) + 1e-4).expand_as(mu)
        return mu, pi, theta


# ---------------------------------------------------------------------------------------------
# 10. The model
# ---------------------------------------------------------------------------------------------


# "interaction" is the seed's --model name for SpatialTranscriptFormer
@register_model("interaction", "torch", run_args=(
    "num_pathways", "token_dim", "n_heads", "n_layers", "interactions", "positional_encoding", "balance_h2p",
    "pathway_readout", "pathway_init",
    "pathway_names", "output_mode", "zinb", "dropout", "n_neighbors"), zinb_head=True)
class SpatialTranscriptFormer(nn.Module):
    """Frozen features -> tokens (+ position) -> encoder over [pathways | patches] -> cosine pathway
    scores -> genes (or ZINB parameters).

    ``interactions``: "all", "p2p,p2h", or a list of quadrants; without h2h (the pathway bottleneck)
    at least 2 layers are needed. ``pathway_init``: a (P, G) 0/1 membership (or a
    ``stflib.pathways.Membership``, whose names become the pathway names) to initialise the gene
    reconstructor. ``output_mode``: "dense" (B, S, G) or "global" (B, 1, G), the mean over valid
    spots. ``zinb``: also return pi and theta; ``genes`` is then mu (pass ``library_size``).
    ``n_neighbors > 0`` restricts h2h to each spot's k nearest neighbours (local context, linear in
    S). ``attention_impl``: "fast" (default), "reference" (dense T x T mask, the original
    implementation's cost) or "explicit"; all three give the same result. ``balance_h2p``: a
    learnable per-head offset on the patches' logits for the pathway keys, starting at -log P, so
    the P pathway tokens start with the attention of one neighbour (False: the seed's plain softmax).
    ``pathway_readout``: score the encoded patches against the encoded pathway tokens
    ("contextual", the seed) or against the learnable tokens shared by every slide ("shared"); see
    ``CosineScorer``.
    """

    description = "SpatialTranscriptFormer: pathway-token transformer with cosine pathway scores"
    reference = "this book's seed (SpatialTranscriptFormer); quadrant masking after SurvPath (Jaume et al. 2024)"

    def __init__(
        self,
        feature_dim: int,
        num_genes: int,
        num_pathways: int = 50,
        token_dim: int = 256,
        n_heads: int = 4,
        n_layers: int = 2,
        interactions: str | Iterable[str] = "all",
        positional_encoding: str = "sinusoidal",
        pathway_init: np.ndarray | Tensor | None = None,
        pathway_names: list[str] | None = None,
        output_mode: str = "dense",
        zinb: bool = False,
        dropout: float = 0.0,
        n_neighbors: int = 0,
        attention_impl: str = "fast",
        balance_h2p: bool = True,
        pathway_readout: str = "shared",
    ):
        super().__init__()
        self.quadrants = frozenset(parse_interactions(interactions))
        check_depth(interactions, n_layers)
        check_neighbours(interactions, n_neighbors)
        if output_mode not in ("dense", "global"):
            raise ValueError(f"output_mode: unknown {output_mode!r}; allowed: dense, global")
        if zinb and output_mode != "dense":
            raise ValueError("zinb=True needs output_mode='dense' (a mean of per-spot ZINBs is not a ZINB)")
        if pathway_readout not in CosineScorer.READOUTS:
            raise ValueError(f"pathway_readout: unknown {pathway_readout!r}; allowed: {', '.join(CosineScorer.READOUTS)}")
        if attention_impl not in ATTENTION_IMPLS:
            raise ValueError(f"attention_impl: unknown {attention_impl!r}; allowed: {', '.join(ATTENTION_IMPLS)}")
        if isinstance(pathway_init, bool):
            if pathway_init:
                raise ValueError("pathway_init=True: pass the membership itself, e.g. "
                                 "stflib.pathways.membership_matrix(hallmarks(), genes) (or its .matrix)")
            pathway_init = None
        if hasattr(pathway_init, "matrix"):  # a stflib.pathways.Membership
            pathway_names = pathway_names or list(pathway_init.names)
            pathway_init = pathway_init.matrix
        self.feature_dim, self.num_genes, self.num_pathways = feature_dim, num_genes, num_pathways
        self.n_neighbors, self.output_mode, self.zinb = n_neighbors, output_mode, zinb
        self.attention_impl, self.pathway_readout = attention_impl, pathway_readout
        self.pathway_names = _pathway_names(num_pathways, pathway_names)

        self.project = nn.Linear(feature_dim, token_dim)  # (B,S,F) -> (B,S,D)
        self.position = PositionalEncoding2D(token_dim, positional_encoding)
        self.pathway_tokens = nn.Parameter(torch.randn(num_pathways, token_dim) * 0.02)  # (P, D)
        # P pathway keys next to K + 1 neighbour keys would take P / (P + K + 1) of every patch's attention
        # at a uniform start (72 % for 50 pathways and 18 neighbours), all of it on slide-constant
        # tokens; an offset of -log P per head makes the P pathway keys together start with the weight
        # of one key, and training moves it
        h2p_init = -math.log(num_pathways) if balance_h2p and "h2p" in self.quadrants else None
        self.encoder = InteractionEncoder(token_dim, n_heads, n_layers, dropout, h2p_init)
        self.scorer = CosineScorer()
        self.score_norm = ScoreNorm(num_pathways)
        self.reconstructor = GeneReconstructor(num_pathways, num_genes, pathway_init)
        self.zinb_head = ZINBHead(num_pathways, num_genes) if zinb else None
        if zinb:  # start mu near library_size / G until init_rate_bias sets each gene's mean fraction
            with torch.no_grad():
                self.reconstructor.bias.fill_(-math.log(num_genes))

    def init_rate_bias(self, log_mean_fraction: np.ndarray | Tensor) -> None:
        """ZINB: set the rate bias to the genes' log mean fractions (G,) of the training slides, so
        mu starts at each gene's mean expression (scVI's initialisation)."""
        v = torch.as_tensor(np.asarray(log_mean_fraction), dtype=torch.float32)
        if v.shape != (self.num_genes,):
            raise ValueError(f"init_rate_bias: expected ({self.num_genes},) log mean fractions, got {tuple(v.shape)}")
        with torch.no_grad():
            self.reconstructor.bias.copy_(v)

    def attention_plan(self, coords: Tensor, valid: Tensor, impl: str | None = None) -> AttentionPlan:
        B, S = valid.shape
        key_valid = torch.cat([valid.new_ones(B, self.num_pathways), valid], dim=1)  # (B, T)
        neighbours = neighbour_valid = None
        if self.n_neighbors > 0:
            neighbours, neighbour_valid = knn_neighbours(coords, valid, self.n_neighbors)
        return AttentionPlan(self.num_pathways, self.quadrants, key_valid, bool((~valid).any()),
                             impl or self.attention_impl, neighbours, neighbour_valid)

    def forward(
        self,
        features: Tensor,
        coords: Tensor,
        pad_mask: Tensor | None = None,
        return_attention: bool = False,
        library_size: Tensor | None = None,
    ) -> ModelOutput:
        B, S, _ = features.shape
        P = self.num_pathways
        valid = torch.ones(B, S, dtype=torch.bool, device=features.device) if pad_mask is None else ~pad_mask.bool()

        patches = self.project(features) + self.position(coords, valid)  # (B,S,D)
        pathways = self.pathway_tokens.expand(B, -1, -1)  # (B,P,D)
        x = torch.cat([pathways, patches], dim=1)  # (B,T,D)

        plan = self.attention_plan(coords, valid)
        x, maps = self.encoder(x, plan, need_weights=return_attention)

        readout = x[:, :P] if self.pathway_readout == "contextual" else pathways  # (B,P,D)
        scores = self.scorer(x[:, P:], readout)  # (B,S,P)
        scores = scores.masked_fill(~valid.unsqueeze(-1), 0.0)
        genes = self.reconstructor(self.score_norm(scores))  # (B,S,G): expression, or the ZINB rate logit
        pi = theta = None
        if self.zinb_head is not None:
            genes, pi, theta = self.zinb_head(scores, genes, library_size)
            pi, theta = pi.masked_fill(~valid.unsqueeze(-1), 0.0), theta.masked_fill(~valid.unsqueeze(-1), 1.0)
        genes = genes.masked_fill(~valid.unsqueeze(-1), 0.0)
        if self.output_mode == "global":
            genes = masked_mean(genes, valid)  # (B,1,G)
        return ModelOutput(genes=genes, pathway_scores=scores, pi=pi, theta=theta, attention=maps)


def masked_mean(x: Tensor, valid: Tensor) -> Tensor:
    """Mean over the valid spots of each slide: (B,S,G), (B,S) -> (B,1,G); 0 for a slide with none."""
    w = valid.unsqueeze(-1).to(x.dtype)
    return (x * w).sum(1, keepdim=True) / w.sum(1, keepdim=True).clamp_min(1.0)


def _pathway_names(num_pathways: int, names: list[str] | None) -> list[str]:
    if names is not None:
        if len(names) != num_pathways:
            raise ValueError(f"pathway_names has {len(names)} names for num_pathways={num_pathways}")
        return list(names)
    if num_pathways == 50:
        from stflib.pathways import hallmarks

        return list(hallmarks())
    return [f"pathway_{i}" for i in range(num_pathways)]
