"""Feature extraction into the feature cache: layout, alignment, resumability, CLI, real H&E smoke test."""
from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from stflib import features as Fe
from stflib.backbones import BACKBONES, Backbone, WeightsError, get_backbone

torch.set_num_threads(min(2, torch.get_num_threads()))
from conftest import SHARED  # noqa: E402  (the reference data: $STFLIB_DATA or ../shared/data)
MOUSE = SHARED / "real_st" / "squidpy_mouse_brain"


@pytest.fixture(autouse=True)
def _isolated_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("STFLIB_WEIGHTS_DIR", str(tmp_path / "weights_root"))


@pytest.fixture(scope="module")
def resnet():
    return get_backbone("resnet50", pretrained=False, seed=0)


def write_patches(root: Path, sample_id: str, img: np.ndarray, barcodes, top_left: np.ndarray,
                  pixel_size_um: float | None = None) -> Path:
    """A HEST-layout patches file (and metadata json) as HEST's dump_patches writes it."""
    (root / "patches").mkdir(parents=True, exist_ok=True)
    path = root / "patches" / f"{sample_id}.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("img", data=img)
        f.create_dataset("barcode", data=np.array([[b.encode()] for b in barcodes]))
        f.create_dataset("coords", data=np.asarray(top_left, dtype=np.int64))
    if pixel_size_um is not None:
        (root / "metadata").mkdir(exist_ok=True)
        (root / "metadata" / f"{sample_id}.json").write_text(json.dumps({"pixel_size_um_estimated": pixel_size_um}))
    return path


def synthetic_sample(root: Path, sample_id="SIM0", n=5, seed=0, pixel_size_um=0.25):
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (n, 224, 224, 3), dtype=np.uint8)
    barcodes = [f"ACGT{i:04d}-1" for i in range(n)]
    tl = rng.integers(0, 10_000, (n, 2))
    write_patches(root, sample_id, img, barcodes, tl, pixel_size_um)
    return img, barcodes, tl


def test_cache_layout_alignment_and_readback(tmp_path, resnet):
    img, barcodes, tl = synthetic_sample(tmp_path)
    out = Fe.extract_features(tmp_path, "SIM0", resnet, batch_size=2, progress=False)
    assert out == tmp_path / "features" / "resnet50" / "SIM0.h5"
    with h5py.File(out, "r") as f:
        assert f["features"].dtype == np.float32 and f["features"].shape == (5, 2048)
        assert f["barcodes"].shape == (5,) and f["barcodes"].dtype.kind == "S"
        assert f["coords"].shape == (5, 2)
        assert f.attrs["backbone"] == "resnet50" and f.attrs["feature_dim"] == 2048
        assert f.attrs["backbone_version"] == "random-init"
        assert bool(f.attrs["random_weights"]) is True  # flagged, not only implied by the version
    cache = Fe.read_feature_cache(out)
    assert list(cache["barcodes"]) == barcodes
    # 0.25 um/px: HEST patch covers 224 * 0.5 / 0.25 = 448 full-res px, centre = top-left + 224
    np.testing.assert_allclose(cache["coords"], tl + 224)
    # rows are the patches, in order (batching does not reorder)
    direct = resnet.embed(img).numpy()
    np.testing.assert_allclose(cache["features"], direct, rtol=1e-4, atol=1e-5)


def test_patch_centres_follow_hest():
    tl = np.array([[100, 200]])
    # HEST: patch_size_src = 224 * 0.5 / px, top_left = int(centre - patch_size_src // 2)
    for px, centre in ((0.5, (212, 312)), (0.2738, (304, 404)), (None, (212, 312))):
        size_src = 224 * 0.5 / px if px else 224
        np.testing.assert_allclose(Fe.patch_centres(tl, 224, px), [centre])
        assert centre[0] - size_src // 2 == 100


