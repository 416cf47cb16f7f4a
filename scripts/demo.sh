#!/usr/bin/env bash
# The README's main command: installs, builds, creates a synthetic model and
# runs a small study end to end on the project's MADE-UP example data: all
# eight tasks x strategies x three precisions, then the report.
# A synthetic model's scores mean nothing: this shows the machinery works.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
BQ=./build/bioquant
OUT=${DEMO_DIR:-demo}
mkdir -p "$OUT"

echo "== 1/4  a synthetic checkpoint (random weights: its outputs mean nothing)"
[ -f "$OUT/model/config.json" ] || $BQ synth --preset tiny --out "$OUT/model" --seed 1
$BQ inspect --model "$OUT/model"

echo
echo "== 2/4  the study: 8 tasks x {zero-shot, few-shot:2, cot, sc:3} x {bf16, int8, nf4}"
echo "        (resumable: re-running this script skips finished completions)"
$BQ eval --model "$OUT/model" --data-dir examples/data --out "$OUT/run" \
  --precisions bf16,int8,nf4 --tasks all --strategies zero-shot,few-shot:2,cot,sc:3 \
  --limit 4 --max-new-tokens 24 --max-new-tokens-cot 32 --resamples 200

echo
echo "== 3/4  the report (markdown, HTML with figures, CSV, JSON)"
for f in md csv json html; do $BQ report "$OUT/run" --format "$f" >/dev/null; done
$BQ report "$OUT/run" --format md --out "$OUT/run/report.md"

echo
echo "== 4/4  what fits in 8 GiB?"
$BQ plan --model "$OUT/model" --memory 8GiB || true

cat <<EOM

Report: $OUT/run/report.html (open in a browser), $OUT/run/report.md, .csv, .json
NOTE: the model above is synthetic and the data in examples/data is made up:
      these scores mean NOTHING. For your own checkpoint and the real data:

  $BQ eval --model /path/to/Llama-3.1-8B-Instruct --data-dir /path/to/bionlp \\
      --precisions bf16,int8,nf4 --tasks all --strategies zero-shot,few-shot:5,cot,sc:5 \\
      --split test --out runs/llama31-8b
  $BQ report runs/llama31-8b --format html
  $BQ plan --model /path/to/Llama-3.1-8B-Instruct --memory 16GiB --run runs/llama31-8b
EOM
