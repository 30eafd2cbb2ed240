"""The simulated CRC Visium cohort: HEST layout, truth, statistics, determinism, caching, CLI."""
from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from stflib import sim as S
from stflib.sim import cohort
from stflib.sim.biology import activity_reference
from stflib.sim.tissue import array_centres_um
from stflib.cli import main as cli_main


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """The tiny preset (seed 0), written through the CLI."""
    out = tmp_path_factory.mktemp("sim") / "tiny"
    assert cli_main(["simulate", "--out", str(out), "--preset", "tiny", "--seed", "0"]) == 0
    return out


def _ids(root: Path) -> list[str]:
    return pd.read_csv(root / "metadata.csv")["id"].astype(str).tolist()


def test_layout_and_hest_columns(tiny):
    meta = pd.read_csv(tiny / "metadata.csv")
    for col in ["id", "organ", "species", "oncotree_code", "st_technology", "patient", "subseries",
                "spots_under_tissue", "pixel_size_um_estimated", "inter_spot_dist", "spot_diameter"]:
        assert col in meta.columns, col
    assert list(meta.columns) == S.HEST_COLUMNS
    assert len(meta) == S.PRESETS["tiny"].n_slides
    assert meta["id"].tolist() == [f"SIM{i:03d}" for i in range(len(meta))]
    assert set(meta["organ"]) == {"Bowel"} and set(meta["species"]) == {"Homo sapiens"}
    assert set(meta["st_technology"]) == {"Visium"} and set(meta["oncotree_code"]) <= {"COAD", "READ"}
    assert (meta["pixel_size_um_estimated"] == 0.5).all() and (meta["inter_spot_dist"] == 100).all()
    assert meta["patient"].nunique() == S.PRESETS["tiny"].n_patients
    lo, hi = S.PRESETS["tiny"].spots
    assert meta["spots_under_tissue"].between(lo, hi).all()
    for sid in meta["id"]:
        assert (tiny / "st" / f"{sid}.h5ad").is_file()
        assert (tiny / "patches" / f"{sid}.h5").is_file()
        assert json.loads((tiny / "metadata" / f"{sid}.json").read_text())["id"] == sid
        for name in S.BACKBONES:
            assert (tiny / "features" / name / f"{sid}.h5").is_file()


def test_selected_by_the_cohort_filter(tiny):
    from stflib.data import select_samples

    assert len(select_samples(tiny / "metadata.csv")) == S.PRESETS["tiny"].n_slides


def test_h5ad_counts_and_truth(tiny):
    import anndata as ad
    import scipy.sparse as sp

    bio = S.biology()
    for sid in _ids(tiny):
        a = ad.read_h5ad(tiny / "st" / f"{sid}.h5ad")
        n, g = a.shape
        assert sp.issparse(a.X) and a.X.dtype == np.float32
        x = a.X.toarray()
        assert np.all(x == np.round(x)) and x.min() >= 0  # integer-valued raw counts
        assert 0.5 < (x == 0).mean() < 0.95  # most genes zero in most spots
        assert list(a.var_names) == list(bio.genes) and 5000 <= g <= 6500
        assert a.obsm["spatial"].shape == (n, 2)
        assert a.obsm["true_pathway_activity"].shape == (n, 50)
        assert list(a.uns["true_pathway_names"]) == bio.pathway_names
        assert a.layers["expected_counts"].shape == (n, g) and a.layers["expected_counts"].dtype == np.float32
        assert a.obsm["true_composition"].shape == (n, len(S.CELL_TYPES))
        np.testing.assert_allclose(a.obsm["true_composition"].sum(1), 1, atol=1e-4)
        assert list(a.uns["cell_types"]) == S.CELL_TYPES
        assert set(a.obs["compartment"].astype(str)) <= set(S.COMPARTMENTS)
        assert a.uns["simulator"]["preset"] == "tiny" and a.uns["simulator"]["seed"] == 0
        assert a.uns["thumbnail"].ndim == 3 and a.uns["thumbnail"].dtype == np.uint8
        # expected counts are the mean of the observed counts (up to dropout)
        ratio = x.sum() / a.layers["expected_counts"].sum()
        assert 0.8 < ratio < 1.0
    for gene in ["EPCAM", "KRT20", "CEACAM5", "COL1A1", "PTPRC", "CD3E", "MS4A1", "DES", "MYH11", "MT-CO1",
                 "RPL13", "RPS18"]:
        assert gene in set(bio.genes), gene


