"""SpatialTranscriptFormer: frozen patch features -> pathway bottleneck -> gene expression.

Read top to bottom, one class per idea (the attention itself is in ``stflib.models.attention``, the
configuration in ``stflib.models.config``):

1. ``ModelOutput``, ``ConfiguredModel``  what every model returns; a model built from a ``ModelConfig``
2. ``PositionalEncoding2D``      where each spot is on the slide (sinusoidal, learned, none)
3. ``TransformerBlock``          a pre-norm encoder layer whose attention follows an ``AttentionPlan``
4. ``InteractionEncoder``        the stack of blocks + final norm
5. ``CosineScorer``              pathway scores = cos(patch, pathway) x learnable temperature,
                                 against the encoded or the shared pathway tokens
6. ``GeneReconstructor``         Linear(P -> G) on the normalised scores (``ScoreNorm``), zero or Hallmark init
7. ``ZINBHead``                  mu (library size as offset), gene-wise pi and theta for the ZINB loss
8. ``SpatialTranscriptFormer``   the model, built from one ``ModelConfig``

Shapes: B slides, S spots (patches), P pathways, T = P + S tokens, D token_dim, H heads,
d = D / H, G genes. ``pad_mask`` is True on padding; ``valid = ~pad_mask``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

# interaction_mask, QUADRANTS, NAMED_INTERACTIONS and parse_interactions stay importable from here
from stflib.models.attention import (  # noqa: F401
    AttentionPlan,
    attend,
    interaction_mask,
    knn_neighbours,
    neighbour_graphs,
)
from stflib.models.config import (  # noqa: F401
    NAMED_INTERACTIONS,
    PATHWAY_READOUTS,
    POSITIONAL_ENCODINGS,
    QUADRANTS,
    ModelConfig,
    check_depth,
    check_neighbours,
    parse_interactions,
)

# ---------------------------------------------------------------------------------------------
# 1. What a model returns, and what it is built from
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


class ConfiguredModel(nn.Module):
    """A torch model built from one ``ModelConfig``, kept whole and read-only as ``config``
    (``config=None`` and keyword overrides build it: ``ModelConfig.build``)."""

    def __init__(self, config: ModelConfig | None = None, **overrides):
        super().__init__()
        self.config = ModelConfig.build(config, **overrides)

    @property
    def pathway_names_(self) -> list[str] | None:
        """The pathway tokens' names given at construction, None for anonymous tokens (a read-only
        view of ``config.pathway_names``; the evaluation matches named tokens to the truth)."""
        names = self.config.pathway_names
        return None if names is None else list(names)


# ---------------------------------------------------------------------------------------------
# 2. Positional encoding of spot coordinates
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

    MODES = POSITIONAL_ENCODINGS

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
# 3-4. Transformer layers over [pathways | patches]
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
        a, weights = attend(q, k, v, plan, p, self.h2p_logit, need_weights)  # (B,H,T,d)
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
# 5-7. Heads: pathway scores, genes, ZINB
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

    READOUTS = PATHWAY_READOUTS

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
# 8. The model
# ---------------------------------------------------------------------------------------------


class SpatialTranscriptFormer(ConfiguredModel):
    """Frozen features -> tokens (+ position) -> encoder over [pathways | patches] -> cosine pathway
    scores -> genes (or ZINB parameters), built from one ``ModelConfig`` (its fields are documented
    there). ``SpatialTranscriptFormer(F, G, interactions="p2p,p2h", n_layers=2)`` builds the config
    from keywords. Without h2h (the pathway bottleneck) at least 2 layers are needed; ``n_neighbors
    > 0`` needs h2h. ``genes`` is (B, S, G), or (B, 1, G) with ``output_mode="global"``; with ``zinb``
    it is mu (pass ``library_size``) with pi and theta beside it.
    """

    def __init__(self, feature_dim: int, num_genes: int, config: ModelConfig | None = None, **overrides):
        super().__init__(config, **overrides)
        config = self.config
        check_depth(config.interactions, config.n_layers)
        check_neighbours(config.interactions, config.n_neighbors)
        self.feature_dim, self.num_genes = feature_dim, num_genes
        P, D = config.num_pathways, config.token_dim
        self.project = nn.Linear(feature_dim, D)  # (B,S,F) -> (B,S,D)
        self.position = PositionalEncoding2D(D, config.positional_encoding)
        self.pathway_tokens = nn.Parameter(torch.randn(P, D) * 0.02)  # (P, D)
        # P pathway keys next to K + 1 neighbour keys would take P / (P + K + 1) of every patch's attention
        # at a uniform start (72 % for 50 pathways and 18 neighbours), all of it on slide-constant
        # tokens; an offset of -log P per head makes the P pathway keys together start with the weight
        # of one key, and training moves it
        h2p_init = -math.log(P) if config.balance_h2p and "h2p" in config.interactions else None
        self.encoder = InteractionEncoder(D, config.n_heads, config.n_layers, config.dropout, h2p_init)
        self.scorer = CosineScorer()
        self.score_norm = ScoreNorm(P)
        self.reconstructor = GeneReconstructor(P, num_genes, config.pathway_init)
        self.zinb_head = ZINBHead(P, num_genes) if config.zinb else None
        if config.zinb:  # start mu near library_size / G until init_rate_bias sets each gene's mean fraction
            with torch.no_grad():
                self.reconstructor.bias.fill_(-math.log(num_genes))

    @property
    def pathway_names(self) -> list[str]:
        """Display names of the pathway tokens (``ModelConfig.token_names``)."""
        return self.config.token_names()

    @property
    def n_neighbors(self) -> int:
        """k of the h2h flow's k-nearest-spot restriction (0: whole slide), ``config.n_neighbors``."""
        return self.config.n_neighbors

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
        c = self.config
        key_valid = torch.cat([valid.new_ones(B, c.num_pathways), valid], dim=1)  # (B, T)
        quads, has_padding, impl = frozenset(c.interactions), bool((~valid).any()), impl or c.attention_impl
        if c.n_neighbors > 0:  # each slide's k-NN graph, built the first time the slide is seen
            graphs = neighbour_graphs(coords, valid, c.n_neighbors, c.global_context)
            return AttentionPlan.local(c.num_pathways, quads, key_valid, has_padding, impl, graphs)
        return AttentionPlan(c.num_pathways, quads, key_valid, has_padding, impl)

    def forward(self, features: Tensor, coords: Tensor, pad_mask: Tensor | None = None,
                return_attention: bool = False, library_size: Tensor | None = None) -> ModelOutput:
        B, S, _ = features.shape
        P = self.config.num_pathways
        valid = torch.ones(B, S, dtype=torch.bool, device=features.device) if pad_mask is None else ~pad_mask.bool()

        patches = self.project(features) + self.position(coords, valid)  # (B,S,D)
        pathways = self.pathway_tokens.expand(B, -1, -1)  # (B,P,D)
        x = torch.cat([pathways, patches], dim=1)  # (B,T,D)

        plan = self.attention_plan(coords, valid)
        x, maps = self.encoder(x, plan, need_weights=return_attention)

        readout = x[:, :P] if self.config.pathway_readout == "contextual" else pathways  # (B,P,D)
        scores = self.scorer(x[:, P:], readout)  # (B,S,P)
        scores = scores.masked_fill(~valid.unsqueeze(-1), 0.0)
        genes = self.reconstructor(self.score_norm(scores))  # (B,S,G): expression, or the ZINB rate logit
        pi = theta = None
        if self.zinb_head is not None:
            genes, pi, theta = self.zinb_head(scores, genes, library_size)
            pi, theta = pi.masked_fill(~valid.unsqueeze(-1), 0.0), theta.masked_fill(~valid.unsqueeze(-1), 1.0)
        genes = genes.masked_fill(~valid.unsqueeze(-1), 0.0)
        if self.config.output_mode == "global":
            genes = masked_mean(genes, valid)  # (B,1,G)
        return ModelOutput(genes=genes, pathway_scores=scores, pi=pi, theta=theta, attention=maps)


def masked_mean(x: Tensor, valid: Tensor) -> Tensor:
    """Mean over the valid spots of each slide: (B,S,G), (B,S) -> (B,1,G); 0 for a slide with none."""
    w = valid.unsqueeze(-1).to(x.dtype)
    return (x * w).sum(1, keepdim=True) / w.sum(1, keepdim=True).clamp_min(1.0)
