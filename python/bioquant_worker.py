#!/usr/bin/env python3
"""bioquant's transformers worker: the paper's own stack behind
`bioquant eval --backend transformers`.

bioquant (src/backends/transformers.cc) starts one worker per precision and
speaks to it over a line-delimited JSON protocol: one JSON object per line on
stdin, one per line on stdout (UTF-8; nothing else is ever written to stdout,
library chatter goes to stderr). Every answer has "ok": true, or "ok": false
and "error": {"type": ..., "message": ...}. Requests, in order:

  {"op": "hello"}
    -> {"ok": true, "op": "hello", "protocol": 1, "versions": {"python",
        "torch", "transformers", "bitsandbytes" (null when not installed)},
        "device": "cpu" | "cuda", "device_name": ...}
  {"op": "load", "model": DIR, "precision": "f32|bf16|f16|int8|llm-int8|
   nf4|fp4", "compute_dtype": "bf16|f16|f32", "device": "auto|cpu|cuda",
   "threads": N (0 = torch's default)}
    -> {"ok": true, "op": "load", "load_ms", "compute", "device",
        "footprint_bytes" (model.get_memory_footprint()), "max_positions",
        "has_chat_template", "memory": {...}}
    8-bit: BitsAndBytesConfig(load_in_8bit=True) (LLM.int8); 4-bit:
    bnb_4bit_quant_type nf4|fp4, bnb_4bit_use_double_quant=True,
    bnb_4bit_compute_dtype = compute_dtype: as Zhan et al. 2025 describe.
  {"op": "render", "messages": [...]}
    -> {"ok": true, "op": "render", "text": str | null}  (null: no template)
    tokenizer.apply_chat_template(messages, tokenize=False,
    add_generation_prompt=True).
  {"op": "generate", "requests": [{"text", "add_special_tokens",
   "max_new_tokens", "temperature", "top_p", "seed", "stop": [...]}, ...]}
    -> one {"ok": true, "op": "result", "index": i, "text", "finish_reason"
       ("eos" | "stop" | "length" | "prompt_too_long"), "tokens_in",
       "tokens_out", "prefill_ms", "decode_ms", "latency_ms"} per request as
       it finishes, then {"ok": true, "op": "done", "memory": {...}}.
    Requests run one at a time (batch 1, as the paper ran them), so a result
    never depends on the other requests. Greedy when temperature is 0, else
    seeded sampling (torch.Generator) with temperature and top-p. The
    completion is decoded with skip_special_tokens=True and cut at the first
    stop string.
  {"op": "memory"} -> {"ok": true, "op": "memory", "memory": {...}}
  {"op": "quit"}   -> the worker exits 0 (so does end of input).

memory: {"source": "gpu-allocated" | "cpu-rss", "peak_bytes",
  "gpu_allocated_peak_bytes", "gpu_reserved_peak_bytes" (CUDA only),
  "cpu_peak_rss_bytes", "footprint_bytes"}. On CUDA the peak statistics are
reset once, just before the model is loaded, so the peak covers loading and
every generation since (the paper's "peak GPU memory"); on the CPU the
process's peak RSS (VmHWM) is reset at the same point (/proc/self/clear_refs).
"""

from __future__ import annotations

import json
import os
import platform
import random
import resource
import sys
import time
import traceback

PROTOCOL = 1
_OUT = sys.stdout
# Library output (warnings, progress bars) must never reach the protocol
# stream.
sys.stdout = sys.stderr


def send(obj):
    _OUT.write(json.dumps(obj, ensure_ascii=False) + "\n")
    _OUT.flush()


def error(kind, message):
    send({"ok": False, "error": {"type": kind, "message": str(message)}})


class WorkerError(Exception):
    def __init__(self, kind, message):
        super().__init__(message)
        self.kind = kind


def import_stack():
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as e:
        raise WorkerError("ImportError", f"{e} (python {sys.executable})")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        pass


def versions():
    out = {"python": platform.python_version()}
    for name in ("torch", "transformers", "bitsandbytes"):
        try:
            mod = __import__(name)
            out[name] = getattr(mod, "__version__", "unknown")
        except ImportError:
            out[name] = None
    return out


def peak_rss_bytes():
    # Linux: ru_maxrss is in KiB. VmHWM in /proc honours clear_refs resets.
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def reset_peak_rss():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


