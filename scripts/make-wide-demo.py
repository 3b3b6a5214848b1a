#!/usr/bin/python3
"""Writes the demo model made memory-bound: the same function, with every MLP widened by
units that contribute exactly nothing, so that a decode step streams as many weight bytes as a
~0.8B model's while the tokens stay the demo model's.

Why: speculative decoding pays when verifying 1 + k tokens costs about what one token costs,
which is the memory-bound regime of a big model at batch 1. The demo model (8 MB of weights) sits
in the CPU's L3 cache and is compute-bound, so it cannot show that regime; a random big model can,
but its acceptance is not that of a model of the domain. This is the one model with both: the
demo's acceptance (its greedy tokens) at a big model's cost per step. A benchmark input only
(iquest-bench-spec); never served.

The extra unit i of layer l has gate_proj row = the real row i mod 688 (any values), up_proj row
= 0 and down_proj column = the real column i mod 688: silu(gate . x) * (0 . x) = 0 exactly, so
the MLP output is the real units' sum (in another summation order: f32 rounding only).

Usage: /usr/bin/python3 scripts/make-wide-demo.py --out DIR [--intermediate 196608]
"""

import argparse
import json
import os
import shutil
import sys

import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
DEMO = os.path.join(ROOT, "models", "demo")
sys.path.insert(0, os.path.join(ROOT, "tools", "train_demo_model"))
import safetensors_bf16  # noqa: E402  (the demo's own bf16 reader and writer)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--intermediate", type=int, default=196608)
    args = parser.parse_args()
    with open(os.path.join(DEMO, "config.json")) as f:
        config = json.load(f)
    real = config["intermediate_size"]
    wide = args.intermediate
    if wide < real:
        raise SystemExit(f"--intermediate must be at least {real}")
    tensors = dict(safetensors_bf16.read_bits(os.path.join(DEMO, "model.safetensors")))
    index = np.arange(wide) % real
    for name in list(tensors):
        t = tensors[name]
        if name.endswith("mlp.gate_proj.weight"):
            tensors[name] = t[index]
        elif name.endswith("mlp.up_proj.weight"):
            up = np.zeros((wide, t.shape[1]), dtype=np.uint16)  # bf16 +0.0
            up[:real] = t
            tensors[name] = up
        elif name.endswith("mlp.down_proj.weight"):
            tensors[name] = np.ascontiguousarray(t[:, index])
    os.makedirs(args.out, exist_ok=True)
    safetensors_bf16.write_bits(os.path.join(args.out, "model.safetensors"), tensors)
    config["intermediate_size"] = wide
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    for name in ("tokenizer.model", "tokenizer_config.json", "generation_config.json"):
        shutil.copy(os.path.join(DEMO, name), args.out)
    total = sum(t.nbytes for t in tensors.values())
    print(f"{args.out}: intermediate {real} -> {wide}, {total / 2**20:.0f} MiB of weights")


if __name__ == "__main__":
    main()
