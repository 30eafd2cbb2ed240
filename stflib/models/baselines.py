"""Comparison models, with SpatialTranscriptFormer's inputs and outputs.

Every torch model is built as ``cls(feature_dim, num_genes, config)`` from one ``ModelConfig`` (reading
the fields it uses; keyword overrides of its fields build one), takes ``forward(features (B,S,F),
coords (B,S,2), pad_mask (B,S) True = padding, return_attention=False, library_size=None)`` and returns
a ``ModelOutput`` whose ``genes`` is (B, S, G) per spot (dense) or (B, 1, G) per slide (global);
padding never changes a valid output. The numpy models are built as ``cls(config)``. What each model
sees and outputs is in its registry entry (``stflib.models.MODELS``).

- ``HE2RNA``        per-spot linear regression (Schmauch et al. 2020, as the seed describes it)
- ``SpotMLP``       a small per-spot MLP
- ``RidgeProbe``    HEST-Bench's probe: StandardScaler + PCA(256) + ridge, numpy fit/predict
- ``ABMIL``         gated-attention MIL pooling (Ilse et al. 2018), slide-level
- ``TransMIL``      Nystrom-attention transformer + PPEG (Shao et al. 2021), PPEG on the real spot grid
- ``MeanExpression`` the floor: the training mean of every gene, everywhere, numpy fit/predict
- ``ridge_path``    closed-form ridges for several penalties (the pathway ceiling's probe)
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn
from torch import Tensor

from stflib.models.config import ModelConfig
from stflib.models.stf import ConfiguredModel, ModelOutput, masked_mean


def _valid(features: Tensor, pad_mask: Tensor | None) -> Tensor:
    B, S = features.shape[:2]
    if pad_mask is None:
        return torch.ones(B, S, dtype=torch.bool, device=features.device)
    return ~pad_mask.bool()


def _zero_(layer: nn.Linear) -> None:
    """Zero a model's last layer: under the training loop's ``StandardizedOutput`` the model then
    starts at the training mean profile (as SpatialTranscriptFormer's gene head does)."""
    with torch.no_grad():
        layer.weight.zero_()
        layer.bias.zero_()


class _PerSpot(ConfiguredModel):
    """A per-spot regressor: genes = head(features); ``config.output_mode`` global = mean over valid spots."""

    def __init__(self, config: ModelConfig, head: nn.Module):
        super().__init__(config)
        self.head = head

    def forward(self, features, coords=None, pad_mask=None, return_attention=False, library_size=None):
        valid = _valid(features, pad_mask)
        genes = self.head(features).masked_fill(~valid.unsqueeze(-1), 0.0)  # (B,S,G)
        if self.config.output_mode == "global":
            genes = masked_mean(genes, valid)  # (B,1,G)
        return ModelOutput(genes=genes)


class HE2RNA(_PerSpot):
    """Per-spot linear regression from frozen features to genes (reads ``output_mode``)."""

    def __init__(self, feature_dim: int, num_genes: int, config: ModelConfig | None = None, **overrides):
        head = nn.Linear(feature_dim, num_genes)
        _zero_(head)
        super().__init__(ModelConfig.build(config, **overrides), head)


class SpotMLP(_PerSpot):
    """Per-spot two-layer MLP: Linear -> GELU -> Dropout -> Linear (reads ``dropout``, ``output_mode``)."""

    def __init__(self, feature_dim: int, num_genes: int, config: ModelConfig | None = None, *,
                 hidden_dim: int = 256, **overrides):
        config = ModelConfig.build(config, **overrides)
        head = nn.Sequential(nn.Linear(feature_dim, hidden_dim), nn.GELU(), nn.Dropout(config.dropout),
                             nn.Linear(hidden_dim, num_genes))
        _zero_(head[-1])
        super().__init__(config, head)


class MeanExpression:
    """The floor: predicts the training fold's mean log1p(CP10k) profile at every spot.

    Numpy in, numpy out, per spot, like ``RidgeProbe``: ``fit(X (N,F), Y (N,G))`` (X only counts
    spots), ``predict(X) -> (N,G)``. Its spatial PCC is 0 by construction (a constant prediction).
    """

    n_params = 0

    def __init__(self, config: ModelConfig | None = None, **overrides):
        self.config = ModelConfig.build(config, **overrides)  # nothing in it changes the mean

    def fit(self, X: np.ndarray, Y: np.ndarray) -> "MeanExpression":
        self.mean_ = np.asarray(Y, np.float64).mean(0)
        self.n_params = int(self.mean_.size)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.mean_, (len(X), len(self.mean_))).astype(np.float32)