def test_count_statistics(tiny):
    from stflib.data import read_hest_sample

    libs = []
    for sid in _ids(tiny):
        s = read_hest_sample(tiny, sid)
        x = s.counts.toarray()
        libs.append(x.sum(1))
        mean, var = x.mean(0), x.var(0)
        expressed = mean > 1
        assert expressed.sum() > 100
        assert np.mean(var[expressed] > mean[expressed]) > 0.9  # overdispersed
    med = np.median(np.concatenate(libs))
    assert 3000 <= med <= 20000, med


def test_patches(tiny):
    import anndata as ad

    sid = _ids(tiny)[0]
    a = ad.read_h5ad(tiny / "st" / f"{sid}.h5ad")
    with h5py.File(tiny / "patches" / f"{sid}.h5") as f:
        assert f["img"].shape == (a.n_obs, 224, 224, 3) and f["img"].dtype == np.uint8
        assert f["img"].compression == "gzip"
        assert f["barcode"].shape == (a.n_obs, 1)
        bcs = [b[0].decode() for b in f["barcode"][:]]
        assert bcs == list(a.obs_names)
        np.testing.assert_allclose(f["coords"][:] + 112, a.obsm["spatial"], atol=1)
        img = f["img"][:8]
    assert img.std() > 10  # not blank


def test_feature_cache_format(tiny):
    import anndata as ad

    sid = _ids(tiny)[1]
    a = ad.read_h5ad(tiny / "st" / f"{sid}.h5ad", backed="r")
    for name, spec in S.BACKBONES.items():
        with h5py.File(tiny / "features" / name / f"{sid}.h5") as f:
            assert f["features"].shape == (a.n_obs, spec.feature_dim) and f["features"].dtype == np.float32
            assert f.attrs["feature_dim"] == spec.feature_dim and f.attrs["backbone"] == name
            assert f.attrs["latent_noise"] == pytest.approx(spec.stand_in.noise)
            assert [b.decode() for b in f["barcodes"][:]] == list(a.obs_names)
            assert f["coords"].shape == (a.n_obs, 2)
            assert np.isfinite(f["features"][:]).all()
    # one spec per backbone: the simulator's stand-in is a field of the backbone registry's entry
    from stflib.backbones import BACKBONES

    assert S.BACKBONES is BACKBONES
    noise = {k: v.stand_in.noise for k, v in S.BACKBONES.items()}
    # the information level is the noise together with the stain sensitivity and output noise; the measured
    # order of the stand-ins' probes is checked against HEST-Bench in tests/test_truth.py
    assert noise["gigapath"] <= noise["hibou-l"] < noise["phikon"] < noise["ctranspath"]


def test_read_hest_sample_on_simulated(tiny):
    from stflib.data import read_hest_sample

    s = read_hest_sample(tiny, "SIM000", backbone="ctranspath", load_patches=True)
    assert s.features.shape == (s.counts.shape[0], 768)
    assert s.patches.shape == (s.counts.shape[0], 224, 224, 3)
    assert s.truth["pathway_activity"].shape == (s.counts.shape[0], 50)
    assert s.truth["expected_counts"].shape == s.counts.shape
    assert s.pixel_size_um == 0.5


def test_pathway_fields_are_spatially_smooth(tiny):
    from stflib.sim.calibration import morans_i

    import anndata as ad

    fractions = []
    for sid in _ids(tiny):
        a = ad.read_h5ad(tiny / "st" / f"{sid}.h5ad", backed="r")
        mi = morans_i(np.asarray(a.obsm["true_pathway_activity"]), np.asarray(a.obsm["spatial"]), 200.0)
        fractions.append(np.mean(mi >= 0.3))
    assert np.mean(fractions) > 0.8


