#!/usr/bin/env bash
# Writes what the study commands print — tasks, prompt, score, eval (store
# rows, scores, summary), report, plan — into OUT, one file per command, with
# wall-clock fields (timings, dates, memory measured at run time) blanked.
# Run it with two binaries and `diff -r` the folders to show that a refactor
# changed no output:
#   bash scripts/cli_snapshot.sh build-old/bioquant /tmp/before
#   bash scripts/cli_snapshot.sh build/bioquant /tmp/after
#   diff -r /tmp/before /tmp/after && echo identical
# Uses examples/data and, when present, ../shared/data/bionlp.
set -euo pipefail
BQ=$(realpath "$1")
OUT=$2
cd "$(dirname "$0")/.."
rm -rf "$OUT"
mkdir -p "$OUT"
OUT=$(realpath "$OUT")
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# Blanks values that depend on the clock or on the machine's memory.
normalize() {
  python3 -c '
import json, re, sys
VOLATILE = re.compile(r"(_ms|_s|_at|created|elapsed|latency|rss|per_s|bytes_per_s|git_revision|examples_per_s|machine|cpu|memory|kv_cache|scratch|weights_bytes|load)", re.I)
def clean(v):
    if isinstance(v, dict):
        return {k: "<volatile>" if VOLATILE.search(k) else clean(x)
                for k, x in v.items()}
    if isinstance(v, list):
        return [clean(x) for x in v]
    return v
text = sys.stdin.read()
try:
    print(json.dumps(clean(json.loads(text)), indent=1, sort_keys=True))
except json.JSONDecodeError:
    lines = []
    for line in text.splitlines():
        lines.append(json.dumps(clean(json.loads(line)), sort_keys=True) if line.startswith("{") else line)
    print("\n".join(lines))
'
}

DATA_DIRS=(examples/data)
[ -d ../shared/data/bionlp ] && DATA_DIRS+=(../shared/data/bionlp)
TASKS=(bc5cdr_chem ncbi_disease chemprot ddi2013 hoc litcovid medqa pubmedqa)

for d in "${DATA_DIRS[@]}"; do
  tag=$(basename "$d")
  "$BQ" tasks --data-dir "$d" >"$OUT/tasks.$tag.txt"
  "$BQ" tasks --data-dir "$d" --json >"$OUT/tasks.$tag.json"
  for t in "${TASKS[@]}"; do
    for s in zero-shot few-shot:2 few-shot:3:bm25 cot sc:3; do
      for i in 0 1; do
        f="$OUT/prompt.$tag.$t.${s//:/_}.$i"
        "$BQ" prompt --task "$t" --strategy "$s" --index "$i" --data-dir "$d" \
          >"$f.txt" 2>&1 || echo "exit $?" >>"$f.txt"
        "$BQ" prompt --task "$t" --strategy "$s" --index "$i" --data-dir "$d" \
          --json >"$f.json" 2>&1 || echo "exit $?" >>"$f.json"
      done
    done
  done
done

if [ -d ../shared/data/bionlp/reference_predictions ]; then
  R=../shared/data/bionlp/reference_predictions
  for f in "$R"/*/*; do
    t=$(basename "$(dirname "$f")")
    "$BQ" score --task "$t" "$f" --json --resamples 200 \
      >"$OUT/score.$t.$(basename "$f").json" 2>&1 || true
    "$BQ" score --task "$t" "$f" --resamples 200 \
      >"$OUT/score.$t.$(basename "$f").txt" 2>&1 || true
  done
fi

"$BQ" synth --preset tiny --out "$WORK/model" --seed 3 >/dev/null
for d in "${DATA_DIRS[@]}"; do
  tag=$(basename "$d")
  run="$WORK/run.$tag"
  "$BQ" eval --model "$WORK/model" --data-dir "$d" --out "$run" \
    --precisions bf16,nf4 --tasks all --strategies zero-shot,few-shot:2,cot,sc:2 \
    --split test_sample200 --limit 2 --max-new-tokens 10 --max-new-tokens-cot 12 \
    --resamples 100 --threads 2 2>"$OUT/eval.$tag.stderr" || echo "exit $?" >>"$OUT/eval.$tag.stderr"
  # Progress lines carry rates and times; keep the rest.
  sed -i -E 's/[0-9.]+ ex\/s ETA [0-9]+s//; s/done in [0-9.]+ s/done in <t> s/' "$OUT/eval.$tag.stderr"
  normalize <"$run/scores.json" >"$OUT/eval.$tag.scores.json"
  normalize <"$run/summary.json" >"$OUT/eval.$tag.summary.json"
  python3 - "$run/store.sqlite" >"$OUT/eval.$tag.rows.txt" <<'EOF'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
cols = [r[1] for r in db.execute("PRAGMA table_info(generations)")]
keep = [c for c in cols if c not in ("latency_ms", "prefill_ms", "decode_ms", "created_at")]
for row in db.execute(f"SELECT {','.join(keep)} FROM generations ORDER BY precision, task, strategy, template, example_id, sample"):
    print(repr(row))
for row in db.execute("SELECT precision, task, strategy, threads, batch, examples FROM measurements ORDER BY 1,2,3"):
    print(repr(row))
for row in db.execute("SELECT key, value FROM meta WHERE key != 'created_at' ORDER BY key"):
    print(repr(row))
EOF
  normalize <"$run/manifest.json" >"$OUT/eval.$tag.manifest.json"
  for fmt in md csv json html; do
    "$BQ" report "$run" --format "$fmt" --resamples 100 --out "$WORK/report.$fmt" 2>/dev/null
  done
  normalize <"$WORK/report.json" >"$OUT/report.$tag.json"
  # Tables: the measured columns (latency, memory, t/s) are volatile.
  # (one-decimal numbers are timings, throughputs and token means; metrics
  # have three decimals, rates end in %)
  sed -E 's/[0-9]+(\.[0-9]+)? ?(ms|s|GiB|MiB|KiB|t\/s|B)\b/<v>/g; s/^- created: .*/- created: <v>/' \
    "$WORK/report.md" | perl -pe 's/\b\d+\.\d\b(?!%)/<v>/g' >"$OUT/report.$tag.md"
  cut -d, -f1-11 "$WORK/report.csv" >"$OUT/report.$tag.csv"
  "$BQ" plan --model "$WORK/model" --memory 8GiB --run "$run" --device gpu --json \
    | normalize >"$OUT/plan.$tag.gpu.json"
done
"$BQ" plan --model "$WORK/model" --memory 8GiB --device gpu >"$OUT/plan.gpu.txt"
"$BQ" plan --model "$WORK/model" --memory 1MiB --device gpu --json >"$OUT/plan.small.json" 2>&1 || true
"$BQ" plan --model "$WORK/model/config.json" --memory 8GiB --json | normalize >"$OUT/plan.cpu.json"
"$BQ" plan --model "$WORK/model/config.json" --memory 30MiB >"$OUT/plan.cpu.txt" 2>&1 || true
# Temporary paths differ from run to run.
grep -rl "$WORK" "$OUT" | xargs -r sed -i "s#$WORK#<work>#g"
echo "cli_snapshot: $(ls "$OUT" | wc -l) files in $OUT"
