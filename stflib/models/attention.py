"""Attention over [pathways | patches]: who may attend to whom, and three ways to compute it.

- ``interaction_mask``   the (T, T) mask the four quadrants (p2p, p2h, h2p, h2h) define
- ``knn_neighbours``     each spot's k nearest valid spots (local-context mode, ``n_neighbors``)
- ``AttentionPlan``      everything a layer needs to know about who may attend to whom
- ``attend``             dispatch to ``attend_reference`` (one dense T x T mask, like
                         ``nn.TransformerEncoder``), ``attend_explicit`` (the same with the weights
                         written out, for ``return_attention``) or ``attend_fast`` (exploits the
                         quadrant structure: O(P*S) without h2h); all three give the same result
- ``h2p_key_offsets`` /  the learnable per-head offset on the patches' logits for the pathway keys
  ``h2p_logit_block``    (``balance_h2p``)
- ``neighbour_graphs``   local-context mode: each slide's k-NN slots as a sparse pattern
                         (``NeighbourGraph``), built once per slide and reused by every layer and step
- ``LocalPatchAttention`` local-context patch queries as sparse-dense products (forward and backward);
  ``attend_flex``        or FlexAttention with a block mask (``set_local_kernel``)

Shapes: B slides, S spots, P pathways, T = P + S tokens, H heads, d head width, K neighbour slots.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from stflib.models.config import ATTENTION_IMPLS, QUADRANTS, Interactions
from stflib.models.local_attention import LocalPatchAttention
from stflib.models.neighbours import NeighbourGraph, knn_neighbours, neighbour_graphs

__all__ = ["ATTENTION_IMPLS", "LOCAL_KERNELS", "AttentionPlan", "LocalPatchAttention", "NeighbourGraph", "attend",
           "attend_explicit", "attend_fast", "attend_flex", "attend_reference", "flex_block_mask", "h2p_key_offsets",
           "h2p_logit_block", "interaction_mask", "knn_neighbours", "local_kernel", "neighbour_graphs",
           "set_local_kernel"]


def interaction_mask(num_pathways: int, num_spots: int, interactions: str | Iterable[str]) -> Tensor:
    """(T, T) bool, True = query row may attend to key column, over [pathways | patches].

        [ p2p  p2h ]     rows = queries, columns = keys
        [ h2p  h2h ]

    The diagonal is always True: every token keeps its own value, so a row whose quadrants are all
    off (e.g. patches with neither h2p nor h2h) is the identity, never an empty softmax (NaN).
    Note the polarity: ``nn.MultiheadAttention`` wants the negation (True = blocked).
    """
    quads = Interactions(interactions)
    P, T = num_pathways, num_pathways + num_spots
    allowed = torch.zeros(T, T, dtype=torch.bool)
    allowed[:P, :P] = "p2p" in quads
    allowed[:P, P:] = "p2h" in quads
    allowed[P:, :P] = "h2p" in quads
    allowed[P:, P:] = "h2h" in quads
    allowed.fill_diagonal_(True)
    return allowed


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
    graphs: list[NeighbourGraph] | None = None  # one per slide, the same slots as sparse patterns

    @classmethod
    def local(cls, num_pathways: int, quadrants: frozenset[str], key_valid: Tensor, has_padding: bool, impl: str,
              graphs: list[NeighbourGraph]) -> "AttentionPlan":
        """A local-context plan from the slides' ``neighbour_graphs`` (``neighbours`` stacked from them)."""
        return cls(num_pathways, quadrants, key_valid, has_padding, impl, torch.stack([g.index for g in graphs]),
                   torch.stack([g.valid for g in graphs]), graphs)

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
      in local-context mode keys = [pathways] + the k + 1 neighbour slots: ``LocalPatchAttention``
      (sparse-dense products over each slide's ``NeighbourGraph``), O(S*(P+K)) time and memory;
      with ``set_local_kernel("flex")`` all T queries go to ``attend_flex`` instead; with attention
      dropout the weights are written out (``_attend_neighbours``).
    - patch queries without h2h: keys = [P pathway tokens (h2p)] + the patch itself: a per-row
      softmax over P + 1 scores (the self score is the extra column): O(S*P).

    ``h2p_logit`` (H,), when given, is added to every patch query's logits for the pathway keys.
    """
    P = plan.num_pathways
    quads, local = plan.quadrants, plan.neighbours is not None
    key_mask = plan.key_valid[:, None, None, :] if plan.has_padding else None  # (B,1,1,T)
    if local and "h2h" in quads and _local_kernel == "flex" and plan.graphs is not None and dropout_p == 0.0:
        return attend_flex(q, k, v, plan, h2p_logit)

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
    if "h2h" in quads and local and plan.graphs is not None and dropout_p == 0.0:
        h2p = "h2p" in quads
        out_h = LocalPatchAttention.apply(q_h, k_h, v_h, k_p if h2p else None, v_p if h2p else None,
                                          h2p_logit if h2p else None, plan.graphs, q.shape[-1] ** -0.5)
    elif "h2h" in quads and local:  # attention dropout: the weights written out, neighbours gathered
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
    """Local context with attention dropout: each patch reads [pathways (h2p)] + itself + its k nearest
    neighbours, the neighbours' keys and values gathered into (B, H, S, K, d) and the weights written
    out (dropout acts on them). Without dropout ``LocalPatchAttention`` computes the same."""
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
# The local-context kernel: the sparse products above, or FlexAttention with a block mask
# ---------------------------------------------------------------------------------------------

LOCAL_KERNELS = ("sparse", "flex")
_local_kernel = "sparse"


def set_local_kernel(name: str) -> str:
    """Choose how ``attend_fast`` computes local-context attention (``n_neighbors > 0``); returns the
    previous choice. ``sparse`` (default): ``LocalPatchAttention``, any device. ``flex``:
    ``torch.nn.attention.flex_attention`` over all T tokens with a block mask built once per slide
    (compiled on CUDA; on CPU the unfused reference, for tests). ``bench gpu-check`` times both and
    records which is faster. Attention dropout always takes the written-out path."""
    global _local_kernel
    if name not in LOCAL_KERNELS:
        raise ValueError(f"local attention kernel: unknown {name!r}; allowed: {', '.join(LOCAL_KERNELS)}")
    previous, _local_kernel = _local_kernel, name
    return previous


def local_kernel() -> str:
    """The kernel ``set_local_kernel`` chose."""
    return _local_kernel


_BLOCK_MASKS: OrderedDict[tuple, tuple] = OrderedDict()  # key -> (graphs kept alive, BlockMask)
_FLEX: dict[str, object] = {}


def flex_block_mask(plan: AttentionPlan, device):
    """The plan's who-reads-whom over all T tokens as a FlexAttention ``BlockMask``, built (with a
    compiled ``create_block_mask`` on CUDA) once per batch of slides and cached: the slides' graphs
    are themselves built once per slide, so every layer and every later step reuses it."""
    from torch.nn.attention.flex_attention import create_block_mask

    B, T = plan.key_valid.shape
    key = (tuple(id(g) for g in plan.graphs), plan.quadrants, T, str(device))
    if key in _BLOCK_MASKS:
        _BLOCK_MASKS.move_to_end(key)
        return _BLOCK_MASKS[key][1]
    P, quads = plan.num_pathways, plan.quadrants
    nb, nb_ok, key_valid = plan.neighbours, plan.neighbour_valid, plan.key_valid  # (B,S,K) x 2, (B,T)
    K = nb.shape[-1]

    def mask_mod(b, h, q_idx, kv_idx):
        q_path, kv_path = q_idx < P, kv_idx < P
        qs, ks = (q_idx - P).clamp(min=0), (kv_idx - P).clamp(min=0)  # spot indices (0 on pathway rows)
        allowed = q_idx == kv_idx
        if "p2p" in quads:
            allowed = allowed | (q_path & kv_path)
        if "p2h" in quads:
            allowed = allowed | (q_path & ~kv_path & key_valid[b, kv_idx])
        if "h2p" in quads:
            allowed = allowed | (~q_path & kv_path)
        if "h2h" in quads:
            near = (nb[b, qs, 0] == ks) & nb_ok[b, qs, 0]
            for j in range(1, K):
                near = near | ((nb[b, qs, j] == ks) & nb_ok[b, qs, j])
            allowed = allowed | (~q_path & ~kv_path & near)
        return allowed

    mask = create_block_mask(mask_mod, B, None, T, T, device=device, _compile=torch.device(device).type == "cuda")
    _BLOCK_MASKS[key] = (plan.graphs, mask)
    while len(_BLOCK_MASKS) > 16:
        _BLOCK_MASKS.popitem(last=False)
    return mask


def attend_flex(q: Tensor, k: Tensor, v: Tensor, plan: AttentionPlan, h2p_logit: Tensor | None = None) -> Tensor:
    """Local-context attention of all T tokens by FlexAttention: the plan's block mask, and the h2p
    offset as a score modification. (B, H, T, d) -> (B, H, T, d)"""
    from torch.nn.attention.flex_attention import flex_attention

    P = plan.num_pathways
    score_mod = None
    if h2p_logit is not None and "h2p" in plan.quadrants:
        def score_mod(score, b, h, q_idx, kv_idx):
            return score + torch.where((q_idx >= P) & (kv_idx < P), h2p_logit[h], 0.0).to(score.dtype)
    fn = flex_attention
    if q.device.type == "cuda":  # the fused kernel needs compiling; eager is the unfused reference
        fn = _FLEX.get("compiled") or _FLEX.setdefault("compiled", torch.compile(flex_attention))
    return fn(q, k, v, score_mod=score_mod, block_mask=flex_block_mask(plan, q.device))


def attend(q: Tensor, k: Tensor, v: Tensor, plan: AttentionPlan, dropout_p: float, h2p_logit: Tensor | None = None,
           need_weights: bool = False) -> tuple[Tensor, Tensor | None]:
    """Attention by ``plan.impl``; ``need_weights`` (the maps, (B, H, T, T)) takes the explicit path.
    (B, H, T, d) -> (B, H, T, d), weights or None"""
    if need_weights or plan.impl == "explicit":
        return attend_explicit(q, k, v, plan, dropout_p, h2p_logit)
    if plan.impl == "reference":
        return attend_reference(q, k, v, plan, dropout_p, h2p_logit), None
    return attend_fast(q, k, v, plan, dropout_p, h2p_logit), None