def test_deterministic_by_seed(tiny):
    import anndata as ad

    plan = cohort._cohort_plan(S.PRESETS["tiny"], 0)[0]
    one = S.simulate_slide(plan, 0, "tiny", with_patches=False, backbones=["ctranspath"])
    two = S.simulate_slide(plan, 0, "tiny", with_patches=False, backbones=["ctranspath"])
    assert (one["adata"].X != two["adata"].X).nnz == 0
    np.testing.assert_array_equal(one["features"]["ctranspath"], two["features"]["ctranspath"])
    written = ad.read_h5ad(tiny / "st" / f"{plan['id']}.h5ad")  # the files match the in-memory slide
    assert (written.X != one["adata"].X).nnz == 0
    with h5py.File(tiny / "features" / "ctranspath" / f"{plan['id']}.h5") as f:
        np.testing.assert_allclose(f["features"][:], one["features"]["ctranspath"], rtol=2e-3, atol=1e-3)
    other_plan = cohort._cohort_plan(S.PRESETS["tiny"], 1)[0]
    other = S.simulate_slide(other_plan, 1, "tiny", with_patches=False, backbones=[])
    assert other["adata"].shape != one["adata"].shape or (other["adata"].X != one["adata"].X).nnz > 0


def test_unknown_preset_is_a_clear_error(tmp_path, capsys):
    message = S.PRESETS.unknown("huge")  # names exactly the registered presets
    assert message == "preset: unknown 'huge'; allowed: " + ", ".join(S.PRESETS)
    for call in (lambda: S.simulate_cohort(tmp_path / "x", preset="huge"), lambda: S.default_cohort("huge")):
        with pytest.raises(ValueError) as err:
            call()
        assert str(err.value) == message
    assert cli_main(["simulate", "--out", str(tmp_path / "y"), "--preset", "huge"]) == 2
    assert message in capsys.readouterr().out
    with pytest.raises(ValueError) as err:
        S.simulate_cohort(tmp_path / "z", preset="tiny", backbones=["vit-huge"])
    assert str(err.value) == S.BACKBONES.unknown("vit-huge")


def test_default_cohort_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("STFLIB_CACHE", str(tmp_path / "cache"))
    path = S.default_cohort("tiny", seed=3)
    assert path == tmp_path / "cache" / "sim-tiny-seed3"
    assert (path / S.COMPLETE_MARKER).is_file() and (path / "metadata.csv").is_file()
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["sim-tiny-seed3"]  # no temporary left

    def boom(*args, **kwargs):
        raise AssertionError("a complete cached cohort must not be regenerated")

    monkeypatch.setattr(cohort, "simulate_cohort", boom)
    assert S.default_cohort("tiny", seed=3) == path


def test_default_cohort_replaces_incomplete(tmp_path, monkeypatch):
    monkeypatch.setenv("STFLIB_CACHE", str(tmp_path))
    stale = tmp_path / "sim-tiny-seed5"
    stale.mkdir()
    (stale / "metadata.csv").write_text("half written")
    calls = []

    def fake(out, preset, seed, **kwargs):
        calls.append((preset, seed))
        Path(out).mkdir(parents=True)
        (Path(out) / "metadata.csv").write_text("id\n")
        return Path(out)

    monkeypatch.setattr(cohort, "simulate_cohort", fake)
    path = S.default_cohort("tiny", seed=5)
    assert calls == [("tiny", 5)] and (path / S.COMPLETE_MARKER).is_file()
    assert (path / "metadata.csv").read_text() == "id\n"


def test_fingerprint_covers_every_module_of_the_simulator_package(tmp_path, monkeypatch):
    """A cached cohort is reused only by the code that wrote it: editing, adding or renaming any module of
    stflib/sim/ that generates cohorts changes the fingerprint, and editing one that only measures them
    (``MEASUREMENT_MODULES``) does not (measured on a copy of the package)."""
    import shutil

    package = Path(cohort.__file__).resolve().parent
    copy = tmp_path / "sim"
    copy.mkdir()
    for path in package.glob("*.py"):
        shutil.copy(path, copy / path.name)
    real = S.simulator_fingerprint()
    monkeypatch.setattr(cohort, "__file__", str(copy / "cohort.py"))
    assert cohort.simulator_fingerprint() == real
    assert real.startswith(f"{S.SIMULATOR_VERSION}-")
    seen = {real}
    for name in sorted(p.name for p in copy.glob("*.py")):
        text = (copy / name).read_text()
        (copy / name).write_text(text + "# edited\n")
        edited = cohort.simulator_fingerprint()
        assert (edited == real) == (name in cohort.MEASUREMENT_MODULES), name
        seen.add(edited)
        (copy / name).write_text(text)
        assert cohort.simulator_fingerprint() == real
    generating = [p for p in copy.glob("*.py") if p.name not in cohort.MEASUREMENT_MODULES]
    assert len(seen) == 1 + len(generating)  # each generating module's edit gives its own fingerprint
    (copy / "fields.py").write_text("")  # a new module
    added = cohort.simulator_fingerprint()
    assert added not in seen
    (copy / "fields.py").rename(copy / "noise.py")  # the same module under another name
    assert cohort.simulator_fingerprint() not in seen | {added}


