#!/usr/bin/python3
"""Resident memory of iquest-serve against its budget: weight bytes + KV cache + a bound.

Starts iquest-serve on --model (an HF folder or a .gguf) with the fast CPU kernels, waits until
it is ready, runs a few greedy requests (so that every weight and the attention path have been
used), and reads the process's VmRSS and VmHWM from /proc. Weight bytes are the checkpoint
files' sizes (safetensors or GGUF); KV bytes are what the pool allocates (2 x layers x
num_kv_heads x head_dim x block_size x num_kv_blocks x 4 bytes, f32 on the CPU), an upper bound
of what is resident. Prints one line of figures and exits 1 if RSS exceeds the budget.

  /usr/bin/python3 scripts/serve-rss.py --model DIR|FILE.gguf [--threads 2] [--kv-cache-mb 256]
      [--requests 4] [--overhead-mb 300]
"""

import argparse
import glob
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../tests/server"))
from harness import SERVING, Server, collect, greedy, pb, proc_status  # noqa: E402


def weight_files(model):
    if model.endswith(".gguf"):
        return [model]
    files = glob.glob(os.path.join(model, "*.safetensors")) or glob.glob(
        os.path.join(model, "*.gguf"))
    if not files:
        raise SystemExit(f"{model}: no *.safetensors or *.gguf")
    return files


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--kv-cache-mb", type=int, default=256)
    parser.add_argument("--requests", type=int, default=4)
    parser.add_argument("--overhead-mb", type=int, default=300)
    parser.add_argument("--cpu-kernels", default="auto")
    args = parser.parse_args()
    weight_bytes = sum(os.path.getsize(f) for f in weight_files(args.model))
    started = time.time()
    # Later flags override the harness's test defaults (reference kernels, 128 blocks of 4).
    server = Server(args.model, "--cpu-kernels", args.cpu_kernels, "--threads", str(args.threads),
                    "--num-kv-blocks", "0", "--kv-cache-mb", str(args.kv_cache_mb),
                    "--block-size", "16", wait_ready=False)
    try:
        server.wait_for(lambda: server.readiness() == SERVING, 600, "readiness SERVING")
        pid = server.process.pid
        load_s = time.time() - started
        rss_ready_kb = proc_status(pid, "VmRSS")
        info = server.stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=10)
        config_dir = args.model if os.path.isdir(args.model) else None
        config = {}
        if config_dir and os.path.exists(os.path.join(config_dir, "config.json")):
            with open(os.path.join(config_dir, "config.json")) as f:
                config = json.load(f)
        kv_bytes = args.kv_cache_mb << 20
        if config:
            heads = config["num_attention_heads"]
            head_dim = config.get("head_dim") or config["hidden_size"] // heads
            per_token = 2 * config["num_hidden_layers"] * config.get(
                "num_key_value_heads", heads) * head_dim * 4
            kv_bytes = per_token * info.kv_block_size * info.num_kv_blocks
        prompt = [1] + [(7 * i) % (info.vocab_size - 2) + 2 for i in range(200)]
        for _ in range(args.requests):
            collect(server.stub.Generate(greedy(prompt, 32), timeout=600))
        rss_kb = proc_status(pid, "VmRSS")
        hwm_kb = proc_status(pid, "VmHWM")
    finally:
        server.stop()
    budget = weight_bytes + kv_bytes + (args.overhead_mb << 20)
    mib = 1 << 20
    print(f"model={args.model} weights_mib={weight_bytes / mib:.0f} kv_mib={kv_bytes / mib:.0f} "
          f"load_s={load_s:.1f} rss_ready_mib={rss_ready_kb / 1024:.0f} "
          f"rss_mib={rss_kb / 1024:.0f} hwm_mib={hwm_kb / 1024:.0f} "
          f"overhead_mib={(rss_kb * 1024 - weight_bytes - kv_bytes) / mib:.0f} "
          f"budget_mib={budget / mib:.0f} {'ok' if rss_kb * 1024 <= budget else 'OVER'}")
    return 0 if rss_kb * 1024 <= budget else 1


if __name__ == "__main__":
    sys.exit(main())
