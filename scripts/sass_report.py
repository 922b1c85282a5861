"""Static SASS instruction counts of the CUDA conv kernels, as warp-instructions per output.

The tiled kernels (csrc/cuda/kernels.cuh) are bound by instruction issue more than by memory
on small planes, so their cost can be read off the SASS before any GPU runs them. This script
compiles one dtype's translation unit to a cubin (or reads one given), disassembles it, finds
each conv kernel's loops (backward branches), and combines the loop bodies with the trip counts
of the tile plans (``_debug_tile_plan``, a test-only op) for the DESIGN shapes:

- the unit loop: one warp unit (NCHW: an output tile of one plane; channels_last: a tile of
  32 channels); the instructions outside its inner loops run once per unit;
- the staging loop (NCHW: contains the shared-memory stores): one body stages 32 x (number of
  STS in it) input elements; where a unit holds several planes, the loop around it runs once
  per plane;
- the work loop (contains the output stores): one body writes up to 32 x (number of STG in it)
  outputs.

warp-instructions per output = (unit overhead + staging bodies + work bodies) / outputs of a
unit, all counted statically: both sides of a branch inside a loop count, and the 64-bit
division subroutine's body is not added to its callers (its call sits on a branch that 32-bit
values do not take). What full memory bandwidth allows is printed alongside: an H200 issues
about 132 SMs x 4 schedulers x 1.98 GHz = 1.05e12 warp-instructions/s and moves 4.8e12 B/s,
so a float32 eval that reads and writes 8 bytes per output affords about 1.7.

Usage (needs nvcc, cuobjdump or Triton's copy of it, and a build with SHUFFLENET_FUSED_TEST_OPS=1):
    python scripts/sass_report.py [--dtype float] [--arch sm_90] [--cubin FILE] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# (N, C, H, stride) at batch 64: ShuffleNetV1's depthwise planes (docs/design.md).
SHAPES = [(64, 60, 56, 2), (64, 120, 28, 1), (64, 240, 14, 1), (64, 240, 7, 1)]
# Targets of the eval kernels (float32), in warp-instructions per output, by output plane.
TARGETS = {28: 2.0, 14: 2.0, 7: 3.0}
ISSUE_RATE = 132 * 4 * 1.98e9  # warp-instructions per second, H200
BANDWIDTH = 4.8e12  # bytes per second, H200 HBM3e
PASSES = {0: "stats", 1: "grad_stats", 2: "dz"}
KERNEL = re.compile(r"(nchw|cl)_tile_kernelILNS_5tiled8TilePassE(\d)ELi(\d)ELi(\d)E")
# The eval output pass: layout (1: channels_last), offset type (i: 32-bit, l: 64-bit), K, S.
WALK_KERNEL = re.compile(r"walk_eval_kernelILb(\d)E([il])Li(\d)ELi(\d)E")
LINE = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(.*?)\s*;")
BRANCH = re.compile(r"^(@!?U?P\w+\s+)?BRA(?:\.\w+)*\s+(?:\w+,\s*)?(0x[0-9a-f]+)")


@dataclass
class Loop:
    start: int
    end: int  # address of the backward branch
    body: list[str] = field(default_factory=list)

    def count(self, opcode: str) -> int:
        return sum(1 for op in self.body if re.match(rf"(@!?U?P\w+\s+)?{opcode}\b", op))


def find_tool(name: str) -> str:
    candidates = [shutil.which(name), os.path.join(os.environ.get("CUDA_HOME", "/usr/local/cuda"), "bin", name)]
    try:
        import triton

        candidates.append(os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", name))
    except ImportError:
        pass
    for c in candidates:
        if c and os.path.exists(c):
            return c
    sys.exit(f"sass_report: {name} not found (CUDA_HOME/bin, PATH or Triton's copy)")


def compile_cubin(dtype: str, arch: str, out: Path) -> None:
    import torch

    inc = os.path.join(os.path.dirname(torch.__file__), "include")
    cmd = [
        find_tool("nvcc"), "-std=c++20", "-O3", "-cubin", f"-arch={arch}", "--expt-relaxed-constexpr",
        f"-I{ROOT / 'csrc'}", f"-I{inc}", f"-I{inc}/torch/csrc/api/include", f"-I{sysconfig.get_paths()['include']}",
        str(ROOT / "csrc" / "cuda" / f"dwconv_bn_{dtype}.cu"), "-o", str(out),
    ]  # fmt: skip
    subprocess.run(cmd, check=True)


def functions(sass: str) -> dict[str, list[tuple[int, str]]]:
    out = {}
    for chunk in re.split(r"\n\s*Function : ", sass)[1:]:
        name, body = chunk.split("\n", 1)
        out[name.strip()] = [(int(m.group(1), 16), m.group(2)) for m in LINE.finditer(body)]
    return out


def loops(code: list[tuple[int, str]]) -> list[Loop]:
    found = []
    for addr, op in code:
        m = BRANCH.match(op)
        if m and int(m.group(2), 16) < addr:
            start = int(m.group(2), 16)
            found.append(Loop(start, addr, [o for a, o in code if start <= a <= addr and o != "NOP"]))
    return sorted(found, key=lambda lp: (lp.start, -lp.end))


def children(lps: list[Loop], outer: Loop) -> list[Loop]:
    """The loops directly inside `outer` (not inside another of its loops)."""
    nested = [lp for lp in lps if lp is not outer and outer.start <= lp.start and lp.end <= outer.end]
    return [lp for lp in nested if not any(o is not lp and o.start <= lp.start and lp.end <= o.end
                                           for o in nested)]  # fmt: skip


def model(kind: str, pass_: str, fn: list[tuple[int, str]], plan: list[int], geometry: tuple[int, ...]) -> dict:
    """Warp-instructions per output of one conv kernel for one plan."""
    n, c, h, w, k, s = geometry
    th, tw, chunks_w, in_rows, pitch, tiles_h, tiles_w, units, planes = plan
    ho, wo = (h - 1) // s + 1, (w - 1) // s + 1
    outputs_per_unit = n * c * ho * wo / units
    lps = loops(fn)
    unit = max(lps, key=lambda lp: lp.end - lp.start)

    def inside(outer: Loop) -> list[Loop]:
        return children(lps, outer)

    # A body's outputs per lane: its multiply-adds over those of one output (K*K taps; the
    # dz pass adds K*K weight-gradient products).
    fma_per_output = k * k * (2 if pass_ == "dz" else 1)

    def fmas(lp: Loop) -> int:
        return lp.count("FFMA") + lp.count("DFMA")

    top = inside(unit)
    work = max(top, key=fmas)
    overhead = len(unit.body) - sum(len(lp.body) for lp in top)
    # The work loop may hold an inner loop (channels_last: the chunks of a row): its body is
    # the per-chunk cost, the rest of the work loop runs once per row.
    work_inner = [lp for lp in inside(work) if fmas(lp)]
    body = max(work_inner, key=fmas) if work_inner else work
    lane_outputs = fmas(body) / fma_per_output
    per_work = len(body.body) / (32 * lane_outputs)
    if body is not work:  # the row loop's own instructions, once per TH rows of TW outputs
        per_work += (len(work.body) - len(body.body)) / (32 * tw)
    res = {"outputs_per_unit": round(outputs_per_unit, 1), "unit_overhead": overhead / outputs_per_unit,
           "work_body": len(body.body), "work_lane_outputs": lane_outputs, "work": per_work}  # fmt: skip
    if kind == "cl":
        res["total"] = res["unit_overhead"] + per_work
        return res
    # NCHW staging: either loops right inside the unit loop, or inside a loop over the unit's
    # planes, whose own instructions then run once per plane. It may exist twice (32- and
    # 64-bit plane offsets); the DESIGN shapes take the 32-bit one, the shorter.
    outer = next(lp for lp in top if lp.count("STS"))
    stages = [lp for lp in inside(outer) if lp.count("STS")] or [lp for lp in top if lp.count("STS")]
    stage = min(stages, key=lambda lp: len(lp.body) / lp.count("STS"))
    per_plane = 0
    if stage is not outer and outer in top:
        per_plane = len(outer.body) - sum(len(lp.body) for lp in inside(outer))
    staged = planes * in_rows * pitch
    per_stage = len(stage.body) / (32 * stage.count("STS"))
    res.update(stage_body=len(stage.body), stage_stores=stage.count("STS"),
               stage=(per_stage * staged + per_plane * planes) / outputs_per_unit)  # fmt: skip
    res["total"] = res["unit_overhead"] + res["stage"] + per_work
    return res


def walk_inside(extent: int, first: int, count: int, k: int, s: int) -> int:
    """Outputs of one walk that run the unchecked loop (tiled/walk_eval.h, walk())."""
    room = extent - (first + k - s) - s
    inside = 0 if room < 0 else min(room // s + 1, count)
    return inside // k * k


def walk_model(kind: str, fn: list[tuple[int, str]], plan: list[int], geometry: tuple[int, ...]) -> dict:
    """Warp-instructions per output of one eval walk kernel (tiled/walk_eval.h) for one plan.

    The walk's two loops run K outputs per iteration: the unchecked one (its shortest loop
    with K * (K*K + 1) multiply-adds) while every line it loads is inside the image, the
    checked one for the rest. NCHW: they sit in the unit loop (a warp's block of lanes and
    row chunk); channels_last: in a loop over the unit's rows. A warp issues each
    instruction once for all its lanes, so the counts are per warp; outputs are counted over
    the whole layer, idle lanes included."""
    n, c, h, w, k, s = geometry
    rows, strip, blocks, row_chunks, strips, _ = plan
    ho, wo = (h - 1) // s + 1, (w - 1) // s + 1
    pad = k // 2
    lps = loops(fn)

    def parent(lp: Loop) -> Loop:
        return min((o for o in lps if o is not lp and o.start <= lp.start and lp.end <= o.end),
                   key=lambda o: o.end - o.start)  # fmt: skip

    def own(lp: Loop) -> int:
        return len(lp.body) - sum(len(x.body) for x in children(lps, lp))

    fmas = k * (k * k + 1)
    walks = [lp for lp in lps if lp.count("FFMA") + lp.count("DFMA") == fmas and not children(lps, lp)]
    main = min(walks, key=lambda lp: len(lp.body))
    holder = parent(main)
    tail = max((lp for lp in children(lps, holder) if lp in walks), key=lambda lp: len(lp.body))
    per_main, per_tail = len(main.body) / k, len(tail.body) / k
    total = 0.0
    if kind == "nchw":
        unit = holder
        for rc in range(row_chunks):
            count = min(rows, ho - rc * rows)
            unchecked = walk_inside(h, rc * rows * s - pad, count, k, s)
            total += own(unit) + unchecked * per_main + (count - unchecked) * per_tail
        total *= blocks * strips
        units = blocks * strips * row_chunks
        row_overhead = 0
    else:
        unit = parent(holder)
        row_overhead = own(holder)
        for rc in range(row_chunks):
            count_rows = min(rows, ho - rc * rows)
            for sc in range(strips):
                count = min(strip, wo - sc * strip)
                unchecked = walk_inside(w, sc * strip * s - pad, count, k, s)
                total += own(unit) + count_rows * (row_overhead + unchecked * per_main + (count - unchecked) * per_tail)
        total *= blocks
        units = blocks * strips * row_chunks
    outputs = n * c * ho * wo
    unit_share = own(unit) * units / outputs
    return {"outputs_per_unit": round(outputs / units, 1), "unit_overhead": unit_share,
            "work_body": len(main.body), "work_lane_outputs": k, "work": total / outputs - unit_share,
            "total": total / outputs}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dtype", default="float", choices=["float", "double", "half", "bfloat16"])
    ap.add_argument("--arch", default="sm_90")
    ap.add_argument("--cubin", help="a cubin to read instead of compiling one")
    ap.add_argument("--out", help="write results.md and results.json into this folder")
    args = ap.parse_args()

    import torch

    import shufflenet_fused  # noqa: F401

    if not hasattr(torch.ops.shufflenet_fused, "_debug_tile_plan"):
        sys.exit("sass_report: build with SHUFFLENET_FUSED_TEST_OPS=1 (needs _debug_tile_plan)")
    with tempfile.TemporaryDirectory() as tmp:
        cubin = Path(args.cubin) if args.cubin else Path(tmp) / "kernels.cubin"
        if not args.cubin:
            compile_cubin(args.dtype, args.arch, cubin)
        sass = subprocess.run([find_tool("cuobjdump"), "-sass", str(cubin)], check=True, capture_output=True,
                              text=True).stdout  # fmt: skip
    acc_bytes = 8 if args.dtype == "double" else 4
    elem = {"float": 4, "double": 8, "half": 2, "bfloat16": 2}[args.dtype]
    affordable = ISSUE_RATE / (BANDWIDTH / (2 * elem))
    rows = []
    for name, fn in functions(sass).items():
        m, mw = KERNEL.search(name), WALK_KERNEL.search(name)
        if m:
            kind, p, k, s = m.group(1), PASSES[int(m.group(2))], int(m.group(3)), int(m.group(4))
        elif mw and mw.group(2) == "i":  # the DESIGN shapes take 32-bit offsets
            kind, p, k, s = ("cl" if mw.group(1) == "1" else "nchw"), "eval", int(mw.group(3)), int(mw.group(4))
        else:
            continue
        for n, c, h, stride in SHAPES:
            if stride != s:
                continue
            geometry = (n, c, h, h, k, s)
            if mw and not m:
                plan = list(torch.ops.shufflenet_fused._debug_walk_plan(n, c, h, h, k, s, kind == "cl"))
                assert plan[-1], "the DESIGN shapes run the 32-bit walk"
                r = walk_model(kind, fn, plan, geometry)
            else:
                plan = list(torch.ops.shufflenet_fused._debug_tile_plan(n, c, h, h, k, s, kind == "cl", acc_bytes))
                r = model(kind, p, fn, plan, geometry)
            out_plane = (h - 1) // s + 1
            target = TARGETS.get(out_plane) if p == "eval" and args.dtype == "float" else None
            rows.append(dict(kernel=kind, pass_=p, k=k, stride=s, shape=[n, c, h, stride], plan=plan,
                             target=target, **r))  # fmt: skip
    rows.sort(key=lambda r: (r["pass_"] != "eval", r["kernel"], r["k"], r["stride"], -r["shape"][2]))
    targeted = [r for r in rows if r["target"] is not None]

    def met(k_in: tuple[int, ...]) -> str:
        some = [r for r in targeted if r["k"] in k_in]
        return f"{sum(1 for r in some if r['total'] <= r['target'])} of {len(some)}"

    lines = [
        f"{args.dtype} {args.arch}: warp-instructions per output (static SASS); full bandwidth affords "
        f"{affordable:.1f} for eval (read + write {2 * elem} B per output). "
        + (
            f"Eval targets met: 3x3 (ShuffleNet's kernel, the DESIGN layers) {met((3,))}; "
            f"5x5 and 7x7 against the same bounds {met((5, 7))}."
            if targeted
            else "No eval targets (float32 only)."
        ),
        "",
        "| kernel | pass | k | stride | input plane | outputs/unit | unit | staging | work | total | target |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        verdict = "" if r["target"] is None else f"{'met' if r['total'] <= r['target'] else 'over'} ({r['target']})"
        lines.append(
            f"| {r['kernel']} | {r['pass_']} | {r['k']} | {r['stride']} | {r['shape'][2]} | {r['outputs_per_unit']} "
            f"| {r['unit_overhead']:.2f} | {r.get('stage', 0):.2f} | {r['work']:.2f} | {r['total']:.2f} | {verdict} |"
        )
    print("\n".join(lines))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.md").write_text("\n".join(lines) + "\n")
        report = dict(dtype=args.dtype, arch=args.arch, affordable=affordable, rows=rows)
        (out / "results.json").write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
