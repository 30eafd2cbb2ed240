"""Benchmarks that print figures: ``python -m stflib bench attention`` and ``bench backbones``.

``bench attention`` times one training step (forward + backward of the MSE on all genes) of
SpatialTranscriptFormer on one whole slide of S spots, for four attention configurations:

- ``default``: the reference model, all four flows with h2h restricted to each spot's 18 nearest
  spots (``n_neighbors=18``): O(S (P + k)) time and memory;
- ``reference``: one dense (T x T) mask through the attention kernel, as ``nn.TransformerEncoder``
  does with a quadrant mask (the original implementation): O(T^2) time and memory whatever the mask;
- ``full``: all four flows, the fused kernel with no mask: O(T^2) time, O(T) memory;
- ``bottleneck``: no h2h (p2p, p2h, h2p), the quadrant structure exploited: O(P*S) time and memory.

Beside each time it prints the step's FLOP bound: the floating-point operations of the step's matrix
products (``step_flops``: forward, and the backward's two products per forward product) at the
matrix-multiply rate measured in the same run (``matmul_rate``: a float32 (8192 x 256) x (256 x 1024)
product into a reused output, best of 5, same threads and device), and the ratio of the time to it.

Each configuration runs in a fresh subprocess, so peak memory is that process's own: on CPU the peak
resident set size (VmHWM, reset once the model and inputs exist) minus the resident size then, over
the warm-up and measured steps (tracemalloc does not see torch's allocations); on CUDA
``torch.cuda.max_memory_allocated`` minus what was allocated before. Time is the best of the
measured steps (other processes on a shared machine only ever add time); ``--clock cpu`` reports
the process's CPU time instead, which a busy shared machine does not inflate (with ``--threads 1``
it is the wall time an idle machine would show). The first step of a local-context model also
builds each slide's neighbour graph (once per slide, ``stflib.models.attention.neighbour_graphs``):
it is the warm-up, not a measured step. On CPU the steps run with ``--allocator reuse`` by default
(``keep_freed_memory``: glibc keeps freed memory, as a long training process should, instead of
returning it to the kernel and paying a page fault per 4 kB on the next step); ``--allocator system``
measures malloc's defaults.
A configuration is skipped, with a note, when its time or memory projected from the previous size
(quadratic for reference/full, linear for default/bottleneck) exceeds the budget.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

from stflib.bench_step import (ALLOCATORS, DEFAULT_NEIGHBOURS, GROWTH, MODES, autocast_dtype_name,  # noqa: F401
                               hex_grid_coords, matmul_rate, measure, run_child, step_flops)
from stflib.paths import results_dir

BENCH_DIR = str(results_dir() / "bench")  # where --json files go by default (STFLIB_RESULTS or <project>/results)
GPU_CHECK_PARTS = ("reference", "attention", "local", "backbones")
# targets the summary checks: time over the FLOP bound, and growth per doubling of S (time and memory)
BOUND_TARGET = {"default": 2.0}
GROWTH_TARGET = {"default": 2.1, "bottleneck": 2.3}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="bench", metavar="benchmark", required=True)
    a = sub.add_parser("attention", help="time, peak memory and FLOP bound per training step: default (k-NN) vs "
                                         "reference vs full vs bottleneck")
    a.add_argument("--sizes", type=int, nargs="+", default=[4000, 16000, 64000],
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
    a.add_argument("--allocator", choices=ALLOCATORS, default="reuse",
                   help="CPU: reuse = glibc keeps freed memory for the next step (keep_freed_memory, as a long "
                        "training process should), system = malloc's defaults (large blocks go back to the kernel "
                        "on free and return as page faults)")
    a.add_argument("--amp", action="store_true", help="CUDA: the step under autocast (bf16, else fp16), as training runs")
    a.add_argument("--local-kernel", default="sparse", choices=["sparse", "flex"],
                   help="the default mode's neighbour attention (stflib.models.attention.set_local_kernel)")
    a.add_argument("--json", default=None, help="also write the results to this JSON file")
    g = sub.add_parser("gpu-check", help="the one-command GPU check: reference arm (full preset, AMP), attention at "
                                         "16k-128k spots, the default model's neighbour attention (sparse vs "
                                         "FlexAttention, AMP) at 4k-64k spots, backbone throughput; writes "
                                         "results/bench/*_cuda.json")
    g.add_argument("--device", default="auto", help="auto (CUDA when present, else the small CPU fallback), cuda, cpu")
    g.add_argument("--out", default=str(BENCH_DIR), help="folder for the JSON files (default results/bench)")
    g.add_argument("--parts", nargs="+", default=list(GPU_CHECK_PARTS), choices=list(GPU_CHECK_PARTS))
    g.add_argument("--epochs", type=int, default=None, help="reference-arm epochs (default 30 on CUDA, 1 on CPU)")
    g.add_argument("--sizes", type=int, nargs="+", default=None,
                   help="attention sizes S (default 16000 32000 64000 128000 on CUDA, 500 1000 on CPU)")
    g.add_argument("--local-sizes", type=int, nargs="+", default=None,
                   help="default-model sizes S (default 4000 16000 64000 on CUDA, 500 1000 on CPU)")
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
    cuda = args.device.startswith("cuda")
    clock = "wall" if cuda else args.clock
    base = dict(device=args.device, feature_dim=args.feature_dim, num_genes=args.num_genes,
                token_dim=args.token_dim, n_heads=args.n_heads, n_layers=args.n_layers,
                num_pathways=args.num_pathways, repeats=args.repeats, time_budget=args.time_budget,
                threads=args.threads, amp=getattr(args, "amp", False),
                local_kernel=getattr(args, "local_kernel", "sparse"), allocator=getattr(args, "allocator", "system"))
    print(f"bench attention: one training step (forward + backward), 1 slide, P={args.num_pathways}, "
          f"D={args.token_dim}, H={args.n_heads}, layers={args.n_layers}, features={args.feature_dim}, "
          f"genes={args.num_genes}, device={args.device}{', amp' if base['amp'] and cuda else ''}, "
          f"threads={args.threads or 'default'}, {'' if cuda else 'allocator=' + base['allocator'] + ', '}"
          f"{clock} clock (best of the measured steps); memory limit "
          f"{_fmt_bytes(limit)}, time budget {args.time_budget:.0f} s per configuration", flush=True)
    cores, load = os.cpu_count() or 1, os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if load > cores and clock == "wall" and not cuda:
        print(f"note: the machine is busy (load {load:.1f} on {cores} cores); multi-threaded steps slow down "
              "badly when cores are oversubscribed, and wall time counts others' work: consider "
              "--threads 1 --clock cpu", flush=True)
    gemm = run_child({**base, "mode": "gemm", "clock": clock}, timeout=120.0)
    rate = gemm.get("gflops")
    print(f"matmul rate: {rate:,.1f} GFLOP/s ({gemm.get('dtype')} (8192 x 256) x (256 x 1024), best of 5, "
          f"threads={gemm.get('threads')}, {clock} clock); each configuration measures it again beside its steps: "
          "its FLOP bound is the step's matrix-product FLOPs at that rate"
          if rate else f"matmul rate: not measured ({gemm.get('error')}); no FLOP bounds", flush=True)
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
                r = run_child({**base, "mode": mode, "S": S}, timeout=max(60.0, 4 * args.time_budget))
                if clock == "cpu" and "cpu_seconds" in r:
                    r = {**r, "wall_seconds": r["seconds"], "seconds": r["cpu_seconds"],
                         "wall_gemm_gflops": r.get("gemm_gflops"), "gemm_gflops": r.get("cpu_gemm_gflops")}
                if "error" in r:
                    note = "failed: " + r["error"]
                else:
                    previous = (S, r)
            else:
                r = {}
            if note:
                r = {"note": note}
            rate_here = r.get("gemm_gflops") or rate  # the rate measured beside this configuration's steps
            if "seconds" in r and rate_here:
                flops = step_flops(mode, S, **{k: base[k] for k in ("feature_dim", "num_genes", "token_dim",
                                                                     "n_layers", "num_pathways")})
                r.update(gflop=flops / 1e9, gemm_gflops=rate_here, bound_seconds=flops / (rate_here * 1e9))
                r["bound_ratio"] = r["seconds"] / r["bound_seconds"]
            results[(mode, S)] = r
            shown = (f"{r['seconds']:9.3f} s  {_fmt_bytes(r['peak_bytes']):>10}" if "seconds" in r else note)
            if "bound_ratio" in r:
                shown += (f"  {r['gflop']:,.0f} GFLOP at {r['gemm_gflops']:,.1f} GFLOP/s: "
                          f"bound {r['bound_seconds']:.3f} s  x{r['bound_ratio']:.2f}")
            print(f"  {mode:<10} S={S:<7d} {shown}", flush=True)
            if "seconds" not in r and GROWTH[mode] > 1:
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
    """One row per S: each mode's time, peak memory and time / FLOP bound (and full / reference)."""
    header = f"| {'S':>7} | " + " | ".join(f"{m + ' time':>16} | {m + ' memory':>18} | {m + ' / bound':>16}"
                                           for m in modes) + \
             (" | full/reference |" if {"full", "reference"} <= set(modes) else " |")
    lines = [header, "|" + "|".join("-" * (len(c) + 0) for c in header.split("|")[1:-1]) + "|"]
    for S in sorted(sizes):
        cells = []
        for m in modes:
            r = results.get((m, S), {})
            if "seconds" in r:
                ratio = f"x{r['bound_ratio']:.2f}" if "bound_ratio" in r else "-"
                cells += [f"{r['seconds']:>14.3f} s", f"{_fmt_bytes(r['peak_bytes']):>18}", f"{ratio:>16}"]
            else:
                cells += [f"{'-':>16}", f"{'-':>18}", f"{'-':>16}"]
        row = f"| {S:>7} | " + " | ".join(cells)
        if {"full", "reference"} <= set(modes):
            rf, rr = results.get(("full", S), {}), results.get(("reference", S), {})
            ratio = f"{rf['seconds'] / rr['seconds']:.2f}" if "seconds" in rf and "seconds" in rr else "-"
            row += f" | {ratio:>14} |"
        else:
            row += " |"
        lines.append(row)
    bounds = [(m, S, r) for (m, S), r in results.items() if "gflop" in r]
    if bounds:
        lines += ["", "FLOP bounds (the step's matrix-product FLOPs at the matmul rate measured in the same process):"]
        lines += [f"  {m} S={S}: {r['gflop']:,.4g} GFLOP at {r['gemm_gflops']:,.1f} GFLOP/s "
                  f"= {r['bound_seconds']:.3g} s" for m, S, r in bounds]
    notes = [f"  {m} S={S}: {r['note']}" for (m, S), r in results.items() if "note" in r]
    if notes:
        lines += ["", "notes:"] + notes
    return "\n".join(lines)


