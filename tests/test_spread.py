"""Collapse ratio against what a run's accuracy allows: explained share and calibration slope (stflib.report.spread)."""
import numpy as np
import pytest

from stflib.report import spread as C


def _cohort(seed=0, n_slides=3, spots=400, genes=20):
    """Truth = signal + independent noise of the same variance, per slide: a prediction equal to the
    signal is calibrated (slope 1) and explains about half the measured variance."""
    rng = np.random.default_rng(seed)
    slide = np.repeat([f"s{i}" for i in range(n_slides)], spots)
    signal = rng.normal(size=(len(slide), genes)) + np.repeat(rng.normal(size=(n_slides, genes)) * 5, spots, axis=0)
    truth = signal + rng.normal(size=signal.shape)
    return signal, truth, slide


def _table(rows):
    import pandas as pd

    return pd.DataFrame([{"runs": 1, **r} for r in rows.values()], index=list(rows))


def test_a_calibrated_prediction_shows_the_spread_it_explains():
    signal, truth, slide = _cohort()
    c = C.spread(signal, truth, slide)
    assert c["calibration_slope"] == pytest.approx(1.0, abs=0.05)
    assert c["explained_share"] == pytest.approx(0.5, abs=0.05)
    assert c["collapse_ratio"] == pytest.approx(c["explained_share"], abs=0.05)


def test_a_shrunk_prediction_is_a_collapse_and_an_inflated_one_an_overshoot():
    """Scaling the prediction leaves its correlations (explained share) and changes spread and slope."""
    signal, truth, slide = _cohort()
    base = C.spread(signal, truth, slide)
    shrunk, inflated = C.spread(0.2 * signal, truth, slide), C.spread(3.0 * signal, truth, slide)
    for c in (shrunk, inflated):
        assert c["explained_share"] == pytest.approx(base["explained_share"])
    assert shrunk["collapse_ratio"] == pytest.approx(0.04 * base["collapse_ratio"])
    assert shrunk["calibration_slope"] == pytest.approx(5.0 * base["calibration_slope"])
    assert inflated["calibration_slope"] == pytest.approx(base["calibration_slope"] / 3.0)
    table = _table({"shrunk": shrunk, "calibrated": base, "inflated": inflated})
    assert "a collapse" in C.describe(table, "shrunk", "S")
    assert "calibrated" in C.describe(table, "calibrated", "S")
    assert "an overshoot" in C.describe(table, "inflated", "S")


def test_slide_offsets_do_not_count_and_a_flat_prediction_explains_nothing():
    signal, truth, slide = _cohort()
    offsets = np.repeat(np.arange(3.0)[:, None] * 100, 400, axis=0)  # a different level on every slide
    assert C.spread(signal + offsets, truth, slide) == pytest.approx(C.spread(signal, truth, slide))
    flat = C.spread(np.zeros_like(truth), truth, slide)
    assert flat["collapse_ratio"] == 0 and flat["explained_share"] == 0 and np.isnan(flat["calibration_slope"])
    assert "flat: no within-slide spread" in C.describe(_table({"flat": flat}), "flat", "F")


def test_bad_shapes_and_slides_without_variance_are_refused():
    signal, truth, slide = _cohort()
    with pytest.raises(ValueError, match=r"pred \(1200, 20\) and truth \(1200, 19\)"):
        C.spread(signal, truth[:, :19], slide)
    with pytest.raises(ValueError, match="no slide with two or more spots"):
        C.spread(signal[:1], truth[:1], slide[:1])


def _write_predictions(path, pred, truth, slide):
    import anndata as ad

    path.parent.mkdir(parents=True, exist_ok=True)
    a = ad.AnnData(pred.astype(np.float32))
    a.layers["truth"] = truth.astype(np.float32)
    a.obs["valid"] = np.ones(len(slide), bool)
    a.obs["sample_id"] = slide
    a.write_h5ad(path)


def test_the_axis_table_is_written_from_the_runs_and_read_back(tmp_path):
    signal, truth, slide = _cohort()
    _write_predictions(tmp_path / "losses/mse/fold0/predictions.h5ad", signal, truth, slide)
    _write_predictions(tmp_path / "losses/mse/fold1/predictions.h5ad", signal, truth, slide)
    _write_predictions(tmp_path / "losses/pcc/fold0/predictions.h5ad", 0.1 * signal, truth, slide)
    with pytest.raises(FileNotFoundError, match="run `python -m stflib spread losses`"):
        C.spread_table("losses", tmp_path)
    path = C.write_spread("losses", tmp_path)
    assert path == tmp_path / "ceilings" / "spread_losses.csv"
    table = C.spread_table("losses", tmp_path)
    assert list(table.index) == ["mse", "pcc"] and list(table["runs"]) == [2, 1]
    assert table.loc["pcc", "calibration_slope"] == pytest.approx(10 * table.loc["mse", "calibration_slope"], rel=1e-4)
    assert list(C.spread_table("losses", tmp_path, arms=["pcc", "mse"]).index) == ["pcc", "mse"]
    with pytest.raises(ValueError, match="no runs of zinb; arms there: mse, pcc"):
        C.spread_table("losses", tmp_path, arms=["zinb"])


def test_an_axis_without_predictions_says_what_to_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="run `python -m stflib ablate params/losses`"):
        C.write_spread("losses", tmp_path)
    with pytest.raises(ValueError, match="axis 'lossez' unknown; allowed: .*losses"):
        C.write_spread("lossez", tmp_path)


def test_the_command_refuses_an_unknown_axis(capsys):
    from stflib.cli import main

    with pytest.raises(SystemExit):
        main(["spread", "lossez"])
    assert "invalid choice: 'lossez'" in capsys.readouterr().err
