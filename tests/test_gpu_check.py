"""`bench gpu-check`: its CPU fallback runs every part small and writes *_cpu-check.json (never the
committed *_cpu.json benchmarks); asking for CUDA without a GPU is a clear error."""
from __future__ import annotations

import json

import pytest
import torch

from stflib.cli import main


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU fallback")
def test_gpu_check_cpu_fallback_writes_every_part(tmp_path, capsys):
    rc = main(["bench", "gpu-check", "--device", "auto", "--out", str(tmp_path), "--sizes", "300",
               "--local-sizes", "200", "400"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "no CUDA device: running the small CPU fallback" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["attention_cpu-check.json", "backbones_cpu-check.json",
                                                           "local_cpu-check.json", "reference_cpu-check.json"]
    ref = json.loads((tmp_path / "reference_cpu-check.json").read_text())
    assert ref["preset"] == "tiny" and ref["device"] == "cpu" and ref["amp"] is False
    assert -1 <= ref["pcc_hvg50"] <= 1 and ref["train_seconds"] > 0
    att = json.loads((tmp_path / "attention_cpu-check.json").read_text())
    assert {r["mode"] for r in att} == {"default", "reference", "full", "bottleneck"} and all(r["S"] == 300 for r in att)
    assert all(r["seconds"] > 0 and r["bound_ratio"] > 0 for r in att)
    local = json.loads((tmp_path / "local_cpu-check.json").read_text())
    assert [(r["S"], r["local_kernel"]) for r in local["rows"]] == [(200, "sparse"), (400, "sparse")]
    assert local["choice"] == "sparse" and "CUDA only" in local["skipped"]["flex"]
    assert "FlexAttention" in out and "skipped" in out
    bb = json.loads((tmp_path / "backbones_cpu-check.json").read_text())
    assert [r["backbone"] for r in bb] == ["resnet50"] and bb[0]["patches_per_s"] > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_gpu_check_cuda_without_a_gpu_is_a_clear_error(tmp_path, capsys):
    assert main(["bench", "gpu-check", "--device", "cuda", "--out", str(tmp_path)]) == 2
    assert "--device cuda but torch sees no CUDA device" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
