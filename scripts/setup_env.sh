#!/usr/bin/env bash
# Sets up everything the README's commands need, idempotently:
#   .venv (python3 -m venv), torch, build/test tools, and the extension built in place
#   (skipped when nothing that goes into the build changed since the last one).
# Environment:
#   PYTHON=python3            interpreter for the venv
#   TORCH_SPEC=torch==2.14.1  what to install when the venv has no torch (a CUDA build, so the
#                             CUDA kernels compile too; any torch >= 2.4 works for the CPU path)
#   SHUFFLENET_FUSED_CUDA     0/1 to force the CUDA kernels off/on (default: auto)
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.14.1}
VENV=.venv

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
export PIP_DISABLE_PIP_VERSION_CHECK=1

if ! "$PY" -c "import torch" >/dev/null 2>&1; then
  echo "[setup] installing $TORCH_SPEC (a few GB; about a minute when it is cached on disk)"
  "$PY" -m pip install -q "$TORCH_SPEC"
fi
"$PY" -m pip install -q "setuptools>=77" wheel ninja pytest hypothesis pytest-benchmark numpy matplotlib ruff
# The ONNX export tests run the exported graphs in ONNX Runtime; where these cannot be
# installed (no wheel for this platform), those tests skip and say why.
"$PY" -m pip install -q onnx onnxruntime onnxscript || echo "[setup] onnx/onnxruntime/onnxscript not installed: the ONNX tests will skip"
# OpenVINO is one of the model-level benchmark's anchors (skipped with a message without it).
"$PY" -m pip install -q openvino || echo "[setup] openvino not installed: the benchmark's openvino variant will skip"

# torch guesses CUDA_HOME=/usr/local from /usr/local/bin/nvcc; setup.py also fixes this.
if [ -z "${CUDA_HOME:-}" ] && [ -x /usr/local/cuda/bin/nvcc ]; then export CUDA_HOME=/usr/local/cuda; fi
export SHUFFLENET_FUSED_TEST_OPS=${SHUFFLENET_FUSED_TEST_OPS:-1}
export MAX_JOBS=${MAX_JOBS:-$(nproc)}
# Build in place (ninja, incremental in build/) unless nothing that goes into the build has
# changed since the last one: the sources, the build files, the flags above, torch, the
# compilers. A second README command then costs seconds, not a rebuild.
TORCH_VERSION=$("$PY" -c 'import torch; print(torch.__version__)')
fingerprint=$(
  {
    find csrc -type f | LC_ALL=C sort | xargs sha256sum
    sha256sum setup.py pyproject.toml
    echo "torch=$TORCH_VERSION python=$("$PY" -c 'import sys; print(sys.version)')"
    echo "cuda=${SHUFFLENET_FUSED_CUDA:-auto} test_ops=$SHUFFLENET_FUSED_TEST_OPS archs=${TORCH_CUDA_ARCH_LIST:-} cuda_home=${CUDA_HOME:-}"
    c++ --version 2>/dev/null | head -n 1
    { "${CUDA_HOME:-/usr/local/cuda}/bin/nvcc" --version 2>/dev/null || true; } | tail -n 1
  } | sha256sum | cut -d' ' -f1
)
STAMP="$VENV/.shufflenet_fused_build"
if [ "$(cat "$STAMP" 2>/dev/null)" = "$fingerprint" ] && "$PY" -c "import shufflenet_fused" >/dev/null 2>&1; then
  echo "[setup] shufflenet_fused is up to date (sources, flags and torch $TORCH_VERSION unchanged): no build"
else
  echo "[setup] building shufflenet_fused in place (torch $TORCH_VERSION)"
  rm -f "$STAMP"
  "$PY" setup.py -q build_ext --inplace
  # Make the checkout importable from the venv (what an editable install does).
  SITE=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  echo "$PWD" > "$SITE/shufflenet_fused_checkout.pth"
  echo "$fingerprint" > "$STAMP"
fi
"$PY" -c "import shufflenet_fused, torch; print('[setup] ok: shufflenet_fused', shufflenet_fused.__version__, '| CUDA kernels built:', shufflenet_fused.cuda_kernels_built())"