def test_stflib_simulate_keeps_the_simulators_public_names():
    """``stflib.simulate`` (the design contracts' path) is the simulator package's public interface."""
    from stflib import simulate

    assert set(simulate.__all__) == set(S.__all__)
    for name in S.__all__:
        assert getattr(simulate, name) is getattr(S, name), name
    assert simulate.WORLDS is S.WORLDS and simulate.default_cohort is cohort.default_cohort


def test_default_cohort_regenerates_one_written_by_another_simulator_version(tmp_path, monkeypatch):
    monkeypatch.setenv("STFLIB_CACHE", str(tmp_path))
    old = tmp_path / "sim-tiny-seed6"
    old.mkdir()
    (old / "metadata.csv").write_text("old simulator")
    (old / S.COMPLETE_MARKER).write_text('{"preset": "tiny", "seed": 6, "fingerprint": "0-000000000000"}')

    def fake(out, preset, seed, **kwargs):
        Path(out).mkdir(parents=True)
        (Path(out) / "metadata.csv").write_text("new simulator")
        return Path(out)

    monkeypatch.setattr(cohort, "simulate_cohort", fake)
    path = S.default_cohort("tiny", seed=6)
    assert (path / "metadata.csv").read_text() == "new simulator"
    assert cohort._cached_fingerprint(path) == S.simulator_fingerprint()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sim-tiny-seed6"]  # stale copy removed


# ------------------------------------------------------------------------------------------ worlds
def _slides(world: str, n: int = 4) -> list[dict]:
    plans = cohort._cohort_plan(S.PRESETS["tiny"], 0)[:n]
    return [S.simulate_slide(p, 0, "tiny", with_patches=False, backbones=["resnet50"], world=world) for p in plans]


@pytest.fixture(scope="module")
def worlds() -> dict[str, list[dict]]:
    return {w: _slides(w) for w in ("default", "no-context", "pathway-misspecified", "strong-patient")}


def test_worlds_are_named_documented_and_selectable():
    from stflib import config

    assert {"default", "pathway-misspecified", "no-context", "strong-patient"} <= set(S.WORLDS)
    assert tuple(S.WORLDS) == config.WORLDS and config.PARAM_BY_NAME["world"].allowed == config.WORLDS
    for name, w in S.WORLDS.items():
        assert len(w.description) > 40 and w.anchor, name
    for call in (lambda: S.simulate_cohort("unused", preset="tiny", world="mars"),
                 lambda: S.default_cohort("tiny", world="mars")):
        with pytest.raises(ValueError) as err:
            call()
        assert str(err.value) == S.WORLDS.unknown("mars") == "world: unknown 'mars'; allowed: " + ", ".join(S.WORLDS)
    with pytest.raises(ValueError, match="world: unknown value 'mars'"):
        config.validate({"world": "mars"})


def test_cli_world(tmp_path, capsys):
    import anndata as ad

    out = tmp_path / "nc"
    assert cli_main(["simulate", "--out", str(out), "--preset", "tiny", "--world", "no-context", "--no-patches"]) == 0
    a = ad.read_h5ad(out / "st" / "SIM000.h5ad")
    assert a.uns["simulator"]["world"] == "no-context"
    assert np.all(a.obsm["true_context"] == 0)
    assert a.obsm["true_latent_morphology"].shape == (a.n_obs, 18)
    assert cli_main(["simulate", "--out", str(tmp_path / "x"), "--world", "mars"]) == 2
    assert S.WORLDS.unknown("mars") in capsys.readouterr().out


def test_no_context_world_turns_the_context_fields_off(worlds):
    for sim in worlds["no-context"]:
        assert np.all(sim["adata"].obsm["true_context"] == 0)
    assert all(np.abs(sim["adata"].obsm["true_context"]).max() > 0.05 for sim in worlds["default"])
    # same tissue, same composition: only the context-driven part of the activities differs
    one, other = worlds["default"][0]["adata"], worlds["no-context"][0]["adata"]
    np.testing.assert_array_equal(one.obsm["true_composition"], other.obsm["true_composition"])
    assert not np.allclose(one.obsm["true_pathway_activity"], other.obsm["true_pathway_activity"])