def ridge_path(X: np.ndarray, Y: np.ndarray, alphas) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Ridge regressions of Y on X (with intercept) for several penalties from one eigendecomposition
    of the centred Gram matrix X'X (F x F; cheaper than an SVD of X when spots outnumber features):
    (x_mean, y_mean, [W per alpha]); predict with ``(X - x_mean) @ W + y_mean``.

    The pathway ceiling's ridge (``stflib.train.evaluate.pathway_ceiling``) on the full feature space:
    unlike ``RidgeProbe`` (HEST-Bench's protocol, PCA to 256 components first) it must not cap what
    the inputs can express, and it scores seven penalties for the cost of one solve.
    """
    from scipy.linalg import eigh

    xm, ym = X.mean(0), Y.mean(0)
    Xc = X - xm
    evals, V = eigh(Xc.T @ Xc)
    VtXtY = V.T @ (Xc.T @ (Y - ym))
    return xm, ym, [V @ (VtXtY / (np.clip(evals, 0, None) + a)[:, None]) for a in alphas]


class RidgeProbe:
    """HEST-Bench's linear probe, run as its authors run it: StandardScaler -> PCA(256) -> Ridge with
    solver='lsqr', alpha = 100 / (n_components * n_genes), fit_intercept=False, max_iter=1000.

    Numpy in, numpy out, per spot: ``fit(X (N,F), Y (N,G))``, ``predict(X) -> (N,G)``. PCA is capped
    by the number of training spots and features. fit_intercept=False is the authors' choice (PCC is
    shift-invariant); it costs MSE when targets are not centred, so ``fit_intercept=True`` is offered.
    PCA's and the solver's random state is ``config.seed``.
    """

    def __init__(self, config: ModelConfig | None = None, *, n_components: int = 256, alpha: float | None = None,
                 fit_intercept: bool = False, **overrides):
        self.config = ModelConfig.build(config, **overrides)
        self.n_components, self.alpha, self.fit_intercept = n_components, alpha, fit_intercept
        self.random_state = self.config.seed
        self.pipeline = None

    def _pipeline(self, n: int, alpha: float):
        from sklearn.decomposition import PCA
        from sklearn.linear_model import Ridge
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import StandardScaler

        return Pipeline([
            ("scale", StandardScaler()),
            ("pca", PCA(n_components=n, random_state=self.random_state)),
            ("ridge", Ridge(alpha=alpha, solver="lsqr", fit_intercept=self.fit_intercept, max_iter=1000,
                            random_state=self.random_state)),
        ])

    @staticmethod
    def _check(X, Y):
        X, Y = np.asarray(X, np.float64), np.asarray(Y, np.float64)
        if X.ndim != 2 or Y.ndim != 2 or len(X) != len(Y):
            raise ValueError(f"RidgeProbe.fit needs X (N, F) and Y (N, G) with the same N; got {X.shape}, {Y.shape}")
        return X, Y

    def fit(self, X: np.ndarray, Y: np.ndarray) -> "RidgeProbe":
        X, Y = self._check(X, Y)
        n = min(self.n_components, X.shape[0], X.shape[1])
        alpha = self.alpha if self.alpha is not None else 100.0 / (n * Y.shape[1])
        self.pipeline = self._pipeline(n, alpha)
        self.pipeline.fit(X, Y)
        self.alpha_ = alpha
        return self

    def fit_select(self, X: np.ndarray, Y: np.ndarray, X_val: np.ndarray, Y_val: np.ndarray,
                   alphas: tuple[float, ...] | None = None, score_columns: np.ndarray | None = None) -> "RidgeProbe":
        """Fit on (X, Y) for each ridge penalty in ``alphas`` (HEST-Bench's own value included) and keep
        the one with the best mean per-gene PCC on (X_val, Y_val) over ``score_columns`` (None: all
        genes): the selection rule of the torch models, on the same patients. ``alpha_`` and
        ``selection_`` (alpha -> validation PCC) record it. The ridges on the PCA scores are solved
        in closed form (the solution lsqr iterates towards, ~100x faster for 1000 genes)."""
        from sklearn.linear_model import Ridge

        from stflib.metrics import nanmean, pearson_columns

        X, Y = self._check(X, Y)
        X_val, Y_val = self._check(X_val, Y_val)
        n = min(self.n_components, X.shape[0], X.shape[1])
        default = 100.0 / (n * Y.shape[1])  # HEST-Bench's penalty
        alphas = tuple(alphas) if alphas is not None else (default,) + tuple(10.0 ** np.arange(-2, 6))
        self.pipeline = self._pipeline(n, default)
        Z = self.pipeline[:-1].fit_transform(X)
        Zv = self.pipeline[:-1].transform(X_val)
        cols = np.arange(Y.shape[1]) if score_columns is None else np.asarray(score_columns)
        self.selection_, best = {}, None
        for a in alphas:
            ridge = Ridge(alpha=a, solver="cholesky", fit_intercept=self.fit_intercept).fit(Z, Y)
            score = nanmean(pearson_columns(ridge.predict(Zv)[:, cols], Y_val[:, cols]))
            self.selection_[float(a)] = score
            if best is None or score > best[0]:
                best = (score, a, ridge)
        _, self.alpha_, ridge = best
        self.pipeline.steps[-1] = ("ridge", ridge)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        if self.pipeline is None:
            raise RuntimeError("RidgeProbe.predict called before fit")
        return self.pipeline.predict(np.asarray(X, np.float64)).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Slide-level MIL models
# ---------------------------------------------------------------------------------------------


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
        valid = _valid(features, pad_mask)
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
        valid = _valid(features, pad_mask)
        B = features.shape[0]
        h = self.fc(features)  # (B,S,L)
        x = torch.cat([self.cls.expand(B, -1, -1), h], 1)  # (B,1+S,L)
        tokens_valid = torch.cat([valid.new_ones(B, 1), valid], 1)
        x = self.layer1(x, tokens_valid)
        cells, height, width = visium_grid(coords, valid, self.spot_pitch)
        x = torch.cat([x[:, :1], self.ppeg(x[:, 1:], cells, valid, height, width)], 1)
        x = self.layer2(x, tokens_valid)
        return ModelOutput(genes=self.head(self.norm(x[:, :1])))  # (B,1,G)
