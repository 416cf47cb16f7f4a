"""A stand-in for python/bioquant_worker.py that needs no torch: it speaks
the same protocol and misbehaves as FAKE_WORKER_MODE asks, so that
transformers_backend_test.cc can test how bioquant copes. Runs on any
python3 (Debian's).

Modes: ok, gpu, malformed, die_once, die_always, old_protocol,
no_transformers, no_bitsandbytes, load_oom, error_line, hang, garbage_hello.
die_once keeps a marker in FAKE_WORKER_STATE (a directory) so the restarted
worker behaves. Each start appends a line to FAKE_WORKER_STATE/starts.
"""

import json
import os
import sys
import time

MODE = os.environ.get("FAKE_WORKER_MODE", "ok")
STATE = os.environ.get("FAKE_WORKER_STATE", "")


def send(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def memory(peak):
    m = {"source": "cpu-rss", "peak_bytes": peak, "cpu_peak_rss_bytes": peak,
         "footprint_bytes": 111}
    if MODE == "gpu":
        m.update({"source": "gpu-allocated", "gpu_allocated_peak_bytes": peak,
                  "gpu_reserved_peak_bytes": peak * 2})
    return m


def main():
    if STATE:
        with open(os.path.join(STATE, "starts"), "a") as f:
            f.write(f"{os.getpid()}\n")
    precision = None
    peak = 1000
    for line in sys.stdin:
        req = json.loads(line)
        op = req["op"]
        if op == "quit":
            return 0
        if op == "hello":
            if MODE == "garbage_hello":
                print("Traceback (most recent call last): this is not JSON", flush=True)
                continue
            versions = {"python": "3.x", "torch": "2.fake", "transformers": "4.fake",
                        "bitsandbytes": "0.fake"}
            if MODE == "no_transformers":
                versions["transformers"] = None
            if MODE == "no_bitsandbytes":
                versions["bitsandbytes"] = None
            send({"ok": True, "op": "hello", "protocol": 99 if MODE == "old_protocol" else 1,
                  "versions": versions, "device": "cuda" if MODE == "gpu" else "cpu",
                  "device_name": "Fake"})
        elif op == "load":
            if MODE == "load_oom":
                send({"ok": False, "error": {"type": "CudaOutOfMemory",
                                             "message": "CUDA out of memory. Tried to allocate 2.00 GiB"}})
                continue
            precision = req["precision"]
            send({"ok": True, "op": "load", "load_ms": 1.0, "compute": "fake-" + precision,
                  "device": "cpu", "footprint_bytes": 111, "max_positions": 64,
                  "has_chat_template": True, "memory": memory(peak)})
        elif op == "render":
            text = "".join(f"<{m['role']}>{m['content']}" for m in req["messages"]) + "<assistant>"
            send({"ok": True, "op": "render", "text": text})
        elif op == "generate":
            if MODE == "error_line":
                send({"ok": False, "error": {"type": "ImportError",
                                             "message": "No module named 'bitsandbytes'"}})
                continue
            if MODE == "hang":
                time.sleep(600)
            for i, r in enumerate(req["requests"]):
                if i == 1 and MODE == "malformed":
                    print("Some library chatter on stdout", flush=True)
                    continue
                if i == 1 and MODE in ("die_once", "die_always"):
                    marker = os.path.join(STATE, "died")
                    if MODE == "die_always" or not os.path.exists(marker):
                        open(marker, "w").close()
                        sys.stderr.write("Fatal Python error: Segmentation fault\n")
                        sys.stderr.flush()
                        os._exit(139 - 128)
                peak += 100
                send({"ok": True, "op": "result", "index": i,
                      "text": f"{precision}:{r['text']}:{r['max_new_tokens']}",
                      "finish_reason": "stop" if r.get("stop") else "length",
                      "tokens_in": len(r["text"]), "tokens_out": r["max_new_tokens"],
                      "prefill_ms": 1.0, "decode_ms": 2.0, "latency_ms": 3.0})
            send({"ok": True, "op": "done", "memory": memory(peak)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
