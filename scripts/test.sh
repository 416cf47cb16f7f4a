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
