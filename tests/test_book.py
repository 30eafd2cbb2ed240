import matplotlib

matplotlib.use("Agg")
import numpy as np
import pandas as pd
import pytest

from stflib import book


@pytest.fixture
def summary():
    rows = []
    for fold in range(3):
        for arm, base in [("full", 0.30), ("bottleneck", 0.33), ("p2p", 0.10)]:
            rows.append(dict(axis="interactions", arm=arm, fold=fold, model="interaction",
                             pcc_hvg50=base + 0.01 * fold, pcc_all=base / 2, mse=0.5 - base,
                             pathway_pcc_truth=np.nan, train_seconds=10.0 + fold))
    rows.append(dict(axis="losses", arm="mse", fold=0, model="interaction", pcc_hvg50=0.2, pcc_all=0.1,
                     mse=0.3, pathway_pcc_truth=0.5, train_seconds=5.0))
    return pd.DataFrame(rows)


def test_arm_table_mean_sd_and_order(summary):
    table = book.arm_table(summary, "interactions")
    assert list(table.index) == ["bottleneck", "full", "p2p"]
    assert table.loc["full", "PCC, 50 HVGs"] == "0.310 ± 0.010"
    assert table.loc["full", "folds"] == 3
    assert "PCC with true pathways" not in table  # all NaN for this axis: left out, not printed as nan


def test_paired_deltas_are_fold_paired(summary):
    deltas = book.paired_deltas(summary, "interactions", reference="full")
    assert deltas.loc["bottleneck", "mean_delta"] == pytest.approx(0.03)
    assert deltas.loc["bottleneck", "sd_delta"] == pytest.approx(0.0, abs=1e-12)
    assert deltas.loc["bottleneck", "folds_better"] == 3
    assert deltas.loc["p2p", "folds_better"] == 0
    with pytest.raises(ValueError, match="reference arm 'nope'"):
        book.paired_deltas(summary, "interactions", reference="nope")


def test_describe_axis_reads_the_numbers(summary):
    text = book.describe_axis(summary, "interactions", reference="full")
    assert "`bottleneck` (0.340)" in text and "3 patient folds" in text
    assert "`bottleneck` (+0.030" in text and "`p2p` (-0.200" in text


def test_unknown_axis_names_the_present_ones(summary):
    with pytest.raises(ValueError, match=r"axes present: \['interactions', 'losses'\]"):
        book.arm_table(summary, "nope")


def test_plot_axis_draws_every_arm(summary):
    ax = book.plot_axis(summary, "interactions", reference="full")
    assert [t.get_text() for t in ax.get_yticklabels()] == ["bottleneck", "full", "p2p"]


def test_load_summary_missing_file_says_how_to_make_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="stflib collect"):
        book.load_summary(tmp_path)


def test_example_arms_only_those_with_a_saved_figure(summary, tmp_path):
    for arm in ("full", "p2p"):
        folder = tmp_path / "interactions" / arm / "fold0"
        folder.mkdir(parents=True)
        (folder / "gene_maps.png").write_bytes(b"png")
    # the best arm (bottleneck) saved no figure: the best arm with one (full, the reference) is shown
    assert book.example_arms(summary, "interactions", "full", results_dir=tmp_path) == ["full"]
    assert book.example_arms(summary, "interactions", "p2p", results_dir=tmp_path) == ["p2p", "full"]
    with pytest.raises(FileNotFoundError, match="ablate params/interactions"):
        book.run_figure("interactions", "bottleneck", "gene_maps.png", results_dir=tmp_path)


def test_api_table_lists_public_functions_with_signatures():
    table = book.api_table("pathways")
    row = table.set_index("name").loc["pathway_targets"]
    assert row["kind"] == "function" and row["signature"].startswith("pathway_targets(expression")
    assert "Path" not in set(table["name"])  # imported names from other packages are left out


def test_histories_and_grid_runs_read_run_folders(tmp_path):
    for arm, loss in (("stf", 2.0), ("mlp", 1.0)):
        folder = tmp_path / "baselines" / arm / "fold0"
        folder.mkdir(parents=True)
        pd.DataFrame({"epoch": [0, 1], "train_loss": [loss, loss / 2], "val_loss": [1, 1],
                      "val_pcc": [0.1, 0.2]}).to_csv(folder / "history.csv", index=False)
        (folder / "run.json").write_text(
            '{"axis": "baselines", "arm": "%s", "fold": 0, "status": "ok", "seconds": 10,'
            ' "started": "2026-01-01T00:00:00", "finished": "2026-01-01T00:00:10"%s}'
            % (arm, ', "copied_from": "x"' if arm == "mlp" else ""))
    curves = book.histories("baselines", ["stf", "mlp", "missing"], results_dir=tmp_path)
    assert list(curves.groupby("arm", sort=False)["train_loss"].first()) == [2.0, 1.0]
    runs = book.grid_runs(tmp_path)
    assert len(runs) == 2 and runs["copied"].sum() == 1 and (runs["status"] == "ok").all()
    book.plot_histories(curves)
    with pytest.raises(FileNotFoundError, match="no history.csv"):
        book.histories("baselines", ["missing"], results_dir=tmp_path)


def test_loss_terms_side_by_side(tmp_path):
    folder = tmp_path / "losses" / "mse_pcc" / "fold0"
    folder.mkdir(parents=True)
    pd.DataFrame({"epoch": [0, 1], "train_loss": [601.0, 500.0], "val_loss": [1, 1], "val_pcc": [0.1, 0.2],
                  "train_mse": [600.0, 499.0], "train_pcc": [1.0, 1.0]}).to_csv(folder / "history.csv", index=False)
    terms = book.loss_terms("losses", ["mse_pcc"], results_dir=tmp_path)
    assert terms.loc["mse_pcc"].to_dict() == {"loss": 601.0, "mse": 600.0, "pcc": 1.0}


def test_quadrant_effects_main_effect_per_fold():
    rows = []
    for fold in range(2):
        for arm in ["full", "bottleneck", "h2h", "p2p-h2h", "p2h", "p2p"]:
            value = 0.3 - (0.1 if ("p2h" in arm or arm in ("full", "bottleneck")) else 0.0) + 0.01 * fold
            rows.append(dict(axis="interactions", arm=arm, fold=fold, pcc_hvg50=value))
    effects = book.quadrant_effects(pd.DataFrame(rows))
    assert effects.loc["p2h", "mean_effect"] == pytest.approx(-0.1)
    assert effects.loc["p2h", "folds_positive"] == 0 and effects.loc["p2h", "arms_with"] == 3
    assert effects.loc["h2h", "arms_with"] == 3  # full, h2h, p2p-h2h


def test_deltas_to_a_run_of_another_axis(summary):
    deltas = book.deltas_to(summary, [("interactions", "bottleneck")], reference=("interactions", "full"))
    assert deltas.loc[("interactions", "bottleneck"), "mean_delta"] == pytest.approx(0.03)
    with pytest.raises(ValueError, match="no completed runs for losses/zinb"):
        book.deltas_to(summary, [("losses", "zinb")], reference=("interactions", "full"))
