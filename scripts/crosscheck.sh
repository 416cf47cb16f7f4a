#!/usr/bin/env bash
# The README's third (optional) command: bioquant against the paper's own
# stack. Installs the pinned Python stack (scripts/pystack.sh: a venv outside
# the tree, several GB because PyPI's torch pulls the CUDA runtime), builds,
# runs the cross-check suite (CTest label `crosscheck`, tests/crosscheck/),
# then prints one summary line per group: cases compared, largest differences.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
bash scripts/setup.sh
bash scripts/pystack.sh
bash scripts/build.sh >/dev/null
out="$BUILD_DIR/crosscheck"
rm -f "$out"/*.summary
rc=0
ctest --test-dir "$BUILD_DIR" -L crosscheck --output-on-failure --timeout 1800 "$@" || rc=$?
echo "== cross-check summary (bioquant vs transformers, bitsandbytes, tokenizers, sentencepiece, seqeval, scikit-learn)"
if compgen -G "$out/*.summary" >/dev/null; then
  cat "$out"/*.summary
else
  echo "no summaries in $out (did every test skip?)"
fi
exit $rc
