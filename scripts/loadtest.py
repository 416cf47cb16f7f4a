#!/usr/bin/env python3
"""Load test for an OpenAI-compatible server (bioquant serve, or any other).

Standard library only. CLIENTS threads each send REQUESTS chat completions
one after another; prints one JSON line with failures, latency percentiles,
aggregate generated tokens/s and the server's resident memory before and
after (from bioquant's /metrics when the server has it).

  python3 scripts/loadtest.py --url http://127.0.0.1:8080 --clients 64 \
      --requests 8 --max-tokens 32
"""
import argparse
import http.client
import json
import re
import statistics
import sys
import threading
import time
import urllib.parse

PROMPTS = [
    "Does a low-salt diet reduce headaches? Answer yes, no or maybe.",
    "Which chemical is mentioned: 'Aspirin reduced fever in 40 patients'?",
    "Name the disease in: 'Patients with type 2 diabetes were enrolled.'",
    "Is metformin a first-line drug for type 2 diabetes?",
    "What relation holds between warfarin and aspirin when combined?",
    "List the hallmarks of cancer discussed: 'cells evaded apoptosis'.",
    "Classify the topic: 'The vaccine trial measured antibody titres.'",
    "A 45-year-old man has chest pain on exertion. Most likely diagnosis?",
]


def server_metrics(host, port, headers):
    """bioquant's /metrics values this script uses ({} from other servers)."""
    try:
        c = http.client.HTTPConnection(host, port, timeout=10)
        c.request("GET", "/metrics", headers=headers)
        body = c.getresponse().read().decode()
    except OSError:
        return {}
    out = {}
    for name in ("resident_memory_bytes", "generation_tokens_total",
                 "decode_seconds_total", "prefill_seconds_total"):
        m = re.search(r"^bioquant_%s (\S+)$" % name, body, re.M)
        if m:
            out[name] = float(m.group(1))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--url", required=True, help="server base, e.g. http://127.0.0.1:8080")
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--requests", type=int, default=8, help="per client")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--model", default="", help="model name to send")
    ap.add_argument("--api-key", default="")
    ap.add_argument("--stream", action="store_true")
    ap.add_argument("--timeout", type=float, default=600)
    args = ap.parse_args()
    u = urllib.parse.urlparse(args.url)
    host, port = u.hostname, u.port or 80
    headers = {"Content-Type": "application/json"}
    if args.api_key:
        headers["Authorization"] = "Bearer " + args.api_key

    latencies, failures, tokens = [], [], [0]
    lock = threading.Lock()
    m_start = server_metrics(host, port, headers)

    def client(cid):
        conn = http.client.HTTPConnection(host, port, timeout=args.timeout)
        for i in range(args.requests):
            body = {
                "messages": [{"role": "user", "content": PROMPTS[(cid + i) % len(PROMPTS)]}],
                "max_tokens": args.max_tokens,
                "temperature": 0,
                "ignore_eos": True,  # fixed lengths: comparable runs
            }
            if args.model:
                body["model"] = args.model
            if args.stream:
                body["stream"] = True
                body["stream_options"] = {"include_usage": True}
            t0 = time.perf_counter()
            try:
                conn.request("POST", "/v1/chat/completions", json.dumps(body), headers)
                resp = conn.getresponse()
                data = resp.read().decode()
                dt = time.perf_counter() - t0
                if resp.status != 200:
                    raise RuntimeError(f"HTTP {resp.status}: {data[:200]}")
                if args.stream:
                    usage = None
                    for line in data.splitlines():
                        if line.startswith("data: ") and line != "data: [DONE]":
                            j = json.loads(line[6:])
                            usage = j.get("usage") or usage
                    n = usage["completion_tokens"] if usage else 0
                else:
                    n = json.loads(data)["usage"]["completion_tokens"]
                with lock:
                    latencies.append(dt)
                    tokens[0] += n
            except Exception as e:  # noqa: BLE001 - every failure is counted
                with lock:
                    failures.append(str(e))
                conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=args.timeout)

    threads = [threading.Thread(target=client, args=(c,)) for c in range(args.clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    m_end = server_metrics(host, port, headers)

    def delta(name):
        if name in m_start and name in m_end:
            return m_end[name] - m_start[name]
        return None

    # The server's own view: tokens per second of decode steps alone (prompt
    # prefill excluded), and the share of its time spent prefilling.
    dec_s, pre_s = delta("decode_seconds_total"), delta("prefill_seconds_total")
    gen = delta("generation_tokens_total")
    lat = sorted(latencies)

    def pct(p):
        return lat[min(len(lat) - 1, int(round(p / 100 * (len(lat) - 1))))] if lat else None

    print(json.dumps({
        "clients": args.clients,
        "requests": args.clients * args.requests,
        "failed": len(failures),
        "first_failures": failures[:3],
        "wall_s": round(wall, 3),
        "generated_tokens": tokens[0],
        "tokens_per_s": round(tokens[0] / wall, 2) if wall > 0 else None,
        "latency_s": {
            "p50": pct(50), "p99": pct(99),
            "mean": statistics.mean(lat) if lat else None,
        },
        "decode_tokens_per_s": round(gen / dec_s, 2) if dec_s else None,
        "server_prefill_s": round(pre_s, 3) if pre_s is not None else None,
        "server_decode_s": round(dec_s, 3) if dec_s is not None else None,
        "rss_start_bytes": m_start.get("resident_memory_bytes"),
        "rss_end_bytes": m_end.get("resident_memory_bytes"),
    }))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
