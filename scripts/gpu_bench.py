"""CUDA benchmark of the fused op: fused vs reference eager vs reference torch.compile.

Shapes: the depthwise layers of ShuffleNetV1 1.0x and 2.0x g3 at input 224 (mid channels =
stage channels / 4; the first layer of each stage has stride 2), batch 64 and 256, the seed's
order (shuffle_last, groups = C / 3); eval forward and training forward+backward; float32
NCHW and bfloat16 channels_last.

Method: the variants of one configuration are timed interleaved (round-robin), each sample
a CUDA-event timed batch of calls sized to take >= ~0.3 ms, median of the samples. Every
configuration also times a device-to-device copy of the bytes the fused kernel must move
(read + write, see docs/cuda.md), in the same run, so "% of copy" is achieved bandwidth
relative to what this card really copies. Bounded: compile variants stop being added after
--compile-budget-s, everything stops after --budget-s (remaining configs are recorded as skipped).

    python scripts/gpu_bench.py results.json [--budget-s 150] [--compile-budget-s 60] [--quick]
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import shufflenet_fused as sf  # noqa: E402
from shufflenet_fused.ops import reference  # noqa: E402

FLOOR_BW = 3.0e12  # H100 copy bandwidth used for the design floors (bytes/s, read + write)


def layers(model: str) -> list[tuple[int, int, int]]:
    """(mid channels, input size, stride) of the depthwise layers, input 224."""
    mids = {"1.0x": (60, 120, 240), "2.0x": (120, 240, 480)}[model]
    out = []
    for mid, size in zip(mids, (56, 28, 14), strict=True):
        out.append((mid, size, 2))
        out.append((mid, size // 2, 1))
    return out


def bytes_moved(n, c, h, stride, elem, mode):
    """Bytes the fused passes must move (see docs/cuda.md): eval x + y; train fwd 2x + y and the
    backward 2x + 2g + gx + dz written and read (float32)."""
    ho = (h - 1) // stride + 1
    x = n * c * h * h * elem
    y = n * c * ho * ho * elem
    dz = n * c * ho * ho * 4
    if mode == "eval":
        return x + y
    return (2 * x + y) + (2 * x + 2 * y + 2 * dz + x)


def time_variants(fns: dict, reps: int, target_s: float = 3e-4) -> dict:
    """Interleaved CUDA-event timing; returns per variant the median seconds per call."""
    inner = {}
    for name, fn in fns.items():
        for _ in range(2):
            fn()
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        one = max(time.perf_counter() - t0, 1e-6)
        inner[name] = max(1, min(100, math.ceil(target_s / one)))
    samples = {name: [] for name in fns}
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    for _ in range(reps):
        for name, fn in fns.items():
            start.record()
            for _ in range(inner[name]):
                fn()
            stop.record()
            stop.synchronize()
            samples[name].append(start.elapsed_time(stop) * 1e-3 / inner[name])
    return {
        name: {"median_s": statistics.median(s), "min_s": min(s), "samples": len(s), "inner": inner[name]}
        for name, s in samples.items()
    }


def make_case(n, c, h, stride, dtype, layout, device="cuda"):
    g = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(n, c, h, h, generator=g, device=device, dtype=torch.float32).to(dtype)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    return {
        "x": x,
        "w": (torch.randn(c, 1, 3, 3, generator=g, device=device) * 0.3).to(dtype),
        "rm": torch.zeros(c, device=device),
        "rv": torch.ones(c, device=device),
        "gamma": torch.rand(c, generator=g, device=device) + 0.5,
        "beta": torch.randn(c, generator=g, device=device) * 0.1,
    }


def build_fns(case, c, stride, mode, compiled_ref):
    kw = dict(groups=c // 3, stride=stride, order="shuffle_last")
    t = case
    if mode == "eval":

        def run(fn):
            def call():
                with torch.no_grad():
                    fn(t["x"], t["w"], t["rm"], t["rv"], t["gamma"], t["beta"], training=False, **kw)

            return call

    else:
        x = t["x"].detach().requires_grad_()
        w = t["w"].detach().requires_grad_()
        gamma = t["gamma"].detach().requires_grad_()
        beta = t["beta"].detach().requires_grad_()
        rm, rv = t["rm"].clone(), t["rv"].clone()
        ho = (t["x"].shape[2] - 1) // stride + 1
        fmt = torch.channels_last if not t["x"].is_contiguous() else torch.contiguous_format
        gy = (
            torch.randn(t["x"].shape[0], c, ho, ho, device=t["x"].device).to(t["x"].dtype).contiguous(memory_format=fmt)
        )

        def run(fn):
            def call():
                for v in (x, w, gamma, beta):
                    v.grad = None
                y = fn(x, w, rm, rv, gamma, beta, training=True, **kw)
                y.backward(gy)

            return call

    fns = {"fused": run(sf.shuffle_dwconv_bn), "ref_eager": run(reference.shuffle_dwconv_bn)}
    if compiled_ref is not None:
        fns["ref_compile"] = run(compiled_ref)
    return fns


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", nargs="?", default=os.environ.get("OUT", "gpu_results") + "/gpu_bench.json")
    ap.add_argument("--budget-s", type=float, default=150.0)
    ap.add_argument("--compile-budget-s", type=float, default=60.0)
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--quick", action="store_true", help="batch 64, 1.0x only")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu_bench: no CUDA device", file=sys.stderr)
        return 2
    t_start = time.perf_counter()
    torch.backends.cudnn.benchmark = True
    compile_spent = 0.0
    compiled_ref = None

    configs = []
    for dtype, layout in ((torch.float32, "nchw"), (torch.bfloat16, "channels_last")):
        for model in ("1.0x",) if args.quick else ("1.0x", "2.0x"):
            for n in (64,) if args.quick else (64, 256):
                for c, h, stride in layers(model):
                    for mode in ("eval", "train"):
                        configs.append((model, n, c, h, stride, dtype, layout, mode))
    results = []
    for model, n, c, h, stride, dtype, layout, mode in configs:
        entry = {
            "model": model, "batch": n, "channels": c, "size": h, "stride": stride, "groups": c // 3,
            "dtype": str(dtype).replace("torch.", ""), "layout": layout, "mode": mode,
        }  # fmt: skip
        elapsed = time.perf_counter() - t_start
        if elapsed > args.budget_s:
            entry["skipped"] = "time budget"
            results.append(entry)
            continue
        case = make_case(n, c, h, stride, dtype, layout)
        use_compile = compile_spent < args.compile_budget_s
        if use_compile and compiled_ref is None:
            compiled_ref = torch.compile(reference.shuffle_dwconv_bn)
        t0 = time.perf_counter()
        fns = build_fns(case, c, stride, mode, compiled_ref if use_compile else None)
        if use_compile:
            try:
                fns["ref_compile"]()  # compile outside the timing
                torch.cuda.synchronize()
            except Exception as exc:  # noqa: BLE001 - record and go on
                entry["ref_compile_error"] = f"{type(exc).__name__}: {exc}"[:300]
                del fns["ref_compile"]
            compile_spent += time.perf_counter() - t0
        elem = torch.empty((), dtype=dtype).element_size()
        moved = bytes_moved(n, c, h, stride, elem, mode)
        copy_src = torch.empty(moved // 2, dtype=torch.uint8, device="cuda")
        copy_dst = torch.empty_like(copy_src)
        fns["copy_same_bytes"] = lambda src=copy_src, dst=copy_dst: dst.copy_(src)
        timing = time_variants(fns, args.reps)
        entry["bytes"] = moved
        entry["floor_us_at_3TBps"] = moved / FLOOR_BW * 1e6
        entry["us"] = {k: v["median_s"] * 1e6 for k, v in timing.items()}
        entry["timing"] = timing
        f = timing["fused"]["median_s"]
        entry["fused_GBps"] = moved / f / 1e9
        entry["fused_vs_copy"] = timing["copy_same_bytes"]["median_s"] / f
        entry["speedup_vs_eager"] = timing["ref_eager"]["median_s"] / f
        if "ref_compile" in timing:
            entry["speedup_vs_compile"] = timing["ref_compile"]["median_s"] / f
        results.append(entry)
        del case, fns, copy_src, copy_dst
        torch.cuda.empty_cache()

    props = torch.cuda.get_device_properties(0)
    report = {
        "device": props.name,
        "capability": f"{props.major}.{props.minor}",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "method": "interleaved CUDA-event batches, median of --reps samples; copy_same_bytes = "
        "device-to-device copy of bytes/2 (read + write = bytes)",
        "compile_budget_s": args.compile_budget_s,
        "elapsed_s": time.perf_counter() - t_start,
        "results": results,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(report, fh, indent=1)

    print(f"\n{props.name}, torch {torch.__version__}; us = median per call; "
          f"%copy = copy time of the same bytes / fused time")  # fmt: skip
    header = f"{'model':5} {'N':>4} {'C':>4} {'H':>3} {'s':>1} {'dtype':8} {'mode':5} " \
        f"{'fused':>8} {'eager':>8} {'compile':>8} {'floor':>7} {'GB/s':>6} {'%copy':>6}"  # fmt: skip
    print(header)
    for r in results:
        if "us" not in r:
            continue
        us = r["us"]
        comp = f"{us['ref_compile']:8.1f}" if "ref_compile" in us else f"{'-':>8}"
        print(f"{r['model']:5} {r['batch']:4d} {r['channels']:4d} {r['size']:3d} {r['stride']:1d} {r['dtype']:8} "
              f"{r['mode']:5} {us['fused']:8.1f} {us['ref_eager']:8.1f} {comp} {r['floor_us_at_3TBps']:7.1f} "
              f"{r['fused_GBps']:6.0f} {100 * r['fused_vs_copy']:5.0f}%")  # fmt: skip
    skipped = sum(1 for r in results if "skipped" in r)
    if skipped:
        print(f"({skipped} configurations skipped: time budget)")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
