"""From samples to training tensors: spot QC and CP10k normalisation, the gene vocabulary and
evaluation HVGs of a training fold (``select_genes``), and the whole-slide dataset with its
padding collate (``SlideDataset``, ``collate_slides``)."""
from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np
import scipy.sparse as sp
import torch
from torch.utils.data import Dataset

from ..pathways import pathway_targets
from .hest import HestSample

MITO_PREFIX = "MT-"


def library_size(counts: sp.spmatrix | np.ndarray) -> np.ndarray:
    """Total UMIs per spot over all genes, (N,) float64."""
    return np.asarray(counts.sum(1), dtype=np.float64).reshape(-1)


def qc_mask(counts: sp.spmatrix | np.ndarray, genes: Sequence[str], min_umis: float = 200, min_genes: int = 100,
            max_mito_fraction: float = 0.3) -> np.ndarray:
    """(N,) bool, True = the spot passes QC: >= ``min_umis`` UMIs, >= ``min_genes`` detected genes and
    a mitochondrial (``MT-`` genes) UMI fraction <= ``max_mito_fraction``.

    Defaults are mild (Visium CRC medians are 3k-20k UMIs): they drop empty or damaged spots only.
    """
    counts = sp.csr_matrix(counts)
    genes = np.asarray(genes, dtype=str)
    if counts.shape[1] != len(genes):
        raise ValueError(f"counts have {counts.shape[1]} genes but {len(genes)} gene names were given")
    total = library_size(counts)
    detected = np.diff((counts > 0).tocsr().indptr) if counts.nnz else np.zeros(counts.shape[0], int)
    mito = np.char.startswith(np.char.upper(genes), MITO_PREFIX)
    mito_umis = library_size(counts[:, np.flatnonzero(mito)]) if mito.any() else np.zeros_like(total)
    mito_fraction = np.divide(mito_umis, total, out=np.zeros_like(total), where=total > 0)
    return (total >= min_umis) & (detected >= min_genes) & (mito_fraction <= max_mito_fraction)


def normalize_cp10k(counts: sp.spmatrix | np.ndarray, library: np.ndarray | None = None,
                    log1p: bool = False) -> sp.csr_matrix | np.ndarray:
    """Counts per 10,000: ``counts / library * 1e4`` (then ``log1p`` when asked).

    ``library`` is each spot's total UMIs over ALL genes (pass it when ``counts`` is a gene subset);
    spots with zero library get 0. Sparse in, sparse out.
    """
    library = library_size(counts) if library is None else np.asarray(library, np.float64).reshape(-1)
    scale = np.divide(1e4, library, out=np.zeros_like(library), where=library > 0)
    if sp.issparse(counts):
        out = sp.csr_matrix(sp.diags(scale) @ counts, dtype=np.float32)
        if log1p:
            out.data = np.log1p(out.data)
        return out
    out = np.asarray(counts, np.float64) * scale[:, None]
    return (np.log1p(out) if log1p else out).astype(np.float32)


# -------------------------------------------------------------------------------- gene vocabulary
def select_genes(samples_train: Sequence[HestSample], n_genes: int = 1000, n_hvg: int = 50, qc: dict | None = None,
                 exclude_prefixes: tuple[str, ...] = (MITO_PREFIX,)) -> tuple[list[str], list[str]]:
    """Gene vocabulary and evaluation HVGs, from the training fold only (HEST-Bench's all-sample HVGs leak).

    Pool the QC-passed spots of all training samples (a gene a sample lacks counts as 0 there).
    vocabulary: the ``n_genes`` genes with the highest mean CP10k, excluding ``exclude_prefixes``
    (mitochondrial genes are a QC signal, not biology), ties by name; ordered by mean, descending.
    hvg: the ``n_hvg`` vocabulary genes with the highest variance of log1p(CP10k) over the pooled
    spots (population variance), ties by name; ordered by variance, descending.
    """
    if not samples_train:
        raise ValueError("select_genes needs at least one training sample")
    index: dict[str, int] = {}
    for s in samples_train:
        for g in s.genes:
            index.setdefault(str(g), len(index))
    total, log_sum, log_sq = np.zeros(len(index)), np.zeros(len(index)), np.zeros(len(index))
    n = 0
    for s in samples_train:
        mask = qc_mask(s.counts, s.genes, **(qc or {}))
        cols = np.array([index[str(g)] for g in s.genes])
        cp = normalize_cp10k(s.counts, log1p=False)[mask]
        lg = cp.copy()
        lg.data = np.log1p(lg.data)
        total[cols] += np.asarray(cp.sum(0)).reshape(-1)
        log_sum[cols] += np.asarray(lg.sum(0)).reshape(-1)
        log_sq[cols] += np.asarray(lg.multiply(lg).sum(0)).reshape(-1)
        n += int(mask.sum())
    if n == 0:
        raise ValueError(f"no spot of the {len(samples_train)} training samples passes QC ({qc or 'defaults'})")
    names = np.array(list(index), dtype=str)
    eligible = ~np.array([g.upper().startswith(tuple(p.upper() for p in exclude_prefixes)) for g in names]) \
        if exclude_prefixes else np.ones(len(names), bool)
    mean = total / n
    cand = np.flatnonzero(eligible)
    if len(cand) < n_genes:
        warnings.warn(f"only {len(cand)} genes available for a vocabulary of n_genes={n_genes}", stacklevel=2)
    ranked = cand[np.lexsort((names[cand], -mean[cand]))][:n_genes]
    var = log_sq / n - (log_sum / n) ** 2
    if n_hvg > len(ranked):
        raise ValueError(f"n_hvg={n_hvg} exceeds the vocabulary size {len(ranked)}")
    hvg = ranked[np.lexsort((names[ranked], -var[ranked]))][:n_hvg]
    return names[ranked].tolist(), names[hvg].tolist()


