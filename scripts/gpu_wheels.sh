#!/usr/bin/env bash
# Wheels for what the GPU machine's image may lack (it has no network): pytest and its
# dependencies, ninja, and setuptools >= 77 (pyproject.toml's SPDX license field), for CPython 3.12 on x86_64 Linux, into .whl/ (ignored by git).
# Run here before the GPU run; the run carries .whl and scripts/gpu_check.sh installs them
# with --no-index when pytest or ninja is missing there, or setuptools is older.
#
# compute-sanitizer is not among them: PyPI has no wheel that ships the executable
# (nvidia-cuda-sanitizer-api-cu12 carries only the API libraries, the -cu13 name is a
# 0.0.0a0 placeholder); the GPU image has its own (docs: ../.library/device/KINDS.md).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .whl pytest pluggy iniconfig packaging pygments ninja 'setuptools>=77'
ls -l .whl
