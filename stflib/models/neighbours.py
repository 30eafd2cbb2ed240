"""The neighbour structure of local-context mode (``n_neighbors = k > 0``), built once per slide.

- ``knn_neighbours``    each spot's own index followed by its k nearest valid spots (a KD-tree per slide)
- ``NeighbourGraph``    one slide's neighbour slots as a sparse (S, S) pattern, in the two orders the
                        products of ``stflib.models.local_attention`` need
- ``neighbour_graphs``  the graphs of a batch, memoised on each slide's content (which spots are valid,
                        their coordinates, k), so every layer and every step reuse them
"""
from __future__ import annotations

import hashlib
import warnings
from collections import OrderedDict
from dataclasses import dataclass, fields

import numpy as np
import torch
from torch import Tensor


def knn_neighbours(coords: Tensor, valid: Tensor, k: int, n_global: int = 0) -> tuple[Tensor, Tensor]:
    """Each spot's own index followed by its k nearest valid spots (a KD-tree per slide, O(S log S)), then
    ``n_global`` global-context slots: the same random valid spots of the slide for every spot (drawn once
    per slide, seeded by the slide's coordinates, so a slide always gets the same ones).

    Returns ``index`` (B, S, k+1+G) long into the spot axis (slot 0 = the spot itself) and
    ``index_valid`` (B, S, k+1+G) bool (False for slots a small slide or a padding spot cannot fill, and
    for a global spot that is already the spot itself or one of its k nearest: each key counts once).
    Unfilled slots point to the spot itself.
    """
    from stflib import spatial

    if n_global < 0:
        raise ValueError(f"global_context: must be >= 0, got {n_global}")
    B, S, _ = coords.shape
    index = torch.arange(S).view(1, S, 1).repeat(B, 1, k + 1 + n_global)
    index_valid = torch.zeros(B, S, k + 1 + n_global, dtype=torch.bool)
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
        if n_global:
            seed = int.from_bytes(hashlib.blake2b(xy_all[b, rows].tobytes(), digest_size=8).digest(), "little")
            chosen = np.random.default_rng(seed).choice(rows, size=min(n_global, len(rows)), replace=False)  # (G',)
            near = np.concatenate([rows[:, None], others], 1)  # (n, n_other + 1): self and the k nearest
            fresh = ~(chosen[None, :, None] == near[:, None, :]).any(-1)  # (n, G'): not already a slot
            slots = slice(k + 1, k + 1 + len(chosen))
            index[b, rows, slots] = torch.from_numpy(np.where(fresh, chosen[None, :], rows[:, None]))
            index_valid[b, rows, slots] = torch.from_numpy(fresh)
    return index.to(coords.device), index_valid.to(coords.device)


# ---------------------------------------------------------------------------------------------
# Local context (n_neighbors = k > 0): the neighbour graph, built once per slide, and the patch
# queries' attention over [pathways | k + 1 neighbour slots] as sparse-dense products
# ---------------------------------------------------------------------------------------------


