#!/usr/bin/env bash
# Build the servegate image from the repository's Dockerfile.
#
#   scripts/build-image.sh [--tag TAG] [--base IMAGE] [--local-base] [--wheelhouse]
#
#   --base IMAGE   the Dockerfile's BASE_IMAGE (default: the Dockerfile's own, python:3.11-slim)
#   --local-base   no registry needed: bootstrap Debian bookworm (python3, venv, pip) from the
#                  Debian mirror named in this host's apt sources, `docker import` it as
#                  servegate-test/debian-base:bookworm and use it as BASE_IMAGE
#   --wheelhouse   fill a wheelhouse on this host with `pip download` (this host's pip index
#                  configuration applies) and let the build install from it only; the build
#                  reads it over HTTP from a server this script runs on 127.0.0.1
#
# Caches (kept by the machine, never in the repository): $SERVEGATE_BUILD_CACHE (default
# /var/cache/servegate when writable, else ${XDG_CACHE_HOME:-~/.cache}/servegate) holds the
# Debian root filesystem tarball and the wheelhouse; Docker's layer cache holds the rest.
# Prints the image tag on the last line.
set -euo pipefail
cd "$(dirname "$0")/.."

TAG=servegate:local
BASE=
LOCAL_BASE=0
WHEELHOUSE=0
BASE_ONLY=0
LOCAL_BASE_TAG=servegate-test/debian-base:bookworm
# A fixed address keeps the build argument (and so Docker's layer cache) the same from build to build.
WHEEL_PORT=${SERVEGATE_WHEEL_PORT:-38417}

while [ $# -gt 0 ]; do
  case "$1" in
    --tag) TAG=$2; shift 2 ;;
    --base) BASE=$2; shift 2 ;;
    --local-base) LOCAL_BASE=1; shift ;;
    --wheelhouse) WHEELHOUSE=1; shift ;;
    --base-only) BASE_ONLY=1; shift ;;
    *) echo "build-image.sh: unknown argument '$1' (expected --tag, --base, --local-base, --wheelhouse)" >&2; exit 2 ;;
  esac
done

if [ -z "${SERVEGATE_BUILD_CACHE:-}" ]; then
  if mkdir -p /var/cache/servegate 2>/dev/null && [ -w /var/cache/servegate ]; then
    SERVEGATE_BUILD_CACHE=/var/cache/servegate
  else
    SERVEGATE_BUILD_CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/servegate
  fi
fi
mkdir -p "$SERVEGATE_BUILD_CACHE"
log() { echo "build-image: $*" >&2; }

# The Debian mirror this host's apt uses (deb822 .sources or one-line .list), for the bookworm suite.
debian_mirror() {
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk 'BEGIN{RS=""} /Suites:[^\n]*bookworm( |\n|$)/ && !/bookworm-security/ {
           if (match($0, /URIs:[ \t]*[^ \t\n]+/)) { s=substr($0, RSTART, RLENGTH); sub(/URIs:[ \t]*/, "", s); print s; exit } }' "$f"
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    awk '$1=="deb" && $3=="bookworm" {print $2; exit}' "$f"
  done
}

ensure_local_base() {
  if docker image inspect "$LOCAL_BASE_TAG" >/dev/null 2>&1; then
    return
  fi
  local tarball=$SERVEGATE_BUILD_CACHE/debian-bookworm-python-rootfs.tar
  if [ ! -s "$tarball" ]; then
    local mirror
    mirror=$(debian_mirror | head -n 1)
    if [ -z "$mirror" ]; then
      echo "build-image.sh: no Debian bookworm mirror found in /etc/apt/sources.list or /etc/apt/sources.list.d/ (needed by --local-base)" >&2
      exit 1
    fi
    if ! command -v debootstrap >/dev/null 2>&1; then
      log "installing debootstrap"
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
    fi
    local root
    root=$(mktemp -d "$SERVEGATE_BUILD_CACHE/rootfs.XXXXXX")
    log "debootstrap bookworm from $mirror (a few minutes, once per machine)"
    if ! debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
        bookworm "$root" "$mirror" >"$SERVEGATE_BUILD_CACHE/debootstrap.log" 2>&1; then
      tail -n 30 "$SERVEGATE_BUILD_CACHE/debootstrap.log" >&2
      rm -rf "$root"
      echo "build-image.sh: debootstrap failed; log: $SERVEGATE_BUILD_CACHE/debootstrap.log" >&2
      exit 1
    fi
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    tar -C "$root" -cf "$tarball.part" . && mv "$tarball.part" "$tarball"
    rm -rf "$root"
  fi
  log "docker import $tarball as $LOCAL_BASE_TAG"
  docker import - "$LOCAL_BASE_TAG" <"$tarball" >/dev/null
}

WHEEL_SERVER_PID=
stop_wheel_server() { if [ -n "$WHEEL_SERVER_PID" ]; then kill "$WHEEL_SERVER_PID" 2>/dev/null || true; fi; }
trap stop_wheel_server EXIT

