"""One benchmark configuration of ``python -m stflib bench attention``, measured in its own process:
the attention configurations (``MODES``), a step's matrix-product FLOPs (``step_flops``), the
measured matrix-multiply rate (``matmul_rate``) and one configuration's time and peak memory
(``measure``, run in a child process by ``run_child``). ``stflib.bench`` sweeps them and prints.
"""
from __future__ import annotations

import json
import math
import resource
import subprocess
import sys
import time

from stflib.config import REFERENCE_NEIGHBOURS as DEFAULT_NEIGHBOURS  # the reference model's k (18)
MODES = {
    "default": dict(interactions="all", attention_impl="fast", n_neighbors=DEFAULT_NEIGHBOURS),
    "reference": dict(interactions="all", attention_impl="reference"),
    "full": dict(interactions="all", attention_impl="fast"),
    "bottleneck": dict(interactions="p2p,p2h,h2p", attention_impl="fast"),
}
GROWTH = {"default": 1, "reference": 2, "full": 2, "bottleneck": 1}  # exponent of S in time and memory
from stflib.device import keep_freed_memory


# ---------------------------------------------------------------------------------------------
# One configuration, in its own process
# ---------------------------------------------------------------------------------------------


def _rss_bytes(field: str = "VmRSS") -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False when not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


ALLOCATORS = ("reuse", "system")