@dataclass
class NeighbourGraph:
    """One slide's neighbour slots as a sparse (S, S) pattern, in the two orders the products need.

    ``index`` / ``valid`` (S, K) are ``knn_neighbours``' slots (K = k + 1, slot 0 = the spot itself).
    Its E valid slots are the edges query -> key: ``crow`` (S+1,) / ``col`` (E,) a CSR pattern (int32),
    each row's keys ascending; ``pos`` (E,) each edge's place in the flat (S * K) slot layout;
    ``crow_t`` / ``col_t`` the transposed pattern (key -> queries) and ``perm_t`` (E,) the order of
    the edges in it. All of it depends on the coordinates only: built once per slide
    (``neighbour_graphs``) and reused by every layer and step.
    """

    index: Tensor
    valid: Tensor
    crow: Tensor
    col: Tensor
    pos: Tensor
    crow_t: Tensor
    col_t: Tensor
    perm_t: Tensor

    @classmethod
    def build(cls, index: Tensor, valid: Tensor) -> "NeighbourGraph":
        S, K = index.shape
        slot = torch.arange(S * K, device=index.device).view(S, K)
        rows = torch.arange(S, device=index.device).view(S, 1).expand(S, K)
        row, col, pos = rows[valid], index[valid], slot[valid]  # (E,) each
        order = torch.argsort(row * S + col)  # CSR order: by query, keys ascending within a row
        row, col, pos = row[order], col[order], pos[order]
        perm_t = torch.argsort(col * S + row)  # the same edges by key, queries ascending
        i32 = lambda t: t.to(torch.int32)  # noqa: E731  (MKL's index type: int64 patterns are converted per call)
        return cls(index, valid, i32(_crow(row, S)), i32(col), pos, i32(_crow(col[perm_t], S)), i32(row[perm_t]),
                   perm_t)

    def to(self, device) -> "NeighbourGraph":
        return NeighbourGraph(*(getattr(self, f.name).to(device) for f in fields(self)))

    def matrix(self, values: Tensor, transposed: bool = False) -> Tensor:
        """The (S, S) sparse CSR matrix with these edge values (E,), in CSR or in transposed order."""
        S = self.index.shape[0]
        crow, col = (self.crow_t, self.col_t) if transposed else (self.crow, self.col)
        with warnings.catch_warnings():  # "CSR support is in beta": the two products used here are tested
            warnings.simplefilter("ignore", UserWarning)
            return torch.sparse_csr_tensor(crow, col, values, size=(S, S), check_invariants=False)

    def sampled(self, a: Tensor, b: Tensor, alpha: float = 1.0) -> Tensor:
        """(a b^T) on the edges only, (E,) in CSR order: (S, d), (S, d) -> (E,) (an SDDMM)."""
        empty = self.matrix(a.new_zeros(self.col.shape))
        return torch.sparse.sampled_addmm(empty, a, b.T, beta=0.0, alpha=alpha).values()


def _crow(sorted_rows: Tensor, n: int) -> Tensor:
    """CSR row pointers (n+1,) of edges sorted by row."""
    counts = torch.bincount(sorted_rows, minlength=n)
    return torch.cat([counts.new_zeros(1), counts.cumsum(0)])


_GRAPHS: OrderedDict[tuple, NeighbourGraph] = OrderedDict()
GRAPH_CACHE_SIZE = 64  # slides kept; a graph takes ~0.8 kB per spot (50 MB for 64k spots)


def neighbour_graphs(coords: Tensor, valid: Tensor, k: int, n_global: int = 0) -> list[NeighbourGraph]:
    """Each slide's ``NeighbourGraph`` over its k nearest valid spots (and ``n_global`` global-context
    spots, see ``knn_neighbours``), memoised on the slide's content
    (which spots are valid, their coordinates, k, G, the device; least recently used dropped first):
    the KD-tree and the patterns are built the first time a slide is seen and reused by every later
    forward, whoever calls the model. (B, S, 2), (B, S) -> B graphs.
    """
    xy, ok = coords.detach().float().cpu(), valid.detach().cpu()
    graphs = []
    for b in range(xy.shape[0]):
        digest = hashlib.blake2b(ok[b].numpy().tobytes(), digest_size=16)
        digest.update(xy[b][ok[b]].numpy().tobytes())
        key = (digest.hexdigest(), int(k), int(n_global), str(coords.device))
        graph = _GRAPHS.get(key)
        if graph is None:
            index, index_valid = knn_neighbours(xy[b : b + 1], ok[b : b + 1], k, n_global)
            graph = _GRAPHS[key] = NeighbourGraph.build(index[0], index_valid[0]).to(coords.device)
            while len(_GRAPHS) > GRAPH_CACHE_SIZE:
                _GRAPHS.popitem(last=False)
        _GRAPHS.move_to_end(key)
        graphs.append(graph)
    return graphs