fill_wheelhouse() {
  WHEEL_PYTHON=${SERVEGATE_WHEEL_PYTHON:-python3}
  if [ -z "${SERVEGATE_WHEEL_PYTHON:-}" ] && [ "$LOCAL_BASE" = 1 ] && grep -q 'VERSION_CODENAME=bookworm' /etc/os-release 2>/dev/null &&
     /usr/bin/python3 -m pip --version >/dev/null 2>&1; then
    WHEEL_PYTHON=/usr/bin/python3
  fi
  local dir=$SERVEGATE_BUILD_CACHE/wheelhouse
  mkdir -p "$dir"
  local stamp=$dir/.requirements
  local want
  want=$("$WHEEL_PYTHON" -V; python3 scripts/image-requirements.py --tfs-api; python3 scripts/image-requirements.py; cat constraints.txt 2>/dev/null || true)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    log "wheelhouse $dir is up to date"
  else
    log "filling wheelhouse $dir with pip download (first time: ~1 GB)"
    python3 scripts/image-requirements.py >"$dir/requirements.txt"
    if [ -f constraints.txt ]; then echo "-c $(pwd)/constraints.txt" >>"$dir/requirements.txt"; fi
    # Wheels for the image's platform (Linux x86_64, CPython 3.11, glibc >= 2.36 as in Debian bookworm),
    # whatever this host runs. pip takes each manylinux tag it may use as its own --platform. pip cannot be
    # told the target's full Python version, and dependencies such as redis's `async-timeout;
    # python_full_version < "3.11.3"` depend on it: so the download runs with $WHEEL_PYTHON, by default
    # Debian's own python3 when this host is Debian bookworm like the local base (the same 3.11.2).
    local platform=(--only-binary=:all: --python-version 3.11 --implementation cp --platform manylinux2014_x86_64) minor
    for minor in $(seq 17 36); do platform+=(--platform "manylinux_2_${minor}_x86_64"); done
    if ! { "$WHEEL_PYTHON" -m pip download -d "$dir" "${platform[@]}" -r "$dir/requirements.txt" pip "setuptools>=77" wheel &&
           "$WHEEL_PYTHON" -m pip download -d "$dir" "${platform[@]}" --no-deps "$(python3 scripts/image-requirements.py --tfs-api)"
         } >"$SERVEGATE_BUILD_CACHE/pip-download.log" 2>&1; then
      tail -n 30 "$SERVEGATE_BUILD_CACHE/pip-download.log" >&2
      echo "build-image.sh: pip download failed; log: $SERVEGATE_BUILD_CACHE/pip-download.log" >&2
      exit 1
    fi
    printf '%s' "$want" >"$stamp"
  fi
  python3 -m http.server --bind 127.0.0.1 --directory "$dir" "$WHEEL_PORT" >/dev/null 2>&1 &
  WHEEL_SERVER_PID=$!
  for _ in $(seq 1 50); do
    if python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$WHEEL_PORT/')" 2>/dev/null; then
      return
    fi
    sleep 0.2
  done
  echo "build-image.sh: could not serve the wheelhouse on 127.0.0.1:$WHEEL_PORT (port taken? set SERVEGATE_WHEEL_PORT)" >&2
  exit 1
}

args=(--tag "$TAG" --file Dockerfile --force-rm)
if [ "$LOCAL_BASE" = 1 ]; then
  if [ "$BASE_ONLY" = 1 ]; then ensure_local_base; echo "$LOCAL_BASE_TAG"; exit 0; fi
  # The base and the wheelhouse both wait on the network: bootstrap the one while pip fills the other.
  ensure_local_base &
  base_pid=$!
  BASE=$LOCAL_BASE_TAG
fi
if [ -n "$BASE" ]; then
  args+=(--build-arg "BASE_IMAGE=$BASE")
fi
if [ "$WHEELHOUSE" = 1 ]; then
  fill_wheelhouse
  args+=(--network host --build-arg "FIND_LINKS=http://127.0.0.1:$WHEEL_PORT/" --build-arg NO_INDEX=1)
fi
if [ -n "${base_pid:-}" ] && ! wait "$base_pid"; then
  echo "build-image.sh: the local base image could not be made (see above)" >&2
  exit 1
fi
log "docker build ${args[*]} ."
start=$(date +%s)
if ! DOCKER_BUILDKIT=0 docker build -q "${args[@]}" . >"$SERVEGATE_BUILD_CACHE/docker-build.log" 2>&1; then
  tail -n 40 "$SERVEGATE_BUILD_CACHE/docker-build.log" >&2
  echo "build-image.sh: docker build failed; log: $SERVEGATE_BUILD_CACHE/docker-build.log" >&2
  exit 1
fi
log "built $TAG in $(( $(date +%s) - start )) s"
echo "$TAG"