def per_doubling(a: dict, b: dict, S0: int, S1: int) -> tuple[float, float]:
    """Growth of time and of peak memory per doubling of S between two sizes' results."""
    doublings = math.log2(S1 / S0)
    t = (b["seconds"] / a["seconds"]) ** (1 / doublings)
    m = (max(b["peak_bytes"], 1) / max(a["peak_bytes"], 1)) ** (1 / doublings)
    return t, m


def summarise(results: dict, sizes, limit: float) -> list[str]:
    """Ratios and the targets: default within BOUND_TARGET of its FLOP bound at every S; linear modes
    grow at most GROWTH_TARGET per doubling of S (time and memory); full <= reference at every S;
    bottleneck runs at 64k within 24 GB."""
    out = []
    for mode, target in BOUND_TARGET.items():
        ratios = {S: results[(mode, S)]["bound_ratio"] for S in sorted(sizes)
                  if "bound_ratio" in results.get((mode, S), {})}
        if ratios:
            worst = max(ratios.values())
            out.append(f"{mode} time / FLOP bound: " + ", ".join(f"S={S} x{r:.2f}" for S, r in ratios.items()) +
                       f" ({'PASS' if worst <= target else 'FAIL'}: target <= {target:g})")
    both = [S for S in sorted(sizes) if "seconds" in results.get(("full", S), {})
            and "seconds" in results.get(("reference", S), {})]
    if both:
        worst = max(results[("full", S)]["seconds"] / results[("reference", S)]["seconds"] for S in both)
        out.append(f"full/reference time, worst over S={both}: {worst:.2f} "
                   f"({'PASS' if worst <= 1.0 else 'FAIL'}: target <= 1)")
    for mode, target in GROWTH_TARGET.items():
        done = [S for S in sorted(sizes) if "seconds" in results.get((mode, S), {})]
        for S0, S1 in zip(done, done[1:]):
            t, m = per_doubling(results[(mode, S0)], results[(mode, S1)], S0, S1)
            out.append(f"{mode} growth S={S0}->{S1}: time x{t:.2f}, memory x{m:.2f} per doubling "
                       f"(target <= {target:g}: {'PASS' if max(t, m) <= target else 'FAIL'})")
    bott = results.get(("bottleneck", 64000), {})
    if "seconds" in bott:
        peak = bott["peak_bytes"]
        out.append(f"bottleneck at S=64000: {bott['seconds']:.1f} s per step, peak {_fmt_bytes(peak)} "
                   f"({'PASS' if peak <= 24 * 2**30 else 'FAIL'}: target <= 24 GB)")
    return out


