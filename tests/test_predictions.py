"""predictions.h5ad in scanpy/squidpy's Visium conventions, and Moran's I of predicted vs measured maps."""
from __future__ import annotations

from types import SimpleNamespace

import h5py
import numpy as np
import pandas as pd
import pytest

from stflib import metrics as M
from stflib import predictions as P

PATCH_PX = 224
PIXEL_SIZE_UM = 0.5
PITCH_PX = 200  # 100 um Visium pitch at 0.5 um/px
TISSUE_RGB = (180, 60, 170)  # every patch is this colour: the thumbnail must be it under each spot


def hex_grid(rows: int, cols: int, offset=(3000.0, 5000.0)) -> np.ndarray:
    """Spot centres (x, y) of a Visium-like hexagonal grid, full-resolution pixels."""
    xy = [(c * PITCH_PX + (r % 2) * PITCH_PX / 2, r * PITCH_PX * np.sqrt(3) / 2) for r in range(rows) for c in range(cols)]
    return np.asarray(xy) + np.asarray(offset)


def write_patches(path, centres: np.ndarray) -> None:
    """A HEST patch file: img (N, 224, 224, 3) uint8, coords the patches' top-left corners."""
    img = np.empty((len(centres), PATCH_PX, PATCH_PX, 3), np.uint8)
    img[:] = TISSUE_RGB
    with h5py.File(path, "w") as f:
        f.create_dataset("img", data=img, chunks=(1, PATCH_PX, PATCH_PX, 3))
        f.create_dataset("coords", data=np.round(centres - PATCH_PX / 2).astype(np.int64))
        f.create_dataset("barcode", data=np.array([[f"b{i}".encode()] for i in range(len(centres))]))


def fake_run(tmp_path, n_genes: int = 6):
    """A ``train.Run`` stand-in with two held-out slides whose patches exist on disk."""
    (tmp_path / "patches").mkdir()
    rng = np.random.default_rng(0)
    genes = [f"G{i}" for i in range(n_genes)]
    samples, preds, items = {}, [], {}
    for k, sid in enumerate(["S1", "S2"]):
        coords = hex_grid(6 + k, 7, offset=(3000.0 + 1000 * k, 5000.0))
        write_patches(tmp_path / "patches" / f"{sid}.h5", coords)
        n = len(coords)
        samples[sid] = SimpleNamespace(sample_id=sid, barcodes=np.array([f"b{i}" for i in range(n)]), coords=coords,
                                       pixel_size_um=PIXEL_SIZE_UM, metadata={"spot_diameter": 55.0})
        true = rng.normal(size=(n, n_genes)).astype(np.float32)
        preds.append({"sample_id": sid, "pred": true + 0.1, "true": true, "valid": np.ones(n, bool),
                      "pathway_scores": None})
        items[sid] = {}
    fold = SimpleNamespace(root=tmp_path, samples=samples, genes=genes, hvg=genes[:4], items=items,
                           truth_pathway_names=None)
    per_gene = pd.DataFrame({"gene": genes, "pcc": np.linspace(0, 1, n_genes)})
    return SimpleNamespace(fold=fold, predictions=preds, per_gene=per_gene, model=object(), metrics={"config_hash": "x"})


@pytest.fixture()
def adata(tmp_path):
    import anndata as ad

    a = P.predictions_anndata(fake_run(tmp_path))
    a.write_h5ad(tmp_path / "predictions.h5ad")
    return ad.read_h5ad(tmp_path / "predictions.h5ad")  # what a user opens


