"""A minimal safetensors writer/reader for bf16 tensors (Debian has no safetensors package).

read_bits / write_bits work on the raw bf16 bit patterns (uint16 numpy arrays) and need numpy
only; read / write convert from and to torch tensors (torch is imported when they are called).
"""

import json
import struct

import numpy as np


def write_bits(path, arrays):
    """arrays: {name: uint16 ndarray of bf16 bit patterns}, written in name order."""
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name in sorted(arrays):
        size = arrays[name].nbytes
        header[name] = {"dtype": "BF16", "shape": list(arrays[name].shape),
                        "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the data section starts 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for name in sorted(arrays):
            f.write(np.ascontiguousarray(arrays[name], dtype=np.uint16).tobytes())


def read_bits(path):
    """{name: uint16 ndarray of bf16 bit patterns} of a bf16 safetensors file."""
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
        out[name] = np.frombuffer(data[begin:end], dtype=np.uint16).reshape(info["shape"])
    return out


def write(path, tensors):
    """tensors: {name: float tensor}; each is rounded to bf16 (round-to-nearest-even)."""
    import torch
    write_bits(path, {name: t.detach().to(torch.bfloat16).contiguous().view(torch.int16)
                      .numpy().view(np.uint16) for name, t in tensors.items()})


def read(path):
    """{name: f32 tensor} of a bf16 safetensors file."""
    import torch
    return {name: torch.from_numpy((bits.astype(np.uint32) << 16).view(np.float32).copy())
            for name, bits in read_bits(path).items()}
