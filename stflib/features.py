"""Feature extraction: HEST patches -> frozen backbone -> the feature cache.

Input, per sample (HEST-1k layout): ``DIR/patches/<id>.h5`` with ``img`` (N, 224, 224, 3) uint8,
``barcode`` (N, 1) bytes and ``coords`` (N, 2) the patches' top-left corners in full-resolution
pixels. HEST cuts each patch centred on its spot: ``top_left = int(centre - patch_size_src // 2)``
with ``patch_size_src = 224 * 0.5 / pixel_size_um`` full-resolution pixels (224 px at 0.5 um/px),
so the cache stores ``centre = top_left + patch_size_src // 2`` (within one pixel of the spot).
The pixel size comes from ``DIR/metadata/<id>.json`` (``pixel_size_um_estimated``) or
``DIR/metadata.csv``; without either the patches are taken to be at 0.5 um/px already.

Output: ``DIR/features/<backbone>/<id>.h5`` with ``features`` (N, D) float32, ``barcodes`` (N,)
bytes, ``coords`` (N, 2) float64 spot centres, and attributes ``backbone``, ``backbone_version``
(``sha256:<weights file hash>`` or ``random-init``), ``feature_dim`` and provenance. Files are
written atomically (temporary file + rename); a sample whose cache is complete for the same
backbone and version is skipped, so an interrupted run resumes where it stopped.

CLI: ``python -m stflib extract-features --data-dir D --backbone NAME [--weights PATH]`` and
``python -m stflib bench backbones`` (``run_benchmark``).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterable, Sequence

import h5py
import numpy as np
import torch

from . import __version__
from .backbones import BACKBONES, Backbone, WeightsError, get_backbone, weights_version
from .device import autocast, autocast_dtype, resolve_device

__all__ = [
    "extract_features", "extract_cohort", "read_feature_cache", "cache_path", "cache_is_current",
    "patch_centres", "sample_pixel_size", "list_samples", "benchmark_backbones",
    "add_arguments", "run", "add_benchmark_arguments", "run_benchmark",
]

HEST_PATCH_UM = 112.0          # HEST patches: 224 px at 0.5 um/px
HEST_TARGET_PIXEL_UM = 0.5


# --------------------------------------------------------------------------------------------
# Paths, metadata, coordinates
# --------------------------------------------------------------------------------------------
def cache_path(data_dir: str | os.PathLike, backbone: str, sample_id: str) -> Path:
    return Path(data_dir) / "features" / backbone / f"{sample_id}.h5"


def list_samples(data_dir: str | os.PathLike) -> list[str]:
    """Sample ids that have a patches file (sorted)."""
    return sorted(p.stem for p in (Path(data_dir) / "patches").glob("*.h5"))


def sample_pixel_size(data_dir: str | os.PathLike, sample_id: str) -> float | None:
    """um per full-resolution pixel from metadata/<id>.json or metadata.csv (None if unknown)."""
    data_dir = Path(data_dir)
    meta = data_dir / "metadata" / f"{sample_id}.json"
    keys = ("pixel_size_um_estimated", "pixel_size_um", "pixel_size")
    if meta.is_file():
        try:
            d = json.loads(meta.read_text())
        except ValueError:
            d = {}
        for k in keys:
            if d.get(k) not in (None, ""):
                return float(d[k])
    csv = data_dir / "metadata.csv"
    if csv.is_file():
        import pandas as pd
        df = pd.read_csv(csv)
        if "id" in df.columns:
            row = df[df["id"].astype(str) == sample_id]
            for k in keys:
                if len(row) and k in row.columns and not pd.isna(row[k].iloc[0]):
                    return float(row[k].iloc[0])
    return None


def patch_centres(top_left: np.ndarray, patch_px: int, pixel_size_um: float | None,
                  target_pixel_um: float = HEST_TARGET_PIXEL_UM) -> np.ndarray:
    """Spot centres (full-res px) from HEST patch top-left corners (inverse of HEST's patcher)."""
    size_src = patch_px * (target_pixel_um / pixel_size_um) if pixel_size_um else float(patch_px)
    return np.asarray(top_left, dtype=np.float64)[:, :2] + (size_src // 2)


def _decode(barcodes: np.ndarray) -> np.ndarray:
    flat = np.asarray(barcodes).reshape(len(barcodes), -1)[:, 0]
    return np.array([b.decode() if isinstance(b, bytes) else str(b) for b in flat], dtype=object)


def read_feature_cache(path: str | os.PathLike) -> dict[str, Any]:
    """Read a feature-cache file: features (N, D) float32, barcodes (N,) str, coords (N, 2), attrs."""
    with h5py.File(path, "r") as f:
        return {
            "features": f["features"][:].astype(np.float32, copy=False),
            "barcodes": _decode(f["barcodes"][:]).astype(str),
            "coords": f["coords"][:],
            "attrs": {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()},
        }


def cache_is_current(path: Path, backbone: str, version: str, barcodes: np.ndarray | None = None) -> bool:
    """True if ``path`` is a complete cache for this backbone/version (and these barcodes)."""
    if not path.is_file():
        return False
    try:
        with h5py.File(path, "r") as f:
            a = f.attrs
            ok = (a.get("backbone") == backbone and a.get("backbone_version") == version
                  and int(a.get("feature_dim", -1)) == BACKBONES[backbone].feature_dim
                  and bool(a.get("complete", False))
                  and f["features"].shape == (f["barcodes"].shape[0], BACKBONES[backbone].feature_dim))
            if ok and barcodes is not None:
                ok = np.array_equal(_decode(f["barcodes"][:]), barcodes)
            return bool(ok)
    except (OSError, KeyError, ValueError):
        return False


# --------------------------------------------------------------------------------------------
# Extraction
# --------------------------------------------------------------------------------------------
def _dtype_name(device: torch.device, amp: bool) -> str:
    """The precision features are computed in, as recorded in the cache: float32, bfloat16 or float16."""
    return str(autocast_dtype(device, amp) or torch.float32).replace("torch.", "")


def _batches(n: int, batch_size: int) -> Iterable[tuple[int, int]]:
    for start in range(0, n, batch_size):
        yield start, min(n, start + batch_size)


@torch.inference_mode()
def _embed_dataset(model: Backbone, img: h5py.Dataset, batch_size: int, device: torch.device,
                   amp: bool, progress: bool, desc: str) -> tuple[np.ndarray, str]:
    from tqdm.auto import tqdm

    n = img.shape[0]
    out = np.empty((n, model.feature_dim), dtype=np.float32)
    ctx, dtype_name = autocast(device, amp), _dtype_name(device, amp)
    spans = list(_batches(n, batch_size))
    read = lambda s: img[s[0]:s[1]]  # noqa: E731
    with ThreadPoolExecutor(max_workers=1) as pool, \
            tqdm(total=n, desc=desc, unit="patch", disable=not progress, leave=False) as bar:
        nxt = pool.submit(read, spans[0]) if spans else None
        for i, (a, b) in enumerate(spans):
            batch = nxt.result()
            nxt = pool.submit(read, spans[i + 1]) if i + 1 < len(spans) else None  # prefetch
            x = torch.from_numpy(np.ascontiguousarray(batch))
            if device.type == "cuda":
                x = x.pin_memory()
            with ctx:
                feats = model(model.transform(x))
            out[a:b] = feats.float().cpu().numpy()
            bar.update(b - a)
    return out, dtype_name


def extract_features(data_dir: str | os.PathLike, sample_id: str, backbone: str | Backbone,
                     weights: str | os.PathLike | None = None, batch_size: int = 64,
                     device: str | torch.device = "auto", out: str | os.PathLike | None = None,
                     pretrained: bool = True, overwrite: bool = False, amp: bool = True,
                     progress: bool = True) -> Path:
    """Extract one sample's patch features into the cache and return the cache file.

    ``backbone`` is a name from ``BACKBONES`` or an already built ``Backbone`` (reused across
    samples). ``out`` overrides the cache file path. Skips (returns the path) when the cache is
    already complete for this backbone and weights version, unless ``overwrite``.
    """
    data_dir = Path(data_dir)
    name = backbone.name if isinstance(backbone, Backbone) else backbone
    BACKBONES[name]  # an unknown name raises, naming the registered backbones
    src = data_dir / "patches" / f"{sample_id}.h5"
    if not src.is_file():
        raise FileNotFoundError(f"extract_features: no patches file {src}")
    version = backbone.version if isinstance(backbone, Backbone) else weights_version(name, weights, pretrained)
    dst = Path(out) if out is not None else cache_path(data_dir, name, sample_id)

    with h5py.File(src, "r") as f:
        for key in ("img", "barcode", "coords"):
            if key not in f:
                raise KeyError(f"{src}: dataset '{key}' missing (HEST patches need img, barcode, coords)")
        barcodes = _decode(f["barcode"][:])
        if not overwrite and cache_is_current(dst, name, version, barcodes):
            return dst
        img = f["img"]
        if img.ndim != 4 or img.shape[-1] != 3 or img.dtype != np.uint8:
            raise ValueError(f"{src}: img must be (N, H, W, 3) uint8, got {img.shape} {img.dtype}")
        if not (len(barcodes) == img.shape[0] == f["coords"].shape[0]):
            raise ValueError(f"{src}: img, barcode and coords lengths differ "
                             f"({img.shape[0]}, {len(barcodes)}, {f['coords'].shape[0]})")
        px = sample_pixel_size(data_dir, sample_id)
        centres = patch_centres(f["coords"][:], img.shape[1], px)
        model = backbone if isinstance(backbone, Backbone) else get_backbone(name, weights=weights,
                                                                              pretrained=pretrained)
        dev = resolve_device(device)
        model = model.to(dev)
        t0 = time.perf_counter()
        feats, dtype_name = _embed_dataset(model, img, batch_size, dev, amp, progress, desc=f"{name} {sample_id}")
        seconds = time.perf_counter() - t0
        patch_px = int(img.shape[1])

    if not np.isfinite(feats).all():
        raise FloatingPointError(f"{name} {sample_id}: non-finite features (precision {dtype_name})")
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.tmp-{os.getpid()}")
    try:
        with h5py.File(tmp, "w") as g:
            g.create_dataset("features", data=feats, dtype=np.float32)
            width = max(1, max((len(b.encode()) for b in barcodes), default=1))
            g.create_dataset("barcodes", data=np.array([b.encode() for b in barcodes], dtype=f"S{width}"))
            g.create_dataset("coords", data=centres)
            attrs = {
                "backbone": name, "backbone_version": version, "feature_dim": int(model.feature_dim),
                "sample_id": sample_id, "n_spots": int(len(barcodes)), "complete": True,
                "coords_definition": "spot centres, full-resolution pixels (x, y) = patch top-left + patch_size_src // 2",
                "pixel_size_um": float(px) if px else float("nan"), "patch_px": patch_px,
                "input_size": int(model.input_size), "mean": list(model.normalization["mean"]),
                "std": list(model.normalization["std"]), "timm_name": model.spec.timm_name,
                "precision": dtype_name, "device": dev.type, "seconds": float(seconds),
                "stflib_version": __version__, "source": str(src.name),
                # explicit, so no reader mistakes a test cache for a foundation model's features
                "random_weights": version == "random-init",
            }
            for k, v in attrs.items():
                g.attrs[k] = v
        os.replace(tmp, dst)
    finally:
        if tmp.exists():
            tmp.unlink()
    return dst


def extract_cohort(data_dir: str | os.PathLike, backbone: str, samples: Sequence[str] | None = None,
                   weights: str | os.PathLike | None = None, pretrained: bool = True, batch_size: int = 64,
                   device: str | torch.device = "auto", overwrite: bool = False, amp: bool = True,
                   progress: bool = True, log=print) -> dict[str, str]:
    """Extract every sample (or ``samples``); builds the backbone once, only if some sample needs it.

    Returns sample id -> 'written' or 'skipped'.
    """
    data_dir = Path(data_dir)
    ids = list(samples) if samples else list_samples(data_dir)
    if not ids:
        raise FileNotFoundError(f"extract-features: no samples (no {data_dir / 'patches'}/*.h5)")
    version = weights_version(backbone, weights, pretrained)
    todo = []
    for sid in ids:
        src = data_dir / "patches" / f"{sid}.h5"
        if not src.is_file():
            raise FileNotFoundError(f"extract-features: no patches file {src}")
        with h5py.File(src, "r") as f:
            barcodes = _decode(f["barcode"][:])
        if overwrite or not cache_is_current(cache_path(data_dir, backbone, sid), backbone, version, barcodes):
            todo.append(sid)
    status = {sid: "skipped" for sid in ids if sid not in todo}
    if todo:
        model = get_backbone(backbone, weights=weights, pretrained=pretrained)
        from tqdm.auto import tqdm
        for sid in tqdm(todo, desc=f"{backbone} samples", unit="sample", disable=not progress or len(todo) < 2):
            extract_features(data_dir, sid, model, batch_size=batch_size, device=device,
                             overwrite=True, amp=amp, progress=progress)
            status[sid] = "written"
    if log:
        n_w = sum(v == "written" for v in status.values())
        log(f"extract-features: {backbone} ({version[:23]}): {n_w} written, {len(status) - n_w} up to date "
            f"-> {data_dir / 'features' / backbone}")
    return {sid: status[sid] for sid in ids}


# --------------------------------------------------------------------------------------------
# CLI: extract-features
# --------------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", required=True, help="HEST-layout folder (patches/<id>.h5)")
    parser.add_argument("--backbone", required=True, choices=list(BACKBONES), help="encoder name")
    parser.add_argument("--weights", default=None,
                        help="weights file or folder (default: $STFLIB_WEIGHTS_DIR/<name>/ or ~/.cache/stflib/weights/<name>/)")
    parser.add_argument("--samples", nargs="+", default=None, help="sample ids (default: all in patches/)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:1, ...")
    parser.add_argument("--random-init", "--random-weights", action="store_true", dest="random_init",
                        help="random weights instead of pretrained ones (tests, demos, the simulator); the feature "
                             "file says so (attrs random_weights=True, backbone_version='random-init')")
    parser.add_argument("--overwrite", action="store_true", help="recompute even if the cache is current")
    parser.add_argument("--no-amp", action="store_true", help="fp32 on CUDA (default: bf16/fp16 autocast)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    try:
        extract_cohort(args.data_dir, args.backbone, samples=args.samples, weights=args.weights,
                       pretrained=not args.random_init, batch_size=args.batch_size, device=args.device,
                       overwrite=args.overwrite, amp=not args.no_amp, progress=not args.no_progress)
    except (WeightsError, FileNotFoundError, ValueError) as exc:
        print(f"extract-features: error: {exc}", file=sys.stderr)
        return 2
    return 0


# --------------------------------------------------------------------------------------------
# Benchmark: python -m stflib bench backbones
# --------------------------------------------------------------------------------------------
CPU_BENCH_DEFAULT = ("resnet50", "ctranspath", "phikon", "hibou-b")


@torch.inference_mode()
def benchmark_backbones(names: Sequence[str] | None = None, devices: Sequence[str] = ("cpu",),
                        batch_size: int | None = None, n_patches: int | None = None,
                        amp: bool = True, seed: int = 0) -> list[dict]:
    """Patches/s of each backbone (random weights, uint8 224 px patches incl. normalisation)."""
    rows = []
    rng = np.random.default_rng(seed)
    for dev_name in devices:
        dev = resolve_device(dev_name)
        names_d = list(names) if names else (list(CPU_BENCH_DEFAULT) if dev.type == "cpu" else list(BACKBONES))
        bs = batch_size or (16 if dev.type == "cpu" else 128)
        n = n_patches or (2 * bs if dev.type == "cpu" else 8 * bs)
        patches = torch.from_numpy(rng.integers(0, 256, (bs, 224, 224, 3), dtype=np.uint8))
        for name in names_d:
            model = get_backbone(name, pretrained=False, seed=seed, device=dev)
            ctx, dtype_name = autocast(dev, amp), _dtype_name(dev, amp)
            x = patches.pin_memory() if dev.type == "cuda" else patches
            with ctx:
                model(model.transform(x))  # warm-up
                if dev.type == "cuda":
                    torch.cuda.synchronize(dev)
                t0 = time.perf_counter()
                done = 0
                while done < n:
                    model(model.transform(x))
                    done += bs
                if dev.type == "cuda":
                    torch.cuda.synchronize(dev)
            dt = time.perf_counter() - t0
            rows.append({"backbone": name, "device": dev.type if dev.type == "cpu" else torch.cuda.get_device_name(dev),
                         "precision": dtype_name, "batch_size": bs, "patches": done,
                         "seconds": dt, "patches_per_s": done / dt,
                         "params_M": sum(p.numel() for p in model.parameters()) / 1e6,
                         "threads": torch.get_num_threads()})
            del model
            if dev.type == "cuda":
                torch.cuda.empty_cache()
    return rows


def add_benchmark_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backbones", nargs="+", default=None, choices=list(BACKBONES),
                        help=f"default: {' '.join(CPU_BENCH_DEFAULT)} on CPU, all on CUDA")
    parser.add_argument("--device", default="all", help="all (CPU, and CUDA when present), cpu, cuda")
    parser.add_argument("--batch-size", type=int, default=None, help="default 16 on CPU, 128 on CUDA")
    parser.add_argument("--n-patches", type=int, default=None, help="patches timed per backbone")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--no-amp", action="store_true", help="fp32 on CUDA")


def run_benchmark(args: argparse.Namespace) -> int:
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    dev = getattr(args, "device", "all")
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else []) if dev == "all" else [dev]
    rows = benchmark_backbones(getattr(args, "backbones", None), devices, getattr(args, "batch_size", None),
                               getattr(args, "n_patches", None), amp=not getattr(args, "no_amp", False))
    print(f"{'backbone':<11} {'device':<24} {'precision':<9} {'batch':>5} {'params(M)':>9} {'patches/s':>10}")
    for r in rows:
        print(f"{r['backbone']:<11} {r['device'][:24]:<24} {r['precision']:<9} {r['batch_size']:>5} "
              f"{r['params_M']:>9.1f} {r['patches_per_s']:>10.1f}")
    if not torch.cuda.is_available():
        print(f"(CPU only: {torch.get_num_threads()} torch threads; no CUDA device here)")
    return 0
