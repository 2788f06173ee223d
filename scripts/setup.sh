#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment in .venv and install
# servegate with its test dependencies. Safe to run again: pip skips what is
# already there. Prints the venv's path on success.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
# The tested dependency set: pyproject.toml's pins, every other package held by constraints.txt
# (see its header). A stamp of both lets repeated runs skip pip entirely when nothing changed.
stamp=.venv/.servegate-installed
if [ ! -f "$stamp" ] || ! cat pyproject.toml constraints.txt | cmp -s - "$stamp"; then
  # pip's and the build backend's chatter goes to a log, shown only when pip fails.
  log=.venv/pip-install.log
  echo "setup: installing servegate and its dependencies into .venv (first time: a few minutes; log: $log)" >&2
  if ! { .venv/bin/python -m pip install --upgrade pip &&
         .venv/bin/python -m pip install -c constraints.txt -e '.[test]'; } >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "setup: pip install failed; the full log is $log" >&2
    exit 1
  fi
  cat pyproject.toml constraints.txt >"$stamp"
fi
echo "$(pwd)/.venv"
