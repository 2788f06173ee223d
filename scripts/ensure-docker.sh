#!/usr/bin/env bash
# Make a Docker engine reachable: install Debian's docker.io when dockerd is
# missing, then start dockerd in the background unless one already answers.
# Needs root (as CI and these machines have). Exits non-zero when no engine
# answers within the deadline.
set -euo pipefail

if docker info >/dev/null 2>&1; then
  exit 0
fi
if ! command -v dockerd >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq docker.io >/dev/null
fi
log=${DOCKERD_LOG:-/tmp/servegate-dockerd.log}
nohup dockerd >"$log" 2>&1 &
for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then
    exit 0
  fi
  sleep 1
done
echo "dockerd did not answer within 60 s; its log is $log:" >&2
tail -n 30 "$log" >&2
exit 1
