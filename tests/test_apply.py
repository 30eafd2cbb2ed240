"""``python -m stflib predict``: a trained run applied to sections with features (and perhaps no
expression) gives the run's own predictions, in the runs' predictions.h5ad layout."""
from __future__ import annotations

import json
import shutil
import warnings
from argparse import Namespace
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest

from stflib import apply as A
from tests.conftest import SHARED

REAL = SHARED / "real_st" / "scanpy_visium_spaceranger"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny STF run (resnet50 stand-in features, neighbourhood windows) with its artefacts."""
    from stflib import train as T

    out = tmp_path_factory.mktemp("run")
    result = T.run(preset="tiny", max_steps=4, eval_every=2, progress=False, output_dir=str(out), log=None,
                   torch_threads=1)
    return out, result


def _save_standardization(result, folder: Path) -> None:
    """What the run's artefacts hold once they keep the training slides' feature statistics."""
    np.savez(folder / A.STANDARDIZATION_FILE, feature_mean=result.fold.feature_mean, feature_sd=result.fold.feature_sd)


def _run_predictions(result, sample_id):
    a = result.adata
    return a[a.obs["sample_id"] == sample_id]


@pytest.mark.slow
@pytest.mark.parametrize("saved_statistics", [True, False])
def test_predict_reproduces_the_runs_held_out_predictions(trained, tmp_path, saved_statistics):
    run_dir, result = trained
    folder = tmp_path / "run"
    shutil.copytree(run_dir, folder)
    if saved_statistics:
        _save_standardization(result, folder)
    test_id = result.fold.test_ids[0]
    args = Namespace(run=str(folder), data_dir=str(result.fold.root), ids=[test_id], out=str(tmp_path / "pred"),
                     device="cpu")
    assert A.run(args) == 0
    got = ad.read_h5ad(tmp_path / "pred" / test_id / "predictions.h5ad")
    want = _run_predictions(result, test_id)
    assert list(got.obs_names) == list(want.obs_names) and list(got.var_names) == list(want.var_names)
    np.testing.assert_array_equal(got.X, want.X)  # the same model on the same inputs: the same numbers
    np.testing.assert_array_equal(got.layers["truth"], want.layers["truth"])
    np.testing.assert_array_equal(got.obsm["spatial"], want.obsm["spatial"])
    assert got.uns["spatial"][test_id]["scalefactors"] == pytest.approx(
        dict(want.uns["spatial"][test_id]["scalefactors"]))
    assert got.uns["hvg50"].tolist() == list(want.uns["hvg50"]) and got.uns["run"]["measured"]


@pytest.mark.slow
def test_predict_a_section_without_expression(trained, tmp_path):
    """Only the feature file of a held-out slide: the same predictions, the truth layer NaN."""
    run_dir, result = trained
    _save_standardization(result, run_dir)
    test_id = result.fold.test_ids[0]
    root = tmp_path / "sections"
    (root / "features" / "resnet50").mkdir(parents=True)
    shutil.copy(result.fold.root / "features" / "resnet50" / f"{test_id}.h5", root / "features" / "resnet50")
    out = A.predict_sections(A.load_run(run_dir), root)
    got = out[test_id]
    want = _run_predictions(result, test_id)
    assert not got.uns["run"]["measured"] and np.isnan(got.layers["truth"]).all()
    by_barcode = pd.DataFrame(np.asarray(want.X), index=want.obs["barcode"].astype(str))
    mine = pd.DataFrame(np.asarray(got.X), index=got.obs["barcode"].astype(str))
    assert set(mine.index) == set(by_barcode.index)
    np.testing.assert_allclose(mine.loc[by_barcode.index].to_numpy(), by_barcode.to_numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_mismatches_are_clear_errors(trained, tmp_path):
    run_dir, result = trained
    test_id = result.fold.test_ids[0]
    run = A.load_run(run_dir)
    # features of another backbone only
    root = tmp_path / "other"
    (root / "features" / "phikon").mkdir(parents=True)
    shutil.copy(result.fold.root / "features" / "phikon" / f"{test_id}.h5", root / "features" / "phikon")
    with pytest.raises(FileNotFoundError, match=r"no features of the run's backbone 'resnet50'.*with features there: phikon"):
        A.predict_sections(run, root)
    # a resnet50 file of the wrong width
    (root / "features" / "resnet50").mkdir()
    with h5py.File(root / "features" / "resnet50" / f"{test_id}.h5", "w") as f:
        f["features"] = np.zeros((3, 7), np.float32)
        f["barcodes"] = np.array([b"a", b"b", b"c"])
        f["coords"] = np.zeros((3, 2))
    with pytest.raises(ValueError, match=r"7-d features; the run's resnet50 model takes 2048-d"):
        A.predict_sections(run, root)
    # a gene list that does not match the checkpoint
    broken = tmp_path / "broken"
    shutil.copytree(run_dir, broken)
    genes = pd.read_csv(broken / "per_gene.csv")
    genes.iloc[:-1].to_csv(broken / "per_gene.csv", index=False)
    with pytest.raises(ValueError, match=rf"checkpoint predicts {len(genes)} genes but per_gene.csv lists {len(genes) - 1}"):
        A.build_model(A.load_run(broken))
    # a run without a checkpoint (numpy baselines have none)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    ridge = tmp_path / "ridge"
    ridge.mkdir()
    (ridge / "metrics.json").write_text(json.dumps({**metrics, "config": {**metrics["config"], "model": "ridge_probe",
                                                                            "n_neighbors": 0}}))
    with pytest.raises(ValueError, match=r"'ridge_probe' is a numpy model with no checkpoint; predict applies"):
        A.load_run(ridge)


@pytest.mark.slow
@pytest.mark.skipif(not REAL.is_dir(), reason=f"real Visium test data not found at {REAL}")
def test_predict_an_imported_visium_section(trained, tmp_path):
    """A Space Ranger section imported with import-visium, resnet50 features with random weights (no
    weights are downloaded), predicted with and without its st file."""
    from stflib.data.visium import import_visium
    from stflib.features import extract_cohort

    run_dir, result = trained
    _save_standardization(result, run_dir)
    out = tmp_path / "imported"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the lowres image is upsampled (the importer warns)
        import_visium(out, "SR1", "P1", "Unknown", "unknown", REAL / "spatial" / "tissue_lowres_image.png",
                      spaceranger=REAL, image_scale="lowres")
    extract_cohort(out, "resnet50", pretrained=False, device="cpu", batch_size=32, progress=False, log=None)
    run = A.load_run(run_dir)
    # this section's matrix names its 100 genes by Ensembl id only: no vocabulary gene to compare with
    with pytest.warns(UserWarning, match=r"SR1: none of its 100 measured genes .* predicted without a truth layer"):
        with_st = A.predict_sections(run, out)["SR1"]
    assert with_st.n_obs == 100 and list(with_st.var_names) == result.fold.genes
    assert np.isfinite(with_st.X).all() and np.isnan(with_st.layers["truth"]).all()
    assert "SR1" in with_st.uns["spatial"] and with_st.obsm["spatial"].shape == (100, 2)
    assert with_st.uns["spatial"]["SR1"]["images"]["lowres"].ndim == 3  # the slide's thumbnail, for sc.pl.spatial
    (out / "st" / "SR1.h5ad").unlink()  # features only: a section with no expression file at all
    bare = A.predict_sections(run, out)["SR1"]
    assert bare.n_obs == 100 and np.isnan(bare.layers["truth"]).all() and not bare.uns["run"]["measured"]
    a = pd.DataFrame(np.asarray(with_st.X), index=with_st.obs["barcode"].astype(str))
    b = pd.DataFrame(np.asarray(bare.X), index=bare.obs["barcode"].astype(str))
    np.testing.assert_allclose(b.loc[a.index].to_numpy(), a.to_numpy(), rtol=1e-4, atol=1e-4)
