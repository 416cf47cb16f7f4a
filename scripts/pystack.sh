#!/usr/bin/env bash
# Creates (or brings up to date) the cross-check Python environment: a venv
# outside the source tree with the pinned versions of scripts/pystack.txt.
# Idempotent: the venv keeps a stamp holding the hash of the requirements file
# and this script; with both unchanged a re-run only prints the path.
# One line of output per step; pip's own output goes to $VENV/pystack.log.
#   BIOQUANT_VENV   venv folder (default ${XDG_CACHE_HOME:-~/.cache}/bioquant/venv)
#   PYTHON          interpreter that creates it (default Debian's python3)
set -euo pipefail
cd "$(dirname "$0")/.."
REQ=scripts/pystack.txt
VENV=$(bash scripts/pyenv_path.sh --dir)
STAMP="$VENV/.bioquant-pystack"
hash=$(cat "$REQ" scripts/pystack.sh | sha256sum | cut -c1-16)

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$hash" ] && [ -x "$VENV/bin/python" ]; then
  echo "pystack: up to date ($hash) in $VENV"
  exit 0
fi

# Debian's interpreter (not whatever python3 comes first on PATH): it is what a
# fresh machine has, and python3-venv provides its ensurepip.
PYTHON=${PYTHON:-$( [ -x /usr/bin/python3 ] && echo /usr/bin/python3 || command -v python3)}
missing=()
for p in python3 python3-venv python3-pip python3-dev; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
  echo "pystack: apt installed ${missing[*]}"
else
  echo "pystack: Debian packages present (python3-venv python3-pip python3-dev)"
fi

if [ ! -x "$VENV/bin/python" ]; then
  mkdir -p "$(dirname "$VENV")"
  "$PYTHON" -m venv "$VENV"
  echo "pystack: created venv $VENV ($("$VENV/bin/python" --version))"
else
  echo "pystack: venv exists $VENV ($("$VENV/bin/python" --version))"
fi
LOG="$VENV/pystack.log"
: >"$LOG"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)

step() {  # step NAME REQUIREMENT-LINES...
  local name=$1 t0=$SECONDS before after
  shift
  before=$(du -sm "$VENV" | cut -f1)
  if ! "${PIP[@]}" install "$@" >>"$LOG" 2>&1; then
    echo "pystack: FAILED installing $name; last lines of $LOG:" >&2
    tail -n 20 "$LOG" >&2
    exit 1
  fi
  after=$(du -sm "$VENV" | cut -f1)
  echo "pystack: $name installed in $((SECONDS - t0)) s (+$((after - before)) MiB, venv $after MiB)"
}

# Everything but llama-cpp-python first: those are wheels (torch's pulls the
# CUDA runtime, about 4 GiB on disk); then llama-cpp-python, which compiles
# llama.cpp from source (about 12 minutes on 2 cores).
reqs=$(mktemp)
build=$(mktemp)
trap 'rm -f "$reqs" "$build"' EXIT
grep '# build$' "$REQ" | sed 's/ *#.*//' >"$build"
step "build helpers ($(paste -sd' ' "$build"))" -r "$build"
grep -v '^llama-cpp-python' "$REQ" | grep -v '# build$' >"$reqs"
step "wheels ($(grep -c '^[a-z]' "$reqs") pinned packages and their dependencies)" -r "$reqs"
llama=$(grep '^llama-cpp-python' "$REQ")
CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_CUDA=OFF" \
  step "$llama (built from source)" "$llama"

"$VENV/bin/python" -m pip freeze --all >"$VENV/pystack.freeze"
echo "$hash" >"$STAMP"
echo "pystack: ready ($hash) in $VENV, $(du -sh "$VENV" | cut -f1) on disk; versions in $VENV/pystack.freeze"
