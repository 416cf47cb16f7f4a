#!/usr/bin/env bash
# Client overhead of the OpenAI backend (not a unit test: prints figures).
#   bash scripts/bench_remote_eval.sh [MODEL_DIR] [PRECISION] [BATCH]
# Runs the same study cells twice on one machine, alternating, ROUNDS times
# (a fresh server each round):
# `eval` with the local engine, and `eval --endpoint` against `bioquant serve`
# on the same model, precision, threads and batch (serve's --max-batch and
# eval's --concurrency equal to the batch; the same prefix-cache budget as
# eval's local engine). Examples/s is taken from eval's own per-cell progress
# lines (load time excluded), summed over the cells. Prints both rates and
# their ratio (the target: remote >= 0.9 x local).
# Default model: `synth --preset tiny` under ${BQ_BENCH_DIR:-/tmp/bq-remote}.
set -euo pipefail
cd "$(dirname "$0")/.."
BQ=${BQ:-build/bioquant}
WORK=${BQ_BENCH_DIR:-/tmp/bq-remote}
MODEL=${1:-$WORK/tiny}
PRECISION=${2:-nf4}
BATCH=${3:-4}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-2}
TASKS=${TASKS:-bc5cdr_chem,chemprot,hoc,pubmedqa}
LIMIT=${LIMIT:-24}
mkdir -p "$WORK"
if [ ! -f "$MODEL/config.json" ]; then
  echo "== synth tiny -> $MODEL"
  "$BQ" synth --preset tiny --out "$MODEL" >/dev/null
fi
common=(--tasks "$TASKS" --strategies zero-shot --data-dir examples/data
        --limit "$LIMIT" --batch "$BATCH" --max-new-tokens 32)

LOG="$WORK/serve.log"
PID=
trap 'kill $PID 2>/dev/null || true; wait $PID 2>/dev/null || true' EXIT
# A fresh server per round: its prefix cache starts as cold as local eval's.
start_serve() {
  "$BQ" serve --model "$MODEL" --precision "$PRECISION" --port 0 \
    --threads "$THREADS" --max-batch "$BATCH" --prefix-cache-mib 1024 2>"$LOG" &
  PID=$!
  for _ in $(seq 1 600); do
    grep -q "listening on" "$LOG" && break
    kill -0 $PID 2>/dev/null || { cat "$LOG"; exit 1; }
    sleep 0.5
  done
  URL=$(grep -o 'http://[0-9.]*:[0-9]*' "$LOG" | head -1)/v1
}
stop_serve() {
  kill -TERM $PID
  wait $PID || { echo "serve did not stop cleanly"; exit 1; }
}

# Examples per second over the cells of one eval (from its progress lines).
rate() {
  python3 -c '
import re, sys
done = secs = 0.0
for line in sys.stdin:
    m = re.search(r"eval: \S+ \S+ \S+ (\d+)/(\d+) \((\d+) resumed\) ([0-9.]+) ex/s", line)
    if m and m.group(1) == m.group(2) and float(m.group(4)) > 0:
        n = int(m.group(1)) - int(m.group(3))
        done += n
        secs += n / float(m.group(4))
print(f"{done / secs:.3f}" if secs else "nan")'
}
locals=() remotes=()
for r in $(seq 1 "$ROUNDS"); do
  rm -rf "$WORK/local" "$WORK/remote"
  "$BQ" eval --model "$MODEL" --precisions "$PRECISION" --threads "$THREADS" \
    "${common[@]}" --out "$WORK/local" >/dev/null 2>"$WORK/local.log" ||
    { tail -3 "$WORK/local.log"; exit 1; }
  start_serve
  "$BQ" eval --endpoint "$URL" --concurrency "$BATCH" \
    "${common[@]}" --out "$WORK/remote" >/dev/null 2>"$WORK/remote.log" ||
    { tail -3 "$WORK/remote.log"; exit 1; }
  stop_serve
  l=$(rate <"$WORK/local.log")
  m=$(rate <"$WORK/remote.log")
  echo "round $r: local $l ex/s, remote $m ex/s"
  locals+=("$l") remotes+=("$m")
done
python3 - "${locals[*]}" "${remotes[*]}" <<'EOF'
import statistics as st, sys
l = [float(x) for x in sys.argv[1].split()]
m = [float(x) for x in sys.argv[2].split()]
sd = lambda v: st.stdev(v) if len(v) > 1 else 0.0
print(f"local  {st.mean(l):.3f} ± {sd(l):.3f} ex/s")
print(f"remote {st.mean(m):.3f} ± {sd(m):.3f} ex/s")
print(f"remote / local: {st.mean(m) / st.mean(l):.3f} (target >= 0.9)")
EOF
trap - EXIT
