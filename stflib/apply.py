"""Apply a trained run to new sections: ``python -m stflib predict --run RUN --data-dir DIR --out OUT``.

A run folder (``output_dir`` of ``python -m stflib run`` or the notebook) holds ``best.pt`` (the selected
weights, with the per-gene ``gene_mean``/``gene_sd`` buffers of ``StandardizedOutput``), ``metrics.json``
(``config``: every run parameter; ``train_ids``) and ``per_gene.csv`` (the gene vocabulary, in the
model's output order). The same model is rebuilt from that configuration (``stflib.train.model``) and
loaded strictly.

The sections are read from a HEST-layout folder (``import-visium`` writes one): features are required
(``features/<backbone>/<id>.h5`` of the run's backbone); ``st/<id>.h5ad`` may be absent or hold no
counts. Inputs are prepared as the run prepared its own: [own, neighbour mean] context features where
the model takes them, then the z-scoring with the *training slides'* feature mean and sd, read from the
run's ``standardization.npz`` (``feature_mean``, ``feature_sd``) or, for runs written before that file
existed, recomputed from the training slides the run lists (which must still be readable).

Each section gets ``OUT/<id>/predictions.h5ad`` in the layout of the runs' own predictions
(``stflib.predictions``): ``X`` predicted log1p(CP10k), ``obsm['spatial']``, ``uns['spatial']``; the
``truth`` layer holds the section's measurement when it has counts and NaN when it has none.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

STANDARDIZATION_FILE = "standardization.npz"
UNKNOWN_LIBRARY = 1e4  # ZINB runs: mu scales with the library size, so CP10k does not depend on this value


@dataclass
class TrainedRun:
    """What a run folder holds that prediction needs."""

    folder: Path
    config: Any  # RunConfig
    metrics: dict
    genes: list[str]
    hvg: list[str]
    state: dict
    feature_mean: np.ndarray | None = None
    feature_sd: np.ndarray | None = None


@dataclass
class _Sections:
    """The ``fold`` that ``stflib.predictions.predictions_anndata`` reads, for sections outside any fold."""

    root: Path
    genes: list[str]
    hvg: list[str]
    samples: dict
    items: dict
    truth_pathway_names: list[str] | None = None


@dataclass
class _Result:
    fold: _Sections
    predictions: list[dict]
    model: Any
    metrics: dict
    per_gene: Any = ()  # no per-gene scores: nothing was measured against


def load_run(folder: str | Path) -> TrainedRun:
    """Read a run folder; raises naming the missing file or the model kind that cannot be applied."""
    import pandas as pd
    import torch

    from stflib.config import RunConfig
    from stflib.models import MODELS

    folder = Path(folder)
    paths = {name: folder / name for name in ("metrics.json", "best.pt", "per_gene.csv")}
    if not paths["metrics.json"].is_file():
        raise FileNotFoundError(f"{folder}: no metrics.json (is it the output_dir of a finished run?)")
    metrics = json.loads(paths["metrics.json"].read_text())
    if "config" not in metrics:
        raise ValueError(f"{paths['metrics.json']}: no 'config' (the run parameters); keys: {sorted(metrics)}")
    cfg = RunConfig.from_params(metrics["config"])
    if MODELS[cfg.model].kind != "torch":
        torch_models = ", ".join(n for n, s in MODELS.items() if s.kind == "torch")
        raise ValueError(f"{folder}: model {cfg.model!r} is a {MODELS[cfg.model].kind} model with no checkpoint; "
                         f"predict applies the torch models: {torch_models}")
    for name in ("best.pt", "per_gene.csv"):
        if not paths[name].is_file():
            raise FileNotFoundError(f"{folder}: no {name} (a finished torch run writes best.pt and per_gene.csv)")
    checkpoint = torch.load(paths["best.pt"], map_location="cpu", weights_only=True)
    state = checkpoint.get("model") if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f"{paths['best.pt']}: expected {{'model': state_dict, ...}}")
    genes = pd.read_csv(paths["per_gene.csv"])["gene"].astype(str).tolist()
    run = TrainedRun(folder, cfg, metrics, genes, [str(g) for g in metrics.get("hvg50", [])], state)
    stats = folder / STANDARDIZATION_FILE
    if stats.is_file():
        with np.load(stats) as f:
            run.feature_mean, run.feature_sd = f["feature_mean"], f["feature_sd"]
    return run


def expected_width(cfg) -> int:
    """Feature width the run's model takes: its backbone's, doubled by context features."""
    from stflib.backbones import BACKBONES
    from stflib.train.fold import uses_context_features

    return BACKBONES[cfg.backbone].feature_dim * (2 if uses_context_features(cfg) else 1)


def build_model(run: TrainedRun):
    """The run's model, rebuilt exactly as ``stflib.train.run`` built it, with the checkpoint's weights."""
    import torch

    from stflib.losses import LOSSES
    from stflib.train.fold import fold_membership
    from stflib.train.model import StandardizedOutput, build_torch_model

    cfg = run.config
    model = build_torch_model(cfg, expected_width(cfg), len(run.genes), fold_membership(run.genes, cfg))
    if cfg.center_targets and not LOSSES[cfg.loss].needs_counts:
        model = StandardizedOutput(model, np.zeros(len(run.genes)), np.ones(len(run.genes)))  # buffers loaded below
    try:
        model.load_state_dict(run.state, strict=True)
    except RuntimeError as exc:
        head = run.state.get("gene_mean")
        n_ckpt = None if head is None else int(head.shape[0])
        hint = (f"; the checkpoint predicts {n_ckpt} genes but per_gene.csv lists {len(run.genes)}"
                if n_ckpt is not None and n_ckpt != len(run.genes) else "")
        raise ValueError(f"{run.folder / 'best.pt'} does not fit the model rebuilt from its config "
                         f"({cfg.model}, backbone {cfg.backbone}, {len(run.genes)} genes){hint}: {exc}") from exc
    return model.eval().to(torch.float32)


def section_ids(root: Path, backbone: str, ids: list[str] | None) -> list[str]:
    """Requested ids, or every section with features of ``backbone``; raises naming what is there."""
    folder = root / "features" / backbone
    have = sorted(p.stem for p in folder.glob("*.h5")) if folder.is_dir() else []
    present = sorted(p.name for p in (root / "features").glob("*") if p.is_dir()) if (root / "features").is_dir() else []
    if not have:
        raise FileNotFoundError(
            f"{root}: no features of the run's backbone {backbone!r} ({folder}); backbones with features there: "
            f"{', '.join(present) or 'none'}. Extract them: python -m stflib extract-features --data-dir {root} "
            f"--backbone {backbone}")
    if ids is None:
        return have
    missing = [i for i in ids if i not in have]
    if missing:
        raise FileNotFoundError(f"{folder}: no features for {missing}; sections with {backbone} features: {', '.join(have)}")
    return list(ids)


def _has_counts(st_path: Path) -> bool:
    import anndata as ad

    if not st_path.is_file():
        return False
    a = ad.read_h5ad(st_path, backed="r")
    try:
        return a.n_vars > 0 and a.n_obs > 0
    finally:
        a.file.close()


def read_section(root: Path, sample_id: str, backbone: str, feature_width: int):
    """A ``HestSample`` of one section: through ``read_hest_sample`` when it has counts (the spots, order
    and QC of a training run), else from its feature file (spot centres and barcodes; no counts)."""
    import h5py
    import scipy.sparse as sp

    from stflib.data import HestSample, decode_barcodes, read_hest_sample

    feat_path = root / "features" / backbone / f"{sample_id}.h5"
    with h5py.File(feat_path, "r") as f:
        written_by = f.attrs.get("backbone")
        written_by = written_by.decode() if isinstance(written_by, bytes) else written_by
        width = int(f["features"].shape[1])
    if written_by is not None and str(written_by) != backbone:
        raise ValueError(f"{feat_path}: features of backbone {written_by!r}, the run was trained on {backbone!r}")
    if width != feature_width:
        raise ValueError(f"{feat_path}: {width}-d features; the run's {backbone} model takes {feature_width}-d "
                         "features (extract them with the run's backbone)")
    if _has_counts(root / "st" / f"{sample_id}.h5ad"):
        return read_hest_sample(root, sample_id, backbone=backbone), True
    with h5py.File(feat_path, "r") as f:
        features = f["features"][:].astype(np.float32)
        barcodes = decode_barcodes(f["barcodes"][:])
        coords = np.asarray(f["coords"][:], np.float64)[:, :2]
    meta_path = root / "metadata" / f"{sample_id}.json"
    metadata = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    from stflib.data.hest import _pixel_size

    return HestSample(sample_id, sp.csr_matrix((len(barcodes), 0), dtype=np.float32), np.array([], str), barcodes,
                      coords, _pixel_size(metadata), metadata, features=features), False


def section_item(sample, genes: list[str], has_counts: bool, cfg) -> dict:
    """One slide item as ``SlideDataset`` makes it (targets from the counts when the section has them)."""
    import warnings

    import torch

    from stflib.data import SlideDataset

    if has_counts and not set(map(str, sample.genes)) & set(genes):
        warnings.warn(f"{sample.sample_id}: none of its {len(sample.genes)} measured genes (e.g. {list(sample.genes[:3])}) "
                      f"is in the run's vocabulary (e.g. {genes[:3]}); predicted without a truth layer", stacklevel=2)
        has_counts = False
    if has_counts:
        it = SlideDataset([sample], genes, membership=None, log_transform=cfg.log_transform,
                          qc={"min_umis": cfg.qc_min_umis, "min_genes": cfg.qc_min_genes})[0]
        it["measured"] = True
        return it
    n, g = len(sample.barcodes), len(genes)
    return {"sample_id": sample.sample_id, "features": torch.as_tensor(sample.features, dtype=torch.float32),
            "coords": torch.as_tensor(sample.coords, dtype=torch.float32),
            "targets": torch.zeros(n, g), "counts": torch.zeros(n, g),
            "library_size": torch.full((n,), UNKNOWN_LIBRARY), "valid": torch.ones(n, dtype=torch.bool),
            "pathway_targets": torch.zeros(n, 0), "true_pathways": None, "measured": False}


def training_statistics(run: TrainedRun) -> tuple[np.ndarray, np.ndarray]:
    """The training slides' feature mean and sd: from the run folder, else recomputed from the training
    slides the run lists (its cohort must still be readable: ``data_dir``, or the simulated cohort)."""
    if run.feature_mean is not None:
        return run.feature_mean, run.feature_sd
    from stflib.train.fold import add_context_features, standardize_features, uses_context_features

    cfg = run.config
    train_ids = run.metrics.get("train_ids")
    if not train_ids:
        raise ValueError(f"{run.folder}: no {STANDARDIZATION_FILE} and no train_ids in metrics.json: the training "
                         "slides' feature statistics cannot be restored")
    if cfg.data_dir is None:
        from stflib.simulate import default_cohort

        root = Path(default_cohort(cfg.preset, world=cfg.world))
    else:
        root = Path(cfg.data_dir)
    print(f"predict: {run.folder} has no {STANDARDIZATION_FILE}; recomputing the training slides' feature "
          f"statistics from {len(train_ids)} slides of {root}", file=sys.stderr)
    from stflib.data import read_hest_sample

    items = {i: section_item(read_hest_sample(root, i, backbone=cfg.backbone), run.genes, True, cfg) for i in train_ids}
    if uses_context_features(cfg):
        add_context_features(items, cfg)
    scratch = {k: dict(v) for k, v in items.items()}
    mean, sd = standardize_features(scratch, list(items.values()))
    return mean.numpy(), sd.numpy()


def predict_sections(run: TrainedRun, root: str | Path, ids: list[str] | None = None, device: str = "cpu"):
    """Predict sections of ``root`` with a loaded run; returns the AnnData of each section by id."""
    import torch

    from stflib.predictions import predictions_anndata
    from stflib.train.fold import add_context_features, apply_standardization, uses_context_features
    from stflib.train.predict import predict

    from stflib.backbones import BACKBONES

    cfg = run.config
    root = Path(root)
    width = expected_width(cfg)
    ids = section_ids(root, cfg.backbone, ids)
    model = build_model(run).to(device)
    samples, items = {}, {}
    for i in ids:
        samples[i], has_counts = read_section(root, i, cfg.backbone, BACKBONES[cfg.backbone].feature_dim)
        items[i] = section_item(samples[i], run.genes, has_counts, cfg)
    if uses_context_features(cfg):
        add_context_features(items, cfg)
    if cfg.standardize_features:
        mean, sd = training_statistics(run)
        if len(mean) != width:
            raise ValueError(f"{run.folder / STANDARDIZATION_FILE}: feature statistics of width {len(mean)}, the model "
                             f"takes {width}")
        apply_standardization(items, mean, sd)
    out = {}
    with torch.no_grad():
        for i in ids:
            p = predict(model, [items[i]], cfg, device)[0]
            if not items[i]["measured"]:
                p["true"] = np.full_like(p["pred"], np.nan)  # no measurement: the truth layer says so
            sections = _Sections(root, run.genes, run.hvg or run.genes[:50], {i: samples[i]}, {i: items[i]})
            a = predictions_anndata(_Result(sections, [p], model, {"config_hash": run.metrics.get("config_hash", "")}))
            a.uns["run"] = {"folder": str(run.folder), "backbone": cfg.backbone, "model": cfg.model,
                            "measured": bool(items[i]["measured"])}
            out[i] = a
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, help="folder of a finished run (best.pt, metrics.json, per_gene.csv)")
    parser.add_argument("--data-dir", required=True, help="HEST-layout folder with features/<backbone>/<id>.h5 "
                                                           "(st/<id>.h5ad optional)")
    parser.add_argument("--ids", nargs="*", default=None, help="section ids (default: every section with features)")
    parser.add_argument("--out", required=True, help="folder for <id>/predictions.h5ad")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or mps")


def run(args: argparse.Namespace) -> int:
    from stflib.io import atomic_write

    try:
        trained = load_run(args.run)
        adatas = predict_sections(trained, args.data_dir, args.ids, args.device)
    except (FileNotFoundError, ValueError) as exc:
        print(f"predict: error: {exc}", file=sys.stderr)
        return 2
    for i, a in adatas.items():
        path = Path(args.out) / i / "predictions.h5ad"
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda tmp, a=a: a.write_h5ad(tmp, compression="gzip"))
        print(f"predict: {i}: {a.n_obs} spots x {a.n_vars} genes -> {path}")
    return 0
