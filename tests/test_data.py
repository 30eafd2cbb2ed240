"""Tests for stflib.data: HEST reader, cohort selection, folds, QC/normalisation, vocabulary, dataset."""
from __future__ import annotations

from unittest import mock

from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from conftest import HEST_CSV, write_fake_hest_sample

from stflib import data
from stflib.data import (HestSample, SlideDataset, collate_slides, normalize_cp10k, patient_folds, patient_groups,
                         qc_mask, read_hest_sample, select_genes, select_samples, train_val_split)

needs_csv = pytest.mark.skipif(not HEST_CSV.is_file(), reason=f"reference data absent: {HEST_CSV}")


# ------------------------------------------------------------------------------------------ reader
def test_read_aligns_spots_features_counts_patches_by_barcode(fake_hest):
    e = fake_hest
    s = read_hest_sample(e["root"], e["sample_id"], backbone=e["backbone"], load_patches=True)
    kept = e["kept"]
    assert len(kept) == 15 and kept[0] == 5  # 3 spots lack a patch, 2 others lack features
    assert list(s.barcodes) == list(e["barcodes"][kept])
    assert isinstance(s.counts, sp.csr_matrix) and s.counts.dtype == np.float32
    np.testing.assert_array_equal(s.counts.toarray(), e["counts"][kept])
    assert list(s.genes) == e["genes"]  # Ensembl var_names mapped to var['gene_symbols']
    np.testing.assert_array_equal(s.coords, e["centres"][kept])
    np.testing.assert_array_equal(s.features[:, 0], kept)  # feature rows encode the spot index
    assert s.features.shape == (15, e["feature_dim"]) and s.features.dtype == np.float32
    np.testing.assert_array_equal(s.patches[:, 0, 0, 0], kept)  # patch pixels encode the spot index
    assert s.patches.shape == (15, 224, 224, 3)
    assert s.pixel_size_um == 0.5 and s.metadata["organ"] == "Bowel"
    assert s.truth == {} and s.truth_names == {}


def test_read_without_backbone_joins_patches_only(fake_hest):
    s = read_hest_sample(fake_hest["root"], "FAKE1")
    assert list(s.barcodes) == list(fake_hest["barcodes"][3:])
    assert s.features is None and s.patches is None


def test_read_simulator_truth_and_csr_symbols(tmp_path):
    e = write_fake_hest_sample(tmp_path, truth=True, ensembl=False, csc=False, backbone=None, drop_patch=0)
    s = read_hest_sample(tmp_path, "FAKE1")
    assert s.truth["pathway_activity"].shape == (20, 50)
    assert s.truth_names["pathway_activity"][0] == "HALLMARK_P0"
    np.testing.assert_allclose(s.truth["expected_counts"], e["counts"] + 0.5)
    assert s.truth_names["composition"] == ["epithelium", "stroma", "immune"]


def _write_h5ad(root, sample_id, X, var_names, var=None, n=None):
    n = X.shape[0]
    a = ad.AnnData(X=X, obs=pd.DataFrame(index=[f"b{i}" for i in range(n)]),
                   var=var if var is not None else pd.DataFrame(index=var_names))
    a.obsm["spatial"] = np.zeros((n, 2))
    (root / "st").mkdir(parents=True, exist_ok=True)
    a.write_h5ad(root / "st" / f"{sample_id}.h5ad")


def test_ensembl_without_symbols_is_a_clear_error(tmp_path):
    _write_h5ad(tmp_path, "S1", sp.csr_matrix(np.ones((3, 2), np.float32)), ["ENSG00000141510", "ENSG00000012048"])
    with pytest.raises(ValueError, match="Ensembl ids.*ENSG00000141510.*symbol"):
        read_hest_sample(tmp_path, "S1")


def test_duplicate_symbols_are_summed(tmp_path):
    var = pd.DataFrame({"feature_name": ["TP53", "TP53", "BRCA1"]},
                       index=["ENSG00000141510", "ENSG00000999999", "ENSG00000012048"])
    X = np.array([[1, 2, 3], [4, 5, 6]], np.float32)
    _write_h5ad(tmp_path, "S1", sp.csc_matrix(X), None, var=var)
    s = read_hest_sample(tmp_path, "S1")
    assert list(s.genes) == ["TP53", "BRCA1"]
    np.testing.assert_array_equal(s.counts.toarray(), [[3, 3], [9, 6]])