def test_visium_conventions_as_sc_pl_spatial_reads_them(adata):
    """What ``sc.pl.spatial(adata, library_id=lib, img_key='lowres')`` reads, checked without scanpy."""
    assert isinstance(adata.obs["library_id"].dtype, pd.CategoricalDtype)
    assert list(adata.obs["library_id"].cat.categories) == ["S1", "S2"] == sorted(adata.uns["spatial"])
    for lib, entry in adata.uns["spatial"].items():
        image = entry["images"]["lowres"]
        scale = entry["scalefactors"]
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3 and max(image.shape) <= P.THUMBNAIL_MAX_PX
        assert scale["spot_diameter_fullres"] == pytest.approx(55.0 / PIXEL_SIZE_UM)
        xy = adata.obsm["spatial"][(adata.obs["library_id"] == lib).to_numpy()]
        px = np.round(xy * scale["tissue_lowres_scalef"]).astype(int)
        assert (px >= 0).all() and (px[:, 0] < image.shape[1]).all() and (px[:, 1] < image.shape[0]).all()
        # scanpy draws each spot at xy * scalef on the image: there must be the slide's tissue, not glass
        assert (image[px[:, 1], px[:, 0]] == TISSUE_RGB).all()
        assert (image[0, 0] == 255).all()  # glass outside the patches is white
        assert entry["metadata"]["source_image"].startswith("mosaic")


def test_spot_diameter_without_pixel_size_comes_from_the_pitch():
    coords = hex_grid(4, 4)
    assert P.spot_diameter_fullres(coords, float("nan")) == pytest.approx(PITCH_PX * 0.55)
    with pytest.raises(ValueError, match="fewer than 2 spots"):
        P.spot_diameter_fullres(coords[:1], float("nan"))


def test_hest_thumbnail_is_preferred_to_the_mosaic(tmp_path):
    from PIL import Image

    (tmp_path / "thumbnails").mkdir()
    Image.new("RGB", (1200, 800), (10, 20, 30)).save(tmp_path / "thumbnails" / "S1_downscaled_fullres.jpeg")
    image, scalef = P.hest_thumbnail(tmp_path, "S1", {"fullres_px_width": 24000})
    assert image.shape == (400, 600, 3) and scalef == pytest.approx(600 / 24000)
    assert P.hest_thumbnail(tmp_path, "S1", {}) is None  # no full-resolution width: the scale is unknown


def test_scanpy_spatial_plot_runs_on_predictions(adata):
    sc = pytest.importorskip("scanpy")
    import matplotlib

    matplotlib.use("Agg")
    lib = "S2"
    ax = sc.pl.spatial(adata[adata.obs["library_id"] == lib], library_id=lib, color="G0", show=False)
    assert ax and ax[0].images  # the slide thumbnail is drawn under the spots


def test_squidpy_moran_matches_ours(adata):
    sq = pytest.importorskip("squidpy")
    lib = adata[adata.obs["library_id"] == "S1"].copy()
    sq.gr.spatial_neighbors(lib)  # Visium grid graph from uns['spatial']
    sq.gr.spatial_autocorr(lib, mode="moran", genes=list(lib.var_names), n_perms=None, transformation=False)
    ours = M.morans_i(lib.X, lib.obsp["spatial_connectivities"])
    np.testing.assert_allclose(lib.uns["moranI"].loc[list(lib.var_names), "I"].to_numpy(), ours, rtol=1e-6)


# ------------------------------------------------------------------------------------------- Moran's I
def test_morans_i_by_hand():
    # points 0, 1, 3, 6 on a line, k=1: edges 0-1, 1-3, 3-6 (a chain); values 1..4:
    # z = -1.5, -0.5, 0.5, 1.5; sum z^2 = 5; sum_ij w z_i z_j = 2 (0.75 - 0.25 + 0.75) = 2.5; sum w = 6
    coords = np.array([[0.0, 0], [1, 0], [3, 0], [6, 0]])
    w = M.spatial_weights(coords, k=1)
    assert w.sum() == 6 and (w != w.T).nnz == 0
    values = np.array([[1.0, 5.0], [2, 5], [3, 5], [4, 5]])
    i = M.morans_i(values, w)
    assert i[0] == pytest.approx(4 / 6 * 2.5 / 5) and np.isnan(i[1])  # a constant map has no I


