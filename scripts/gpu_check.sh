#!/usr/bin/env bash
# One command for a CUDA machine (torch with CUDA, nvcc, ninja, pytest; no network):
# build the extension in place for this card only, run the CUDA tests, record the kernels'
# resource usage, run the CUDA benchmark, and write everything as JSON.
#
#   scripts/gpu_check.sh [OUT_DIR]        (default: $OUT, else ./gpu_results)
#
# Writes into OUT_DIR: gpu_check.json (summary: device, build, tests, resource usage,
# benchmark), junit.xml / junit_slow.xml, gpu_bench.json, resource_usage.txt, build.log,
# pytest.log, bench.log, sanitize_*.log. Prints a short table last. Budgeted to finish within 8 minutes on an
# H100: every step gets what is left of a deadline (GPU_CHECK_BUDGET_S, default 460 s).
set -uo pipefail

cd "$(dirname "$0")/.."
OUT_DIR="${1:-${OUT:-gpu_results}}"
mkdir -p "$OUT_DIR"
OUT_DIR="$(cd "$OUT_DIR" && pwd)"
PY="${PYTHON:-python3}"
BUDGET="${GPU_CHECK_BUDGET_S:-460}"
left() { echo $((BUDGET - SECONDS)); }
# Seconds a step may take: what is left minus a reserve for the later steps, at least $2 (or 20).
allow() { local t=$(( $(left) - $1 )); [ "$t" -lt "${2:-20}" ] && t="${2:-20}"; echo "$t"; }
step() { echo "== [$(printf '%3d' "$SECONDS")s] $*"; }

export CUDA_HOME="${CUDA_HOME:-$(dirname "$(dirname "$(command -v nvcc 2>/dev/null || echo /usr/local/cuda/bin/nvcc)")")}"
export PATH="$CUDA_HOME/bin:$PATH"

step "device"
ARCH="$("$PY" -c 'import torch; print("%d.%d" % torch.cuda.get_device_capability())' 2>/dev/null)"
if [ -z "$ARCH" ]; then
  echo "gpu_check: torch sees no CUDA device" >&2
  exit 2
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | tee "$OUT_DIR/device.txt"
"$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)' | tee -a "$OUT_DIR/device.txt"

# ------------------------------------------------------------------- build ----
step "build (TORCH_CUDA_ARCH_LIST=$ARCH, one arch to save time)"
BUILD_RC=0
SHUFFLENET_FUSED_CUDA=1 SHUFFLENET_FUSED_TEST_OPS=1 TORCH_CUDA_ARCH_LIST="$ARCH" MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
  timeout "$(allow 120 180)" "$PY" -m pip install --no-build-isolation --no-deps -e . \
  >"$OUT_DIR/build.log" 2>&1 || BUILD_RC=$?
grep -E "warning|error" "$OUT_DIR/build.log" | grep -v "^WARNING: Running pip" | head -20
echo "build rc=$BUILD_RC"
if [ "$BUILD_RC" != 0 ]; then
  tail -40 "$OUT_DIR/build.log"
fi
SO="$("$PY" -c 'import shufflenet_fused._C as c; print(c.__file__)' 2>/dev/null)"

# ------------------------------------------------------------------- tests ----
TEST_RC=skipped
SLOW_RC=skipped
if [ "$BUILD_RC" = 0 ]; then
  step "tests: pytest -m 'cuda and not slow' tests/test_cuda.py"
  TEST_RC=0
  timeout -s INT -k 15 "$(allow 110 60)" "$PY" -m pytest tests/test_cuda.py -m "cuda and not slow" -q -p no:cacheprovider \
    --junitxml="$OUT_DIR/junit.xml" --durations=10 >"$OUT_DIR/pytest.log" 2>&1 || TEST_RC=$?
  tail -15 "$OUT_DIR/pytest.log"
  if [ "$(left)" -gt 150 ]; then
    step "tests: pytest -m 'cuda and slow' (tensors past 2**31 elements)"
    SLOW_RC=0
    timeout -s INT -k 15 "$(allow 110)" "$PY" -m pytest tests/test_cuda.py -m "cuda and slow" -q -p no:cacheprovider \
      --junitxml="$OUT_DIR/junit_slow.xml" >>"$OUT_DIR/pytest.log" 2>&1 || SLOW_RC=$?
    tail -3 "$OUT_DIR/pytest.log"
  fi
fi

# ---------------------------------------------------------- resource usage ----
step "resource usage (cuobjdump --dump-resource-usage)"
if [ -n "$SO" ] && command -v cuobjdump >/dev/null 2>&1; then
  cuobjdump --dump-resource-usage "$SO" >"$OUT_DIR/resource_usage.txt" 2>&1 || true
else
  echo "cuobjdump or the built .so not found" >"$OUT_DIR/resource_usage.txt"
fi

# --------------------------------------------------------------- benchmark ----
BENCH_RC=skipped
if [ "$BUILD_RC" = 0 ] && [ "$(left)" -gt 40 ]; then
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
# Only with time to spare (GPU_CHECK_SANITIZE=0 skips it): memcheck (out-of-bounds),
# racecheck (shared-memory hazards), initcheck (reads of unwritten global memory).
SAN_RC=skipped
if [ "$BUILD_RC" = 0 ] && [ "${GPU_CHECK_SANITIZE:-1}" != 0 ] && command -v compute-sanitizer >/dev/null 2>&1; then
  SAN_RC=0
  for tool in memcheck racecheck initcheck; do
    if [ "$(left)" -lt 25 ]; then SAN_RC="partial"; break; fi
    step "compute-sanitizer --tool $tool"
    timeout "$(allow 15)" compute-sanitizer --tool "$tool" --error-exitcode 9 \
      "$PY" scripts/gpu_sanitize_cases.py >"$OUT_DIR/sanitize_$tool.log" 2>&1 || SAN_RC="$tool:$?"
    tail -2 "$OUT_DIR/sanitize_$tool.log"
  done
fi

# ------------------------------------------------------------------ report ----
step "report"
"$PY" scripts/gpu_report.py "$OUT_DIR" --build-rc "$BUILD_RC" --test-rc "$TEST_RC" --slow-rc "$SLOW_RC" \
  --bench-rc "$BENCH_RC" --sanitize-rc "$SAN_RC" --arch "$ARCH" --elapsed "$SECONDS"
echo "== done in ${SECONDS}s; results in $OUT_DIR"
[ "$BUILD_RC" = 0 ] && [ "$TEST_RC" = 0 ] && { [ "$SLOW_RC" = 0 ] || [ "$SLOW_RC" = skipped ]; }
