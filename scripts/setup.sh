#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment in .venv and install
# servegate with its test dependencies. Safe to run again: pip skips what is
# already there. Source-free: prints the venv's path on success.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
# A stamp of pyproject.toml lets repeated runs skip pip entirely when nothing changed.
stamp=.venv/.servegate-installed
if [ ! -f "$stamp" ] || ! cmp -s pyproject.toml "$stamp"; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e '.[test]'
  cp pyproject.toml "$stamp"
fi
echo "$(pwd)/.venv"