def test_resumable_and_version_aware(tmp_path, resnet, monkeypatch):
    synthetic_sample(tmp_path, "A", n=3)
    synthetic_sample(tmp_path, "B", n=2, seed=1)
    st = Fe.extract_cohort(tmp_path, "resnet50", pretrained=False, batch_size=4, progress=False, log=None)
    assert st == {"A": "written", "B": "written"}
    path_a = Fe.cache_path(tmp_path, "resnet50", "A")
    mtime = path_a.stat().st_mtime_ns

    def boom(*a, **k):
        raise AssertionError("backbone built although every cache is current")

    monkeypatch.setattr(Fe, "get_backbone", boom)
    st = Fe.extract_cohort(tmp_path, "resnet50", pretrained=False, progress=False, log=None)
    assert st == {"A": "skipped", "B": "skipped"} and path_a.stat().st_mtime_ns == mtime
    assert Fe.extract_features(tmp_path, "A", resnet, progress=False) == path_a
    assert path_a.stat().st_mtime_ns == mtime
    monkeypatch.undo()
    # different weights -> different version -> recomputed
    weights = tmp_path / "w" / "model.safetensors"
    weights.parent.mkdir()
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in resnet.model.state_dict().items()}, str(weights))
    st = Fe.extract_cohort(tmp_path, "resnet50", samples=["A"], weights=weights, progress=False, log=None)
    assert st == {"A": "written"}
    assert Fe.read_feature_cache(path_a)["attrs"]["backbone_version"].startswith("sha256:")
    # an incomplete / foreign file is not trusted
    path_b = Fe.cache_path(tmp_path, "resnet50", "B")
    with h5py.File(path_b, "a") as f:
        f.attrs["complete"] = False
    assert not Fe.cache_is_current(path_b, "resnet50", "random-init")


def test_interrupted_extraction_leaves_no_cache(tmp_path, monkeypatch):
    synthetic_sample(tmp_path, "X", n=3)

    class Broken(Backbone):
        def forward(self, x):
            raise KeyboardInterrupt

    bb = get_backbone("resnet50", pretrained=False)
    broken = Broken(bb.spec, bb.model, bb.version)
    with pytest.raises(KeyboardInterrupt):
        Fe.extract_features(tmp_path, "X", broken, progress=False)
    folder = tmp_path / "features" / "resnet50"
    assert not list(folder.glob("*")) if folder.exists() else True


