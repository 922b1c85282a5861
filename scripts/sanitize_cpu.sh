#!/usr/bin/env bash
# The CPU extension under AddressSanitizer + UBSan, with every masked AVX-512 load/store
# checked against ASan's view of the heap (SF_CHECK_MASKED_ACCESS): builds a copy of the
# sources in build/sanitize-cpu/ (-O1, SHUFFLENET_FUSED_SANITIZE=1; the checkout's own build is
# left alone), then runs the op-level tests and the inference op's tests against it with the
# ASan runtime preloaded. The tests' cpu_isa fixture runs them at every ISA this machine has.
# Any report fails the run.
# Needs the set-up of scripts/setup_env.sh (.venv with torch) and g++.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SRC=build/sanitize-cpu
mkdir -p "$SRC"
# Only what the build reads; a copy so the in-place build does not replace the checkout's _C
# (timestamps kept: a rerun rebuilds only what changed).
rm -rf "$SRC/csrc" "$SRC/shufflenet_fused"
cp -rp csrc shufflenet_fused setup.py pyproject.toml "$SRC/"
find "$SRC/shufflenet_fused" -name '*.so' -delete
echo "== building the sanitized CPU extension in $SRC"
(cd "$SRC" && SHUFFLENET_FUSED_SANITIZE=1 SHUFFLENET_FUSED_CUDA=0 SHUFFLENET_FUSED_TEST_OPS=1 MAX_JOBS="${MAX_JOBS:-2}" \
  "$ROOT/.venv/bin/python" setup.py -q build_ext --inplace)
ASAN_RT=$(g++ -print-file-name=libasan.so)
# libstdc++ preloaded too: Python does not link it, and ASan's __cxa_throw interceptor must
# find the real one at start-up (else a C++ exception, a TORCH_CHECK, aborts in CheckFailed).
STDCXX=$(g++ -print-file-name=libstdc++.so)
export PYTHONPATH="$ROOT/$SRC" LD_PRELOAD="$ASAN_RT $STDCXX" ASAN_OPTIONS="detect_leaks=0 halt_on_error=1" \
  UBSAN_OPTIONS="halt_on_error=1 print_stacktrace=1"
# From inside the copy: `python -m` puts the working directory first on sys.path.
cd "$SRC"
LOADED=$("$ROOT/.venv/bin/python" -c 'import shufflenet_fused._C as c; print(c.__file__)')
case $LOADED in
  "$ROOT/$SRC"/*) ;;
  *) echo "sanitize_cpu: the tests would load $LOADED, not the sanitized build" >&2; exit 1 ;;
esac
echo "== op-level tests under ASan + UBSan ($ASAN_RT, $LOADED)"
T="$ROOT/tests"
"$ROOT/.venv/bin/python" -m pytest -q -s -p no:cacheprovider --rootdir "$ROOT" \
  "$T/test_op_vs_reference.py" "$T/test_cpu_isa.py" "$T/test_nan_inf_grads.py" "$T/test_degenerate_bn.py" \
  "$T/test_errors.py" "$T/test_fuzz.py" "$T/test_inference_pipeline.py" "$T/test_large_planes.py"
