#!/usr/bin/env bash
# bioquant vs the paper's stack (transformers + bitsandbytes) on the CPU:
# the tinyllama-1.1b synthetic checkpoint, prefill of P tokens and decode of
# N, same threads, at bf16 / int8 / nf4, alternating `bioquant bench` and
# transformers (scripts/bench_transformers.py) in one run, one process per
# measurement so that each peak RSS is its own. Prints a table and ratios.
#   P=512 N=128 THREADS=2 REPS=1 PRECISIONS="bf16 int8 nf4"
# transformers int8 is load_in_8bit (LLM.int8); bioquant's row shows both its
# int8 (W8A16) and llm-int8 (the same computation as load_in_8bit).
set -euo pipefail
cd "$(dirname "$0")/.."
P=${P:-512} N=${N:-128} THREADS=${THREADS:-2} REPS=${REPS:-1}
PRECISIONS=${PRECISIONS:-"bf16 int8 nf4"}
bash scripts/pystack.sh >/dev/null
bash scripts/build.sh >/dev/null
PY=$(bash scripts/pyenv_path.sh)
BQ=${BQ:-build/bioquant}
MODEL=${MODEL:-${XDG_CACHE_HOME:-$HOME/.cache}/bioquant/tinyllama-1.1b}
[ -f "$MODEL/config.json" ] || { mkdir -p "$(dirname "$MODEL")"; $BQ synth --preset tinyllama-1.1b --out "$MODEL" --dtype bf16 --seed 1 >/dev/null; }
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
export OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS HF_HUB_OFFLINE=1

bq_run() {  # precision rep
  /usr/bin/time -f '%M' -o "$OUT/rss" $BQ bench --model "$MODEL" --precision "$1" \
    -p "$P" -n "$N" -r 1 --threads "$THREADS" --json >"$OUT/bq.$1.$2.json"
  echo "$(($(cat "$OUT/rss") * 1024))" >"$OUT/bq.$1.$2.rss"
}
hf_run() {
  "$PY" scripts/bench_transformers.py --model "$MODEL" --precision "$1" -p "$P" -n "$N" \
    --threads "$THREADS" 2>"$OUT/hf.$1.$2.err" >"$OUT/hf.$1.$2.json" ||
    { echo "transformers $1 failed: $(tail -1 "$OUT/hf.$1.$2.err")" >&2; echo '{}' >"$OUT/hf.$1.$2.json"; }
}
for rep in $(seq "$REPS"); do
  for p in $PRECISIONS; do
    echo "bench: rep $rep $p: bioquant" >&2
    bq_run "$p" "$rep"
    [ "$p" = int8 ] && bq_run llm-int8 "$rep"
    echo "bench: rep $rep $p: transformers" >&2
    hf_run "$p" "$rep"
  done
done
"$PY" - "$OUT" "$P" "$N" "$THREADS" "$PRECISIONS" <<'PYEOF'
import glob, json, statistics, sys
out, P, N, T, precs = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5].split()
def bq(p):
    pre, dec, rss = [], [], []
    for f in glob.glob(f"{out}/bq.{p}.*.json"):
        for r in json.load(open(f))["results"]:
            (pre if r["test"].startswith("pp") else dec).append(r["tokens_per_s"])
        rss.append(int(open(f[:-5] + ".rss").read()))
    return (statistics.mean(pre) if pre else float("nan"), statistics.mean(dec) if dec else float("nan"), max(rss, default=0))
def hf(p):
    rows = [json.load(open(f)) for f in glob.glob(f"{out}/hf.{p}.*.json")]
    rows = [r for r in rows if r]
    if not rows: return (float("nan"),) * 2 + (0,)
    return (statistics.mean(r["prefill_tokens_per_s"] for r in rows),
            statistics.mean(r["decode_tokens_per_s"] for r in rows),
            max(r["peak_rss_bytes"] for r in rows))
g = lambda b: f"{b / 2**30:.2f} GiB"
print(f"tinyllama-1.1b (synthetic), prefill {P} / decode {N} tokens, {T} threads")
print("| precision | bioquant pp t/s | transformers pp t/s | ratio | bioquant tg t/s | transformers tg t/s | ratio | bioquant peak RSS | transformers peak RSS |")
print("|---|---|---|---|---|---|---|---|---|")
for p in precs:
    rows = [(p, p)] + ([("llm-int8", p)] if p == "int8" else [])
    for bp, hp in rows:
        b, h = bq(bp), hf(hp)
        print(f"| {bp} vs {hp} | {b[0]:.1f} | {h[0]:.1f} | {b[0]/h[0]:.1f}x | {b[1]:.2f} | {h[1]:.2f} | {b[1]/h[1]:.1f}x | {g(b[2])} | {g(h[2])} |")
PYEOF
