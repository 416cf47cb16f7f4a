#!/usr/bin/env bash
# The README's main command: installs, builds, creates a synthetic model and
# runs the engine on it. (Grows into the full study demo: eval + report.)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
BQ=./build/bioquant
OUT=${DEMO_DIR:-demo}
mkdir -p "$OUT"
echo "== 1. a synthetic checkpoint (random weights: its outputs mean nothing)"
[ -f "$OUT/model/config.json" ] || $BQ synth --preset tiny --out "$OUT/model" --seed 1
$BQ inspect --model "$OUT/model"
echo
echo "== 2. generate at every precision the engine has"
for p in bf16 f32; do
  $BQ generate --model "$OUT/model" --precision "$p" --prompt "The patient was treated with" \
    --max-new-tokens 16 --json | head -c 400; echo
done
echo
echo "With your own checkpoint:  $BQ generate --model /path/to/Llama-3.1-8B-Instruct --chat --prompt '...'"