def hex_grid_coords(n: int, pitch: float = 100.0):
    """n spot centres on a Visium-like hexagonal grid (about square overall), (n, 2) float32: the first n
    spots, row by row, of a Visium array (``stflib.spatial.hex_lattice``) ``per_row`` spots wide."""
    from stflib import spatial

    per_row = max(1, int(math.ceil(math.sqrt(n * math.sqrt(3) / 2))))
    rows, cols = spatial.hex_lattice(-(-n // per_row), 2 * per_row)
    return spatial.lattice_centres(rows[:n], cols[:n], pitch).astype("float32")


def step_flops(mode: str, S: int, feature_dim: int = 768, num_genes: int = 1000, token_dim: int = 256,
               n_layers: int = 2, num_pathways: int = 50, **_) -> float:
    """Floating-point operations of the matrix products of one training step of ``mode`` on S spots:
    the forward's products, and the backward's two per product (the gradients of both factors),
    except for the input projection, whose input (the frozen features) needs none. Attention counts
    q k^T and w v over the keys each query reads (all T for reference and full, whatever the mask).
    """
    P, D, G, F = num_pathways, token_dim, num_genes, feature_dim
    T = S + P
    quads = MODES[mode]["interactions"]
    quads = {"p2p", "p2h", "h2p", "h2h"} if quads == "all" else set(quads.split(","))
    k = MODES[mode].get("n_neighbors", 0)
    if MODES[mode]["attention_impl"] == "reference" or (quads >= {"p2p", "p2h", "h2p", "h2h"} and not k):
        pairs = T * T
    else:  # the keys each query group reads (``attend_fast``)
        pathway_keys = (P if "p2p" in quads else 1) + (S if "p2h" in quads else 0)
        patch_keys = (P if "h2p" in quads else 0) + ((k + 1 if k else S) if "h2h" in quads else 1)
        pairs = P * pathway_keys + S * patch_keys
    layer = 24 * T * D * D + 4 * pairs * D  # qkv 6, out 2, feed-forward 16 (x T D^2); q k^T and w v
    forward = 2 * S * F * D + n_layers * layer + 2 * S * P * D + 2 * S * P * G  # + cosine scores, genes
    return 3.0 * forward - 2 * S * F * D


def matmul_rate(device: str = "cpu", dtype: str = "float32", clock: str = "wall") -> float:
    """Measured GFLOP/s of a (8192 x 256) x (256 x 1024) product into a reused output (the shape of
    the model's projections), best of 5 after a warm-up, on ``clock`` (wall, or this process's CPU
    time): the rate ``step_flops`` is divided by."""
    import torch

    dev = torch.device(device)
    dt = getattr(torch, dtype)
    a, b = torch.randn(8192, 256, device=dev, dtype=dt), torch.randn(256, 1024, device=dev, dtype=dt)
    c = torch.empty(8192, 1024, device=dev, dtype=dt)
    now = time.process_time if clock == "cpu" and dev.type != "cuda" else time.perf_counter
    reps = 20 if dev.type == "cuda" else 1
    best = float("inf")
    for i in range(6):
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = now()
        for _ in range(reps):
            torch.mm(a, b, out=c)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        if i:  # the first is the warm-up
            best = min(best, (now() - t0) / reps)
    return 2 * 8192 * 256 * 1024 / best / 1e9


def measure(config: dict) -> dict:
    """Build the model, run warm-up + measured training steps, return time and peak memory
    (``mode="gemm"``: the matrix-multiply rate instead, ``matmul_rate``)."""
    import torch

    from stflib.device import autocast
    from stflib.models import attention
    from stflib.models.stf import SpatialTranscriptFormer

    allocator = config.get("allocator", "system")
    if allocator == "reuse" and config["device"] == "cpu" and not keep_freed_memory():
        allocator = "system"  # not glibc: nothing to set
    if config.get("threads"):
        torch.set_num_threads(config["threads"])
    device = torch.device(config["device"])
    amp = bool(config.get("amp")) and device.type == "cuda"
    dtype = str(autocast_dtype_name(device)) if amp else "float32"
    if config["mode"] == "gemm":
        return {"gflops": matmul_rate(config["device"], dtype, config.get("clock", "wall")), "dtype": dtype,
                "threads": torch.get_num_threads()}
    attention.set_local_kernel(config.get("local_kernel", "sparse"))
    torch.manual_seed(0)
    S = config["S"]
    model = SpatialTranscriptFormer(
        config["feature_dim"], config["num_genes"], num_pathways=config["num_pathways"],
        token_dim=config["token_dim"], n_heads=config["n_heads"], n_layers=config["n_layers"],
        **MODES[config["mode"]],
    ).to(device)
    features = torch.randn(1, S, config["feature_dim"], device=device)
    coords = torch.from_numpy(hex_grid_coords(S)).unsqueeze(0).to(device)
    target = torch.randn(1, S, config["num_genes"], device=device)

    def step():
        with autocast(device, amp):
            out = model(features, coords)
        loss = torch.nn.functional.mse_loss(out.genes.float(), target)
        loss.backward()
        model.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()

    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        reset = _reset_peak_rss()
        base = _rss_bytes() or 0
    t0 = time.perf_counter()
    step()  # warm-up (allocator, kernels, the slide's neighbour graph); its memory counts, it is a step like the others
    warmup = time.perf_counter() - t0
    repeats = max(1, min(config["repeats"], int(config["time_budget"] / max(warmup, 1e-3)) - 1))
    times, cpu_times = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        step()
        times.append(time.perf_counter() - t0)
        cpu_times.append(time.process_time() - c0)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() - base
        how = "cuda.max_memory_allocated"
    else:
        hwm = _rss_bytes("VmHWM") if reset else None
        if hwm is None:  # fall back to the lifetime peak
            hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        peak = hwm - base
        how = "peak RSS delta"
    # the matmul rate in this process, right after its steps (on both clocks): on a shared machine the
    # rate of the moment, so that the step's ratio to its FLOP bound compares like with like
    rates = {c: matmul_rate(config["device"], dtype, c) for c in ("wall", "cpu")}
    # the best of the measured steps: on a shared machine other processes only ever add time
    return {"seconds": min(times), "cpu_seconds": min(cpu_times), "peak_bytes": max(int(peak), 0), "repeats": repeats,
            "gemm_gflops": rates["wall"], "cpu_gemm_gflops": rates["cpu"],
            "warmup_seconds": warmup, "memory": how, "threads": torch.get_num_threads(), "amp": amp,
            "allocator": allocator if device.type == "cpu" else "cuda caching",
            "local_kernel": attention.local_kernel() if MODES[config["mode"]].get("n_neighbors") else None}


def autocast_dtype_name(device) -> str:
    """The autocast dtype's name on ``device`` (``stflib.device.autocast_dtype``), float32 without one."""
    from stflib.device import autocast_dtype

    dtype = autocast_dtype(device)
    return "float32" if dtype is None else str(dtype).replace("torch.", "")


def run_child(config: dict, timeout: float) -> dict:
    cmd = [sys.executable, "-m", "stflib.bench_step", "--child", json.dumps(config)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [f"exit code {proc.returncode}"]
        killed = " (killed: out of memory?)" if proc.returncode in (-9, 137) else ""
        return {"error": tail[0][:200] + killed}
    return json.loads(proc.stdout.strip().splitlines()[-1])


if __name__ == "__main__":  # child process: python -m stflib.bench_step --child '{json config}'
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        print(json.dumps(measure(json.loads(sys.argv[2]))))
    else:
        sys.exit("usage: python -m stflib bench attention ...")
