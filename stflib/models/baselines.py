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
- ``MeanExpression`` the floor: the training mean of every gene, everywhere, numpy fit/predict
- ``KNNRetrieval``  BLEEP-style retrieval: mean expression of the k most similar training spots, numpy
- ``PatchTransformer`` STF's encoder over the patch tokens alone (no pathway tokens), a linear gene head
- ``ridge_path``    closed-form ridges for several penalties (the pathway ceiling's probe)

The slide-level multiple-instance models (ABMIL, TransMIL) are in ``stflib.models.mil``.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
from torch import Tensor

from stflib.models.config import ModelConfig
from stflib.models.stf import ConfiguredModel, ModelOutput, masked_mean
# PatchTransformer's encoder and attention plan, imported in their own statements so that they belong
# to its registry entry alone (stflib.grid.version)
from stflib.models.attention import AttentionPlan
from stflib.models.neighbours import knn_neighbours
from stflib.models.stf import InteractionEncoder


def valid_spots(features: Tensor, pad_mask: Tensor | None) -> Tensor:
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
        valid = valid_spots(features, pad_mask)
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


class KNNRetrieval:
    """BLEEP-style retrieval (Xie et al. 2023) on frozen features: a spot's prediction is the mean
    log1p(CP10k) profile of the ``k`` training spots most similar to it, by cosine similarity of the
    features z-scored with the training spots' mean and sd. BLEEP retrieves in an embedding learnt
    contrastively; here the frozen features are the embedding, so the arm measures what the backbone's
    neighbourhoods alone carry.

    Numpy in, numpy out, per spot, like ``MeanExpression``: ``fit(X (N,F), Y (N,G))`` keeps the
    training spots (``n_params`` counts the values kept), ``predict(X) -> (N,G)``. The similarities
    and the retrieved profiles are computed for blocks of queries of at most ``block`` values each, so
    memory stays bounded on 100k training spots. A training spot retrieves itself among its k, which
    lifts the training-fit metrics.
    """

    def __init__(self, config: ModelConfig | None = None, *, k: int = 16, block: int = 2**24, **overrides):
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"KNNRetrieval: k must be an integer >= 1, got {k!r}")
        self.config = ModelConfig.build(config, **overrides)  # nothing in it changes the retrieval
        self.k, self.block, self.n_params = k, block, 0

    def _unit(self, X: np.ndarray) -> np.ndarray:
        Z = (np.asarray(X, np.float32) - self.mean_) / self.sd_
        return Z / np.maximum(np.linalg.norm(Z, axis=1, keepdims=True), 1e-12)

    def fit(self, X: np.ndarray, Y: np.ndarray) -> "KNNRetrieval":
        X, Y = np.asarray(X, np.float32), np.asarray(Y, np.float32)
        if X.ndim != 2 or Y.ndim != 2 or len(X) != len(Y) or len(X) == 0:
            raise ValueError(f"KNNRetrieval.fit needs X (N, F) and Y (N, G) with the same N >= 1; got {X.shape}, {Y.shape}")
        self.mean_, sd = X.mean(0), X.std(0)
        self.sd_ = np.where(sd > 0, sd, 1.0).astype(np.float32)  # a constant feature carries no similarity
        self.keys_, self.values_ = self._unit(X), Y
        self.n_params = int(X.size + Y.size)
        return self

    def _rows(self) -> int:
        """Query rows per block: the similarities (rows x n_train) and the retrieved profiles
        (rows x k x G) each stay within ``block`` values."""
        if not hasattr(self, "keys_"):
            raise RuntimeError("KNNRetrieval: predict called before fit")
        return max(1, self.block // max(len(self.keys_), self.k * self.values_.shape[1]))

    def neighbours(self, X: np.ndarray) -> np.ndarray:
        """(N, min(k, n_train)) indices of each row's most similar training spots (in no particular order)."""
        rows = self._rows()
        Q = self._unit(X)
        k = min(self.k, len(self.keys_))
        out = np.empty((len(Q), k), np.int64)
        for i in range(0, len(Q), rows):
            sim = Q[i:i + rows] @ self.keys_.T  # (rows, n_train)
            out[i:i + rows] = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        return out

    def predict(self, X: np.ndarray) -> np.ndarray:
        rows = self._rows()
        out = np.empty((len(X), self.values_.shape[1]), np.float32)
        for i in range(0, len(X), rows):
            out[i:i + rows] = self.values_[self.neighbours(X[i:i + rows])].mean(1)
        return out


class PatchTransformer(ConfiguredModel):
    """SpatialTranscriptFormer without pathway tokens: the same projection, 2D positional encoding and
    encoder (``InteractionEncoder``: ``n_layers`` blocks of ``token_dim`` with ``n_heads`` heads) over the
    patch tokens alone, h2h restricted to each spot's ``n_neighbors`` nearest spots as in STF, and a
    linear gene head on every encoded patch (zero-initialised, so it starts at the training mean).
    What it lacks next to STF is exactly the pathway tokens and the cosine-score bottleneck, so the
    book can say what they add over a plain spatial transformer. Reads ``token_dim``, ``n_heads``,
    ``n_layers``, ``n_neighbors``, ``positional_encoding``, ``dropout``, ``attention_impl`` and
    ``output_mode``; ``return_attention`` gives one (B, H, S, S) map per layer.
    """

    def __init__(self, feature_dim: int, num_genes: int, config: ModelConfig | None = None, **overrides):
        from stflib.models.stf import PositionalEncoding2D  # shared with STF and the book (core code)

        super().__init__(config, **overrides)
        c = self.config
        self.project = nn.Linear(feature_dim, c.token_dim)
        self.position = PositionalEncoding2D(c.token_dim, c.positional_encoding)
        self.encoder = InteractionEncoder(c.token_dim, c.n_heads, c.n_layers, c.dropout)
        self.head = nn.Linear(c.token_dim, num_genes)
        _zero_(self.head)

    @property
    def n_neighbors(self) -> int:
        return self.config.n_neighbors

    def attention_plan(self, coords: Tensor, valid: Tensor) -> AttentionPlan:
        """Patches only (0 pathway tokens, the h2h quadrant), local when ``n_neighbors > 0``."""
        k = self.config.n_neighbors
        neighbours, neighbour_valid = knn_neighbours(coords, valid, k) if k > 0 else (None, None)
        return AttentionPlan(num_pathways=0, quadrants=frozenset({"h2h"}), key_valid=valid,
                             has_padding=bool((~valid).any()), impl=self.config.attention_impl,
                             neighbours=neighbours, neighbour_valid=neighbour_valid)

    def forward(self, features, coords, pad_mask=None, return_attention=False, library_size=None):
        valid = valid_spots(features, pad_mask)
        x = self.project(features) + self.position(coords, valid)  # (B,S,D)
        x, maps = self.encoder(x, self.attention_plan(coords, valid), need_weights=return_attention)
        genes = self.head(x).masked_fill(~valid.unsqueeze(-1), 0.0)  # (B,S,G)
        if self.config.output_mode == "global":
            genes = masked_mean(genes, valid)  # (B,1,G)
        return ModelOutput(genes=genes, attention=maps)
