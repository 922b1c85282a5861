"""What scripts/gpu_check.sh needs, checked before anything runs, as JSON and a short table.

Checks: Python and its headers (Python.h, to compile the extension), torch and its CUDA,
a CUDA device, nvcc, ninja (else the build falls back to the serial builder, ~20 CPU
minutes), pytest (else only the torch-only smoke check runs), setuptools >= 77 (older ones
reject pyproject.toml), cuobjdump (resource usage; the toolkit's or Triton's) and
compute-sanitizer (memcheck/racecheck/initcheck), and the wheels carried in .whl/.
Missing tools are reported, never fatal: gpu_check.sh skips what needs them.

    python scripts/gpu_preflight.py OUT_DIR/preflight.json

Standard library only (torch is imported inside a guard).
"""

from __future__ import annotations

import glob
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig


def _version(cmd: list[str]) -> str | None:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[-1] if text else ""


def _tool(name: str, extra_dirs: list[str]) -> dict:
    path = shutil.which(name) or next(
        (p for d in extra_dirs if os.path.isfile(p := os.path.join(d, name)) and os.access(p, os.X_OK)), None
    )
    return {"path": path, "version": _version([path, "--version"]) if path else None}


def _triton_bin() -> list[str]:
    # Triton's package carries cuobjdump/nvdisasm where the toolkit has none.
    spec = importlib.util.find_spec("triton")
    if spec is None or not spec.origin:
        return []
    return [os.path.join(os.path.dirname(spec.origin), "backends", "nvidia", "bin")]


def _setuptools() -> str | None:
    try:
        import setuptools
    except ImportError:
        return None
    return setuptools.__version__


def _torch() -> dict:
    if importlib.util.find_spec("torch") is None:
        return {"version": None}
    import torch

    info = {"version": torch.__version__, "cuda": torch.version.cuda, "device": None}
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        info["device"] = {"name": p.name, "capability": f"{p.major}.{p.minor}", "sms": p.multi_processor_count,
                          "memory_gib": round(p.total_memory / 2**30, 1)}  # fmt: skip
    return info


def main() -> int:
    out_path = sys.argv[1] if len(sys.argv) > 1 else "preflight.json"
    cuda_home = os.environ.get("CUDA_HOME", "/usr/local/cuda")
    cuda_bins = [os.path.join(cuda_home, "bin")]
    include = sysconfig.get_paths()["include"]
    report = {
        "python": {"executable": sys.executable, "version": sys.version.split()[0],
                   "headers": os.path.isfile(os.path.join(include, "Python.h")), "include": include},  # fmt: skip
        "torch": _torch(),
        "nvcc": _tool("nvcc", cuda_bins),
        "ninja": _tool("ninja", []),
        "pytest": {"importable": importlib.util.find_spec("pytest") is not None},
        "setuptools": _setuptools(),
        "cuobjdump": _tool("cuobjdump", cuda_bins + _triton_bin()),
        "compute-sanitizer": _tool("compute-sanitizer", cuda_bins + [os.path.join(cuda_home, "compute-sanitizer")]),
        "carried_wheels": sorted(os.path.basename(p) for p in glob.glob(".whl/*.whl")),
    }
    missing = []
    if not report["python"]["headers"]:
        missing.append("Python.h (the extension cannot be compiled)")
    if not report["torch"]["version"]:
        missing.append("torch")
    elif not report["torch"].get("device"):
        missing.append("a CUDA device visible to torch")
    for tool, consequence in (
        ("nvcc", "no CUDA build"),
        ("ninja", "serial build (slow)"),
        ("cuobjdump", "no resource usage"),
        ("compute-sanitizer", "no sanitizer runs"),
    ):
        if not report[tool]["path"]:
            missing.append(f"{tool} ({consequence})")
    if not report["pytest"]["importable"]:
        missing.append("pytest (only the smoke check runs)")
    st = report["setuptools"]
    if st is None or int(st.split(".")[0]) < 77:
        missing.append(f"setuptools >= 77 (found {st}; pyproject.toml's license field)")
    report["missing"] = missing
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    with open(out_path, "w") as fh:
        json.dump(report, fh, indent=1)
    dev = report["torch"].get("device")
    print(f"python {report['python']['version']} (headers: {report['python']['headers']}), "
          f"torch {report['torch']['version']} cuda {report['torch'].get('cuda')}, "
          f"device {dev['name'] + ' sm_' + dev['capability'] if dev else None}")  # fmt: skip
    for tool in ("nvcc", "ninja", "cuobjdump", "compute-sanitizer"):
        print(f"  {tool:18} {report[tool]['path'] or 'MISSING'}")
    print(f"  {'pytest':18} {'ok' if report['pytest']['importable'] else 'MISSING'}")
    print(f"  {'setuptools':18} {report['setuptools']}")
    print(f"  carried wheels: {len(report['carried_wheels'])}")
    print("missing: " + ("; ".join(missing) if missing else "nothing"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
