#!/usr/bin/python3
"""Drives llama.cpp's llama-server the way iquest-bench drives iquest-serve, for the side-by-side
serving row of scripts/bench-vs-llamacpp.sh.

Each request is a streaming POST /completion of one prompt line with n_predict = --output-len and
ignore_eos, sampled like iquest-serve's defaults (temperature 1, no top-k/top-p/min-p). At most
--concurrency requests are in flight; --warmup requests run first and are left out. Output
throughput = output tokens of the measured requests / their wall time, as iquest-bench computes
it. Standard library only (http.client and threads).
"""
import argparse
import http.client
import json
import statistics
import sys
import threading
import time


def wait_ready(host, port, timeout_s, proc_alive):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not proc_alive():
            return False
        try:
            conn = http.client.HTTPConnection(host, port, timeout=5)
            conn.request("GET", "/health")
            status = conn.getresponse().status
            conn.close()
            if status == 200:
                return True
        except OSError:
            pass
        time.sleep(0.5)
    return False


def one_request(host, port, prompt, output_len, seed):
    """Returns (output tokens, ttft seconds, e2e seconds) or raises."""
    body = json.dumps({
        "prompt": prompt,
        "n_predict": output_len,
        "ignore_eos": True,
        "stream": True,
        "temperature": 1.0,
        "top_k": 0,
        "top_p": 1.0,
        "min_p": 0.0,
        "seed": seed,
        "cache_prompt": False,
    })
    start = time.monotonic()
    conn = http.client.HTTPConnection(host, port, timeout=600)
    conn.request("POST", "/completion", body, {"Content-Type": "application/json"})
    response = conn.getresponse()
    if response.status != 200:
        raise RuntimeError(f"HTTP {response.status}: {response.read()[:200]!r}")
    ttft = None
    chunks = 0
    tokens = None
    for raw in response:
        line = raw.strip()
        if not line.startswith(b"data:"):
            continue
        event = json.loads(line[5:])
        if event.get("content"):
            chunks += 1
            if ttft is None:
                ttft = time.monotonic() - start
        if event.get("stop"):
            tokens = event.get("tokens_predicted")
            if tokens is None:
                tokens = event.get("timings", {}).get("predicted_n", chunks)
            break
    conn.close()
    if tokens is None:
        raise RuntimeError("stream ended without a final event")
    return tokens, ttft if ttft is not None else 0.0, time.monotonic() - start


def run_batch(host, port, prompts, count, offset, concurrency, output_len):
    results, errors = [], []
    lock = threading.Lock()
    next_index = [0]

    def worker():
        while True:
            with lock:
                i = next_index[0]
                next_index[0] += 1
            if i >= count:
                return
            prompt = prompts[(offset + i) % len(prompts)]
            try:
                result = one_request(host, port, prompt, output_len, seed=offset + i)
                with lock:
                    results.append(result)
            except Exception as error:  # Counted, like iquest-bench's failed requests.
                with lock:
                    errors.append(str(error))

    start = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(max(1, min(concurrency, count)))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, errors, time.monotonic() - start


def summary_ms(values):
    if not values:
        return {}
    ordered = sorted(values)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e3
    return {"mean": statistics.mean(values) * 1e3, "p50": pick(0.5), "p90": pick(0.9),
            "p99": pick(0.99)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--prompt-file", required=True, help="one prompt per line")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--num-requests", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=0)
    parser.add_argument("--output-len", type=int, default=128)
    parser.add_argument("--wait-ready-s", type=float, default=0,
                        help="first wait this long for GET /health to answer 200")
    parser.add_argument("--server-pid", type=int, default=0,
                        help="give up waiting if this process exits")
    parser.add_argument("--json-out", default="")
    args = parser.parse_args()

    with open(args.prompt_file, encoding="utf-8") as f:
        prompts = [line.rstrip("\n") for line in f if line.strip()]
    if not prompts:
        sys.exit("error: --prompt-file has no prompts")

    def alive():
        if not args.server_pid:
            return True
        try:
            with open(f"/proc/{args.server_pid}/stat") as stat:
                return stat.read().split()[2] != "Z"
        except OSError:
            return False

    if args.wait_ready_s > 0 and not wait_ready(args.host, args.port, args.wait_ready_s, alive):
        sys.exit(f"error: llama-server on port {args.port} did not become ready")
    if args.warmup > 0:
        run_batch(args.host, args.port, prompts, args.warmup, 10**6, args.concurrency,
                  args.output_len)
    results, errors, duration = run_batch(args.host, args.port, prompts, args.num_requests, 0,
                                          args.concurrency, args.output_len)
    output_tokens = sum(r[0] for r in results)
    report = {
        "num_completed": len(results),
        "num_failed": len(errors),
        "errors": errors[:5],
        "duration_s": duration,
        "total_output_tokens": output_tokens,
        "output_throughput": output_tokens / duration if duration > 0 else 0.0,
        "request_throughput": len(results) / duration if duration > 0 else 0.0,
        "ttft_ms": summary_ms([r[1] for r in results]),
        "e2e_ms": summary_ms([r[2] for r in results]),
    }
    text = json.dumps(report, indent=2)
    if args.json_out:
        with open(args.json_out, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    print(text)
    return 0 if not errors else 1


if __name__ == "__main__":
    sys.exit(main())
