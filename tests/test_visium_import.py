"""import-visium: Space Ranger folders and AnnData sections -> one HEST-1k sample; real files from
../shared/data/real_st when present, generated Space Ranger folders otherwise."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from conftest import SHARED
from stflib.data import read_hest_sample
from stflib.data.visium import import_visium, read_spaceranger

REAL = SHARED / "real_st"
needs_real = pytest.mark.skipif(not REAL.is_dir(), reason=f"real Visium test data not found at {REAL}")


def write_spaceranger(folder: Path, n: int = 12, pitch_px: float = 200.0, diameter_px: float = 130.0,
                      image_scale: float = 0.5, symbols: bool = True, seed: int = 0, n_extra_genes: int = 0) -> dict:
    """A Space Ranger-style folder on a hexagonal grid, and an image at ``image_scale`` with a coloured
    disc at each spot centre (its colour encodes the spot index), so patch alignment can be checked."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    spatial = folder / "spatial"
    spatial.mkdir(parents=True)
    rows, cols = np.divmod(np.arange(n), 4)
    x = 1000 + cols * pitch_px + (rows % 2) * pitch_px / 2
    y = 1000 + rows * pitch_px * np.sqrt(3) / 2
    barcodes = [f"AAAC{i:04d}-1" for i in range(n)]
    extra = [f"TTTG{i:04d}-1" for i in range(5)]  # positions of spots off the tissue (not in the matrix)
    pos = pd.DataFrame({"barcode": barcodes + extra, "in_tissue": [1] * n + [0] * 5,
                        "array_row": list(rows) + [40] * 5, "array_col": list(cols) + [40] * 5,
                        "pxl_row_in_fullres": list(y.astype(int)) + [50] * 5,
                        "pxl_col_in_fullres": list(x.astype(int)) + [50] * 5})
    pos.to_csv(spatial / "tissue_positions_list.csv", header=False, index=False)
    (spatial / "scalefactors_json.json").write_text(json.dumps(
        {"spot_diameter_fullres": diameter_px, "tissue_hires_scalef": image_scale, "tissue_lowres_scalef": image_scale / 4,
         "fiducial_diameter_fullres": diameter_px * 1.6}))
    size = int((x.max() + 1000) * image_scale)
    img = np.full((size, size, 3), 240, np.uint8)
    yy, xx = np.mgrid[:size, :size]
    for i in range(n):
        cx, cy = int(x[i]) * image_scale, int(y[i]) * image_scale
        img[(xx - cx) ** 2 + (yy - cy) ** 2 <= (0.2 * pitch_px * image_scale) ** 2] = (10 * i, 255 - 10 * i, 0)
    Image.fromarray(img).save(spatial / "tissue_hires_image.png")
    genes = ["EPCAM", "VIM", "PTPRC", "KRT20", "MT-CO1", "EPCAM"]  # a symbol shared by two ids
    if n_extra_genes:  # real symbols (Hallmark members), so the pathway bottleneck has genes to hold
        from stflib.pathways import hallmarks

        pool = sorted({g for members in hallmarks().values() for g in members} - set(genes))
        genes += pool[:n_extra_genes]
    ids = [f"ENSG{i:011d}" for i in range(len(genes))]
    counts = rng.poisson(5, size=(len(genes), n)).astype(np.float64)  # genes x barcodes, as 10x stores it
    import scipy.sparse as sp
    m = sp.csc_matrix(counts)
    with h5py.File(folder / "filtered_feature_bc_matrix.h5", "w") as f:
        g = f.create_group("matrix")
        g["data"], g["indices"], g["indptr"] = m.data, m.indices, m.indptr
        g["shape"] = np.array(m.shape, np.int32)
        g["barcodes"] = np.array([b.encode() for b in barcodes])
        feats = g.create_group("features")
        feats["id"] = np.array([s.encode() for s in ids])
        feats["name"] = np.array([s.encode() for s in (genes if symbols else ids)])
        feats["feature_type"] = np.array([b"Gene Expression"] * len(genes))
    return {"x": x.astype(int), "y": y.astype(int), "barcodes": barcodes, "counts": counts.T, "genes": genes}


