#!/usr/bin/env bash
# One command for the one GPU run (torch with CUDA and nvcc; no network): preflight, build
# in place for this card only, a torch-only smoke check of every op, the CUDA tests, the
# kernels' resource usage, the CUDA benchmark, compute-sanitizer, all written as JSON.
#
#   scripts/gpu_check.sh [OUT_DIR]        (default: $OUT, else ./gpu_results)
#
# Prepare here first: `bash scripts/gpu_wheels.sh` puts pytest (+ deps), ninja and setuptools
# wheels in .whl/; carry .whl with the run: when the machine lacks pytest or ninja, or has a
# setuptools too old for pyproject.toml, they are installed from it with --no-index. Rehearse here, without a GPU: `GPU_CHECK_STUB=1 bash
# scripts/gpu_check.sh /tmp/rehearsal` runs every step that needs no GPU for real (preflight,
# wheel install, build and its fallback, the smoke and sanitizer scripts on the CPU, pytest,
# cuobjdump on a locally compiled sm_90 object, the report); GPU_CHECK_FORCE_WHEELS=1 and
# GPU_CHECK_FORCE_FALLBACK=1 take the wheel and fallback-build branches even when not needed.
#
# Writes into OUT_DIR: gpu_check.json (summary: device, preflight, build, smoke, tests,
# resource usage with occupancy, benchmark, sanitizers), preflight.json, smoke.json,
# junit.xml / junit_slow.xml, gpu_bench.json, resource_usage.txt, build.log, pytest.log,
# bench.log, sanitize_*.log. Prints a short table last. Budgeted to finish within 8 minutes:
# every step gets what is left of a deadline (GPU_CHECK_BUDGET_S, default 460 s).
set -uo pipefail

cd "$(dirname "$0")/.."
OUT_DIR="${1:-${OUT:-gpu_results}}"
mkdir -p "$OUT_DIR"
OUT_DIR="$(cd "$OUT_DIR" && pwd)"
PY="${PYTHON:-python3}"
BUDGET="${GPU_CHECK_BUDGET_S:-460}"
STUB="${GPU_CHECK_STUB:-0}"
left() { echo $((BUDGET - SECONDS)); }
# Seconds a step may take: what is left minus a reserve for the later steps, at least $2 (or 20).
allow() { local t=$(( $(left) - $1 )); [ "$t" -lt "${2:-20}" ] && t="${2:-20}"; echo "$t"; }
step() { echo "== [$(printf '%3d' "$SECONDS")s] $*"; }

export CUDA_HOME="${CUDA_HOME:-$(dirname "$(dirname "$(command -v nvcc 2>/dev/null || echo /usr/local/cuda/bin/nvcc)")")}"
export PATH="$CUDA_HOME/bin:$PATH"
export PYTHONUNBUFFERED=1