def test_missing_root_and_unknown_sample(fake_hest, tmp_path):
    with pytest.raises(FileNotFoundError, match="HEST root folder not found.*nowhere"):
        read_hest_sample(tmp_path / "nowhere", "FAKE1")
    with pytest.raises(FileNotFoundError, match=r"unknown sample 'NOPE'.*st/NOPE\.h5ad.*available samples: FAKE1"):
        read_hest_sample(fake_hest["root"], "NOPE")
    with pytest.raises(FileNotFoundError, match=r"features/phikon/FAKE1\.h5.*resnet50"):
        read_hest_sample(fake_hest["root"], "FAKE1", backbone="phikon")


@pytest.mark.parametrize("bad, what", [(np.nan, "1 NaN"), (-1.0, "1 negative")])
def test_nan_or_negative_counts_are_errors(tmp_path, bad, what):
    counts = np.ones((20, 40), np.float32)
    counts[4, 7] = bad
    write_fake_hest_sample(tmp_path, counts=counts, backbone=None)
    with pytest.raises(ValueError, match=f"FAKE1.h5ad.*{what}"):
        read_hest_sample(tmp_path, "FAKE1")


def test_no_barcode_overlap_and_feature_dim_mismatch(fake_hest):
    root = fake_hest["root"]
    path = root / "features" / "resnet50" / "FAKE1.h5"
    with h5py.File(path, "r+") as f:
        f.attrs["feature_dim"] = 99
    with pytest.raises(ValueError, match="dimension 8 but attrs\\['feature_dim'\\] = 99"):
        read_hest_sample(root, "FAKE1", backbone="resnet50")
    with h5py.File(path, "r+") as f:
        f.attrs["feature_dim"] = 8
        n = len(f["barcodes"])
        del f["barcodes"]
        f.create_dataset("barcodes", data=np.array([f"OTHER{i}".encode() for i in range(n)]))
    with pytest.raises(ValueError, match="no barcode overlap.*OTHER"):
        read_hest_sample(root, "FAKE1", backbone="resnet50")


def test_features_must_overlap_the_spots_the_patch_join_kept(tmp_path):
    """Both joins are by barcode and in sequence: features of only the spots without a patch leave no spot."""
    fake = write_fake_hest_sample(tmp_path, drop_patch=3, drop_feature=0)
    root, barcodes = fake["root"], fake["barcodes"]
    with h5py.File(root / "patches" / "FAKE1.h5", "r+") as f:
        patch_barcodes = f["barcode"][:]
        del f["barcode"]
        f.create_dataset("barcode", data=np.array([[b"NONE%d" % i] for i in range(len(patch_barcodes))]))
    with pytest.raises(ValueError, match="no barcode overlap between .*FAKE1.h5ad.*patches.*NONE0"):
        read_hest_sample(root, "FAKE1", backbone="resnet50")
    with h5py.File(root / "patches" / "FAKE1.h5", "r+") as f:
        del f["barcode"]
        f.create_dataset("barcode", data=patch_barcodes)
    path = root / "features" / "resnet50" / "FAKE1.h5"
    with h5py.File(path, "r+") as f:  # rows for the 3 spots that have no patch, and nothing else
        for name, data in (("barcodes", np.array([b.encode() for b in barcodes[:3]])), ("features", np.ones((3, 8)))):
            del f[name]
            f.create_dataset(name, data=data)
    with pytest.raises(ValueError, match="no barcode overlap .*resnet50.* after the patch join"):
        read_hest_sample(root, "FAKE1", backbone="resnet50")


# ------------------------------------------------------------------------------ cohort and download
@needs_csv
def test_select_samples_on_real_hest_csv():
    df = select_samples(HEST_CSV)
    assert len(df) == 55 and df["spots_under_tissue"].sum() == 175_713
    assert set(df["oncotree_code"]) <= {"COAD", "READ", "COADREAD"}
    assert len(select_samples(HEST_CSV, technology=None, oncotree=None)) == 84  # all human bowel
    with pytest.raises(ValueError, match="Bowl.*values present"):
        select_samples(HEST_CSV, organ="Bowl")


def test_select_samples_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="metadata CSV not found"):
        select_samples(tmp_path / "x.csv")


