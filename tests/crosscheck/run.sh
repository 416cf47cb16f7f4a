#!/usr/bin/env bash
# Runs one cross-check file with the venv's pytest (CTest calls it once per
# tests/crosscheck/test_*.py):  run.sh test_x.py [path/to/bioquant]
# Exits 77 (CTest's SKIP_RETURN_CODE) with one line when the venv made by
# scripts/pystack.sh is absent, so a fresh machine's test run stays green.
# Each file appends its summary lines ("group: cases, max differences") to
# $BIOQUANT_CROSSCHECK_OUT/<file>.summary (default: <build dir>/crosscheck).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
test=$(basename "$1")
if ! py=$(bash "$root/scripts/pyenv_path.sh"); then
  echo "crosscheck: SKIP $test: no cross-check venv (run: bash scripts/pystack.sh)"
  exit 77
fi
BIOQUANT_BINARY=$(realpath "${2:-${BIOQUANT_BINARY:-$root/build/bioquant}}")
export BIOQUANT_BINARY BIOQUANT_SOURCE_DIR=$root
export BIOQUANT_CROSSCHECK_OUT=${BIOQUANT_CROSSCHECK_OUT:-$(dirname "$BIOQUANT_BINARY")/crosscheck}
mkdir -p "$BIOQUANT_CROSSCHECK_OUT"
rm -f "$BIOQUANT_CROSSCHECK_OUT/${test%.py}.summary"
# The machine is small and shared: two threads for torch and bioquant alike.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} MKL_NUM_THREADS=${MKL_NUM_THREADS:-2}
export PYTHONDONTWRITEBYTECODE=1 TOKENIZERS_PARALLELISM=false
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
cd "$here"
exec "$py" -m pytest -q -p no:cacheprovider -rs "$test"
