"""Summary of a scripts/gpu_check.sh run: gpu_check.json and the short table printed last.

Reads from OUT_DIR: preflight.json (scripts/gpu_preflight.py), smoke.json
(scripts/gpu_smoke.py), junit.xml / junit_slow.xml (pytest), resource_usage.txt (cuobjdump
--dump-resource-usage), gpu_bench.json (scripts/gpu_bench.py), device.txt, build.log.
Standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET


def read(path: str) -> str:
    try:
        with open(path) as fh:
            return fh.read()
    except OSError:
        return ""


def junit_summary(path: str) -> dict | None:
    if not os.path.exists(path):
        return None
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root)
    out = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0, "time_s": 0.0, "failed": []}
    for s in suites:
        for key in ("tests", "failures", "errors", "skipped"):
            out[key] += int(s.get(key, 0))
        out["time_s"] += float(s.get("time", 0.0))
        for case in s.iter("testcase"):
            bad = case.find("failure")
            if bad is None:
                bad = case.find("error")
            if bad is not None:
                msg = (bad.get("message") or "").splitlines()[:1]
                out["failed"].append(f"{case.get('name')}: {msg[0] if msg else ''}"[:300])
    return out


def demangle(names: list[str]) -> list[str]:
    if not names or shutil.which("c++filt") is None:
        return names
    res = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True)
    out = res.stdout.splitlines()
    return out if len(out) == len(names) else names


def short_kernel(name: str) -> str:
    name = name.replace("shufflenet_fused::cuda::", "").replace("shufflenet_fused::tiled::", "")
    for i, mode in enumerate(("Stats", "GradStats", "Dz")):
        name = name.replace(f"(TilePass){i}", mode)
    name = name.replace("c10::Half", "half").replace("c10::BFloat16", "bf16")
    return re.sub(r"\(.*", "", name).replace("void ", "")


def resource_usage(text: str) -> list[dict]:
    """cuobjdump --dump-resource-usage: 'Function <mangled>:' then 'REG:n STACK:n SHARED:n LOCAL:n ...'."""
    rows, arch, pending = [], None, None
    for line in text.splitlines():
        m = re.search(r"arch = (sm_\d+)", line)
        if m:
            arch = m.group(1)
        m = re.match(r"\s*Function (\S+):", line)
        if m:
            pending = m.group(1)
            continue
        m = re.search(r"REG:(\d+) STACK:(\d+) SHARED:(\d+) LOCAL:(\d+)", line)
        if m and pending:
            rows.append({"kernel": pending, "arch": arch, "regs": int(m.group(1)), "stack": int(m.group(2)),
                         "shared": int(m.group(3)), "local": int(m.group(4))})  # fmt: skip
            pending = None
    ours = [r for r in rows if "shufflenet_fused" in r["kernel"]]
    for r, d in zip(ours, demangle([r["kernel"] for r in ours]), strict=True):
        r["name"] = short_kernel(d)
    return ours


# sm_90 (H100/H200) per-SM limits, for the occupancy the registers and block size allow.
SM90 = {"threads": 2048, "blocks": 32, "regs": 65536, "reg_unit": 256, "smem": 228 * 1024, "smem_reserved": 1024}


def block_threads(name: str) -> int:
    """Threads per block of each kernel, as cuda/launch_shape.h launches them."""
    return 8 * 128 if name.startswith("finalize") else 256


def occupancy(row: dict, lim: dict = SM90) -> dict:
    """Resident blocks and warps per SM from registers, threads and static shared memory
    (dynamic shared memory is per launch and not in the binary: not counted)."""
    threads = block_threads(row.get("name", ""))
    warps = threads // 32
    regs_per_warp = -(-max(row["regs"], 1) * 32 // lim["reg_unit"]) * lim["reg_unit"]
    limits = {
        "threads": lim["threads"] // threads,
        "blocks": lim["blocks"],
        "registers": lim["regs"] // (regs_per_warp * warps),
    }
    if row["shared"]:
        limits["static_shared"] = lim["smem"] // (row["shared"] + lim["smem_reserved"])
    blocks = min(limits.values())
    return {"block_threads": threads, "blocks_per_sm": blocks, "warps_per_sm": blocks * warps,
            "occupancy": round(blocks * warps / (lim["threads"] // 32), 3),
            "limited_by": min(limits, key=limits.get)}  # fmt: skip


def read_json(path: str) -> dict | None:
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("out_dir")
    ap.add_argument("--build-rc", default="?")
    ap.add_argument("--smoke-rc", default="?")
    ap.add_argument("--test-rc", default="?")
    ap.add_argument("--slow-rc", default="?")
    ap.add_argument("--bench-rc", default="?")
    ap.add_argument("--sanitize-rc", default="?")
    ap.add_argument("--arch", default="?")
    ap.add_argument("--elapsed", default="?")
    a = ap.parse_args()
    d = a.out_dir
    build_log = read(os.path.join(d, "build.log"))
    warnings = [ln for ln in build_log.splitlines() if re.search(r"\bwarning\b", ln) and "pip" not in ln]
    usage = resource_usage(read(os.path.join(d, "resource_usage.txt")))
    for row in usage:
        row.update(occupancy(row))
    preflight = read_json(os.path.join(d, "preflight.json"))
    smoke = read_json(os.path.join(d, "smoke.json"))
    bench = None
    if os.path.exists(os.path.join(d, "gpu_bench.json")):
        with open(os.path.join(d, "gpu_bench.json")) as fh:
            bench = json.load(fh)
    summary = {
        "device": read(os.path.join(d, "device.txt")).strip().splitlines(),
        "arch": a.arch,
        "elapsed_s": a.elapsed,
        "preflight": preflight,
        "build": {"rc": a.build_rc, "warnings": warnings[:50]},
        "smoke": {"rc": a.smoke_rc, "results": smoke},
        "tests": {"rc": a.test_rc, "junit": junit_summary(os.path.join(d, "junit.xml"))},
        "tests_slow": {"rc": a.slow_rc, "junit": junit_summary(os.path.join(d, "junit_slow.xml"))},
        "resource_usage": usage,
        "sanitize_rc": a.sanitize_rc,
        "sanitize": {
            t: read(os.path.join(d, f"sanitize_{t}.log"))[-2000:] for t in ("memcheck", "racecheck", "initcheck")
        },
        "bench_rc": a.bench_rc,
        "bench": bench,
    }
    with open(os.path.join(d, "gpu_check.json"), "w") as fh:
        json.dump(summary, fh, indent=1)

    print("\n---- gpu_check summary ----")
    print("device:", "; ".join(summary["device"]))
    if preflight:
        print("preflight missing:", "; ".join(preflight.get("missing", [])) or "nothing")
    print(f"build rc={a.build_rc}, {len(warnings)} warning lines")
    if smoke:
        cases = smoke["cases"]
        bad = [c for c in cases if not c.get("ok")]
        print(f"smoke: {len(cases) - len(bad)}/{len(cases)} ok on {smoke['device']} (rc={a.smoke_rc})")
        for c in bad[:8]:
            print("   FAILED", {k: v for k, v in c.items() if k not in ("trace", "errors")}, c.get("errors"))
    else:
        print(f"smoke: no results (rc={a.smoke_rc})")
    for key in ("tests", "tests_slow"):
        j = summary[key]["junit"]
        if j:
            print(f"{key}: {j['tests']} tests, {j['failures']} failures, {j['errors']} errors, "
                  f"{j['skipped']} skipped, {j['time_s']:.0f}s (rc={summary[key]['rc']})")  # fmt: skip
            for f in j["failed"][:10]:
                print("   FAILED", f)
        else:
            print(f"{key}: no report (rc={summary[key]['rc']})")
    print(f"compute-sanitizer: rc={a.sanitize_rc}")
    if usage:
        spills = [u for u in usage if u["local"] or u["stack"]]
        worst = max(usage, key=lambda u: u["regs"])
        low = min(usage, key=lambda u: u["occupancy"])
        print(f"kernels: {len(usage)}, max regs {worst['regs']} ({worst['name']}), "
              f"{len(spills)} with local memory/stack, lowest occupancy {low['occupancy']:.2f} "
              f"({low['name']}, {low['limited_by']})")  # fmt: skip
    if bench:
        print(f"\n{'model':5} {'N':>4} {'C':>4} {'H':>3} s {'dtype':8} {'mode':5} {'fused us':>9} {'eager':>8} "
              f"{'compile':>8} {'x eager':>7} {'%copy':>6}")  # fmt: skip
        for r in bench["results"]:
            if "us" not in r:
                continue
            us = r["us"]
            comp = f"{us['ref_compile']:8.1f}" if "ref_compile" in us else f"{'-':>8}"
            print(f"{r['model']:5} {r['batch']:4d} {r['channels']:4d} {r['size']:3d} {r['stride']} {r['dtype']:8} "
                  f"{r['mode']:5} {us['fused']:9.1f} {us['ref_eager']:8.1f} {comp} "
                  f"{r['speedup_vs_eager']:6.1f}x {100 * r['fused_vs_copy']:5.0f}%")  # fmt: skip
    else:
        print(f"benchmark: no results (rc={a.bench_rc})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
