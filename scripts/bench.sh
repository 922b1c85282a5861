#!/usr/bin/env bash
# The README's main command: set up (venv, torch, build) and run the fused-vs-reference
# benchmark on CPU with the default shapes, printing a table of ratios.
# Extra arguments go to the benchmark (see: .venv/bin/python -m benchmarks --help).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
.venv/bin/python -m benchmarks "$@"
