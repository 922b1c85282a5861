#!/usr/bin/env bash
# Regenerate the curated CPU result set that the README quotes: benchmarks/results/cpu-op,
# cpu-op-bfloat16, cpu-op-channels_last and cpu-model-eval, each replaced by a fresh run
# (python -m benchmarks --curated ...). Sets up the environment first, as scripts/bench.sh.
# Extra arguments go to every run (e.g. --threads 2). Run it on a quiet machine (a few
# minutes on 2 cores, most of it torch.compile) and commit the four folders.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
run() { .venv/bin/python -m benchmarks --curated --no-progress "$@"; }
run "$@"
run --dtype bfloat16 "$@"
run --layout channels_last "$@"
# The model level against the deployment anchors (ONNX Runtime, OpenVINO, compiled with
# freezing; each skipped with a message when not installed): the configs and batches of
# docs/inference.md.
run --level model --mode eval --config 1.0x-g3,2.0x-g3,0.5x-g8 --batch 1,8,32 "$@"
