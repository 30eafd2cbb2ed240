"""Benchmarks that print figures: ``python -m stflib bench attention`` and ``bench backbones``.

``bench attention`` times one training step (forward + backward of the MSE on all genes) of
SpatialTranscriptFormer on one whole slide of S spots, for three attention computations:

- ``reference``: one dense (T x T) mask through the attention kernel, as ``nn.TransformerEncoder``
  does with a quadrant mask (the original implementation): O(T^2) time and memory whatever the mask;
- ``full``: all four flows, the fused kernel with no mask: O(T^2) time, O(T) memory;
- ``bottleneck``: no h2h (p2p, p2h, h2p), the quadrant structure exploited: O(P*S) time and memory.

Each configuration runs in a fresh subprocess, so peak memory is that process's own: on CPU the peak
resident set size (VmHWM, reset once the model and inputs exist) minus the resident size then, over
the warm-up and measured steps (tracemalloc does not see torch's allocations); on CUDA
``torch.cuda.max_memory_allocated`` minus what was allocated before. Time is the best of the
measured steps (other processes on a shared machine only ever add time); ``--clock cpu`` reports
the process's CPU time instead, which a busy shared machine does not inflate (with ``--threads 1``
it is the wall time an idle machine would show).
A configuration is skipped, with a note, when its time or memory projected from the previous size
(quadratic for reference/full, linear for bottleneck) exceeds the budget.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time

BENCH_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "results", "bench")
GPU_CHECK_PARTS = ("reference", "attention", "backbones")
MODES = {
    "reference": dict(interactions="all", attention_impl="reference"),
    "full": dict(interactions="all", attention_impl="fast"),
    "bottleneck": dict(interactions="p2p,p2h,h2p", attention_impl="fast"),
}
GROWTH = {"reference": 2, "full": 2, "bottleneck": 1}  # exponent of S in time and memory


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="bench", metavar="benchmark", required=True)
    a = sub.add_parser("attention", help="time and peak memory per training step: reference vs full vs bottleneck")
    a.add_argument("--sizes", type=int, nargs="+", default=[1000, 4000, 16000, 32000, 64000],
                   help="numbers of spots S (T = S + num_pathways tokens)")
    a.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    a.add_argument("--device", default="cpu", help="cpu or cuda")
    a.add_argument("--feature-dim", type=int, default=768)
    a.add_argument("--num-genes", type=int, default=1000)
    a.add_argument("--token-dim", type=int, default=256)
    a.add_argument("--n-heads", type=int, default=4)
    a.add_argument("--n-layers", type=int, default=2)
    a.add_argument("--num-pathways", type=int, default=50)
    a.add_argument("--repeats", type=int, default=3, help="measured steps after one warm-up (fewer if a step is slow)")
    a.add_argument("--time-budget", type=float, default=120.0,
                   help="skip a configuration whose projected time (warm-up + measured steps) exceeds this, s")
    a.add_argument("--memory-limit-gb", type=float, default=None,
                   help="skip when projected peak memory exceeds this (default: 80%% of available RAM / GPU memory)")
    a.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    a.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                   help="wall: elapsed time; cpu: this process's CPU time (robust on a shared machine; "
                        "use with --threads 1, where it equals the wall time of an idle machine)")
    a.add_argument("--json", default=None, help="also write the results to this JSON file")
    g = sub.add_parser("gpu-check", help="the one-command GPU check: reference arm (full preset, AMP), attention at "
                                         "16k-128k spots, backbone throughput; writes results/bench/*_cuda.json")
    g.add_argument("--device", default="auto", help="auto (CUDA when present, else the small CPU fallback), cuda, cpu")
    g.add_argument("--out", default=str(BENCH_DIR), help="folder for the JSON files (default results/bench)")
    g.add_argument("--parts", nargs="+", default=list(GPU_CHECK_PARTS), choices=list(GPU_CHECK_PARTS))
    g.add_argument("--epochs", type=int, default=None, help="reference-arm epochs (default 30 on CUDA, 1 on CPU)")
    g.add_argument("--sizes", type=int, nargs="+", default=None,
                   help="attention sizes S (default 16000 32000 64000 128000 on CUDA, 500 1000 on CPU)")
    g.add_argument("--backbones", nargs="+", default=None, help="default: all six on CUDA, resnet50 on CPU")
    g.add_argument("--time-budget", type=float, default=60.0, help="attention: per-configuration budget, s")
    b = sub.add_parser("backbones", help="backbone feature-extraction throughput (stflib.features)")
    try:
        from stflib.features import add_benchmark_arguments
    except ImportError as err:  # stflib.features not available: say so when run
        b.set_defaults(_features_error=str(err))
    else:
        add_benchmark_arguments(b)


def run(args: argparse.Namespace) -> int:
    if args.bench == "gpu-check":
        return gpu_check(args)
    if args.bench == "backbones":
        if getattr(args, "_features_error", None):
            print(f"bench backbones needs stflib.features: {args._features_error}", file=sys.stderr)
            return 1
        from stflib.features import run_benchmark

        return int(run_benchmark(args) or 0)
    return run_attention(args)


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


def hex_grid_coords(n: int, pitch: float = 100.0):
    """n spot centres on a Visium-like hexagonal grid (about square overall), (n, 2) float32: the first n
    spots, row by row, of a Visium array (``stflib.spatial.hex_lattice``) ``per_row`` spots wide."""
    from stflib import spatial

    per_row = max(1, int(math.ceil(math.sqrt(n * math.sqrt(3) / 2))))
    rows, cols = spatial.hex_lattice(-(-n // per_row), 2 * per_row)
    return spatial.lattice_centres(rows[:n], cols[:n], pitch).astype("float32")


def measure(config: dict) -> dict:
    """Build the model, run warm-up + measured training steps, return time and peak memory."""
    import torch

    from stflib.models.stf import SpatialTranscriptFormer

    if config.get("threads"):
        torch.set_num_threads(config["threads"])
    device = torch.device(config["device"])
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
        out = model(features, coords)
        loss = torch.nn.functional.mse_loss(out.genes, target)
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
    step()  # warm-up (allocator, kernels); its memory counts, it is a step like the others
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
    # the best of the measured steps: on a shared machine other processes only ever add time
    return {"seconds": min(times), "cpu_seconds": min(cpu_times), "peak_bytes": max(int(peak), 0), "repeats": repeats,
            "warmup_seconds": warmup, "memory": how, "threads": torch.get_num_threads()}


def _run_child(config: dict, timeout: float) -> dict:
    cmd = [sys.executable, "-m", "stflib.bench", "--child", json.dumps(config)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [f"exit code {proc.returncode}"]
        killed = " (killed: out of memory?)" if proc.returncode in (-9, 137) else ""
        return {"error": tail[0][:200] + killed}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------
# The sweep and its table
# ---------------------------------------------------------------------------------------------


def _memory_limit(args) -> float:
    if args.memory_limit_gb is not None:
        return args.memory_limit_gb * 2**30
    if args.device.startswith("cuda"):
        import torch

        return 0.8 * torch.cuda.get_device_properties(0).total_memory
    avail = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0.8 * (avail or 8 * 2**30)


def _fmt_bytes(n: float) -> str:
    return f"{n / 2**20:,.0f} MB" if n < 2**30 else f"{n / 2**30:,.2f} GB"


def run_attention(args) -> int:
    limit = _memory_limit(args)
    clock = "wall" if args.device.startswith("cuda") else args.clock
    base = dict(device=args.device, feature_dim=args.feature_dim, num_genes=args.num_genes,
                token_dim=args.token_dim, n_heads=args.n_heads, n_layers=args.n_layers,
                num_pathways=args.num_pathways, repeats=args.repeats, time_budget=args.time_budget,
                threads=args.threads)
    print(f"bench attention: one training step (forward + backward), 1 slide, P={args.num_pathways}, "
          f"D={args.token_dim}, H={args.n_heads}, layers={args.n_layers}, features={args.feature_dim}, "
          f"genes={args.num_genes}, device={args.device}, threads={args.threads or 'default'}, "
          f"{clock} clock (best of the measured steps); memory limit {_fmt_bytes(limit)}, "
          f"time budget {args.time_budget:.0f} s per configuration", flush=True)
    cores, load = os.cpu_count() or 1, os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if load > cores and clock == "wall" and not args.device.startswith("cuda"):
        print(f"note: the machine is busy (load {load:.1f} on {cores} cores); multi-threaded steps slow down "
              "badly when cores are oversubscribed, and wall time counts others' work: consider "
              "--threads 1 --clock cpu", flush=True)
    results: dict[tuple[str, int], dict] = {}
    for mode in args.modes:
        previous = None  # (S, result) of the last measured size
        for S in sorted(args.sizes):
            note = None
            if previous is not None:
                S0, r0 = previous
                growth = ((S + args.num_pathways) / (S0 + args.num_pathways)) ** GROWTH[mode]
                proj_time, proj_mem = r0["seconds"] * growth, r0["peak_bytes"] * growth
                if proj_mem > limit:
                    note = f"skipped: projected memory {_fmt_bytes(proj_mem)} > limit {_fmt_bytes(limit)}"
                elif 2 * proj_time > args.time_budget:
                    note = f"skipped: projected {proj_time:.0f} s per step (budget {args.time_budget:.0f} s)"
            if note is None:
                r = _run_child({**base, "mode": mode, "S": S}, timeout=max(60.0, 4 * args.time_budget))
                if clock == "cpu" and "cpu_seconds" in r:
                    r = {**r, "wall_seconds": r["seconds"], "seconds": r["cpu_seconds"]}
                if "error" in r:
                    note = "failed: " + r["error"]
                else:
                    previous = (S, r)
            else:
                r = {}
            if note:
                r = {"note": note}
            results[(mode, S)] = r
            shown = (f"{r['seconds']:9.3f} s  {_fmt_bytes(r['peak_bytes']):>10}" if "seconds" in r else note)
            print(f"  {mode:<10} S={S:<7d} {shown}", flush=True)
            if "seconds" not in r and mode != "bottleneck":
                # larger sizes only get worse: report them as skipped without trying
                for S_rest in [s for s in sorted(args.sizes) if s > S]:
                    results[(mode, S_rest)] = {"note": "skipped (a smaller size was already skipped)"}
                break
    print()
    print(format_table(results, args.sizes, args.modes))
    print()
    for line in summarise(results, args.sizes, limit):
        print(line)
    if args.json:
        with open(args.json, "w") as f:
            json.dump([{"mode": m, "S": s, **r} for (m, s), r in results.items()], f, indent=1)
    return 0


def format_table(results: dict, sizes, modes) -> str:
    header = f"| {'S':>7} | " + " | ".join(f"{m + ' time':>16} | {m + ' memory':>18}" for m in modes) + \
             (" | full/reference |" if {"full", "reference"} <= set(modes) else " |")
    lines = [header, "|" + "|".join("-" * (len(c) + 0) for c in header.split("|")[1:-1]) + "|"]
    for S in sorted(sizes):
        cells = []
        for m in modes:
            r = results.get((m, S), {})
            if "seconds" in r:
                cells += [f"{r['seconds']:>14.3f} s", f"{_fmt_bytes(r['peak_bytes']):>18}"]
            else:
                cells += [f"{'-':>16}", f"{'-':>18}"]
        row = f"| {S:>7} | " + " | ".join(cells)
        if {"full", "reference"} <= set(modes):
            rf, rr = results.get(("full", S), {}), results.get(("reference", S), {})
            ratio = f"{rf['seconds'] / rr['seconds']:.2f}" if "seconds" in rf and "seconds" in rr else "-"
            row += f" | {ratio:>14} |"
        else:
            row += " |"
        lines.append(row)
    notes = [f"  {m} S={S}: {r['note']}" for (m, S), r in results.items() if "note" in r]
    if notes:
        lines += ["", "notes:"] + notes
    return "\n".join(lines)


def summarise(results: dict, sizes, limit: float) -> list[str]:
    """Ratios and the targets: full <= reference at every S; bottleneck growth <= 2.3x per doubling
    from 16k to 32k; bottleneck runs at 64k within 24 GB."""
    out = []
    both = [S for S in sorted(sizes) if "seconds" in results.get(("full", S), {})
            and "seconds" in results.get(("reference", S), {})]
    if both:
        worst = max(results[("full", S)]["seconds"] / results[("reference", S)]["seconds"] for S in both)
        out.append(f"full/reference time, worst over S={both}: {worst:.2f} "
                   f"({'PASS' if worst <= 1.0 else 'FAIL'}: target <= 1)")
    bott = {S: results[("bottleneck", S)] for S in sorted(sizes) if "seconds" in results.get(("bottleneck", S), {})}
    for S in bott:
        if 2 * S in bott:
            t = bott[2 * S]["seconds"] / bott[S]["seconds"]
            m = bott[2 * S]["peak_bytes"] / max(bott[S]["peak_bytes"], 1)
            target = " (target <= 2.3: " + ("PASS" if max(t, m) <= 2.3 else "FAIL") + ")" if S == 16000 else ""
            out.append(f"bottleneck growth S={S}->{2 * S}: time x{t:.2f}, memory x{m:.2f}{target}")
    if 64000 in bott:
        peak = bott[64000]["peak_bytes"]
        out.append(f"bottleneck at S=64000: {bott[64000]['seconds']:.1f} s per step, peak {_fmt_bytes(peak)} "
                   f"({'PASS' if peak <= 24 * 2**30 else 'FAIL'}: target <= 24 GB)")
    return out


# ---------------------------------------------------------------------------------------------
# gpu-check: the GPU paths in one command
# ---------------------------------------------------------------------------------------------
def gpu_check(args: argparse.Namespace) -> int:
    """Reference arm (AMP on CUDA), attention benchmark, backbone throughput -> ``<part>_<tag>.json``.

    On CUDA the tag is ``cuda`` (the files the performance chapter shows); without a GPU the same code
    runs small (tiny preset, 1 epoch, S = 500 and 1000, resnet50 on a few patches) with the tag
    ``cpu-check``, so the committed CPU benchmarks are never overwritten by a smoke run.
    """
    import platform

    import torch

    want = args.device.strip().lower()
    if want == "auto":
        want = "cuda" if torch.cuda.is_available() else "cpu"
    if want.startswith("cuda") and not torch.cuda.is_available():
        print("gpu-check: error: --device cuda but torch sees no CUDA device "
              f"(torch {torch.__version__}, CUDA build {torch.version.cuda})", file=sys.stderr)
        return 2
    cuda = want.startswith("cuda")
    tag = "cuda" if cuda else "cpu-check"
    if not cuda:
        print("gpu-check: no CUDA device: running the small CPU fallback (files *_cpu-check.json)", flush=True)
    out = args.out
    os.makedirs(out, exist_ok=True)
    device_name = torch.cuda.get_device_name(0) if cuda else platform.processor() or platform.machine()
    env = {"device": want, "device_name": device_name, "torch": torch.__version__, "cuda": torch.version.cuda,
           "date": time.strftime("%Y-%m-%dT%H:%M:%S")}
    written = []

    def dump(name: str, payload) -> None:
        path = os.path.join(out, f"{name}_{tag}.json")
        with open(path, "w") as f:
            json.dump(payload, f, indent=1, default=str)
        written.append(path)

    if "reference" in args.parts:
        from stflib.train import run as train_run

        preset, epochs = ("full", args.epochs or 30) if cuda else ("tiny", args.epochs or 1)
        t0 = time.perf_counter()
        result = train_run(preset=preset, device=want, epochs=epochs, progress=False, log=print, write=False)
        m = result.metrics
        dump("reference", {**env, "preset": preset, "epochs": epochs, "amp": cuda,
                           "wall_seconds": time.perf_counter() - t0,
                           **{k: m.get(k) for k in ("pcc_hvg50", "pcc_all", "mse", "pathway_pcc_truth", "train_seconds",
                                                    "epochs_run", "best_epoch", "n_params")}})
        print(f"reference arm ({preset}, {epochs} epochs, {want}): pcc_hvg50 {m.get('pcc_hvg50'):.3f}, "
              f"train {m.get('train_seconds'):.0f} s", flush=True)
    if "attention" in args.parts:
        sizes = args.sizes or ([16000, 32000, 64000, 128000] if cuda else [500, 1000])
        parser = argparse.ArgumentParser()
        add_arguments(parser)
        a = parser.parse_args(["attention", "--device", want, "--time-budget", str(args.time_budget),
                               "--json", os.path.join(out, f"attention_{tag}.json"), "--sizes", *map(str, sizes)])
        run_attention(a)
        written.append(a.json)
    if "backbones" in args.parts:
        from stflib.features import benchmark_backbones

        names = args.backbones or (None if cuda else ["resnet50"])
        rows = benchmark_backbones(names, devices=[want], batch_size=None if cuda else 2,
                                   n_patches=None if cuda else 4)
        dump("backbones", [{**env, **r} for r in rows])
        for r in rows:
            print(f"  {r['backbone']:<11} {r['precision']:<9} {r['patches_per_s']:10.1f} patches/s", flush=True)
    print("gpu-check wrote: " + ", ".join(written))
    return 0


if __name__ == "__main__":  # child process: python -m stflib.bench --child '{json config}'
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        print(json.dumps(measure(json.loads(sys.argv[2]))))
    else:
        sys.exit("usage: python -m stflib bench attention ...")
