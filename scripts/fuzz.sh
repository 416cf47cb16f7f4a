#!/usr/bin/env bash
# Runs one libFuzzer target (fuzz/<TARGET>_fuzz.cc) for SECONDS, or every
# target with `all`:
#   bash scripts/fuzz.sh TARGET|all [SECONDS=60]
# Builds with clang (address + undefined sanitizers) into ${FUZZ_BUILD_DIR:-build-fuzz}.
# The working corpus grows in build-fuzz/corpus/<target> (seeded from
# fuzz/corpus/<target>); a crash is written to build-fuzz/crashes/<target>/ —
# fix it, then copy the input to fuzz/regressions/<target>/ so the normal
# test suite replays it forever (tests/fuzz/replay_test.cc).
# BIOQUANT_FUZZ_SEED fixes libFuzzer's seed (CI's short round does, so that a
# landing is not failed by a bug that this change did not bring; longer runs
# without it explore anew each time).
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=${1:?usage: fuzz.sh TARGET|all [SECONDS]}
SECONDS_EACH=${2:-60}
B=${FUZZ_BUILD_DIR:-build-fuzz}
command -v clang++ >/dev/null || {
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get install -y -qq clang libclang-rt-dev >/dev/null
}
# The same configuration as scripts/test.sh's sanitizer build (build-san), so
# that one build serves both.
launcher=()
if command -v ccache >/dev/null; then
  export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$PWD}
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi
# -O1 (with assertions on): the sanitizers' usual level; it halves the build
# of the Highway kernels (every target of each) against -O3.
CXX=clang++ cmake -S . -B "$B" -G Ninja -DCMAKE_BUILD_TYPE=Sanitize \
  -DCMAKE_CXX_FLAGS_SANITIZE="-O1" -DBIOQUANT_FUZZ=ON "${launcher[@]}" >/dev/null
# `none`: configure only (scripts/test.sh then builds tests and targets).
[ "$TARGET" = none ] && exit 0
targets=()
if [ "$TARGET" = all ]; then
  for f in fuzz/*_fuzz.cc; do t=$(basename "$f" _fuzz.cc); targets+=("$t"); done
else
  [ -f "fuzz/${TARGET}_fuzz.cc" ] || { echo "fuzz.sh: no target '$TARGET' (fuzz/${TARGET}_fuzz.cc)" >&2; exit 2; }
  targets=("$TARGET")
fi
cmake --build "$B" -j "$(nproc)" --target "${targets[@]/#/fuzz_}" >/dev/null
status=0
for t in "${targets[@]}"; do
  mkdir -p "$B/corpus/$t" "$B/crashes/$t"
  seeds=("fuzz/corpus/$t")
  [ -d "fuzz/regressions/$t" ] && seeds+=("fuzz/regressions/$t")
  log="$B/fuzz_$t.log"
  if "$B/fuzz_$t" "$B/corpus/$t" "${seeds[@]}" -max_total_time="$SECONDS_EACH" \
      -timeout=10 -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
      ${BIOQUANT_FUZZ_SEED:+-seed=$BIOQUANT_FUZZ_SEED} \
      -artifact_prefix="$B/crashes/$t/" >"$log" 2>&1; then
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
    echo "fuzz $t: ok, ${SECONDS_EACH} s, $execs executions, corpus $(ls "$B/corpus/$t" | wc -l) files"
  else
    echo "fuzz $t: CRASH (see $log; input in $B/crashes/$t/)"
    grep -m3 -E "ERROR|runtime error|terminate|Assertion" "$log" || true
    status=1
  fi
done
exit $status
