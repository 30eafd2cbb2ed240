"""The rehearsal of the real-data path (``python -m stflib rehearse``): a small folder with every quirk of
HEST's real metadata and files, and the reader, the folds and the dry run handling each one; the
metadata-only bill of the real grid (``stflib.grid.bill``)."""
from __future__ import annotations

import json
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from stflib import data as D
from stflib.cli import main
from stflib.grid import cluster as K
from stflib.grid.bill import grid_bill
from stflib.grid.rehearsal import ID_PREFIX, rehearse_cohort, slide_roles
from stflib.paths import project_root
from stflib.sim import Preset

SMALL = Preset(n_patients=5, n_slides=8, spots=(60, 90), gzip_level=1)  # 3 patients with 2 slides, 2 with one
BACKBONE = "h-optimus-0"
REAL_CSV = project_root().parent / "shared" / "data" / "hest" / "HEST_v1_1_0.csv"


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return rehearse_cohort(tmp_path_factory.mktemp("rehearsal") / "hest", preset=SMALL, backbone=BACKBONE)


@pytest.fixture(scope="module")
def quirks(folder) -> dict:
    return json.loads((folder / "rehearsal.json").read_text())


@pytest.fixture(scope="module")
def cohort(folder) -> pd.DataFrame:
    return D.select_samples(folder / "metadata.csv")


def ids_of(cohort: pd.DataFrame, kind: str) -> list[str]:
    return [i for i in cohort["id"] if i.startswith(ID_PREFIX[kind])]


def test_every_quirk_is_present(folder, quirks, cohort):
    meta = pd.read_csv(folder / "metadata.csv")
    assert len(cohort) == SMALL.n_slides and len(meta) == SMALL.n_slides + len(quirks["mouse"]) > SMALL.n_slides
    assert ids_of(cohort, "unlabelled") and cohort.set_index("id").loc[ids_of(cohort, "unlabelled"), "patient"].isna().all()
    assert len(quirks["duplicated_section"]) == 2 and quirks["ensembl"] and quirks["missing_patches"]
    assert quirks["missing_features"] and 0 < quirks["targeted_panel_genes"]
    for i in cohort["id"]:  # the folder reads as real data: no simulator truth
        assert D.read_hest_sample(folder, i).truth == {}


def test_unlabelled_slides_are_grouped_by_their_subseries_block(cohort):
    groups = D.patient_groups(cohort)
    atlas = ids_of(cohort, "unlabelled")
    assert len(atlas) >= 2 and groups.loc[atlas].nunique() == len(atlas) // 2  # two sections per block
    block = cohort.set_index("id").loc[atlas[0], "subseries"].rsplit("_", 1)[0]
    assert groups[atlas[0]].endswith(block) and (groups == groups[atlas[0]]).sum() == 2


def test_one_label_in_two_studies_names_two_patients(cohort):
    groups = D.patient_groups(cohort)
    meta = cohort.set_index("id")
    z, c = ids_of(cohort, "labelled")[0], ids_of(cohort, "study_c")[0]
    assert meta.loc[z, "patient"] == meta.loc[c, "patient"] == "Patient 1"
    assert groups[z] != groups[c]


def test_the_duplicated_section_stays_in_one_fold(cohort, quirks):
    first, second = quirks["duplicated_section"]
    meta = cohort.set_index("id")
    assert meta.loc[first, "dataset_title"] != meta.loc[second, "dataset_title"]
    assert meta.loc[[first, second], "patient"].isna().all()
    groups = D.patient_groups(cohort)
    assert groups[first] == groups[second]
    for k in (2, 3, 4):
        for seed in range(4):
            tested = [set(test) for _train, test in D.patient_folds(cohort, k, seed=seed)]
            assert sum(first in t and second in t for t in tested) == 1
    # without the same image size (the merge rule's evidence) the two would be two groups
    changed = cohort.copy()
    changed.loc[changed["id"] == second, "fullres_px_width"] += 1
    assert D.patient_groups(changed)[first] != D.patient_groups(changed)[second]


def test_ensembl_ids_are_mapped_and_ids_of_one_symbol_summed(folder, quirks):
    sid, split_symbol = next(iter(quirks["ensembl"].items()))
    raw = ad.read_h5ad(folder / "st" / f"{sid}.h5ad")
    assert all(v.startswith("ENSG") for v in raw.var_names)
    columns = np.flatnonzero(raw.var["gene_symbols"].to_numpy() == split_symbol)
    assert len(columns) == 2  # two ids, one symbol
    sample = D.read_hest_sample(folder, sid)
    assert not any(g.startswith("ENSG") for g in sample.genes) and list(sample.genes).count(split_symbol) == 1
    total = np.asarray(sp.csr_matrix(raw.X)[:, columns].sum(1)).ravel()
    keep = np.isin(np.asarray(raw.obs_names), sample.barcodes)
    got = sample.counts[:, list(sample.genes).index(split_symbol)].toarray().ravel()
    np.testing.assert_array_equal(got, total[keep])
    other = next(i for i in quirks["groups"] if i.startswith(ID_PREFIX["demo"]))
    assert set(sample.genes) == set(D.read_hest_sample(folder, other).genes)


