#!/usr/bin/env bash
# The README's test command: set up (venv, torch, build) and run the whole test suite.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
.venv/bin/python -m pytest tests -q "$@"
