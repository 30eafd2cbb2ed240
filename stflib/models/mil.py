"""Slide-level multiple-instance models, with SpatialTranscriptFormer's inputs and outputs (see
``stflib.models.baselines`` for the conventions every comparison model follows).

- ``ABMIL``         gated-attention MIL pooling (Ilse et al. 2018), slide-level
- ``TransMIL``      Nystrom-attention transformer + PPEG (Shao et al. 2021), PPEG on the real spot grid
- ``visium_grid``   spot centres -> cells of the hexagonal Visium array (TransMIL's PPEG grid)
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn
from torch import Tensor

from stflib.models.baselines import valid_spots
from stflib.models.config import ModelConfig
from stflib.models.stf import ConfiguredModel, ModelOutput


class ABMIL(ConfiguredModel):
    """Gated attention MIL (Ilse et al. 2018): h = ReLU(W x); a = softmax_valid(w^T (tanh(V h) * sigm(U h)));
    slide = sum_s a_s h_s -> Linear -> genes (B, 1, G). ``return_attention`` gives a (B, 1, 1, S) map.
    Reads ``dropout``."""

    def __init__(self, feature_dim: int, num_genes: int, config: ModelConfig | None = None, *,
                 hidden_dim: int = 256, attention_dim: int = 128, **overrides):
        super().__init__(config, **overrides)
        self.embed = nn.Sequential(nn.Linear(feature_dim, hidden_dim), nn.ReLU(), nn.Dropout(self.config.dropout))
        self.attn_v = nn.Linear(hidden_dim, attention_dim)
        self.attn_u = nn.Linear(hidden_dim, attention_dim)
        self.attn_w = nn.Linear(attention_dim, 1)
        self.head = nn.Linear(hidden_dim, num_genes)

    def forward(self, features, coords=None, pad_mask=None, return_attention=False, library_size=None):
        valid = valid_spots(features, pad_mask)
        h = self.embed(features)  # (B,S,L)
        logits = self.attn_w(torch.tanh(self.attn_v(h)) * torch.sigmoid(self.attn_u(h))).squeeze(-1)  # (B,S)
        logits = logits.masked_fill(~valid, float("-inf"))
        logits = torch.where(valid.any(1, keepdim=True), logits, torch.zeros_like(logits))  # empty slide: uniform
        a = logits.softmax(-1)  # (B,S)
        slide = (a.unsqueeze(-1) * h).sum(1, keepdim=True)  # (B,1,L)
        return ModelOutput(genes=self.head(slide), attention=[a[:, None, None, :]] if return_attention else None)


def nystrom_attention(q: Tensor, k: Tensor, v: Tensor, valid: Tensor, num_landmarks: int,
                      pinv_iterations: int = 6) -> Tensor:
    """Nystrom approximation of softmax attention (Xiong et al. 2021), padding-aware.

    Landmarks are segment means of the *valid* tokens of each slide (segment length ceil(n_valid/m)),
    so padding changes nothing. (B,H,N,d), valid (B,N) -> (B,H,N,d)
    """
    B, H, N, d = q.shape
    q = q * d**-0.5
    w = valid[:, None, :, None].to(q.dtype)
    q, k, v = q * w, k * w, v * w
    n_valid = valid.sum(1)  # (B,)
    m = num_landmarks
    seg_len = (n_valid + m - 1).div(m, rounding_mode="floor").clamp_min(1)  # (B,)
    rank = valid.long().cumsum(1) - 1  # position among valid tokens
    group = torch.where(valid, rank // seg_len[:, None], torch.full_like(rank, m))  # padding -> dump group m
    index = group[:, None, :, None].expand(B, H, N, d)
    q_l = torch.zeros(B, H, m + 1, d, dtype=q.dtype, device=q.device).scatter_add_(2, index, q)[:, :, :m]
    k_l = torch.zeros(B, H, m + 1, d, dtype=q.dtype, device=q.device).scatter_add_(2, index, k)[:, :, :m]
    counts = torch.zeros(B, m + 1, device=q.device).scatter_add_(1, group, torch.ones_like(group, dtype=torch.float))
    counts = counts[:, :m]  # (B, m)
    q_l, k_l = q_l / counts.clamp_min(1)[:, None, :, None], k_l / counts.clamp_min(1)[:, None, :, None]
    has = counts > 0  # (B, m) landmark exists
    neg = torch.finfo(q.dtype).min
    sim1 = (q @ k_l.transpose(-1, -2)).masked_fill(~has[:, None, None, :], neg)  # (B,H,N,m)
    sim2 = (q_l @ k_l.transpose(-1, -2)).masked_fill(~(has[:, None, :, None] & has[:, None, None, :]), neg)
    sim3 = (q_l @ k.transpose(-1, -2)).masked_fill(~valid[:, None, None, :], neg)  # (B,H,m,N)
    attn1, attn2, attn3 = sim1.softmax(-1), sim2.softmax(-1), sim3.softmax(-1)
    attn2 = attn2 * (has[:, None, :, None] & has[:, None, None, :])  # empty landmarks: rows/cols of 0
    return (attn1 @ _iterative_pinv(attn2, pinv_iterations)) @ (attn3 @ v)


def _iterative_pinv(x: Tensor, iterations: int) -> Tensor:
    """Moore-Penrose pseudo-inverse by the Newton-Schulz-style iteration of the Nystromformer paper."""
    abs_x = x.abs()
    scale = abs_x.sum(-1).amax(-1, keepdim=True) * abs_x.sum(-2).amax(-1, keepdim=True)  # (B,H,1)
    z = x.transpose(-1, -2) / scale.clamp_min(1e-12).unsqueeze(-1)
    eye = torch.eye(x.shape[-1], device=x.device, dtype=x.dtype)
    for _ in range(iterations):
        xz = x @ z
        z = 0.25 * z @ (13 * eye - xz @ (15 * eye - xz @ (7 * eye - xz)))
    return z


class NystromLayer(nn.Module):
    """x + NystromAttention(LN(x)) (TransMIL's TransLayer). The original's extra depthwise convolution
    on the value sequence is left out: it would mix spots by list order, which carries no meaning here."""

    def __init__(self, dim: int, n_heads: int = 8, num_landmarks: int | None = None, dropout: float = 0.1):
        super().__init__()
        self.n_heads, self.num_landmarks = n_heads, num_landmarks or dim // 2
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.out = nn.Sequential(nn.Linear(dim, dim), nn.Dropout(dropout))

    def forward(self, x: Tensor, valid: Tensor) -> Tensor:
        B, N, D = x.shape
        q, k, v = self.qkv(self.norm(x)).view(B, N, 3, self.n_heads, D // self.n_heads).permute(2, 0, 3, 1, 4)
        a = nystrom_attention(q, k, v, valid, self.num_landmarks)
        return x + self.out(a.transpose(1, 2).reshape(B, N, D))


def estimate_pitch(xy: np.ndarray) -> float:
    """Centre-to-centre spot distance (``stflib.spatial.spot_pitch``: the median distance to the hexagonal
    neighbours); 1 when there is no pitch to measure (fewer than 2 spots, or all at one place), so a
    lone spot still gets a cell."""
    from stflib import spatial

    pitch = spatial.spot_pitch(xy) if len(xy) >= 2 else 0.0
    return pitch if pitch > 0 else 1.0


def visium_grid(coords: Tensor, valid: Tensor, pitch: float | None = None) -> tuple[Tensor, int, int]:
    """Integer (row, col) cell of each spot on the Visium hexagonal array, from centre coordinates.

    Spots are ``pitch`` apart (100 um on Visium); rows are pitch*sqrt(3)/2 apart and alternate rows are
    shifted by pitch/2, so with cells of (pitch*sqrt(3)/2) x (pitch/2) every spot gets its own cell
    (Visium's own array_row / array_col convention). ``pitch`` is in coordinate units (pixels: 100 /
    pixel_size_um); None estimates it per slide from the valid spots (``estimate_pitch``).
    Returns cells (B, S, 2) long (padding -> 0, 0) and the grid height and width.
    """
    B, S, _ = coords.shape
    cells = torch.zeros(B, S, 2, dtype=torch.long, device=coords.device)
    xy = coords.detach().double()
    for b in range(B):
        rows = valid[b].nonzero().squeeze(1)
        if len(rows) == 0:
            continue
        p = xy[b, rows]
        step = pitch if pitch is not None else estimate_pitch(p.cpu().numpy())
        p = p - p.min(0).values
        cells[b, rows, 0] = torch.round(p[:, 1] / (step * math.sqrt(3) / 2)).long()
        cells[b, rows, 1] = torch.round(p[:, 0] / (step / 2)).long()
    height = int(cells[..., 0].max()) + 1
    width = int(cells[..., 1].max()) + 1
    return cells, height, width


class PPEG(nn.Module):
    """Pyramid position encoding generator (TransMIL): x + DWConv7(x) + DWConv5(x) + DWConv3(x) on a 2D grid.

    TransMIL folds the token *list* into a square; here each spot is placed in its real Visium array
    cell (``visium_grid``), so the convolutions mix spots that are actually neighbours on the tissue.
    Empty cells are 0; spots sharing a cell (off-grid data) are averaged.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(dim, dim, k, padding=k // 2, groups=dim) for k in (7, 5, 3))

    def forward(self, x: Tensor, cells: Tensor, valid: Tensor, height: int, width: int) -> Tensor:
        B, S, D = x.shape
        flat = (cells[..., 0] * width + cells[..., 1]).masked_fill(~valid, height * width)  # padding -> dump cell
        grid = x.new_zeros(B, height * width + 1, D)
        grid = grid.scatter_add_(1, flat[..., None].expand(B, S, D), x * valid[..., None])
        count = x.new_zeros(B, height * width + 1).scatter_add_(1, flat, valid.to(x.dtype))
        grid = (grid / count.clamp_min(1)[..., None])[:, :-1]  # (B, HW, D)
        grid = grid.transpose(1, 2).reshape(B, D, height, width)
        mixed = sum(conv(grid) for conv in self.convs).reshape(B, D, height * width).transpose(1, 2)  # (B,HW,D)
        gathered = mixed.gather(1, flat.clamp(max=height * width - 1)[..., None].expand(B, S, D))  # (B,S,D)
        return x + gathered * valid[..., None]  # identity + convolutions, as in TransMIL


class TransMIL(ConfiguredModel):
    """TransMIL (Shao et al. 2021): fc -> [CLS | spots] -> Nystrom layer -> PPEG -> Nystrom layer -> LN(CLS)
    -> Linear -> genes (B, 1, G). PPEG runs on the spots' real grid positions (see ``PPEG``). Reads
    ``n_heads`` and ``dropout``."""

    def __init__(self, feature_dim: int, num_genes: int, config: ModelConfig | None = None, *,
                 hidden_dim: int = 512, num_landmarks: int | None = None, spot_pitch: float | None = None,
                 **overrides):
        super().__init__(config, **overrides)
        n_heads, dropout = self.config.n_heads, self.config.dropout
        self.spot_pitch = spot_pitch
        self.fc = nn.Sequential(nn.Linear(feature_dim, hidden_dim), nn.ReLU())
        self.cls = nn.Parameter(torch.randn(1, 1, hidden_dim) * 0.02)
        self.layer1 = NystromLayer(hidden_dim, n_heads, num_landmarks, dropout)
        self.ppeg = PPEG(hidden_dim)
        self.layer2 = NystromLayer(hidden_dim, n_heads, num_landmarks, dropout)
        self.norm = nn.LayerNorm(hidden_dim)
        self.head = nn.Linear(hidden_dim, num_genes)

    def forward(self, features, coords, pad_mask=None, return_attention=False, library_size=None):
        valid = valid_spots(features, pad_mask)
        B = features.shape[0]
        h = self.fc(features)  # (B,S,L)
        x = torch.cat([self.cls.expand(B, -1, -1), h], 1)  # (B,1+S,L)
        tokens_valid = torch.cat([valid.new_ones(B, 1), valid], 1)
        x = self.layer1(x, tokens_valid)
        cells, height, width = visium_grid(coords, valid, self.spot_pitch)
        x = torch.cat([x[:, :1], self.ppeg(x[:, 1:], cells, valid, height, width)], 1)
        x = self.layer2(x, tokens_valid)
        return ModelOutput(genes=self.head(self.norm(x[:, :1])))  # (B,1,G)


# ---------------------------------------------------------------------------------------------
# Retrieval and a spatial transformer without pathway tokens
# ---------------------------------------------------------------------------------------------