# ---------------------------------------------------------------------------------------------
# gpu-check: the GPU paths in one command
# ---------------------------------------------------------------------------------------------
def gpu_check(args: argparse.Namespace) -> int:
    """Reference arm (AMP on CUDA), attention benchmark, the default model's neighbour-attention kernels
    (``local_kernels``), backbone throughput -> ``<part>_<tag>.json``.

    On CUDA the tag is ``cuda`` (the files the performance chapter shows); without a GPU the same code
    runs small (tiny preset, 1 epoch, S = 500 and 1000, resnet50 on a few patches, no FlexAttention) with the tag
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
    if "local" in args.parts:
        sizes = args.local_sizes or ([4000, 16000, 64000] if cuda else [500, 1000])
        payload = {**env, **local_kernels(want, sizes, args.time_budget, os.path.join(out, f"local_{tag}"))}
        dump("local", payload)
        print(f"default model's neighbour attention: {payload['choice_note']}", flush=True)
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


def local_kernels(device: str, sizes, time_budget: float, json_stem: str) -> dict:
    """The default model (k = 18) at each S under AMP on CUDA, with each local-attention kernel
    (``stflib.models.attention.LOCAL_KERNELS``): ``sparse`` (sparse-dense products) and, on CUDA,
    ``flex`` (FlexAttention, block mask built once per slide). Returns the rows, the faster kernel
    per S and ``choice``: ``flex`` only where it wins at every S, else ``sparse``
    (``set_local_kernel``'s default). ``json_stem``: where each kernel's sweep is written meanwhile."""
    from stflib.models.attention import LOCAL_KERNELS

    cuda = device.startswith("cuda")
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    rows, skipped = [], {}
    for kernel in LOCAL_KERNELS:
        if kernel == "flex" and not cuda:
            skipped[kernel] = ("FlexAttention is measured on CUDA only (its CPU path is the unfused reference, "
                               "no backward)")
            print(f"  local kernel {kernel}: skipped: {skipped[kernel]}", flush=True)
            continue
        path = f"{json_stem}.{kernel}.tmp.json"
        a = parser.parse_args(["attention", "--device", device, "--modes", "default", "--local-kernel", kernel,
                               "--time-budget", str(time_budget), "--json", path, "--sizes", *map(str, sizes)]
                              + (["--amp"] if cuda else []))
        run_attention(a)
        with open(path) as f:
            rows += [{**r, "local_kernel": kernel} for r in json.load(f)]
        os.remove(path)
    faster = {}
    for S in sizes:
        timed = {r["local_kernel"]: r["seconds"] for r in rows if r["S"] == S and "seconds" in r}
        faster[S] = min(timed, key=timed.get) if timed else None
    flex_wins = bool(faster) and all(k == "flex" for k in faster.values())
    choice = "flex" if flex_wins else "sparse"
    note = (f"faster per S: {', '.join(f'{S}: {k}' for S, k in faster.items())}; choice {choice!r}"
            + (" (set_local_kernel('flex'))" if flex_wins else "") + "".join(f"; {k} {v}" for k, v in skipped.items()))
    return {"amp": cuda, "sizes": list(sizes), "rows": rows, "faster": {str(S): k for S, k in faster.items()},
            "choice": choice, "skipped": skipped, "choice_note": note}
