#!/usr/bin/env bash
# The CUDA kernels on host threads (csrc/cuda/host/) under ThreadSanitizer and under
# AddressSanitizer + UBSan: builds csrc/cuda/host/host_runner_test_ops.cpp twice as a small
# torch op library (ops under its own namespace, next to the main extension), then runs the
# sanitizer cases of tests/test_host_runner.py with one OS thread per CUDA thread and the
# sanitizer runtime preloaded into Python. Any report fails the run (halt_on_error).
# Needs the set-up of scripts/setup_env.sh (.venv with torch) and g++.
#
#   bash scripts/sanitize_host_runner.sh [tsan|asan ...]   (default: both)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
OUT=build/sanitize
mkdir -p "$OUT"

read -r TORCH_INCLUDES TORCH_LIB ABI < <("$PY" - <<'EOF'
import torch
from torch.utils import cpp_extension as c
print(",".join(c.include_paths()), c.library_paths()[0], int(torch._C._GLIBCXX_USE_CXX11_ABI))
EOF
)
INCLUDES=(-Icsrc)
IFS=, read -ra dirs <<< "$TORCH_INCLUDES"
for d in "${dirs[@]}"; do INCLUDES+=(-isystem "$d"); done

build() {  # name, sanitizer flags...
  local name=$1
  shift
  local lib="$OUT/host_runner_$name.so"
  echo "== building $lib"
  g++ -std=c++20 -O1 -g -fno-omit-frame-pointer -fPIC -shared "$@" \
    -D_GLIBCXX_USE_CXX11_ABI="$ABI" -DSF_HOST_RUNNER_LIBRARY="shufflenet_fused_$name" "${INCLUDES[@]}" \
    csrc/cuda/host/host_runner_test_ops.cpp -o "$lib" \
    -L"$TORCH_LIB" -Wl,-rpath,"$TORCH_LIB" -lc10 -ltorch_cpu -ltorch
}

run() {  # name, runtime library, options variable...
  local name=$1 runtime
  runtime=$(g++ -print-file-name="$2")
  shift 2
  echo "== running the sanitizer cases under $name ($runtime)"
  # OMP_NUM_THREADS=1: the reference ops would otherwise run on libgomp threads, whose
  # synchronization ThreadSanitizer cannot see (uninstrumented), and report races there.
  env "$@" LD_PRELOAD="$runtime" OMP_NUM_THREADS=1 SHUFFLENET_FUSED_HOST_RUNNER=threads \
    SHUFFLENET_FUSED_HOST_RUNNER_LIB="$OUT/host_runner_$name.so" \
    SHUFFLENET_FUSED_HOST_RUNNER_OPS="shufflenet_fused_$name" \
    "$PY" -m pytest tests/test_host_runner.py -q -s -p no:cacheprovider -m sanitizer  # -s: reports reach the log
}

for which in "${@:-tsan asan}"; do
  for w in $which; do
    case $w in
      tsan)
        build tsan -fsanitize=thread
        run tsan libtsan.so TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1"
        ;;
      asan)
        build asan -fsanitize=address,undefined -fno-sanitize-recover=all
        run asan libasan.so ASAN_OPTIONS="detect_leaks=0 halt_on_error=1" \
          UBSAN_OPTIONS="halt_on_error=1 print_stacktrace=1"
        ;;
      *) echo "unknown sanitizer $w (tsan or asan)" >&2; exit 2 ;;
    esac
  done
done