def test_cli_extract_features(tmp_path, capsys):
    from stflib.cli import main

    synthetic_sample(tmp_path, "C", n=2)
    rc = main(["extract-features", "--data-dir", str(tmp_path), "--backbone", "resnet50", "--random-init",
               "--batch-size", "2", "--no-progress"])
    assert rc == 0
    assert Fe.read_feature_cache(Fe.cache_path(tmp_path, "resnet50", "C"))["features"].shape == (2, 2048)
    rc = main(["extract-features", "--data-dir", str(tmp_path), "--backbone", "phikon", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "no pretrained weights" in err and "owkin/phikon" in err


def test_cache_is_read_by_the_data_reader(tmp_path, resnet):
    """The training side reads the cache by barcode."""
    import anndata
    import scipy.sparse as sp

    from stflib import data

    img, barcodes, tl = synthetic_sample(tmp_path, "R", n=4, pixel_size_um=0.5)
    (tmp_path / "st").mkdir()
    order = [2, 0, 3, 1]  # st spots in another order than the patches
    a = anndata.AnnData(X=sp.csr_matrix(np.ones((4, 3), np.float32)))
    a.obs_names = [barcodes[i] for i in order]
    a.var_names = ["G1", "G2", "G3"]
    a.obsm["spatial"] = (tl + 112).astype(float)[order]
    a.write_h5ad(tmp_path / "st" / "R.h5ad")
    Fe.extract_features(tmp_path, "R", resnet, progress=False)
    s = data.read_hest_sample(tmp_path, "R", backbone="resnet50")
    cache = Fe.read_feature_cache(Fe.cache_path(tmp_path, "resnet50", "R"))
    idx = {b: i for i, b in enumerate(cache["barcodes"])}
    np.testing.assert_allclose(s.features, cache["features"][[idx[b] for b in s.barcodes]])


@pytest.mark.slow
@pytest.mark.skipif(not MOUSE.is_dir(), reason=f"reference data absent: {MOUSE}")
def test_real_he_smoke_resnet50_random(tmp_path):
    """Real Visium H&E: 112 um patches at the real spot centres, resized to 224, through resnet50."""
    import anndata
    from PIL import Image

    a = anndata.read_h5ad(MOUSE / "test_data.h5ad")
    image = np.asarray(Image.open(MOUSE / "test_img.jpg").convert("RGB"))
    px_um = 0.73                                   # ~0.73 um/px (spot pitch ~137 px = 100 um)
    size_src = 224 * 0.5 / px_um                   # 112 um = ~153 px
    centres = np.asarray(a.obsm["spatial"], dtype=float)
    top_left = (centres - size_src // 2).astype(int)
    side = int(round(size_src))
    padded = np.pad(image, ((side, side), (side, side), (0, 0)), constant_values=255)  # spots near the border
    crops = [padded[y + side:y + 2 * side, x + side:x + 2 * side] for x, y in top_left]
    patches = np.stack([np.asarray(Image.fromarray(c).resize((224, 224), Image.BILINEAR)) for c in crops])
    assert patches.shape == (a.n_obs, 224, 224, 3) and patches.std() > 10  # real tissue, not blank
    write_patches(tmp_path, "MOUSE", patches, list(a.obs_names), top_left, pixel_size_um=px_um)

    bb = get_backbone("resnet50", pretrained=False, seed=0)
    out = Fe.extract_features(tmp_path, "MOUSE", bb, batch_size=16, progress=False)
    c1 = Fe.read_feature_cache(out)
    assert c1["features"].shape == (49, 2048) and np.isfinite(c1["features"]).all()
    assert list(c1["barcodes"]) == list(a.obs_names)              # aligned to the spots
    assert np.abs(c1["coords"] - centres).max() < 1.0              # back at the real spot centres
    assert c1["features"].std(axis=0).mean() > 0                   # spots differ
    # deterministic and aligned: a fresh seeded model embedding spots 17, 3, 40 alone gives rows 17, 3, 40
    bb2 = get_backbone("resnet50", pretrained=False, seed=0)
    rows = [17, 3, 40]
    np.testing.assert_allclose(bb2.embed(patches[rows]).numpy(), c1["features"][rows], rtol=1e-4, atol=1e-5)
    assert Fe.extract_features(tmp_path, "MOUSE", "resnet50", pretrained=False, progress=False) == out  # cached


def test_benchmark_prints_patches_per_second(capsys):
    import argparse

    p = argparse.ArgumentParser()
    Fe.add_benchmark_arguments(p)
    args = p.parse_args(["--backbones", "resnet50", "--device", "cpu", "--batch-size", "2", "--n-patches", "2"])
    assert Fe.run_benchmark(args) == 0
    out = capsys.readouterr().out
    assert "patches/s" in out and "resnet50" in out


def test_unknown_backbone_and_missing_patches(tmp_path):
    with pytest.raises(ValueError, match="allowed: resnet50"):
        Fe.extract_features(tmp_path, "S", "resnet-50")
    with pytest.raises(FileNotFoundError, match="patches"):
        Fe.extract_cohort(tmp_path, "resnet50", pretrained=False, log=None)
    assert set(BACKBONES) >= {"resnet50"}
    assert isinstance(WeightsError("x"), RuntimeError)
    assert os.fspath(Fe.cache_path(tmp_path, "phikon", "S")).endswith(os.path.join("features", "phikon", "S.h5"))
