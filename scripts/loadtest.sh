#!/usr/bin/env bash
# Load test of `bioquant serve` (not a unit test: prints figures).
#   bash scripts/loadtest.sh [MODEL_DIR] [PRECISION]
# Default: the synthetic tinyllama-1.1b checkpoint (made once under
# ${BQ_LOADTEST_DIR:-/tmp/bq-loadtest}) at nf4, 2 threads. Phases, all on one
# server: one client alone (3 requests), 8 concurrent clients x 4 requests,
# and 64 concurrent clients x 8 requests; 32 generated tokens each
# (ignore_eos, greedy). Prints one JSON line per phase and the ratio of the
# 8-client aggregate throughput to the lone client's.
set -euo pipefail
cd "$(dirname "$0")/.."
BQ=${BQ:-build/bioquant}
WORK=${BQ_LOADTEST_DIR:-/tmp/bq-loadtest}
MODEL=${1:-$WORK/tinyllama}
PRECISION=${2:-nf4}
THREADS=${THREADS:-2}
MAX_TOKENS=${MAX_TOKENS:-32}
mkdir -p "$WORK"
if [ ! -f "$MODEL/config.json" ]; then
  echo "== synth tinyllama-1.1b -> $MODEL"
  "$BQ" synth --preset tinyllama-1.1b --out "$MODEL" >/dev/null
fi
LOG="$WORK/serve.log"
"$BQ" serve --model "$MODEL" --precision "$PRECISION" --port 0 \
  --threads "$THREADS" --max-batch 8 --max-queue 512 2>"$LOG" &
PID=$!
trap 'kill $PID 2>/dev/null || true; wait $PID 2>/dev/null || true' EXIT
for _ in $(seq 1 600); do
  grep -q "listening on" "$LOG" && break
  kill -0 $PID 2>/dev/null || { cat "$LOG"; exit 1; }
  sleep 0.5
done
URL=$(grep -o 'http://[0-9.]*:[0-9]*' "$LOG" | head -1)
echo "== serve $PRECISION at $URL (threads $THREADS, max batch 8)"
run() { python3 scripts/loadtest.py --url "$URL" --max-tokens "$MAX_TOKENS" "$@"; }
run --clients 1 --requests 1 >/dev/null  # warm-up
ALONE=$(run --clients 1 --requests 3)
echo "alone:      $ALONE"
EIGHT=$(run --clients 8 --requests 4)
echo "8 clients:  $EIGHT"
SIXTYFOUR=$(run --clients 64 --requests 8)
echo "64 clients: $SIXTYFOUR"
python3 - "$ALONE" "$EIGHT" "$SIXTYFOUR" <<'EOF'
import json, sys
a, e, s = (json.loads(x) for x in sys.argv[1:])
print(f"8-client aggregate / one alone: {e['tokens_per_s'] / a['tokens_per_s']:.2f}x "
      f"({e['tokens_per_s']} vs {a['tokens_per_s']} tokens/s, end to end)")
if e.get("decode_tokens_per_s") and a.get("decode_tokens_per_s"):
    print(f"decode steps alone (server time, prefill excluded): "
          f"{e['decode_tokens_per_s'] / a['decode_tokens_per_s']:.2f}x "
          f"({e['decode_tokens_per_s']} vs {a['decode_tokens_per_s']} tokens/s; "
          f"prefill {e['server_prefill_s']} s of {e['server_prefill_s'] + e['server_decode_s']:.2f} s with 8 clients)")
print(f"64 clients: {s['failed']} failed of {s['requests']}, p50 {s['latency_s']['p50']:.2f} s, "
      f"p99 {s['latency_s']['p99']:.2f} s, {s['tokens_per_s']} tokens/s, "
      f"RSS {a['rss_start_bytes']/2**20:.0f} MiB before the first phase, {s['rss_start_bytes']/2**20:.0f} before the last, {s['rss_end_bytes']/2**20:.0f} after it")
EOF
kill -TERM $PID
wait $PID && echo "serve stopped cleanly (exit 0)"
trap - EXIT
