#!/usr/bin/env bash
# Make PostgreSQL's server binaries (initdb, pg_ctl) available: install Debian's
# postgresql package when none is found. Idempotent. The tests start their own
# throwaway cluster on a free loopback port (tests/support/postgres.py); the
# cluster the package may create and start is not used. Needs root (as CI has).
set -euo pipefail

if compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || command -v initdb >/dev/null 2>&1; then
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq postgresql >/dev/null
if ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
  echo "postgresql installed, but no /usr/lib/postgresql/*/bin/initdb was found" >&2
  exit 1
fi