class Worker:
    def __init__(self):
        self.model = None
        self.tok = None
        self.device = "cpu"
        self.footprint = 0
        self.max_positions = 0
        self.eos_ids = []

    # -- memory ------------------------------------------------------------
    def memory(self):
        import torch
        m = {"cpu_peak_rss_bytes": peak_rss_bytes(), "footprint_bytes": self.footprint}
        if self.device == "cuda":
            m["gpu_allocated_peak_bytes"] = int(torch.cuda.max_memory_allocated())
            m["gpu_reserved_peak_bytes"] = int(torch.cuda.max_memory_reserved())
            m["source"] = "gpu-allocated"
            m["peak_bytes"] = m["gpu_allocated_peak_bytes"]
        else:
            m["source"] = "cpu-rss"
            m["peak_bytes"] = m["cpu_peak_rss_bytes"]
        return m

    # -- load --------------------------------------------------------------
    def load(self, req):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        model_dir = req.get("model")
        if not model_dir or not os.path.isdir(model_dir):
            raise WorkerError("BadRequest", f"{model_dir}: model directory not found")
        precision = req.get("precision", "bf16")
        dtypes = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}
        compute = req.get("compute_dtype", "bf16")
        if compute not in dtypes:
            raise WorkerError("BadRequest", f"compute_dtype {compute}: expected bf16, f16 or f32")
        want = req.get("device", "auto")
        if want == "auto":
            self.device = "cuda" if torch.cuda.is_available() else "cpu"
        elif want == "cuda" and not torch.cuda.is_available():
            raise WorkerError("UnsupportedDevice", "device cuda: torch sees no CUDA device")
        else:
            self.device = want
        threads = int(req.get("threads", 0) or 0)
        if threads > 0:
            torch.set_num_threads(threads)
        kw = {}
        if precision in dtypes:
            kw["torch_dtype"] = dtypes[precision]
            label = "torch-" + precision
        elif precision in ("int8", "llm-int8", "nf4", "fp4"):
            try:
                import bitsandbytes  # noqa: F401
                from transformers import BitsAndBytesConfig
            except ImportError as e:
                raise WorkerError("ImportError", f"precision {precision} needs bitsandbytes: {e}")
            if precision in ("int8", "llm-int8"):
                q = BitsAndBytesConfig(load_in_8bit=True)
                label = f"bnb-llm-int8-{compute}"
            else:
                q = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=precision,
                                       bnb_4bit_use_double_quant=True,
                                       bnb_4bit_compute_dtype=dtypes[compute])
                label = f"bnb-{precision}-{compute}"
            kw["quantization_config"] = q
            kw["torch_dtype"] = dtypes[compute]
        else:
            raise WorkerError("UnsupportedPrecision",
                              f"precision {precision}: expected f32, bf16, f16, int8, "
                              "llm-int8, nf4 or fp4")
        kw["device_map"] = {"": 0} if self.device == "cuda" else "cpu"
        # The peak of this precision starts here (one worker per precision).
        if self.device == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        reset_peak_rss()
        t0 = time.perf_counter()
        try:
            self.tok = AutoTokenizer.from_pretrained(model_dir)
            self.model = AutoModelForCausalLM.from_pretrained(model_dir, **kw)
        except torch.cuda.OutOfMemoryError as e:
            raise WorkerError("CudaOutOfMemory", f"loading {model_dir} at {precision}: {e}")
        except (RuntimeError, ValueError, NotImplementedError, AssertionError) as e:
            if "quantization_config" in kw:
                raise WorkerError("UnsupportedPrecision",
                                  f"{precision} on {self.device}: {type(e).__name__}: {e}")
            raise
        self.model.eval()
        if self.device == "cpu":
            for m in self.model.modules():
                if m.__class__.__name__ != "Linear4bit":
                    continue
                qs = getattr(m.weight, "quant_state", None)
                block = getattr(qs, "blocksize", 64) or 64
                if m.out_features % 32 or m.in_features % block:
                    # bitsandbytes 0.50's AVX512-BF16 CPU path repacks the
                    # weight per row: it asserts out_features % 32 == 0 and
                    # fails on rows that are not whole blocks. Its generic
                    # path dequantizes and multiplies in compute_dtype.
                    m.support_avx512bf16_for_cpu = False
        load_ms = (time.perf_counter() - t0) * 1000
        self.footprint = int(self.model.get_memory_footprint())
        cfg = self.model.config
        self.max_positions = int(getattr(cfg, "max_position_embeddings", 0) or 0)
        eos = self.model.generation_config.eos_token_id
        if eos is None:
            eos = cfg.eos_token_id
        self.eos_ids = [] if eos is None else ([eos] if isinstance(eos, int) else list(eos))
        if self.tok.eos_token_id is not None and self.tok.eos_token_id not in self.eos_ids:
            self.eos_ids.append(self.tok.eos_token_id)
        return {"ok": True, "op": "load", "load_ms": load_ms, "compute": label,
                "device": self.device, "footprint_bytes": self.footprint,
                "max_positions": self.max_positions,
                "has_chat_template": bool(getattr(self.tok, "chat_template", None)),
                "memory": self.memory()}

    def require_model(self):
        if self.model is None:
            raise WorkerError("BadRequest", "no model loaded (send load first)")

    # -- render ------------------------------------------------------------
    def render(self, req):
        self.require_model()
        if not getattr(self.tok, "chat_template", None):
            return {"ok": True, "op": "render", "text": None}
        try:
            text = self.tok.apply_chat_template(req["messages"], tokenize=False,
                                                add_generation_prompt=True)
        except Exception as e:  # jinja2 TemplateError and friends
            raise WorkerError("TemplateError", e)
        return {"ok": True, "op": "render", "text": text}

    # -- generate ----------------------------------------------------------
    def generate_one(self, r):
        import torch
        ids = self.tok(r.get("text", ""), add_special_tokens=bool(r.get("add_special_tokens", True)),
                       return_tensors="pt")["input_ids"]
        n_in = int(ids.shape[1])
        out = {"text": "", "finish_reason": "length", "tokens_in": n_in, "tokens_out": 0,
               "prefill_ms": 0.0, "decode_ms": 0.0}
        max_new = int(r.get("max_new_tokens", 128))
        if self.max_positions and n_in >= self.max_positions:
            out["finish_reason"] = "prompt_too_long"
            return out
        temperature = float(r.get("temperature", 0.0))
        top_p = float(r.get("top_p", 1.0))
        gen = None
        if temperature > 0:
            gen = torch.Generator(device="cpu")
            gen.manual_seed(int(r.get("seed", 0)) & 0x7FFFFFFFFFFFFFFF)
        stops = [s for s in r.get("stop", []) if s]
        dev = self.model.device
        t0 = time.perf_counter()
        generated = []
        text = ""
        with torch.inference_mode():
            res = self.model(input_ids=ids.to(dev), use_cache=True)
            past = res.past_key_values
            logits = res.logits[0, -1, :].float().cpu()
            t_first = None
            for i in range(max_new):
                if gen is None:
                    nxt = int(torch.argmax(logits))
                else:
                    nxt = sample(logits, temperature, top_p, gen)
                generated.append(nxt)
                if t_first is None:
                    t_first = time.perf_counter()
                if nxt in self.eos_ids:
                    out["finish_reason"] = "eos"
                    break
                text = self.tok.decode(generated, skip_special_tokens=True)
                cut = min((text.find(s) for s in stops if s in text), default=-1)
                if cut >= 0:
                    text = text[:cut]
                    out["finish_reason"] = "stop"
                    break
                if i + 1 == max_new:
                    break
                if self.max_positions and n_in + len(generated) >= self.max_positions:
                    break  # the context is full: "length"
                res = self.model(input_ids=torch.tensor([[nxt]], device=dev),
                                 past_key_values=past, use_cache=True)
                past = res.past_key_values
                logits = res.logits[0, -1, :].float().cpu()
        t_end = time.perf_counter()
        if out["finish_reason"] == "eos":
            text = self.tok.decode(generated[:-1], skip_special_tokens=True)
        out["text"] = text
        out["tokens_out"] = len(generated)
        t_first = t_first or t_end
        out["prefill_ms"] = (t_first - t0) * 1000
        out["decode_ms"] = (t_end - t_first) * 1000
        return out

    def generate(self, req):
        import torch
        self.require_model()
        for i, r in enumerate(req.get("requests", [])):
            t0 = time.perf_counter()
            try:
                res = self.generate_one(r)
            except torch.cuda.OutOfMemoryError as e:
                raise WorkerError("CudaOutOfMemory", f"request {i}: {e}")
            res.update({"ok": True, "op": "result", "index": i,
                        "latency_ms": (time.perf_counter() - t0) * 1000})
            send(res)
        return {"ok": True, "op": "done", "memory": self.memory()}


