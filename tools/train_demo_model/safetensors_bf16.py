"""A minimal safetensors writer/reader for bf16 tensors (Debian has no safetensors package)."""

import json
import struct

import numpy as np
import torch


def write(path, tensors):
    """tensors: {name: float tensor}; each is rounded to bf16 (round-to-nearest-even)."""
    header, blobs, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().to(torch.bfloat16).contiguous()
        data = t.view(torch.int16).numpy().tobytes()
        header[name] = {"dtype": "BF16", "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the data section starts 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for data in blobs:
            f.write(data)


def read(path):
    """{name: f32 tensor} of a bf16 safetensors file."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] != "BF16":
            raise ValueError(f"{path}: {name} is {info['dtype']}, expected BF16")
        begin, end = info["data_offsets"]
        bits = np.frombuffer(data[begin:end], dtype=np.uint16).astype(np.uint32) << 16
        out[name] = torch.from_numpy(bits.view(np.float32).reshape(info["shape"]).copy())
    return out
