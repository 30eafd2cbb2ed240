"""One fold of the cohort as training sees it: the patient split, the genes, the slide items and
the statistics of the training slides that inputs and targets are scaled with.

``load_fold`` reads the cohort (``data_dir`` or the embedded simulated one), splits it by patient
(``fold`` of ``n_folds`` is the test set) or, with ``split='study'``, holds out the ``fold``-th study
(a ``val_fraction`` of the remaining *patients*, all from the training studies, is held out for model
selection), chooses the gene vocabulary and the 50 evaluation HVGs on the training slides
and builds one slide item (``stflib.data.SlideDataset``) per sample. ``prepare_features`` then
applies the arm's input transform (the per-spot baselines' [own, neighbour mean] context features,
the z-scoring of every feature with the training slides' statistics).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from stflib import config as C
from stflib import data as D
from stflib import pathways as P
from stflib.config import RunConfig
from stflib.data.decoded import read_sample
from stflib.models import MODELS
from stflib.spatial import with_neighbour_mean


@dataclass
class FoldData:
    root: Path
    metadata: Any
    train_ids: list[str]
    val_ids: list[str]
    test_ids: list[str]
    samples: dict
    genes: list[str]
    hvg: list[str]
    membership: Any
    items: dict  # sample_id -> slide item
    feature_dim: int
    truth_pathway_names: list[str] | None
    # the training slides' feature mean and sd (D,) once ``prepare_features`` z-scored the inputs (None
    # before, or without ``standardize_features``): what a prediction on new sections must apply again
    feature_mean: np.ndarray | None = None
    feature_sd: np.ndarray | None = None

    def slides(self, part: str) -> list[dict]:
        """The slide items of ``part``: ``train``, ``val`` or ``test``."""
        return [self.items[i] for i in getattr(self, f"{part}_ids")]

    @property
    def hvg_columns(self) -> np.ndarray:
        """Columns of the 50 evaluation HVGs in ``genes``."""
        return np.array([self.genes.index(g) for g in self.hvg])


def load_fold(cfg: RunConfig, log: Callable[[str], None] | None = None) -> FoldData:
    """Read the cohort, split it by patient or study (``split``), choose genes on the training fold, build
    slide items."""
    if cfg.data_dir is None:
        from stflib.simulate import default_cohort

        root = Path(default_cohort(cfg.preset, world=cfg.world))
    else:
        root = Path(cfg.data_dir)
    meta = D.select_samples(root / "metadata.csv", **C.cohort_filter(cfg.as_dict()))
    train_all, test_ids = D.cohort_folds(meta, cfg.split, cfg.n_folds, cfg.fold,
                                         f"the cohort filter {C.describe_cohort(cfg.as_dict())} on {root / 'metadata.csv'}")
    qc = {"min_umis": cfg.qc_min_umis, "min_genes": cfg.qc_min_genes}
    train_ids, val_ids = D.train_val_split(train_all, meta, cfg.val_fraction, seed=0)
    ids = list(train_ids) + list(val_ids) + list(test_ids)
    # decoded once per cohort and reader, then loaded from the cache by every later run (stflib.data.decoded)
    samples = {i: read_sample(root, i, backbone=cfg.backbone) for i in ids}
    genes, hvg = D.select_genes([samples[i] for i in list(train_ids) + list(val_ids)], n_genes=cfg.n_genes, n_hvg=50,
                                qc=qc)
    membership = fold_membership(genes, cfg)
    ds = D.SlideDataset([samples[i] for i in ids], genes, membership=membership.matrix,
                        log_transform=cfg.log_transform, qc=qc)
    items = {}
    for j in range(len(ds)):
        it = ds[j]
        items[it["sample_id"]] = {k: (torch.as_tensor(v) if isinstance(v, np.ndarray) else v) for k, v in it.items()}
    feature_dim = int(next(iter(items.values()))["features"].shape[1])
    first = samples[ids[0]]
    names = first.truth_names.get("pathway_activity") if first.truth else None
    if log:
        log(f"{root}: {len(train_ids)} train / {len(val_ids)} val / {len(test_ids)} test slides; "
            f"{len(genes)} genes, {len(membership.names)} pathways ({cfg.pathway_sets}), features {cfg.backbone} ({feature_dim}-d)")
    return FoldData(root, meta, list(train_ids), list(val_ids), list(test_ids), samples, genes, hvg, membership,
                    items, feature_dim, names)


def fold_membership(genes: list[str], cfg: RunConfig):
    """The run's pathway membership over its vocabulary: the Hallmarks, or their permuted negative control
    (seeded by the fold); rebuilt from the same two inputs when a trained run is applied to new sections."""
    return P.pathway_membership(genes, cfg.pathway_sets, cfg.fold)


def uses_context_features(cfg: RunConfig) -> bool:
    """True when the arm's model takes ``n_neighbors`` as [own, mean of the k nearest spots'] features."""
    return bool(cfg.n_neighbors) and MODELS[cfg.model].context_features


def prepare_features(fold: FoldData, cfg: RunConfig) -> None:
    """The arm's input transform, in place: context features for the per-spot baselines with
    ``n_neighbors`` (the feature width doubles), then (``standardize_features``) the z-scoring."""
    if uses_context_features(cfg):
        add_context_features(fold.items, cfg)
        fold.feature_dim *= 2
    if cfg.standardize_features:
        mean, sd = standardize_features(fold.items, fold.slides("train"))
        fold.feature_mean, fold.feature_sd = mean.numpy(), sd.numpy()


def add_context_features(items: dict, cfg: RunConfig) -> None:
    """[own, mean of the ``n_neighbors`` nearest spots'] features for every item, in place."""
    for it in items.values():
        it["features"] = torch.as_tensor(with_neighbour_mean(it["features"].numpy(), it["coords"].numpy(),
                                                             cfg.n_neighbors), dtype=torch.float32)


def standardize_features(items: dict, reference: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
    """z-score the features of every item (in place) with the mean and sd of ``reference``'s valid spots;
    returns that mean and sd (float64, (D,))."""
    x = torch.cat([it["features"][it["valid"]] for it in reference]).double()
    mean, sd = x.mean(0), x.std(0).clamp_min(1e-6)
    apply_standardization(items, mean, sd)
    return mean, sd


def apply_standardization(items: dict, mean, sd) -> None:
    """z-score the features of every item (in place) with a given mean and sd (D,), in float64 as the
    training run did, so a prediction on new sections sees exactly the training run's inputs."""
    mean, sd = torch.as_tensor(mean, dtype=torch.float64), torch.as_tensor(sd, dtype=torch.float64)
    for it in items.values():
        it["features"] = ((it["features"].double() - mean) / sd).float()


def target_statistics(items: list[dict], floor: float = 1e-2) -> tuple[np.ndarray, np.ndarray]:
    """Per-gene mean (G,) and sd (G,) of the targets over the valid spots of ``items``.

    The sd is floored at ``floor`` x the median gene's sd, so a gene (almost) constant on the
    training slides is not blown up into a loss term of its own."""
    t = torch.cat([it["targets"][it["valid"]] for it in items]).double()
    mean = t.mean(0)
    sd = (t - mean).pow(2).mean(0).sqrt()
    sd = sd.clamp_min(max(float(sd.median()) * floor, 1e-6))
    return mean.float().numpy(), sd.float().numpy()


def log_mean_fractions(items: list[dict]) -> np.ndarray:
    """log(sum of a gene's counts / sum of the library sizes) over the valid spots of ``items``: the
    ZINB rate bias that makes ``mu`` start at each gene's mean expression (as scVI initialises it)."""
    counts = torch.cat([it["counts"][it["valid"]] for it in items]).double()
    lib = torch.cat([it["library_size"][it["valid"]] for it in items]).double()
    frac = counts.sum(0) / lib.sum().clamp_min(1.0)
    return frac.clamp_min(0.5 / float(lib.sum().clamp_min(1.0))).log().float().numpy()
