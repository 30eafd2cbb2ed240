"""The worlds' truth reports: each world keeps the property it exists for, measured on its truth
(no model), on the small preset; the committed tables cover every world and stand-in."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stflib.cli import main as cli_main
from stflib.report.results import repo_root
from stflib.sim import truth as T
from stflib.sim.worlds import BACKBONES, WORLDS

PRESET = "small"


@pytest.fixture(scope="module")
def reports() -> dict[str, dict]:
    """Truth reports (no calibration) of the default world and of every world with acceptance figures."""
    out = {}
    for world in ["default", *T.ACCEPTANCE]:
        backbones = ["ctranspath", "gigapath"] if WORLDS[world].n_studies > 1 else ["resnet50"]
        out[world] = T.truth_report(world, preset=PRESET, seed=0, backbones=backbones, calibration=False)
    return out


def test_every_world_says_what_it_controls_and_its_anchor():
    assert set(T.ACCEPTANCE) <= set(WORLDS)
    for name, world in WORLDS.items():
        assert world.anchor and world.controls, name
    assert set(T.HEST_BENCH_BOWEL) == set(BACKBONES)
    for read, coad, source in T.HEST_BENCH_BOWEL.values():
        assert 0 < read < coad < 1 and source


@pytest.mark.parametrize("world", list(T.ACCEPTANCE))
def test_world_keeps_the_property_it_exists_for(reports, world):
    failed = [a for a in reports[world]["acceptance"] if not a["passed"]]
    assert not failed, failed


def test_default_world_context_is_denoising_only(reports):
    r = reports["default"]
    # the truth: local means of the noise-free latent add nothing, and the default world does not pass the
    # positive control's criterion (on this small cohort the gap carries some overfitting noise)
    threshold = dict((f, t) for f, _, t, _ in T.ACCEPTANCE["long-range-context"])["linear_sufficiency_gap"]
    assert r["local_context_gain"] < 0.01 and r["linear_sufficiency_gap"] < threshold
    assert r["share_composition"] > 0.8 and r["share_context"] < 0.05
    # the positive control differs on exactly these figures
    lr = reports["long-range-context"]
    assert lr["share_context"] > r["share_context"] + 0.1
    assert lr["linear_sufficiency_gap"] > r["linear_sufficiency_gap"] + 0.03


def test_variance_shares_are_a_decomposition(reports):
    for world, r in reports.items():
        shares = r["variance_shares"]
        assert set(T.SOURCES) <= set(shares)
        assert sum(shares.values()) == pytest.approx(1.0)
        assert abs(shares["normalisation_residual"]) < 0.3, world  # the additive terms explain most of it
    assert reports["default"]["variance_shares"]["pathway_long_range"] == 0.0
    assert reports["depth-confounded"]["variance_shares"]["depth_capture"] > 0


def test_observability_counts_visible_pathways_whole(reports):
    r = reports["pathway-visible"]
    per = pd.Series(r["observable_share_per_pathway"])
    assert (per["HALLMARK_HYPOXIA"], per["HALLMARK_E2F_TARGETS"]) == (1.0, 1.0)
    assert r["observable_share"] > reports["default"]["observable_share"] + 0.2
    assert r["patient_share"] < reports["default"]["patient_share"]


def test_truth_command_writes_the_tables(tmp_path, capsys):
    out = tmp_path / "worlds"
    world = next(w for w in WORLDS if w not in T.ACCEPTANCE and w != "default")  # nothing to accept on 3 patients
    rc = cli_main(["truth", "--world", world, "--preset", "tiny", "--out", str(out), "--no-calibration"])
    assert rc == 0
    truth, calib = T.read_tables(out)
    assert list(truth["world"]) == [world] and calib.empty
    assert (out / "truth" / f"{world}.json").is_file()
    text = capsys.readouterr().out
    assert "evaluated genes' variance: composition" in text and "wrote" in text
    assert cli_main(["truth", "--world", "mars", "--out", str(out)]) == 2
    assert WORLDS.unknown("mars") in capsys.readouterr().out
    with pytest.raises(FileNotFoundError, match="python -m stflib truth"):
        T.read_tables(tmp_path / "nowhere")


def test_committed_truth_covers_every_world_and_stand_in():
    folder = repo_root() / "results" / "worlds"
    truth, calib = T.read_tables(folder)
    assert list(truth["world"]) == list(WORLDS)
    assert truth["acceptance_passed"].dropna().astype(bool).all()
    # every stand-in is calibrated against its anchor in the default world; the other worlds report the
    # stand-ins their last truth run had (at least the original five foundation models and ResNet-50)
    assert set(calib.loc[calib["world"] == "default", "backbone"]) == set(BACKBONES)
    for world in WORLDS:
        probed = set(calib.loc[calib["world"] == world, "backbone"])
        assert probed <= set(BACKBONES) and {*T.FOUNDATION_MODELS, "resnet50"} <= probed, world
    default = calib[calib["world"] == "default"].set_index("backbone")
    # the calibration the default world promises: every stand-in in its encoder's range, and
    # +10-20 % from context for every foundation-model stand-in
    assert default["probe_within_anchor"].astype(bool).all()
    assert default.loc[list(T.FOUNDATION_MODELS), "gain_within_anchor"].astype(bool).all()
    own = default["probe_pcc"]
    assert own["gigapath"] > own["phikon"] > own["ctranspath"] - 0.02
    assert np.isfinite(truth.drop(columns=["world", "controls", "study_accuracy", "cross_study_ratio"])
                       .select_dtypes("number").to_numpy()).all()
