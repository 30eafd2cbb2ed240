"""Peak memory per run: measured (process RSS on CPU, torch's allocator on CUDA), written to
metrics.json and carried to results/summary.csv."""
import json
import math
import subprocess
import sys

import pandas as pd
import pytest
import torch

from stflib.grid.collect import SUMMARY_COLUMNS, collect, write_summary
from stflib.metrics import METRICS
from stflib.train.run import peak_memory_mb

MEASURE = """
import json, numpy as np, torch
from stflib.train.run import peak_memory_mb
before, kind = peak_memory_mb(torch.device("cpu"))
block = np.ones(400 * 2**20 // 8)  # 400 MiB, every page written
after, _ = peak_memory_mb(torch.device("cpu"))
import os
resident = int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20 if os.path.exists("/proc/self/statm") else float("nan")
del block
released, _ = peak_memory_mb(torch.device("cpu"))
print(json.dumps([before, after, released, kind, resident]))
"""


def test_cpu_peak_is_the_process_resident_set_and_never_decreases():
    """In a fresh process (as a run has): the peak, in MiB, is at least the resident set while 400 MiB are
    held (so it counts them), rises by at most that much (by less when importing the library left a
    higher transient peak than its resident set), and freeing the block does not lower it."""
    if sys.platform == "win32":
        pytest.skip("no resource module on Windows: the peak is NaN there")
    out = subprocess.run([sys.executable, "-c", MEASURE], capture_output=True, text=True, check=True, timeout=300)
    before, after, released, kind, resident = json.loads(out.stdout.strip().splitlines()[-1])
    assert kind == "cpu_rss" and 50 < before < 20_000  # MiB: torch alone takes more than 50, KiB would be ~1e5
    assert 0 <= after - before <= 420, (before, after)
    if not math.isnan(resident):  # Linux: the held block is resident, and the peak covers it
        assert resident >= 400 and after >= resident - 1, (after, resident)
    assert released == after


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_peak_is_the_allocators_peak_since_reset():
    device = torch.device("cuda")
    torch.cuda.reset_peak_memory_stats(device)
    base, kind = peak_memory_mb(device)
    block = torch.ones(64 * 2**20 // 4, device=device)  # 64 MiB
    peak, _ = peak_memory_mb(device)
    del block
    assert kind == "cuda" and peak - base == pytest.approx(64, abs=1)
    assert peak_memory_mb(device)[0] == peak  # a peak, not the current use


def test_peak_memory_is_a_summary_column_with_its_kind(tmp_path):
    """collect carries peak_memory_mb (a summarised metric, averaged per arm) and what it measured."""
    assert "peak_memory_mb" in METRICS and not METRICS["peak_memory_mb"].higher_is_better
    assert {"peak_memory_mb", "peak_memory_kind", "peak_memory_before_train_mb"} <= set(SUMMARY_COLUMNS)
    for fold, peak in ((0, 900.0), (1, 1100.0)):
        d = tmp_path / "baselines" / "knn_retrieval" / f"fold{fold}"
        d.mkdir(parents=True)
        (d / "run.json").write_text(json.dumps({"axis": "baselines", "arm": "knn_retrieval", "fold": fold,
                                                "status": "ok", "params": {}}))
        (d / "metrics.json").write_text(json.dumps({"pcc_hvg50": 0.2, "model": "knn_retrieval", "config": {},
                                                    "peak_memory_mb": peak, "peak_memory_kind": "cpu_rss",
                                                    "peak_memory_before_train_mb": 700.0}))
    write_summary(collect(tmp_path), tmp_path)
    runs = pd.read_csv(tmp_path / "summary.csv")
    assert runs["peak_memory_mb"].tolist() == [900.0, 1100.0] and set(runs["peak_memory_kind"]) == {"cpu_rss"}
    assert runs["peak_memory_before_train_mb"].tolist() == [700.0, 700.0]
    by_arm = pd.read_csv(tmp_path / "summary_by_arm.csv")
    assert by_arm["peak_memory_mb_mean"].tolist() == [1000.0]


@pytest.fixture(scope="module")
def tiny_cohort():
    from stflib.simulate import default_cohort

    return default_cohort("tiny")


@pytest.mark.slow
@pytest.mark.parametrize("over", [dict(model="knn_retrieval"), dict(model="patch_transformer", n_neighbors=4),
                                  dict(loss="poisson", log_transform=False)])
def test_new_arms_run_end_to_end_and_record_their_peak(tiny_cohort, tmp_path, over):
    """A tiny run of each kind of new arm (a numpy model, a torch model, a count loss) writes finite
    metrics and its peak memory, which covers at least the memory in use before training."""
    from stflib import train as T

    m = T.run(preset="tiny", max_steps=4, eval_every=2, progress=False, output_dir=str(tmp_path), log=None,
              torch_threads=1, **over).metrics
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert math.isfinite(m["pcc_hvg50"]) and m["mse"] > 0
    device_kind = "cuda" if saved["device"].startswith("cuda") else "cpu_rss"
    assert saved["peak_memory_kind"] == device_kind and saved["peak_memory_mb"] > 0
    if device_kind == "cpu_rss":
        assert saved["peak_memory_mb"] >= saved["peak_memory_before_train_mb"] > 0
