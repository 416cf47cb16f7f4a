#!/usr/bin/env bash
# Prints the cross-check venv's python (or, with --dir, the venv folder).
# Exits 1 when the venv has not been created yet (run scripts/pystack.sh).
set -euo pipefail
VENV=${BIOQUANT_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/bioquant/venv}
if [ "${1:-}" = "--dir" ]; then
  echo "$VENV"
  exit 0
fi
[ -x "$VENV/bin/python" ] && [ -f "$VENV/.bioquant-pystack" ] || exit 1
echo "$VENV/bin/python"