def _modulation_variance(sim: dict, world: str) -> tuple[float, float]:
    a = sim["adata"]
    tissue = {"activity": np.asarray(a.obsm["true_pathway_activity"], np.float64),
              "activity_ref": activity_reference()}
    if "true_hidden_programme_activity" in a.obsm:
        tissue["hidden_activity"] = np.asarray(a.obsm["true_hidden_programme_activity"], np.float64)
    mod = S.programme_log_modulation(S.biology(), tissue, S.WORLDS[world])
    return float(mod["hallmark"].var(0).sum()), float(mod["hidden"].var(0).sum())


def test_pathway_misspecified_world_puts_most_variance_outside_the_hallmarks(worlds):
    for sim in worlds["pathway-misspecified"]:
        hallmark, hidden = _modulation_variance(sim, "pathway-misspecified")
        assert hidden > 2 * hallmark > 0
        assert sim["adata"].obsm["true_hidden_programme_activity"].shape[1] == S.WORLDS["pathway-misspecified"].hidden_programmes
    for sim in worlds["default"]:
        hallmark, hidden = _modulation_variance(sim, "default")
        assert hidden == 0 and hallmark > 0
        assert "true_hidden_programme_activity" not in sim["adata"].obsm


def test_strong_patient_world_spreads_patients_apart(worlds):
    def between_slide_sd(sims):
        means = np.stack([np.asarray(s["adata"].obsm["true_pathway_activity"]).mean(0) for s in sims])
        return float(means.std(0).mean())

    assert between_slide_sd(worlds["strong-patient"]) > 1.5 * between_slide_sd(worlds["default"])


def test_feature_noise_has_parts_that_neighbour_averaging_keeps():
    from stflib import spatial

    rows, cols = np.meshgrid(np.arange(30), np.arange(60), indexing="ij")
    even = (rows + cols) % 2 == 0  # the Visium hex lattice
    xy = array_centres_um(rows[even], cols[even])
    world = S.WORLDS["default"]
    image = S.structured_noise(cohort._rng(0, 9), xy, 18, world)
    spot = world.noise_spot * np.random.default_rng(1).standard_normal(image.shape)
    keep = lambda v: np.mean([np.corrcoef(spatial.knn_mean(v, xy, 6)[:, j], v[:, j])[0, 1]  # noqa: E731
                              for j in range(v.shape[1])])
    assert keep(image - image.mean(0)) > 0.8  # smooth fields and slide offsets survive averaging
    assert keep(spot) < 0.1  # i.i.d. spot noise does not
    assert np.abs(image.mean(0)).max() > 0  # a slide offset per dimension
    assert world.noise_smooth > 0 and world.noise_slide > 0 and world.noise_spot > 0


def test_worlds_are_deterministic_and_cached_under_their_name(tmp_path, monkeypatch):
    plan = cohort._cohort_plan(S.PRESETS["tiny"], 0)[1]
    one = S.simulate_slide(plan, 0, "tiny", with_patches=False, backbones=["gigapath"], world="strong-patient")
    two = S.simulate_slide(plan, 0, "tiny", with_patches=False, backbones=["gigapath"], world="strong-patient")
    assert (one["adata"].X != two["adata"].X).nnz == 0
    np.testing.assert_array_equal(one["features"]["gigapath"], two["features"]["gigapath"])
    monkeypatch.setenv("STFLIB_CACHE", str(tmp_path))
    calls = []

    def fake(out, preset, seed, world="default", **kwargs):
        calls.append(world)
        Path(out).mkdir(parents=True)
        (Path(out) / "metadata.csv").write_text("id\n")
        return Path(out)

    monkeypatch.setattr(cohort, "simulate_cohort", fake)
    assert S.default_cohort("tiny", 3, "no-context") == tmp_path / "sim-tiny-no-context-seed3"
    assert S.default_cohort("tiny", 3) == tmp_path / "sim-tiny-seed3"
    assert S.default_cohort("tiny", 3, "no-context") == tmp_path / "sim-tiny-no-context-seed3"  # cached
    assert calls == ["no-context", "default"]
    marker = json.loads((tmp_path / "sim-tiny-no-context-seed3" / S.COMPLETE_MARKER).read_text())
    assert marker["world"] == "no-context" and marker["fingerprint"] == S.simulator_fingerprint()
