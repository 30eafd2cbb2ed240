"""The arm's model, built from the run parameters: one ``ModelConfig`` per run (``model_config``), the
torch model from the registry (wrapped so that it predicts per-gene standardised targets) and the
numpy baselines fitted in closed form.
"""
from __future__ import annotations

import numpy as np
import torch

from stflib.config import RunConfig
from stflib.losses import LOSSES
from stflib.models import MODELS, ModelConfig, build_model
from stflib.train.step import log_targets, output_field


def model_config(cfg: RunConfig, membership=None) -> ModelConfig:
    """The run's ``ModelConfig``, built once from the run parameters and the fold's pathway membership;
    every model reads the fields it uses. Pathway tokens are *named* (one per Hallmark covered by
    the vocabulary) when the reconstructor is initialised from membership, the auxiliary loss
    supervises them, or the seed's 50 tokens are asked for; otherwise there are ``num_pathways``
    anonymous tokens."""
    named = membership is not None and (cfg.pathway_init or cfg.pathway_loss_weight > 0
                                        or cfg.num_pathways == 50)
    return ModelConfig(
        num_pathways=len(membership.names) if named else cfg.num_pathways, token_dim=cfg.token_dim,
        n_heads=cfg.n_heads, n_layers=cfg.n_layers, interactions=cfg.interactions,
        positional_encoding=cfg.positional_encoding, balance_h2p=cfg.balance_h2p,
        pathway_readout=cfg.pathway_readout,
        pathway_init=membership.matrix if (cfg.pathway_init and membership is not None) else None,
        pathway_names=tuple(membership.names) if named else None,
        output_mode=cfg.output_mode, zinb=MODELS[cfg.model].zinb_head and LOSSES[cfg.loss].needs_counts,
        dropout=cfg.dropout, n_neighbors=cfg.n_neighbors, global_context=cfg.global_context, seed=cfg.seed,
    )


def build_torch_model(cfg: RunConfig, feature_dim: int, num_genes: int, membership=None) -> torch.nn.Module:
    """The configured torch model, built from the run's ``model_config``; its pathway names (None:
    anonymous tokens) are ``model.config.pathway_names``."""
    if MODELS[cfg.model].kind != "torch":
        raise ValueError(f"build_torch_model: {cfg.model!r} is a {MODELS[cfg.model].kind} model; torch models: "
                         f"{', '.join(n for n, s in MODELS.items() if s.kind == 'torch')}")
    return build_model(cfg.model, feature_dim, num_genes, model_config(cfg, membership))


class StandardizedOutput(torch.nn.Module):
    """``genes = model(...).genes * gene_sd + gene_mean``: the wrapped model predicts per-gene
    standardised targets; ``gene_mean`` and ``gene_sd`` (G,) are fixed buffers holding the training
    fold's per-gene mean and sd of the targets (log1p CP10k or CP10k).

    A model whose gene head starts at zero therefore starts at the training mean profile (MSE ratio
    1, not the ~2 of a random head), and ``compute_loss`` divides by ``gene_sd`` again, so the loss is
    the MSE on standardised targets: genes with sd 3 and sd 215 CP10k weigh the same, and the PCC and
    auxiliary terms are not drowned by a loss in the hundreds. Not used with ZINB (``mu`` is in counts).
    The wrapped model is ``model``; ``config``, ``pathway_names_`` and ``n_neighbors`` read it.
    """

    def __init__(self, model: torch.nn.Module, gene_mean, gene_sd):
        super().__init__()
        self.model = model
        self.register_buffer("gene_mean", torch.as_tensor(np.asarray(gene_mean), dtype=torch.float32))
        sd = torch.as_tensor(np.asarray(gene_sd), dtype=torch.float32)
        if sd.shape != self.gene_mean.shape:
            raise ValueError(f"gene_sd must have the shape of gene_mean {tuple(self.gene_mean.shape)}, got {tuple(sd.shape)}")
        self.register_buffer("gene_sd", sd)

    # read-only views of the wrapped model: an AttributeError when it has none (hasattr stays truthful)
    @property
    def config(self) -> ModelConfig:
        return self.model.config

    @property
    def pathway_names_(self) -> list[str] | None:
        return getattr(self.model, "pathway_names_", None)

    @property
    def n_neighbors(self) -> int:
        return self.model.n_neighbors

    def forward(self, features, coords, pad_mask=None, **kwargs):
        out = self.model(features, coords, pad_mask, **kwargs)
        genes = output_field(out, "genes") * self.gene_sd + self.gene_mean
        if isinstance(out, dict):
            return {**out, "genes": genes}
        from dataclasses import replace

        return replace(out, genes=genes)


def count_parameters(model) -> int:
    """Trainable parameters of a torch model; ``n_params`` of a numpy one."""
    if isinstance(model, torch.nn.Module):
        return int(sum(p.numel() for p in model.parameters() if p.requires_grad))
    return int(getattr(model, "n_params", 0))


def _stack_valid(items: list[dict], cfg: RunConfig) -> tuple[np.ndarray, np.ndarray]:
    X, Y = [], []
    for it in items:
        v = it["valid"].cpu().numpy().astype(bool)
        X.append(it["features"].cpu().numpy()[v])
        Y.append(log_targets(cfg, it["targets"]).cpu().numpy()[v])
    return np.concatenate(X), np.concatenate(Y)


def fit_numpy(train_items: list[dict], cfg: RunConfig, val_items: list[dict] | None = None,
              score_columns: np.ndarray | None = None):
    """Fit the configured numpy baseline of ``MODELS`` on the log1p(CP10k) targets of the valid training spots.

    The protocol of the torch models: fit on ``train_items`` only; a model with ``fit_select`` (the
    ridge probe) chooses its penalty on ``val_items`` (mean PCC over ``score_columns``), as the torch
    models choose their checkpoint. The mean has nothing to select."""
    spec = MODELS[cfg.model]
    if spec.kind != "numpy":
        raise ValueError(f"fit_numpy: {cfg.model!r} is a {spec.kind} model; numpy models: "
                         f"{', '.join(n for n, s in MODELS.items() if s.kind == 'numpy')}")
    X, Y = _stack_valid(train_items, cfg)
    model = build_model(cfg.model, X.shape[1], Y.shape[1], model_config(cfg))
    if val_items and hasattr(model, "fit_select"):
        Xv, Yv = _stack_valid(val_items, cfg)
        return model.fit_select(X, Y, Xv, Yv, score_columns=score_columns)
    return model.fit(X, Y)
