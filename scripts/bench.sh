#!/usr/bin/env bash
# Set up and run every benchmark; prints one line per figure (name, ratio, goal, pass/fail).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh >/dev/null
export TF_CPP_MIN_LOG_LEVEL=2 PREFECT_SERVER_ANALYTICS_ENABLED=false
exec .venv/bin/python -m benchmarks "$@"
