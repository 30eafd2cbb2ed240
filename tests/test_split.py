"""The held-out unit of a run (``split``): patient-grouped folds or leave one study out."""
from __future__ import annotations

import pandas as pd
import pytest

from stflib import config as C
from stflib import data as D
from tests.conftest import HEST_CSV


def _meta(rows):
    return pd.DataFrame(rows, columns=["id", "dataset_title", "patient", "subseries"])


STUDIES = _meta([
    ("a1", "Study A", "P1", None), ("a2", "Study A", "P2", None), ("a3", "Study A", "P2", None),
    ("b1", "Study B", "P1", None), ("b2", "Study B", "P3", None),
    ("c1", "Study C", "P9", None),
])


def test_every_study_is_held_out_once_and_no_patient_crosses():
    studies = D.study_labels(STUDIES)
    folds = D.study_folds(STUDIES)
    assert len(folds) == studies.nunique() == 3
    tested = [i for _, test in folds for i in test]
    assert sorted(tested) == sorted(STUDIES["id"])  # each sample tested exactly once
    groups = D.patient_groups(STUDIES)
    for k, (train, test) in enumerate(folds):
        assert {studies[i] for i in test} == {sorted(studies.unique())[k]}  # fold k holds out the k-th study
        assert not set(groups[train]) & set(groups[test])
        assert not {studies[i] for i in train} & {studies[i] for i in test}


def test_studies_sharing_a_patient_group_are_merged():
    """TENX28/TENX29 are one section sequenced twice under two titles: holding one title out must not leave
    the other copy in training."""
    meta = _meta([("x", "Whole transcriptome", None, None), ("y", "Targeted panel", None, None),
                  ("z", "Other", "P1", None)])
    meta["fullres_px_width"], meta["fullres_px_height"], meta["spots_under_tissue"] = [100, 100, 7], [50, 50, 8], [9, 9, 3]
    studies = D.study_labels(meta)
    assert studies["x"] == studies["y"] == "Targeted panel + Whole transcriptome"
    assert studies["z"] == "Other"


def test_one_study_is_an_error_naming_it():
    one = _meta([("a1", "Only study", "P1", None), ("a2", "Only study", "P2", None), ("a3", "Only study", "P3", None)])
    with pytest.raises(ValueError, match=r"one study \('Only study' \(3 sample\(s\)\)\).*split=patient"):
        D.cohort_folds(one, "study", 3, 0)
    with pytest.raises(ValueError, match=r"fold=3 but the cohort holds 3 studies.*'Study C'.*allowed: fold 0\.\.2"):
        D.cohort_folds(STUDIES, "study", 3, 3)
    with pytest.raises(ValueError, match=r"split: unknown value 'slide'; allowed: patient, study"):
        D.cohort_folds(STUDIES, "slide", 3, 0)
    no_title = STUDIES.drop(columns="dataset_title")
    with pytest.raises(ValueError, match=r"study column 'dataset_title'"):
        D.study_labels(no_title)


def test_patient_split_is_unchanged_by_the_parameter():
    meta = _meta([(f"s{i}", "T", f"P{i % 4}", None) for i in range(8)])
    assert D.cohort_folds(meta, "patient", 3, 1) == D.patient_folds(meta, 3, seed=0)[1]


def test_split_parameter_validates_and_keeps_finished_runs_hash():
    assert C.validate({}, check_paths=False)["split"] == "patient"
    with pytest.raises(ValueError, match=r"split: unknown value 'slides'; allowed: patient, study"):
        C.validate({"split": "slides"}, check_paths=False)
    # leave-one-study-out folds are counted by the cohort's studies, not n_folds
    assert C.validate({"split": "study", "fold": 5}, check_paths=False)["fold"] == 5
    with pytest.raises(ValueError, match=r"fold: must be in 0\.\.2"):
        C.validate({"split": "patient", "fold": 5}, check_paths=False)
    assert "split" not in C.hash_payload({})  # a finished (patient-split) run keeps its hash
    assert C.config_hash({"split": "study"}) != C.config_hash({})


@pytest.mark.skipif(not HEST_CSV.is_file(), reason=f"HEST metadata not found at {HEST_CSV}")
def test_hest_bowel_cohort_studies():
    """On HEST-1k's 55 bowel Visium samples the studies are the dataset titles; TENX28/TENX29 (one section,
    two titles) form one study, so there are 7 leave-one-study-out folds."""
    meta = D.select_samples(HEST_CSV)
    studies = D.study_labels(meta)
    assert meta["dataset_title"].nunique() == 8 and studies.nunique() == 7
    assert studies["TENX28"] == studies["TENX29"]
    assert int((studies == "COLON MAP: Colon Molecular Atlas Project").sum()) == 34
    groups = D.patient_groups(meta)
    for k in range(studies.nunique()):
        D.check_study_folds(meta, k)
        train, test = D.study_folds(meta)[k]
        assert not set(groups[train]) & set(groups[test])


# ------------------------------------------------------------------------- on a simulated cohort
@pytest.fixture(scope="module")
def shifted_cohort():
    from stflib.simulate import default_cohort

    return default_cohort("tiny", world="study-shift")


@pytest.mark.slow
def test_load_fold_holds_out_a_study_and_validates_inside_training_studies(shifted_cohort):
    from stflib.config import RunConfig
    from stflib.train.fold import load_fold

    meta = pd.read_csv(shifted_cohort / "metadata.csv")
    title = meta.set_index("id")["dataset_title"]
    assert title.nunique() == 3  # the study-shift world's three studies
    for k, held_out in enumerate(sorted(title.unique())):
        fold = load_fold(RunConfig(preset="tiny", world="study-shift", split="study", fold=k, val_fraction=0.3))
        assert {title[i] for i in fold.test_ids} == {held_out}
        assert held_out not in {title[i] for i in fold.train_ids + fold.val_ids}
        assert fold.val_ids and fold.train_ids  # validation patients come from the training studies
    with pytest.raises(ValueError, match=r"fold=3 but .* holds 3 studies"):
        load_fold(RunConfig(preset="tiny", world="study-shift", split="study", fold=3))


@pytest.mark.slow
def test_simulated_default_world_has_one_study():
    from stflib.config import RunConfig
    from stflib.simulate import default_cohort
    from stflib.train.fold import load_fold

    default_cohort("tiny")
    with pytest.raises(ValueError, match=r"split=study: .* one study \('stflib simulated colorectal cancer Visium cohort'"):
        load_fold(RunConfig(preset="tiny", split="study"))
