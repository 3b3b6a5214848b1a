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
import struct

import numpy as np

DEMO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "models", "demo")


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
    with open(os.path.join(DEMO, "model.safetensors"), "rb") as f:
        header_len = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(header_len))
        data = f.read()
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] != "BF16":
            raise SystemExit(f"{name}: expected BF16, got {info['dtype']}")
        begin, end = info["data_offsets"]
        tensors[name] = np.frombuffer(data[begin:end], dtype=np.uint16).reshape(info["shape"])
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
    out_header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name in sorted(tensors):
        size = tensors[name].nbytes
        out_header[name] = {"dtype": "BF16", "shape": list(tensors[name].shape),
                            "data_offsets": [offset, offset + size]}
        offset += size
    encoded = json.dumps(out_header).encode()
    encoded += b" " * (-len(encoded) % 8)
    with open(os.path.join(args.out, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(encoded)))
        f.write(encoded)
        for name in sorted(tensors):
            f.write(np.ascontiguousarray(tensors[name]).tobytes())
    config["intermediate_size"] = wide
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    for name in ("tokenizer.model", "tokenizer_config.json", "generation_config.json"):
        shutil.copy(os.path.join(DEMO, name), args.out)
    print(f"{args.out}: intermediate {real} -> {wide}, {offset / 2**20:.0f} MiB of weights")


if __name__ == "__main__":
    main()