def test_morans_i_orders_smooth_random_and_alternating_maps():
    coords = hex_grid(12, 12)
    w = M.spatial_weights(coords, k=6)
    assert np.median(np.asarray(w.sum(1)).ravel()) == 6  # interior spots: the hexagonal ring
    rng = np.random.default_rng(1)
    smooth = coords[:, 0] + coords[:, 1]
    rows = np.round((coords[:, 1] - coords[:, 1].min()) / (PITCH_PX * np.sqrt(3) / 2)).astype(int)
    alternating = (rows % 2) * 2.0 - 1  # every other row: neighbours across rows disagree
    i_smooth, i_random, i_alt = M.morans_i(np.c_[smooth, rng.normal(size=len(coords)), alternating], w)
    assert i_smooth > 0.8 and abs(i_random) < 0.1 and i_alt < -0.2


def test_moran_summary_reads_smoother_predictions_and_the_rank():
    rng = np.random.default_rng(2)
    coords = hex_grid(10, 10)
    w = M.spatial_weights(coords)
    base = rng.normal(size=(len(coords), 8))
    # gene g: a smooth gradient with weight g plus noise, so the true I rises with g
    trend = (coords[:, 0] - coords[:, 0].mean())[:, None] / 800.0
    true = base + trend * np.arange(8)
    summary = M.moran_summary(true, true, coords, np.zeros(len(coords)))
    assert summary["moran_rank_spearman"] == pytest.approx(1.0)
    assert summary["moran_i_pred_median"] == summary["moran_i_true_median"]
    smoothed = np.asarray(w @ true) / np.asarray(w.sum(1))  # neighbour average: smoother than the tissue
    s = M.moran_summary(smoothed, true, coords, np.zeros(len(coords)))
    assert s["moran_i_pred_median"] > s["moran_i_true_median"]


def test_moran_metrics_from_the_predictions_file(adata):
    m = P.moran_metrics(adata)
    assert set(m) == {"moran_i_pred_median", "moran_i_true_median", "moran_rank_spearman"}
    # predictions = truth + a constant: the same maps, the same I, the same ranking
    assert m["moran_i_pred_median"] == pytest.approx(m["moran_i_true_median"])
    assert m["moran_rank_spearman"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="genes not in the predictions: \\['NOPE'\\]"):
        P.moran_metrics(adata, genes=["NOPE"])


def test_collect_carries_the_moran_columns(tmp_path):
    import json

    from stflib.grid import collect as A

    run = tmp_path / "demo" / "arm" / "fold0"
    run.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"axis": "demo", "arm": "arm", "fold": 0, "status": "ok"}))
    (run / "metrics.json").write_text(json.dumps({"pcc_hvg50": 0.3, "moran_i_pred_median": 0.39,
                                                  "moran_i_true_median": 0.29, "moran_rank_spearman": 0.16}))
    row = A.collect(tmp_path).iloc[0]
    assert (row["moran_i_pred_median"], row["moran_i_true_median"], row["moran_rank_spearman"]) == (0.39, 0.29, 0.16)
    by_arm = A.summarise(A.collect(tmp_path))
    assert by_arm["moran_rank_spearman_mean"].item() == pytest.approx(0.16)


def test_grid_writes_the_hvg_subset_with_its_thumbnails(tmp_path):
    import anndata as ad

    from stflib import train
    from stflib.config import RunConfig

    run = fake_run(tmp_path)
    run.history, run.adata = [], P.predictions_anndata(run)
    run.config = RunConfig(prediction_genes="hvg50")  # what the grid runner passes
    train.write_artefacts(run, tmp_path / "out")
    written = ad.read_h5ad(tmp_path / "out" / "predictions.h5ad")
    assert list(written.var_names) == run.fold.hvg and written.var["is_hvg"].all()
    assert sorted(written.uns["spatial"]) == ["S1", "S2"]
    assert written.uns["spatial"]["S1"]["images"]["lowres"].shape == run.adata.uns["spatial"]["S1"]["images"]["lowres"].shape
