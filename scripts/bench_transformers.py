"""transformers (+ bitsandbytes) on the CPU, measured the way `bioquant bench`
measures: one prefill of P tokens, then N greedy decode steps through the KV
cache, each timed after one warm-up. Prints one JSON object.
Run by scripts/bench_vs_transformers.sh with the cross-check venv's python.

  bf16  torch_dtype=bfloat16 (weights and compute in bf16, as the paper ran)
  int8  load_in_8bit=True (LLM.int8, threshold 6.0), other weights bf16
  nf4   load_in_4bit, nf4, double quant, compute dtype bf16
"""
import argparse
import json
import resource
import time

import torch
from transformers import AutoModelForCausalLM, BitsAndBytesConfig

ap = argparse.ArgumentParser()
ap.add_argument("--model", required=True)
ap.add_argument("--precision", required=True, choices=["bf16", "f32", "int8", "nf4"])
ap.add_argument("-p", type=int, default=512)
ap.add_argument("-n", type=int, default=128)
ap.add_argument("--threads", type=int, default=2)
args = ap.parse_args()
torch.set_num_threads(args.threads)

kw = {"torch_dtype": torch.float32 if args.precision == "f32" else torch.bfloat16}
if args.precision == "int8":
    kw["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True)
elif args.precision == "nf4":
    kw["quantization_config"] = BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16)
t0 = time.perf_counter()
model = AutoModelForCausalLM.from_pretrained(args.model, device_map="cpu", **kw).eval()
load_s = time.perf_counter() - t0
vocab = model.config.vocab_size
g = torch.Generator().manual_seed(0)
prompt = torch.randint(3, vocab - 8, (1, args.p), generator=g)


def run(p_ids, n):
    with torch.inference_mode():
        t0 = time.perf_counter()
        out = model(p_ids, use_cache=True)
        t1 = time.perf_counter()
        past, nxt = out.past_key_values, out.logits[:, -1:].argmax(-1)
        for _ in range(n):
            out = model(nxt, past_key_values=past, use_cache=True)
            past, nxt = out.past_key_values, out.logits[:, -1:].argmax(-1)
        t2 = time.perf_counter()
    return t1 - t0, t2 - t1


run(prompt[:, :16], 2)  # warm-up
prefill_s, decode_s = run(prompt, args.n)
print(json.dumps({
    "engine": "transformers", "precision": args.precision, "threads": args.threads,
    "load_s": load_s, "prefill_tokens": args.p, "decode_tokens": args.n,
    "prefill_tokens_per_s": args.p / prefill_s, "decode_tokens_per_s": args.n / decode_s,
    "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    "torch": torch.__version__}))