def test_ensembl_ids_without_symbols_are_refused_by_name(folder, quirks, tmp_path):
    sid = next(iter(quirks["ensembl"]))
    root = tmp_path / "bad"
    (root / "st").mkdir(parents=True)
    raw = ad.read_h5ad(folder / "st" / f"{sid}.h5ad")
    del raw.var["gene_symbols"]
    raw.write_h5ad(root / "st" / f"{sid}.h5ad")
    with pytest.raises(ValueError, match="var_names are Ensembl ids .* no var column holds gene symbols"):
        D.read_hest_sample(root, sid)


def test_mouse_samples_are_listed_but_filtered_out(folder, quirks, cohort):
    mouse = quirks["mouse"]
    assert all((folder / "st" / f"{i}.h5ad").is_file() for i in mouse)
    assert not set(mouse) & set(cohort["id"])
    assert not set(mouse) & set(D.select_samples(folder / "metadata.csv", oncotree=None)["id"])
    everyone = D.select_samples(folder / "metadata.csv", species=None, oncotree=None)
    assert set(mouse) <= set(everyone["id"])  # the species filter is what leaves them out


def test_spots_without_patch_or_feature_are_left_out_by_barcode(folder, quirks):
    lost = {i: set(b) for i, b in quirks["missing_patches"].items()}
    for i, b in quirks["missing_features"].items():
        lost.setdefault(i, set()).update(b)
    for sid, dropped in lost.items():
        n_st = ad.read_h5ad(folder / "st" / f"{sid}.h5ad", backed="r").n_obs
        sample = D.read_hest_sample(folder, sid, backbone=BACKBONE)
        assert sample.n_spots == n_st - len(dropped) and not dropped & set(sample.barcodes)
        with h5py.File(folder / "features" / BACKBONE / f"{sid}.h5") as f:
            row = {b.decode(): j for j, b in enumerate(f["barcodes"][:])}
            feats = f["features"][:]
        np.testing.assert_array_equal(sample.features, feats[[row[b] for b in sample.barcodes]])


def test_dry_run_reports_the_quirks(folder, quirks, tmp_path, capsys):
    code = main(["ablate", str(project_root() / "params/hest/log_transform"), "--folds", "3", "--results",
                 str(tmp_path / "results"), "--set", f"data_dir={folder}", "--set", "device=cpu", "--dry-run"])
    text = capsys.readouterr().out
    assert code == 0 and "nothing missing" in text
    assert f": {SMALL.n_slides} samples" in text
    n_lost = sum(map(len, quirks["missing_patches"].values()))
    assert f"spots without a patch: {n_lost} in {len(quirks['missing_patches'])} samples" in text
    n_feat = sum(map(len, quirks["missing_features"].values()))
    assert f"spots without a feature row of {BACKBONE} (patch present): {n_feat} in" in text
    assert "one group across 2 dataset titles" in text and ", ".join(quirks["duplicated_section"]) in text
    assert "samples without a patient label" in text


def test_a_used_folder_or_a_too_small_preset_is_refused(folder):
    with pytest.raises(FileExistsError, match="already holds a cohort"):
        rehearse_cohort(folder, preset=SMALL)
    plan = [dict(patient=p) for p in (0, 0, 1, 2)]
    with pytest.raises(ValueError, match=">= 3 patients with 2\\+ slides"):
        slide_roles(plan)


def test_bill_from_metadata_counts_every_distinct_run(folder):
    bill = grid_bill(folder / "metadata.csv", paths=[project_root() / "params/hest/log_transform"], folds=3)
    assert (bill.runs, bill.arms, bill.folds, bill.samples) == (6, 2, 3, SMALL.n_slides)
    assert len(bill.run_seconds) == 6 and all(s > 0 for s in bill.run_seconds)
    assert "6 runs (2 arms x 3" in bill.text()
    cfg = K.suggest_config(bill.run_seconds, bill.spots, bill.feature_dim)
    assert cfg["gpus"] == 1 and cfg["jobs"] <= bill.runs


@pytest.mark.skipif(not REAL_CSV.is_file(), reason="reference data ../shared/data/hest absent")
def test_bill_of_the_real_grid_on_the_real_cohort():
    from stflib.grid.params import discover

    bill = grid_bill(REAL_CSV)
    assert (bill.samples, bill.spots) == (55, 175_713)  # the real cohort (../shared/data/README.md)
    assert bill.arms == len(discover([project_root() / "params/hest"]))
    assert bill.runs <= bill.arms * bill.folds and bill.hours > 0
