#!/usr/bin/env bash
# Set everything up and run servegate's main job, the demo, end to end
# (the README's first command).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh >/dev/null
export TF_CPP_MIN_LOG_LEVEL=2 PREFECT_SERVER_ANALYTICS_ENABLED=false
exec .venv/bin/servegate demo "$@"