def _import(folder, out, **kw):
    args = dict(out=out, sample_id="S1", patient="P1", organ="Bowel", oncotree="COAD",
                image=folder / "spatial" / "tissue_hires_image.png", spaceranger=folder, image_scale="hires")
    args.update(kw)
    return import_visium(**args)


def test_spaceranger_import_layout_and_alignment(tmp_path):
    truth = write_spaceranger(tmp_path / "sr")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a consistent section imports without warnings
        row = _import(tmp_path / "sr", tmp_path / "out")
    out = tmp_path / "out"
    meta = json.loads((out / "metadata" / "S1.json").read_text())
    assert meta["pixel_size_um_estimated"] == pytest.approx(65 / 130)
    assert meta["image_pixel_size_um"] == pytest.approx(0.5 / 0.5)
    assert pd.read_csv(out / "metadata.csv")["id"].tolist() == ["S1"] and row["spots_under_tissue"] == 12
    s = read_hest_sample(out, "S1", load_patches=True)
    assert list(s.barcodes) == truth["barcodes"]
    np.testing.assert_allclose(s.coords, np.stack([truth["x"], truth["y"]], 1))
    # symbols from the 10x 'name' column; the two ids sharing EPCAM are summed by the reader
    assert list(s.genes) == ["EPCAM", "VIM", "PTPRC", "KRT20", "MT-CO1"]
    np.testing.assert_allclose(s.counts.toarray()[:, 0], truth["counts"][:, 0] + truth["counts"][:, 5])
    # the centre pixel of each patch is its own spot's disc colour
    centre = s.patches[:, 112, 112]
    np.testing.assert_array_equal(centre[:, 0], 10 * np.arange(12))
    np.testing.assert_array_equal(centre[:, 1], 255 - 10 * np.arange(12))
    with h5py.File(out / "patches" / "S1.h5") as f:
        assert f["img"].shape == (12, 224, 224, 3) and f["barcode"].shape == (12, 1)
        size_src = 224 * 0.5 / meta["pixel_size_um_estimated"]
        np.testing.assert_array_equal(f["coords"][:, 0], (truth["x"] - size_src // 2).astype(int))
    # re-importing the same id replaces its metadata row
    _import(tmp_path / "sr", tmp_path / "out", organ="Breast")
    assert pd.read_csv(out / "metadata.csv")["organ"].tolist() == ["Breast"]


def test_coarse_image_warns_with_the_upsampling_factor(tmp_path):
    write_spaceranger(tmp_path / "sr")
    with pytest.warns(UserWarning, match=r"upsampled 8\.0x"):  # lowres: 0.5 um/px / (0.5/4) -> 4 um/px
        _import(tmp_path / "sr", tmp_path / "out", image_scale="lowres",
                image=tmp_path / "sr" / "spatial" / "tissue_hires_image.png")


def test_bad_inputs_name_the_file_and_value(tmp_path):
    write_spaceranger(tmp_path / "sr")
    with pytest.raises(FileNotFoundError, match="image not found: .*missing.png"):
        _import(tmp_path / "sr", tmp_path / "out", image=tmp_path / "missing.png")
    # wrong scale factor: full-resolution coordinates on the hires image
    with pytest.raises(ValueError, match=r"tissue_hires_image.png: \d+ of 12 spot centres fall outside .*scale factor 1"):
        _import(tmp_path / "sr", tmp_path / "out", image_scale=1.0)
    with pytest.raises(ValueError, match="--image-scale: expected hires, lowres or a number.*'huge'"):
        _import(tmp_path / "sr", tmp_path / "out", image_scale="huge")
    # positions file without the matrix's barcodes
    pos_path = tmp_path / "sr" / "spatial" / "tissue_positions_list.csv"
    pos = pd.read_csv(pos_path, header=None)
    pos.iloc[2:].to_csv(pos_path, header=False, index=False)
    with pytest.raises(ValueError, match=r"tissue_positions_list.csv: 2 of the 12 barcodes of .*filtered_feature_bc_matrix.h5 "
                                         r"are missing \(e.g. \['AAAC0000-1', 'AAAC0001-1'\]"):
        _import(tmp_path / "sr", tmp_path / "out")
    with pytest.raises(ValueError, match="patient: give a non-empty value"):
        write_spaceranger(tmp_path / "sr2")
        _import(tmp_path / "sr2", tmp_path / "out", patient=" ")


def test_normalised_expression_is_refused_unless_declared(tmp_path):
    import anndata as ad

    rng = np.random.default_rng(0)
    coords = np.stack(np.meshgrid(np.arange(4) * 100.0, np.arange(3) * 100.0), -1).reshape(-1, 2) + 200
    logn = np.log1p(rng.poisson(3, size=(12, 5)) * 1.7).astype(np.float32)
    a = ad.AnnData(X=logn, var=pd.DataFrame(index=["A", "B", "C", "D", "E"]))
    a.obs_names = [f"b{i}" for i in range(12)]
    a.obsm["spatial"] = coords
    a.write_h5ad(tmp_path / "s.h5ad")
    from PIL import Image
    Image.fromarray(np.full((800, 800, 3), 200, np.uint8)).save(tmp_path / "img.png")
    kw = dict(out=tmp_path / "out", sample_id="A1", patient="P", organ="Brain", oncotree="healthy",
              image=tmp_path / "img.png", adata=tmp_path / "s.h5ad")
    with pytest.raises(ValueError, match=r"s.h5ad: expression is not raw UMI counts \(e.g. value .*--expression log1p"):
        import_visium(**kw)
    with pytest.warns(UserWarning, match="log1p-normalised"):
        import_visium(**kw, expression="log1p")
    s = read_hest_sample(tmp_path / "out", "A1")
    np.testing.assert_allclose(s.counts.toarray(), np.expm1(logn), rtol=1e-5)
    assert json.loads((tmp_path / "out" / "metadata" / "A1.json").read_text())["pixel_size_um_estimated"] == pytest.approx(1.0)


@needs_real
def test_real_sections_import_into_one_folder(tmp_path):
    out = tmp_path / "real"
    with pytest.warns(UserWarning, match=r"16\.15 um/px .* upsampled 32\.3x"):
        _import(REAL / "scanpy_visium_spaceranger", out, sample_id="SR1", organ="Unknown", oncotree="unknown",
                image=REAL / "scanpy_visium_spaceranger" / "spatial" / "tissue_lowres_image.png", image_scale="lowres")
    import_visium(out, "MB1", "P2", "Brain", "healthy", REAL / "squidpy_mouse_brain" / "test_img.jpg",
                  adata=REAL / "squidpy_mouse_brain" / "test_data.h5ad", species="Mus musculus", expression="log1p")
    with pytest.warns(UserWarning, match="the image is uniform"):  # stLearn's test image is blank white
        import_visium(out, "BC1", "P3", "Breast", "IDC", REAL / "stlearn_breast" / "test_image.jpg",
                      adata=REAL / "stlearn_breast" / "test_data.h5", image_scale="hires", expression="scaled")
    meta = pd.read_csv(out / "metadata.csv").set_index("id")
    assert list(meta.index) == ["SR1", "MB1", "BC1"]
    # pixel sizes: Space Ranger's 65 um spot diameter agrees with the 100 um pitch on all three
    assert meta.loc["SR1", "pixel_size_um_estimated"] == pytest.approx(65 / 89.42751063343188)
    assert meta.loc["MB1", "pixel_size_um_estimated"] == pytest.approx(100 / 137, rel=0.01)
    assert meta.loc["BC1", "pixel_size_um_estimated"] == pytest.approx(65 / 177.4829519178534, rel=0.01)
    for sid, n in (("SR1", 100), ("MB1", 49), ("BC1", 316)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            s = read_hest_sample(out, sid, load_patches=True)
        assert s.n_spots == n and s.patches.shape == (n, 224, 224, 3)
    # the Space Ranger section's pixels are real H&E (not blank)
    assert read_hest_sample(out, "MB1", load_patches=True).patches.std() > 10


@needs_real
def test_real_wrong_scale_factor_and_z_scores(tmp_path):
    sr = REAL / "scanpy_visium_spaceranger"
    with pytest.raises(ValueError, match=r"tissue_lowres_image.png: 100 of 100 spot centres fall outside the image "
                                         r"\(600 x 600 px\) with scale factor 0.150015"):
        _import(sr, tmp_path / "o", image=sr / "spatial" / "tissue_lowres_image.png", image_scale="hires")
    with pytest.raises(ValueError, match=r"test_data.h5: expression is not raw UMI counts .*negative values"):
        import_visium(tmp_path / "o", "BC1", "P3", "Breast", "IDC", REAL / "stlearn_breast" / "test_image.jpg",
                      adata=REAL / "stlearn_breast" / "test_data.h5", image_scale="hires")


def test_read_spaceranger_ensembl_only_names_warn(tmp_path):
    write_spaceranger(tmp_path / "sr", symbols=False)
    with pytest.warns(UserWarning, match="feature names are Ensembl ids"):
        section, _ = read_spaceranger(tmp_path / "sr")
    assert section.genes[0] == "ENSG00000000000"


def test_imported_sections_run_end_to_end(tmp_path):
    """Three generated Space Ranger sections (three patients) -> import -> random-weight features ->
    a training run with data_dir and a cohort filter that matches them -> metrics.json, predictions."""
    from stflib import train
    from stflib.features import extract_cohort

    out = tmp_path / "sections"
    for i in range(3):
        write_spaceranger(tmp_path / f"sr{i}", n=12, seed=i, n_extra_genes=60)
        _import(tmp_path / f"sr{i}", out, sample_id=f"S{i}", patient=f"P{i}", organ="Breast", oncotree="IDC")
    extract_cohort(out, "resnet50", pretrained=False, batch_size=12, device="cpu", progress=False, log=None)
    with h5py.File(out / "features" / "resnet50" / "S0.h5") as f:
        assert bool(f.attrs["random_weights"]) and f["features"].shape == (12, 2048)
    params = dict(data_dir=str(out), organ="Breast", oncotree="IDC", n_folds=3, fold=0, n_genes=60,
                  qc_min_umis=1, qc_min_genes=1, epochs=1, warmup_steps=0, device="cpu", progress=False,
                  output_dir=str(tmp_path / "run"))
    with pytest.raises(ValueError, match=r"organ=Bowel .* matched|no sample of .* matches"):
        train.run({**params, "organ": "Bowel"}, log=None)
    with pytest.raises(ValueError, match=r"matched 3 sample\(s\) \(S0, S1, S2\) of 3 patient group\(s\); n_folds=4 needs >= 4"):
        train.run({**params, "n_folds": 4}, log=None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = train.run(params, log=None)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["config"]["organ"] == "Breast" and np.isfinite(metrics["mse"])
    assert (tmp_path / "run" / "predictions.h5ad").is_file()
    assert result.fold.test_ids and set(result.fold.test_ids) <= {"S0", "S1", "S2"}


def test_a_scale_that_disagrees_with_the_spot_pitch_stops_before_writing(tmp_path):
    """spot_diameter_fullres 10x too large: the pixel size it implies disagrees with the 100 um pitch, so the
    import stops, says both figures and names --pixel-size, and writes nothing; --pixel-size imports it."""
    write_spaceranger(tmp_path / "sr", pitch_px=200.0, diameter_px=1300.0)  # 65 um / 1300 px vs 100 um / 200 px
    with pytest.raises(ValueError, match=r"pixel size 0\.050 um/px disagrees with the spot pitch \(199\.8 px .* = "
                                         r"0\.500 um/px .*nothing was written.*--pixel-size 0\.500"):
        _import(tmp_path / "sr", tmp_path / "out")
    assert not (tmp_path / "out" / "patches").exists() and not (tmp_path / "out" / "metadata.csv").exists()
    row = _import(tmp_path / "sr", tmp_path / "out", pixel_size_um=0.5)
    assert row["pixel_size_um_estimated"] == pytest.approx(0.5)
