"""The patch queries' attention in local-context mode as sparse-dense products, forward and backward
(``LocalPatchAttention``): no gathered (S, K, d) copies, no scatter, nothing S x S.
"""
from __future__ import annotations

import torch
from torch import Tensor



class LocalPatchAttention(torch.autograd.Function):
    """The patch queries' attention in local-context mode, forward and backward as dense and
    sparse-dense products: no (S, K, d) gathered copies, no scatter, nothing S x S.

    Patch i reads [the P pathway keys (h2p), with the head's offset] + its valid neighbour slots. Per
    slide and head, with Q, K, V (S, d) of the patches and N the slide's (S, S) neighbour pattern:

        logits = [Q K_p^T * scale + offset | SDDMM_N(Q, K) * scale]      (S, P) | (E,)
        w = softmax of each row over both;   out = w_p V_p + N(w_nb) V   (S, d)

    SDDMM_N samples Q K^T on N's edges (``torch.sparse.sampled_addmm``), N(w) V is a CSR x dense
    product. The backward uses the same two products, and N^T (``NeighbourGraph``'s transposed
    pattern) for dK and dV: the gradient of reading a neighbour is a product with the transposed
    pattern, not an index_add. Only the weights (S, P + K) per head are kept for the backward.
    Half-precision inputs are computed in float32. ``apply(q_h, k_h, v_h, k_p, v_p, offset, graphs,
    scale)``: (B, H, S, d) x 3, (B, H, P, d) x 2 or None (no h2p), (H,) or None -> (B, H, S, d).
    """

    @staticmethod
    def forward(ctx, q_h, k_h, v_h, k_p, v_p, offset, graphs, scale):
        with torch.autocast(q_h.device.type, enabled=False):  # the dtypes are chosen here (float32 for halves)
            return LocalPatchAttention._forward(ctx, q_h, k_h, v_h, k_p, v_p, offset, graphs, scale)

    @staticmethod
    def _forward(ctx, q_h, k_h, v_h, k_p, v_p, offset, graphs, scale):
        B, H, S, d = q_h.shape
        ct = _compute_dtype(q_h.dtype)
        P = 0 if k_p is None else k_p.shape[2]
        out = torch.empty(B, H, S, d, dtype=ct, device=q_h.device)
        weights = []  # B * H of (S, P + K): the pathway keys, then the slots in (S, K) layout
        qs, ks, vs = (_dense(t, ct) for t in (q_h, k_h, v_h))  # (B, H, S, d) row-major, as the kernels read them
        for b, g in enumerate(graphs):
            K = g.index.shape[1]
            for h in range(H):
                q, k, v = qs[b, h], ks[b, h], vs[b, h]  # (S, d)
                logits = q.new_empty(S, P + K)
                if P:
                    torch.mm(q, k_p[b, h].to(ct).T, out=logits[:, :P])
                    logits[:, :P] *= scale
                    if offset is not None:
                        logits[:, :P] += offset[h].to(ct)
                slots = torch.full((S * K,), float("-inf"), dtype=ct, device=q.device)  # unfilled: no weight
                slots[g.pos] = g.sampled(q, k, alpha=scale)
                logits[:, P:] = slots.view(S, K)
                w = logits.softmax(-1)  # (S, P + K)
                torch.mm(g.matrix(w[:, P:].reshape(-1)[g.pos]), v, out=out[b, h])
                if P:
                    out[b, h].addmm_(w[:, :P], v_p[b, h].to(ct))
                weights.append(w)
        ctx.graphs, ctx.scale, ctx.P, ctx.has_offset = graphs, scale, P, offset is not None
        ctx.save_for_backward(q_h, k_h, v_h, k_p, v_p, *weights)
        return out.to(q_h.dtype)

    @staticmethod
    def backward(ctx, grad_out):
        with torch.autocast(grad_out.device.type, enabled=False):
            return LocalPatchAttention._backward(ctx, grad_out)

    @staticmethod
    def _backward(ctx, grad_out):
        q_h, k_h, v_h, k_p, v_p, *weights = ctx.saved_tensors
        graphs, scale, P = ctx.graphs, ctx.scale, ctx.P
        B, H, S, d = q_h.shape
        ct = _compute_dtype(q_h.dtype)
        dq, dk, dv = (torch.empty(B, H, S, d, dtype=ct, device=q_h.device) for _ in range(3))
        dk_p = dv_p = d_off = None
        if P:
            dk_p, dv_p = (torch.empty(B, H, P, d, dtype=ct, device=q_h.device) for _ in range(2))
            d_off = torch.zeros(H, dtype=ct, device=q_h.device)
        qs, ks, vs, gos = (_dense(t, ct) for t in (q_h, k_h, v_h, grad_out))  # (B, H, S, d) row-major
        for b, g in enumerate(graphs):
            K = g.index.shape[1]
            for h in range(H):
                q, k, v, go = qs[b, h], ks[b, h], vs[b, h], gos[b, h]  # (S, d); go = d loss / d out
                w = weights[b * H + h]  # (S, P + K)
                dw = go.new_empty(S, P + K)  # d loss / d w
                if P:
                    kp, vp = k_p[b, h].to(ct), v_p[b, h].to(ct)
                    torch.mm(go, vp.T, out=dw[:, :P])
                slots = go.new_zeros(S * K)
                slots[g.pos] = g.sampled(go, v)
                dw[:, P:] = slots.view(S, K)
                # softmax backward: d logits = w * (dw - sum_j w_j dw_j)
                dl = dw.sub_((w * dw).sum(-1, keepdim=True)).mul_(w)
                dl_edge = dl[:, P:].reshape(-1)[g.pos]  # (E,), CSR order
                w_edge = w[:, P:].reshape(-1)[g.pos]
                torch.mm(g.matrix(dl_edge), k, out=dq[b, h])
                torch.mm(g.matrix(dl_edge[g.perm_t], transposed=True), q, out=dk[b, h])
                torch.mm(g.matrix(w_edge[g.perm_t], transposed=True), go, out=dv[b, h])
                if P:
                    dq[b, h].addmm_(dl[:, :P], kp)
                    torch.mm(dl[:, :P].T, q, out=dk_p[b, h])
                    torch.mm(w[:, :P].T, go, out=dv_p[b, h])
                    d_off[h] += dl[:, :P].sum()
        dq.mul_(scale)
        dk.mul_(scale)
        if P:
            dk_p.mul_(scale)
        like = lambda t, ref: None if t is None else t.to(ref.dtype)  # noqa: E731
        grads = (like(dq, q_h), like(dk, k_h), like(dv, v_h), like(dk_p, q_h), like(dv_p, q_h))
        return (*grads, d_off if ctx.has_offset else None, None, None)


def _dense(t: Tensor, dtype: torch.dtype) -> Tensor:
    """``t`` in ``dtype``, each (S, d) block row-major (one copy of a strided view, none if it is already)."""
    return t.to(dtype).contiguous()


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for half-precision inputs (the sparse kernels and the softmax), else the input's."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