# --------------------------------------------------------------- preflight ----
step "preflight"
"$PY" scripts/gpu_preflight.py "$OUT_DIR/preflight.json"
need_wheels=$("$PY" - <<'EOF'
import importlib.util as u, shutil
try:
    import setuptools
    old = int(setuptools.__version__.split(".")[0]) < 77  # pyproject.toml's SPDX license field
except ImportError:
    old = True
print(int(u.find_spec("pytest") is None or shutil.which("ninja") is None or old))
EOF
)
# GPU_CHECK_FORCE_WHEELS=1 installs them anyway (rehearsing this step where both exist).
if { [ "$need_wheels" = 1 ] || [ "${GPU_CHECK_FORCE_WHEELS:-0}" = 1 ]; } && ls .whl/*.whl >/dev/null 2>&1; then
  step "installing the carried wheels (.whl, --no-index)"
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/gpu_check_site .whl/*.whl \
    && export PYTHONPATH="/tmp/gpu_check_site${PYTHONPATH:+:$PYTHONPATH}" PATH="/tmp/gpu_check_site/bin:$PATH"
fi
HAVE_PYTEST=$("$PY" -c 'import importlib.util as u; print(int(u.find_spec("pytest") is not None))')

if [ "$STUB" = 1 ]; then
  DEVICE=cpu
  ARCH=9.0
  echo "GPU_CHECK_STUB=1: no GPU; device steps run on the CPU, the build is CPU-only" | tee "$OUT_DIR/device.txt"
else
  DEVICE=cuda
  ARCH="$("$PY" -c 'import torch; print("%d.%d" % torch.cuda.get_device_capability())' 2>/dev/null)"
  if [ -z "$ARCH" ]; then
    echo "gpu_check: torch sees no CUDA device" >&2
    exit 2
  fi
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | tee "$OUT_DIR/device.txt"
  "$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)' | tee -a "$OUT_DIR/device.txt"
fi

# ------------------------------------------------------------------- build ----
BUILD_CUDA=1
[ "$STUB" = 1 ] && BUILD_CUDA=0
step "build (TORCH_CUDA_ARCH_LIST=$ARCH, one arch to save time; SHUFFLENET_FUSED_CUDA=$BUILD_CUDA)"
BUILD_RC=0
export SHUFFLENET_FUSED_CUDA=$BUILD_CUDA SHUFFLENET_FUSED_TEST_OPS=1 TORCH_CUDA_ARCH_LIST="$ARCH" MAX_JOBS="${MAX_JOBS:-$(nproc)}"
timeout "$(allow 150 150)" "$PY" -m pip install --no-build-isolation --no-deps -e . >"$OUT_DIR/build.log" 2>&1 || BUILD_RC=$?
if [ "$BUILD_RC" != 0 ] || [ "${GPU_CHECK_FORCE_FALLBACK:-0}" = 1 ]; then
  # pip may be missing, too old for editable installs, or want a build backend it cannot
  # fetch: build the extension in place instead (the tests import from the checkout).
  step "build fallback: setup.py build_ext --inplace (pip rc=$BUILD_RC)"
  BUILD_RC=0
  timeout "$(allow 120 120)" "$PY" setup.py build_ext --inplace >>"$OUT_DIR/build.log" 2>&1 || BUILD_RC=$?
fi
grep -E "warning|error" "$OUT_DIR/build.log" | grep -v "^WARNING: Running pip" | head -20
echo "build rc=$BUILD_RC"
[ "$BUILD_RC" != 0 ] && tail -40 "$OUT_DIR/build.log"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
SO="$("$PY" -c 'import shufflenet_fused._C as c; print(c.__file__)' 2>/dev/null)"

# ------------------------------------------------------------------- smoke ----
SMOKE_RC=skipped
if [ "$BUILD_RC" = 0 ]; then
  step "smoke: every op x layout x dtype x k x stride against the reference (torch only)"
  SMOKE_RC=0
  timeout "$(allow 300 40)" "$PY" scripts/gpu_smoke.py "$OUT_DIR/smoke.json" --device "$DEVICE" || SMOKE_RC=$?
fi

# ------------------------------------------------------------------- tests ----
TEST_RC=skipped
SLOW_RC=skipped
if [ "$BUILD_RC" = 0 ] && [ "$HAVE_PYTEST" = 1 ]; then
  step "tests: pytest -m 'cuda and not slow' tests/test_cuda.py"
  TEST_RC=0
  timeout -s INT -k 15 "$(allow 150 60)" "$PY" -m pytest tests/test_cuda.py -m "cuda and not slow" -q -p no:cacheprovider \
    --junitxml="$OUT_DIR/junit.xml" --durations=10 >"$OUT_DIR/pytest.log" 2>&1 || TEST_RC=$?
  tail -15 "$OUT_DIR/pytest.log"
  if [ "$(left)" -gt 200 ]; then
    step "tests: pytest -m 'cuda and slow' (tensors past 2**31 elements)"
    SLOW_RC=0
    timeout -s INT -k 15 "$(allow 150)" "$PY" -m pytest tests/test_cuda.py -m "cuda and slow" -q -p no:cacheprovider \
      --junitxml="$OUT_DIR/junit_slow.xml" >>"$OUT_DIR/pytest.log" 2>&1 || SLOW_RC=$?
    tail -3 "$OUT_DIR/pytest.log"
  fi
elif [ "$HAVE_PYTEST" != 1 ]; then
  echo "pytest missing and no carried wheels: the smoke check above is the test result"
fi

# ---------------------------------------------------------- resource usage ----
step "resource usage (cuobjdump --dump-resource-usage)"
CUOBJDUMP="$(command -v cuobjdump || ls "$("$PY" -c 'import triton, os; print(os.path.dirname(triton.__file__))' 2>/dev/null)"/backends/nvidia/bin/cuobjdump 2>/dev/null)"
DUMP_TARGET="$SO"
if [ "$STUB" = 1 ]; then
  # No CUDA build here: dump one locally compiled sm_90 object instead.
  DUMP_TARGET="$OUT_DIR/dwconv_bn_float.o"
  INCLUDES=$("$PY" -c 'from torch.utils import cpp_extension as c; import sysconfig; print(" ".join("-I" + p for p in c.include_paths() + [sysconfig.get_paths()["include"]]))' 2>/dev/null)
  # shellcheck disable=SC2086
  timeout "$(allow 60 60)" nvcc -std=c++20 -O3 --expt-relaxed-constexpr -gencode arch=compute_90,code=sm_90 -Icsrc \
    $INCLUDES -Xcompiler -fPIC -c csrc/cuda/dwconv_bn_float.cu -o "$DUMP_TARGET" >>"$OUT_DIR/build.log" 2>&1
fi
if [ -n "$DUMP_TARGET" ] && [ -f "$DUMP_TARGET" ] && [ -n "$CUOBJDUMP" ]; then
  "$CUOBJDUMP" --dump-resource-usage "$DUMP_TARGET" >"$OUT_DIR/resource_usage.txt" 2>&1 || true
else
  echo "cuobjdump or the built .so not found" >"$OUT_DIR/resource_usage.txt"
fi

# --------------------------------------------------------------- benchmark ----
BENCH_RC=skipped
if [ "$BUILD_RC" = 0 ] && [ "$STUB" != 1 ] && [ "$(left)" -gt 40 ]; then
  # Keep ~60 s for compute-sanitizer when there is room, ~30 s for the report.
  RESERVE=30
  if [ "$(left)" -gt 220 ]; then RESERVE=90; fi
  B=$(( $(left) - RESERVE ))
  step "benchmark (budget ${B}s)"
  BENCH_RC=0
  timeout "$(( B + 20 ))" "$PY" scripts/gpu_bench.py "$OUT_DIR/gpu_bench.json" --budget-s "$B" \
    --compile-budget-s "$(( B / 3 ))" >"$OUT_DIR/bench.log" 2>&1 || BENCH_RC=$?
fi

# --------------------------------------------------------- compute-sanitizer ----
# memcheck (out-of-bounds), racecheck (shared-memory hazards), initcheck (reads of unwritten
# global memory), with PyTorch's caching allocator off: memcheck cannot see an overrun that
# stays inside a cached block. GPU_CHECK_SANITIZE=0 skips it. Stub: the cases on the CPU.
SAN_RC=skipped
SANITIZER="$(command -v compute-sanitizer || ls "$CUDA_HOME"/compute-sanitizer/compute-sanitizer 2>/dev/null)"
if [ "$BUILD_RC" = 0 ] && [ "${GPU_CHECK_SANITIZE:-1}" != 0 ] && { [ -n "$SANITIZER" ] || [ "$STUB" = 1 ]; }; then
  SAN_RC=0
  for tool in memcheck racecheck initcheck; do
    if [ "$(left)" -lt 25 ]; then SAN_RC="partial"; break; fi
    step "compute-sanitizer --tool $tool"
    if [ "$STUB" = 1 ]; then
      runner=(env)
    else
      runner=("$SANITIZER" --tool "$tool" --error-exitcode 9)
    fi
    PYTORCH_NO_CUDA_MEMORY_CACHING=1 timeout "$(allow 15)" "${runner[@]}" \
      "$PY" scripts/gpu_sanitize_cases.py --device "$DEVICE" >"$OUT_DIR/sanitize_$tool.log" 2>&1 || SAN_RC="$tool:$?"
    tail -2 "$OUT_DIR/sanitize_$tool.log"
  done
fi

# ------------------------------------------------------------------ report ----
step "report"
"$PY" scripts/gpu_report.py "$OUT_DIR" --build-rc "$BUILD_RC" --smoke-rc "$SMOKE_RC" --test-rc "$TEST_RC" \
  --slow-rc "$SLOW_RC" --bench-rc "$BENCH_RC" --sanitize-rc "$SAN_RC" --arch "$ARCH" --elapsed "$SECONDS"
echo "== done in ${SECONDS}s; results in $OUT_DIR"
[ "$BUILD_RC" = 0 ] && [ "$SMOKE_RC" = 0 ] && { [ "$TEST_RC" = 0 ] || [ "$TEST_RC" = skipped ]; } \
  && { [ "$SLOW_RC" = 0 ] || [ "$SLOW_RC" = skipped ]; }
