#!/usr/bin/env bash
# Set everything up and run the whole test suite (the README's second command).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh >/dev/null
# Docker tests need an engine; when we can start one (root), do.
if [ "$(id -u)" = 0 ]; then
  scripts/ensure-docker.sh || echo "warning: no Docker engine; Docker tests will skip (or fail with SERVEGATE_REQUIRE_DOCKER=1)" >&2
fi
export TF_CPP_MIN_LOG_LEVEL=2 PREFECT_SERVER_ANALYTICS_ENABLED=false
exec .venv/bin/python -m pytest "$@"
