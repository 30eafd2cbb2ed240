"""The attention benchmark: measurement, skipping, table and targets (not timings)."""
import sys
import types

import numpy as np

from stflib import bench
from stflib.cli import main

TINY = ["--feature-dim", "8", "--num-genes", "6", "--token-dim", "16", "--n-heads", "2",
        "--num-pathways", "4", "--repeats", "1"]


def test_hex_grid_coords_are_visium_like():
    xy = bench.hex_grid_coords(50, pitch=100.0)
    assert xy.shape == (50, 2)
    d = np.sqrt(((xy[:, None] - xy[None]) ** 2).sum(-1))
    np.fill_diagonal(d, np.inf)
    np.testing.assert_allclose(d.min(1), 100.0, rtol=1e-5)


def test_measure_one_configuration_in_process():
    config = dict(device="cpu", feature_dim=8, num_genes=6, token_dim=16, n_heads=2, n_layers=2,
                  num_pathways=4, repeats=2, time_budget=30, threads=None, mode="bottleneck", S=64)
    r = bench.measure(config)
    assert r["seconds"] > 0 and r["peak_bytes"] >= 0 and r["repeats"] >= 1


def test_cli_attention_end_to_end_subprocess(capsys, tmp_path):
    """One real configuration through the CLI and a fresh child process."""
    out_json = tmp_path / "bench.json"
    assert main(["bench", "attention", "--sizes", "32", "--modes", "bottleneck", *TINY, "--json", str(out_json)]) == 0
    text = capsys.readouterr().out
    assert "bottleneck time" in text and "bottleneck memory" in text
    import json

    rows = json.loads(out_json.read_text())
    assert [(r["mode"], r["S"]) for r in rows] == [("bottleneck", 32)] and rows[0]["seconds"] > 0


def _fake_child(config, timeout):
    """Quadratic reference/full, linear bottleneck: 1 s and 1 GB at S = 1000."""
    grow = (config["S"] / 1000) ** bench.GROWTH[config["mode"]]
    return {"seconds": 1.0 * grow, "peak_bytes": int(2**30 * grow), "repeats": 1}


def test_sweep_table_and_skips(monkeypatch, capsys):
    monkeypatch.setattr(bench, "_run_child", _fake_child)
    assert main(["bench", "attention", "--sizes", "1000", "2000", "4000", "8000", *TINY,
                 "--memory-limit-gb", "20", "--time-budget", "100"]) == 0
    text = capsys.readouterr().out
    assert "reference  S=8000    skipped: projected memory" in text  # 64 GB > 20 GB
    assert "bottleneck S=8000" in text and "bottleneck growth S=4000->8000: time x2.00, memory x2.00" in text
    assert "full/reference time, worst over S=[1000, 2000, 4000]: 1.00" in text
    monkeypatch.setattr(bench, "_run_child", _fake_child)
    assert main(["bench", "attention", "--sizes", "1000", "8000", "16000", "--modes", "full", *TINY,
                 "--memory-limit-gb", "1000", "--time-budget", "100"]) == 0
    text = capsys.readouterr().out
    assert "skipped: projected 64 s per step" in text  # warm-up + 1 step > 100 s
    assert "skipped (a smaller size was already skipped)" in text


def test_summary_targets_and_ratios():
    gb = 2**30
    results = {
        ("reference", 16000): {"seconds": 70.0, "peak_bytes": 8 * gb},
        ("full", 16000): {"seconds": 50.0, "peak_bytes": 1 * gb},
        ("bottleneck", 16000): {"seconds": 10.0, "peak_bytes": 1 * gb},
        ("bottleneck", 32000): {"seconds": 21.0, "peak_bytes": 2 * gb},
        ("bottleneck", 64000): {"seconds": 44.0, "peak_bytes": 4 * gb},
        ("reference", 32000): {"note": "skipped: projected memory"},
    }
    lines = bench.summarise(results, [16000, 32000, 64000], limit=16 * gb)
    text = "\n".join(lines)
    assert "full/reference time, worst over S=[16000]: 0.71 (PASS" in text
    assert "bottleneck growth S=16000->32000: time x2.10, memory x2.00 (target <= 2.3: PASS)" in text
    assert "bottleneck at S=64000" in text and "PASS" in text
    table = bench.format_table(results, [16000, 32000, 64000], list(bench.MODES))
    assert "0.71" in table and "skipped: projected memory" in table


def test_bench_backbones_delegates_to_features(monkeypatch, capsys):
    fake = types.ModuleType("stflib.features")
    calls = {}

    def add_benchmark_arguments(parser):
        parser.add_argument("--backbones", nargs="+", default=["resnet50"])

    def run_benchmark(args):
        calls["backbones"] = args.backbones
        return 0

    fake.add_benchmark_arguments, fake.run_benchmark = add_benchmark_arguments, run_benchmark
    monkeypatch.setitem(sys.modules, "stflib.features", fake)
    assert main(["bench", "backbones", "--backbones", "phikon"]) == 0
    assert calls == {"backbones": ["phikon"]}