def fake_snapshot_download(all_ids=("TENX29", "MISC33", "ZEN36", "NCBI1")):
    """A stand-in for huggingface_hub.snapshot_download that writes the files a real call would: HEST's
    full CSV (``all_ids``, more than were asked for) and each requested per-sample file."""
    def download(repo_id, repo_type, local_dir, allow_patterns, token):
        root = Path(local_dir)
        for pattern in allow_patterns:
            path = root / pattern
            path.parent.mkdir(parents=True, exist_ok=True)
            if pattern.endswith(".csv"):
                pd.DataFrame({"id": list(all_ids), "organ": "Bowel", "species": "Homo sapiens",
                              "st_technology": "Visium", "oncotree_code": "COAD",
                              "patient": [f"P{i}" for i in range(len(all_ids))]}).to_csv(path, index=False)
            else:
                path.write_bytes(b"")
        return str(root)
    return download


def test_download_hest_uses_per_sample_patterns_and_env_token(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    with mock.patch("huggingface_hub.snapshot_download", side_effect=fake_snapshot_download()) as snap:
        out = data.download_hest(["TENX29", "MISC33"], tmp_path / "hest")
    # the loader's metadata.csv lists the downloaded samples only; HEST's full CSV is kept beside it
    assert pd.read_csv(out / "metadata.csv")["id"].tolist() == ["TENX29", "MISC33"]
    assert len(pd.read_csv(out / "HEST_v1_1_0.csv")) == 4
    assert out == tmp_path / "hest"
    kw = snap.call_args.kwargs
    assert kw["repo_id"] == "MahmoodLab/hest" and kw["repo_type"] == "dataset" and kw["token"] == "hf_secret"
    assert kw["local_dir"] == str(tmp_path / "hest")
    assert set(kw["allow_patterns"]) == {"HEST_v1_1_0.csv", "st/TENX29.h5ad", "patches/TENX29.h5",
                                         "metadata/TENX29.json", "st/MISC33.h5ad", "patches/MISC33.h5",
                                         "metadata/MISC33.json"}
    with mock.patch("huggingface_hub.snapshot_download", side_effect=fake_snapshot_download()) as snap:
        data.download_hest("TENX29", tmp_path, token="explicit")
    assert snap.call_args.kwargs["token"] == "explicit"
    with pytest.raises(ValueError, match="sample_ids"):
        data.download_hest([], tmp_path)
    with mock.patch("huggingface_hub.snapshot_download", side_effect=fake_snapshot_download()):
        with pytest.raises(ValueError, match=r"does not list \['NOPE1'\]"):
            data.download_hest(["TENX29", "NOPE1"], tmp_path / "bad")
    (tmp_path / "hest" / "st" / "MISC33.h5ad").unlink()  # a download that stopped part-way
    with pytest.raises(FileNotFoundError, match=r"download incomplete: no st file for \['MISC33'\]"):
        data.write_downloaded_metadata(tmp_path / "hest", ["TENX29", "MISC33"])


def test_too_few_patients_for_the_folds_is_a_clear_error():
    meta = pd.DataFrame({"id": ["A", "B", "C", "D"], "patient": ["P1", "P1", "P2", "P3"]})
    with pytest.raises(ValueError, match=r"the filter X matched 4 sample\(s\) \(A, B, C, D\) of 3 patient group\(s\); "
                                         r"n_folds=4 needs >= 4 groups: use n_folds <= 3"):
        data.check_cohort_folds(meta, 4, "the filter X")
    with pytest.raises(ValueError, match=r"fold \d leaves 1 patient group to train and validate on: use n_folds=3"):
        data.check_cohort_folds(meta, 2, "the filter X")
    data.check_cohort_folds(meta, 3, "the filter X")  # one group per fold: 2 left to train and validate
    with pytest.raises(ValueError, match=r"2 patient group\(s\); .* need >= 3 groups"):
        data.check_cohort_folds(meta.iloc[:3], 2, "the filter X")


# -------------------------------------------------------------------------------- patient splits
def _toy_metadata() -> pd.DataFrame:
    return pd.DataFrame({
        "id": [f"S{i}" for i in range(10)],
        "dataset_title": ["A"] * 4 + ["COLON MAP"] * 4 + ["B", "C"],
        "patient": ["P1", "P1", "P2", "P3", None, None, None, None, None, None],
        "subseries": [None] * 4 + ["8270_AS_6", "8270_AS_7", "8899_AS_1", "8899_AS_2", "Rep 1", None],
    })


def _check_folds(df, folds):
    groups = patient_groups(df)
    tested = [i for _, test in folds for i in test]
    assert sorted(tested) == sorted(df["id"])  # every sample tested exactly once
    for train, test in folds:
        assert not set(train) & set(test) and set(train) | set(test) == set(df["id"])
        assert not set(groups[train]) & set(groups[test])  # no group on both sides


def test_patient_groups_and_folds_do_not_leak():
    df = _toy_metadata()
    g = patient_groups(df)
    assert g["S0"] == g["S1"] != g["S2"]
    assert g["S4"] == g["S5"] == "COLON MAP | 8270_AS" and g["S6"] == g["S7"] != g["S4"]
    assert g.nunique() == 7
    folds = patient_folds(df, 3, seed=1)
    _check_folds(df, folds)
    assert folds == patient_folds(df, 3, seed=1)  # deterministic
    with pytest.raises(ValueError, match="k=8 folds but only 7 patient groups"):
        patient_folds(df, 8)
    train, val = train_val_split(folds[0][0], df, val_fraction=0.3, seed=0)
    assert val and train and not set(g[train]) & set(g[val])
    assert sorted(train + val) == sorted(folds[0][0])
    assert (train, val) == train_val_split(folds[0][0], df, val_fraction=0.3, seed=0)


@needs_csv
def test_real_cohort_groups_and_folds():
    df = select_samples(HEST_CSV)
    g = patient_groups(df)
    colon_map = df["id"][df["dataset_title"].str.startswith("COLON MAP")]
    assert g[colon_map].nunique() == 6  # blocks 6723_KL, 7003_AS, 7794_AS, 8270_AS, 8578_AS, 8899_AS
    assert g["MISC45"] == g["MISC51"] and g["MISC44"] != g["MISC45"]
    assert g["ZEN49"] == g["ZEN48"] != g["TENX152"]  # 'Patient 1' of two datasets are two patients
    assert g["TENX28"] == g["TENX29"]  # one section, two libraries
    for seed in (0, 1):
        _check_folds(df, patient_folds(df, 3, seed=seed))


# --------------------------------------------------------------------------- QC and normalisation
def test_qc_mask_each_criterion():
    genes = ["MT-CO1", "A", "B", "C"]
    counts = np.array([[10, 300, 300, 300],  # passes
                       [10, 50, 50, 50],  # too few UMIs
                       [0, 900, 0, 0],  # too few genes
                       [600, 200, 200, 200]], np.float32)  # mito fraction 0.5
    mask = qc_mask(sp.csr_matrix(counts), genes, min_umis=200, min_genes=3, max_mito_fraction=0.3)
    np.testing.assert_array_equal(mask, [True, False, False, False])
    with pytest.raises(ValueError, match="4 genes but 3 gene names"):
        qc_mask(counts, genes[:3])


def test_cp10k_and_log1p_match_numpy():
    rng = np.random.default_rng(0)
    counts = rng.poisson(2.0, size=(6, 9)).astype(np.float32)
    counts[3] = 0  # empty spot -> zeros, not NaN
    library = counts.sum(1)
    expected = np.divide(counts * 1e4, library[:, None], out=np.zeros_like(counts), where=library[:, None] > 0)
    np.testing.assert_allclose(normalize_cp10k(counts), expected, rtol=1e-5)
    np.testing.assert_allclose(normalize_cp10k(sp.csr_matrix(counts), log1p=True).toarray(), np.log1p(expected),
                               rtol=1e-5)
    # a gene subset still uses the library over all genes
    np.testing.assert_allclose(normalize_cp10k(counts[:, :4], library), expected[:, :4], rtol=1e-5)


# -------------------------------------------------------------------------------- gene vocabulary
def _sample(sample_id, counts, genes, n_feat=4, truth=False):
    counts = np.asarray(counts, np.float32)
    n = len(counts)
    return HestSample(sample_id=sample_id, counts=sp.csr_matrix(counts), genes=np.array(genes),
                      barcodes=np.array([f"{sample_id}-{i}" for i in range(n)]),
                      coords=np.stack([np.arange(n), np.zeros(n)], 1).astype(float), pixel_size_um=0.5, metadata={},
                      features=np.ones((n, n_feat), np.float32),
                      truth={"pathway_activity": np.zeros((n, 50), np.float32)} if truth else {})


NO_QC = {"min_umis": 0, "min_genes": 0, "max_mito_fraction": 1.0}


def test_select_genes_uses_training_samples_only():
    rng = np.random.default_rng(0)
    genes = ["MT-CO1", "G0", "G1", "G2", "G3", "G4"]
    train = [_sample(f"T{i}", rng.poisson([50, 1, 2, 4, 8, 16], size=(30, 6)), genes) for i in range(2)]
    test_only = _sample("X", rng.poisson([1000, 1], size=(30, 2)), ["HUGE", "G0"])
    vocab, hvg = select_genes(train, n_genes=3, n_hvg=2, qc=NO_QC)
    # expected from numpy over the pooled training spots
    pooled = np.vstack([s.counts.toarray() for s in train])
    cp = pooled / pooled.sum(1, keepdims=True) * 1e4
    order = [g for _, g in sorted(zip(-cp.mean(0)[1:], genes[1:]))]  # MT- excluded
    assert vocab == order[:3] == ["G4", "G3", "G2"]
    var = np.log1p(cp).var(0)
    assert hvg == [g for _, g in sorted((-var[genes.index(g)], g) for g in vocab)][:2]
    # a gene that only a held-out sample expresses never enters the vocabulary; had the held-out
    # sample been passed (the HEST-Bench leak) it would top it
    assert "HUGE" not in select_genes(train, n_genes=5, n_hvg=2, qc=NO_QC)[0]
    assert select_genes(train + [test_only], n_genes=3, n_hvg=2, qc=NO_QC)[0][0] == "HUGE"


# ------------------------------------------------------------------------------ dataset and collate
def test_slide_dataset_targets_masks_and_collate_padding():
    genes = ["MT-CO1", "A", "B", "C", "D"]
    big = np.full((5, 5), 10.0)
    big[2] = 0  # an empty spot fails QC
    small = np.arange(1, 16, dtype=float).reshape(3, 5)
    s1, s2 = _sample("big", big, genes, truth=True), _sample("small", small[:, :4], genes[:4])
    vocab = ["A", "B", "D"]  # 'D' is missing in 'small'
    membership = np.array([[1, 1, 0], [0, 1, 1]], np.float32)
    with pytest.warns(UserWarning, match="small.*1 of 3 vocabulary genes absent"):
        ds = SlideDataset([s1, s2], vocab, membership=membership, log_transform=True,
                          qc={"min_umis": 1, "min_genes": 1, "max_mito_fraction": 1.0})
    assert ds.missing_genes == {"small": ["D"]}
    it = ds[1]
    lib = small[:, :4].sum(1)  # library over ALL genes of the sample, not the vocabulary
    np.testing.assert_allclose(it["targets"].numpy()[:, :2], np.log1p(small[:, 1:3] / lib[:, None] * 1e4), rtol=1e-5)
    assert (it["targets"][:, 2] == 0).all() and (it["counts"][:, 2] == 0).all()
    np.testing.assert_allclose(it["library_size"].numpy(), lib)
    assert it["pathway_targets"].shape == (3, 2) and it["true_pathways"] is None
    assert ds[0]["valid"].tolist() == [True, True, False, True, True]

    batch = collate_slides([ds[0], ds[1]])
    assert batch["features"].shape == (2, 5, 4) and batch["targets"].shape == (2, 5, 3)
    assert batch["pad_mask"].tolist() == [[False] * 5, [False] * 3 + [True] * 2]
    assert batch["valid"].tolist() == [[True, True, False, True, True], [True] * 3 + [False] * 2]
    assert batch["sample_ids"] == ["big", "small"] and batch["true_pathways"] is None
    assert (batch["targets"][1, 3:] == 0).all() and batch["pathway_targets"].shape == (2, 5, 2)
    solo = collate_slides([ds[0]])
    assert solo["true_pathways"].shape == (1, 5, 50) and not solo["pad_mask"].any()
    loader = torch.utils.data.DataLoader(ds, batch_size=2, collate_fn=collate_slides)
    assert next(iter(loader))["coords"].shape == (2, 5, 2)


def test_slide_dataset_bad_inputs():
    s = _sample("S", np.ones((3, 2)), ["A", "B"])
    with pytest.raises(ValueError, match="'S'.*none of its 2 genes.*vocabulary of 2 genes"):
        SlideDataset([s], ["X", "Y"])
    s.features = None
    with pytest.raises(ValueError, match="no features.*backbone"):
        SlideDataset([s], ["A"])


def test_find_hest_metadata_prefers_the_environment_then_the_first_existing_candidate(tmp_path, monkeypatch):
    from stflib.data import find_hest_metadata

    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    b.write_text("id\n")
    monkeypatch.delenv("STFLIB_HEST_METADATA", raising=False)
    assert find_hest_metadata(a, b) == b
    assert find_hest_metadata(a) is None
    a.write_text("id\n")
    monkeypatch.setenv("STFLIB_HEST_METADATA", str(a))
    assert find_hest_metadata(b) == a