def sample(logits, temperature, top_p, gen):
    import torch
    probs = torch.softmax(logits / temperature, dim=-1)
    if top_p < 1.0:
        sp, si = torch.sort(probs, descending=True)
        keep = torch.cumsum(sp, 0) - sp < top_p
        sp = sp * keep
        return int(si[torch.multinomial(sp / sp.sum(), 1, generator=gen)])
    return int(torch.multinomial(probs, 1, generator=gen))


def main():
    random.seed(0)
    worker = Worker()
    stack_error = None
    try:
        import_stack()
    except WorkerError as e:
        stack_error = e
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            req = json.loads(line)
            if not isinstance(req, dict):
                raise ValueError("not an object")
        except ValueError as e:
            error("BadRequest", f"not a JSON object: {e}")
            continue
        op = req.get("op")
        try:
            if op == "quit":
                return 0
            if stack_error is not None and op != "hello":
                raise stack_error
            if op == "hello":
                info = {"ok": True, "op": "hello", "protocol": PROTOCOL,
                        "versions": versions(), "device": "cpu", "device_name": platform.processor()}
                if stack_error is not None:
                    raise stack_error
                import torch
                if torch.cuda.is_available():
                    info["device"] = "cuda"
                    info["device_name"] = torch.cuda.get_device_name(0)
                send(info)
            elif op == "load":
                send(worker.load(req))
            elif op == "render":
                send(worker.render(req))
            elif op == "generate":
                send(worker.generate(req))
            elif op == "memory":
                send({"ok": True, "op": "memory", "memory": worker.memory()})
            else:
                raise WorkerError("BadRequest", f"unknown op {op!r}")
        except WorkerError as e:
            error(e.kind, e)
        except MemoryError as e:
            error("OutOfMemory", f"host memory exhausted: {e}")
        except Exception as e:  # anything else, with where it happened
            tb = traceback.extract_tb(e.__traceback__)
            where = f" at {tb[-1].filename}:{tb[-1].lineno}" if tb else ""
            error(type(e).__name__, f"{e}{where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
