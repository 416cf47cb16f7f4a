#!/usr/bin/env bash
# The README's test command: installs, builds, runs every test with CTest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
# The real model (SmolLM2-135M-Instruct) for the tests that need one; they
# skip with a message when it could not be had. BIOQUANT_NO_MODELS=1 skips
# the download.
if [ "${BIOQUANT_NO_MODELS:-0}" != 1 ]; then
  BUILD_DIR=${BUILD_DIR:-build} bash scripts/models.sh >/dev/null ||
    echo "test.sh: SmolLM2 not available; the real-model tests will skip" >&2
fi
ctest --test-dir "${BUILD_DIR:-build}" --output-on-failure -j "$(nproc)" --timeout 900

# The same tests again, built with clang under AddressSanitizer + UBSan (the
# build also holds the libFuzzer targets), then every fuzz target for a few
# seconds on its corpus and regressions (scripts/fuzz.sh TARGET SECONDS runs
# one longer). On by default (CI); BIOQUANT_SANITIZE=0 skips it. About 22 min
# on 2 cores from nothing (build 15, tests 4, fuzz 3).
# Left out under the sanitizers, for time only (each runs in the build
# above): the Python cross-checks and the tests of real-size models.
if [ "${BIOQUANT_SANITIZE:-1}" != 0 ]; then
  SAN=${SAN_BUILD_DIR:-build-san}
  FUZZ_BUILD_DIR=$SAN bash scripts/fuzz.sh none
  cmake --build "$SAN" -j "$(nproc)"
  ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1} \
  UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1} \
    ctest --test-dir "$SAN" --output-on-failure -j "$(nproc)" --timeout 1800 \
      -LE crosscheck -E "${BIOQUANT_SANITIZE_EXCLUDE:-SmolLM2}"
  FUZZ_BUILD_DIR=$SAN BIOQUANT_FUZZ_SEED=${BIOQUANT_FUZZ_SEED:-1} \
    bash scripts/fuzz.sh all "${BIOQUANT_FUZZ_SECONDS:-15}"
fi
