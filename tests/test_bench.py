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
    assert main(["bench", "attention", "--sizes", "32", "--modes", "default", "bottleneck", *TINY,
                 "--json", str(out_json)]) == 0
    text = capsys.readouterr().out
    assert "bottleneck time" in text and "bottleneck memory" in text and "default / bound" in text
    assert "matmul rate:" in text and "FLOP bounds" in text and "default S=32:" in text
    import json

    rows = json.loads(out_json.read_text())
    assert [(r["mode"], r["S"]) for r in rows] == [("default", 32), ("bottleneck", 32)]
    assert all(r["seconds"] > 0 and r["bound_seconds"] > 0 and r["bound_ratio"] > 0 for r in rows)


def _fake_child(config, timeout):
    """Quadratic reference/full, linear default/bottleneck: 1 s and 1 GB at S = 1000; 100 GFLOP/s."""
    if config["mode"] == "gemm":
        return {"gflops": 100.0, "dtype": "float32", "threads": 1}
    grow = (config["S"] / 1000) ** bench.GROWTH[config["mode"]]
    return {"seconds": 1.0 * grow, "peak_bytes": int(2**30 * grow), "repeats": 1}


def test_sweep_table_and_skips(monkeypatch, capsys):
    monkeypatch.setattr(bench, "run_child", _fake_child)
    assert main(["bench", "attention", "--sizes", "1000", "2000", "4000", "8000", *TINY,
                 "--memory-limit-gb", "20", "--time-budget", "100"]) == 0
    text = capsys.readouterr().out
    assert "reference  S=8000    skipped: projected memory" in text  # 64 GB > 20 GB
    assert "bottleneck S=8000" in text
    assert "bottleneck growth S=4000->8000: time x2.00, memory x2.00 per doubling" in text
    assert "default growth S=1000->2000: time x2.00, memory x2.00 per doubling (target <= 2.1: PASS)" in text
    assert "matmul rate: 100.0 GFLOP/s" in text and "default time / FLOP bound: S=1000 x" in text
    assert "full/reference time, worst over S=[1000, 2000, 4000]: 1.00" in text
    monkeypatch.setattr(bench, "run_child", _fake_child)
    assert main(["bench", "attention", "--sizes", "1000", "8000", "16000", "--modes", "full", *TINY,
                 "--memory-limit-gb", "1000", "--time-budget", "100"]) == 0
    text = capsys.readouterr().out
    assert "skipped: projected 64 s per step" in text  # warm-up + 1 step > 100 s
    assert "skipped (a smaller size was already skipped)" in text


def test_summary_targets_and_ratios():
    gb = 2**30
    results = {
        ("default", 16000): {"seconds": 3.0, "peak_bytes": 1 * gb, "bound_ratio": 1.5},
        ("default", 64000): {"seconds": 14.0, "peak_bytes": 4.4 * gb, "bound_ratio": 2.2},
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
    assert "bottleneck growth S=16000->32000: time x2.10, memory x2.00 per doubling (target <= 2.3: PASS)" in text
    assert "default time / FLOP bound: S=16000 x1.50, S=64000 x2.20 (FAIL: target <= 2)" in text
    # 16k -> 64k is two doublings: x(14/3)^(1/2) = 2.16 in time, x2.10 in memory
    assert "default growth S=16000->64000: time x2.16, memory x2.10 per doubling (target <= 2.1: FAIL)" in text
    assert "bottleneck at S=64000" in text and "PASS" in text
    table = bench.format_table(results, [16000, 32000, 64000], list(bench.MODES))
    assert "0.71" in table and "skipped: projected memory" in table and "x2.20" in table


def test_step_flops_count_the_products_each_mode_computes():
    """Linear modes grow linearly, dense ones quadratically; the default's neighbour attention is a
    small term on top of the bottleneck's; the FLOP bound is FLOPs over the measured rate."""
    f = {m: [bench.step_flops(m, S) for S in (4000, 8000)] for m in bench.MODES}
    for m, growth in bench.GROWTH.items():
        ratio = f[m][1] / f[m][0]
        assert (1.9 < ratio < 2.01) if growth == 1 else (ratio > 2.5), m
    assert f["reference"] == f["full"]
    assert f["bottleneck"][0] < f["default"][0] < 1.05 * f["bottleneck"][0]
    # by hand at S = 4000: the forward's products, 3x for the step, less the features' gradient
    S, P, D, T, k = 4000, 50, 256, 4050, bench.DEFAULT_NEIGHBOURS
    layer = 24 * T * D * D + 4 * (P * (P + S) + S * (P + k + 1)) * D
    forward = 2 * S * 768 * D + 2 * layer + 2 * S * P * D + 2 * S * P * 1000
    assert bench.step_flops("default", S) == 3 * forward - 2 * S * 768 * D
    assert bench.matmul_rate() > 0.1


def test_default_mode_is_the_reference_model():
    from stflib.config import REFERENCE_NEIGHBOURS

    assert bench.MODES["default"] == dict(interactions="all", attention_impl="fast", n_neighbors=REFERENCE_NEIGHBOURS)
    assert set(bench.GROWTH) == set(bench.MODES)


def test_measure_the_default_mode_and_the_matmul_rate_in_process():
    config = dict(device="cpu", feature_dim=8, num_genes=6, token_dim=16, n_heads=2, n_layers=2,
                  num_pathways=4, repeats=1, time_budget=30, threads=None, mode="default", S=64)
    r = bench.measure(config)
    assert r["seconds"] > 0 and r["local_kernel"] == "sparse" and r["amp"] is False
    assert bench.measure({**config, "mode": "gemm"})["gflops"] > 0


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