# ------------------------------------------------------------------------------ dataset and collate
class SlideDataset(Dataset):
    """Whole-slide items for dense training: one item per sample, all its spots.

    item: ``sample_id``; ``features`` (S, D); ``coords`` (S, 2) spot centres; ``targets`` (S, G) CP10k
    of the vocabulary ``genes`` (log1p when ``log_transform``); ``counts`` (S, G) raw; ``library_size``
    (S,) total UMIs over ALL genes; ``valid`` (S,) QC passed (False = masked out of losses and
    metrics, never a zero target); ``pathway_targets`` (S, P) from ``stflib.pathways.pathway_targets``
    on log1p CP10k over valid spots ((S, 0) without ``membership``); ``true_pathways`` (S, 50) or None.
    Vocabulary genes a sample lacks are zero-filled and listed in ``missing_genes[sample_id]``.
    """

    def __init__(self, samples: Sequence[HestSample], genes: Sequence[str], membership=None,
                 log_transform: bool = False, qc: dict | None = None):
        self.samples = list(samples)
        self.genes = [str(g) for g in genes]
        self.log_transform = log_transform
        matrix = getattr(membership, "matrix", membership)  # accept a pathways.Membership or an array
        self.membership = None if matrix is None else np.asarray(matrix, np.float32)
        if self.membership is not None and (self.membership.ndim != 2 or self.membership.shape[1] != len(self.genes)):
            raise ValueError(f"membership must be (P, {len(self.genes)}) over the vocabulary; got {self.membership.shape}")
        self.columns: list[np.ndarray] = []
        self.valid: list[np.ndarray] = []
        self.missing_genes: dict[str, list[str]] = {}
        for s in self.samples:
            if s.features is None:
                raise ValueError(f"sample {s.sample_id!r} has no features: read it with read_hest_sample(..., backbone=...)")
            where = {g: i for i, g in enumerate(s.genes)}
            cols = np.array([where.get(g, -1) for g in self.genes])
            if not (cols >= 0).any():
                raise ValueError(
                    f"sample {s.sample_id!r}: none of its {len(s.genes)} genes (e.g. {list(s.genes[:3])}) is in the "
                    f"vocabulary of {len(self.genes)} genes (e.g. {self.genes[:3]}); are both gene symbols?"
                )
            missing = [g for g, c in zip(self.genes, cols) if c < 0]
            if missing:
                self.missing_genes[s.sample_id] = missing
                warnings.warn(f"sample {s.sample_id!r}: {len(missing)} of {len(self.genes)} vocabulary genes "
                              f"absent, zero-filled (e.g. {missing[:5]})", stacklevel=2)
            self.columns.append(cols)
            self.valid.append(qc_mask(s.counts, s.genes, **(qc or {})))

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict:
        s, cols, valid = self.samples[i], self.columns[i], self.valid[i]
        library = library_size(s.counts)
        present = cols >= 0
        counts = np.zeros((s.n_spots, len(self.genes)), np.float32)
        counts[:, present] = s.counts[:, cols[present]].toarray()
        log_cp = normalize_cp10k(counts, library, log1p=True)
        targets = log_cp if self.log_transform else normalize_cp10k(counts, library)
        if self.membership is None:
            pathways = np.zeros((s.n_spots, 0), np.float32)
        else:
            pathways = pathway_targets(log_cp, self.membership, valid)
        truth = s.truth.get("pathway_activity")
        return {
            "sample_id": s.sample_id,
            "features": torch.as_tensor(s.features, dtype=torch.float32),
            "coords": torch.as_tensor(s.coords, dtype=torch.float32),
            "targets": torch.as_tensor(targets, dtype=torch.float32),
            "counts": torch.as_tensor(counts),
            "library_size": torch.as_tensor(library, dtype=torch.float32),
            "valid": torch.as_tensor(valid, dtype=torch.bool),
            "pathway_targets": torch.as_tensor(pathways, dtype=torch.float32),
            "true_pathways": None if truth is None else torch.as_tensor(truth, dtype=torch.float32),
        }


_PADDED = ("features", "coords", "targets", "counts", "library_size", "valid", "pathway_targets")


def collate_slides(items: Sequence[dict]) -> dict:
    """Pad slides to the largest one: same keys as the items (batched), plus ``pad_mask`` (B, S) True =
    padding, ``valid`` False on padding, ``sample_ids``; ``true_pathways`` None if any item lacks it."""
    if not items:
        raise ValueError("collate_slides got an empty batch")
    sizes = [len(it["features"]) for it in items]
    s_max = max(sizes)

    def pad(values: list) -> torch.Tensor:
        values = [torch.as_tensor(v) for v in values]
        out = torch.zeros((len(values), s_max) + tuple(values[0].shape[1:]), dtype=values[0].dtype)
        for b, v in enumerate(values):
            out[b, : len(v)] = v
        return out

    batch = {key: pad([it[key] for it in items]) for key in _PADDED}
    batch["pad_mask"] = torch.arange(s_max)[None, :] >= torch.tensor(sizes)[:, None]
    truths = [it.get("true_pathways") for it in items]
    batch["true_pathways"] = None if any(t is None for t in truths) else pad(truths)
    batch["sample_ids"] = [it["sample_id"] for it in items]
    batch["sample_id"] = batch["sample_ids"]
    return batch
