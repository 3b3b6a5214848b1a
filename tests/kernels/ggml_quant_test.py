#!/usr/bin/python3
"""Dequantization of GGUF's Q4_0, Q8_0, Q4_K, Q5_K and Q6_K, bit-exact against NumPy.

The decoder below is written from the block layouts of the GGUF format (ggml's block_q4_0,
block_q8_0, block_q4_K, block_q5_K and block_q6_K) in whole-array NumPy, independently of
kernels/quant/ggml_quant.cc. Blocks are random bytes with their f16 scales drawn to include
extremes: zero, subnormals, negative values and the largest finite f16 (65504). Each type's
f32 outputs must match bit for bit (one f32 rounding per operation, in ggml's order).

  ggml_quant_test.py --bin build/tests/dequantize_blocks [--blocks 4000]
"""

import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np

F32 = np.float32


def f16(raw):
    """uint8 [..., 2] -> f32 of the little-endian f16 in the bytes."""
    return np.ascontiguousarray(raw).view("<f2").astype(F32)[..., 0]


def q4_0(b):  # [n, 18]
    d = f16(b[:, 0:2])[:, None]
    qs = b[:, 2:18].astype(np.int32)
    q = np.concatenate([qs & 0xF, qs >> 4], axis=1) - 8  # weights 0..15 low, 16..31 high
    return q.astype(F32) * d


def q8_0(b):  # [n, 34]
    d = f16(b[:, 0:2])[:, None]
    return b[:, 2:34].view(np.int8).astype(F32) * d


def k_scales(s):  # [n, 12] -> 6-bit scales [n, 8], mins [n, 8]
    s = s.astype(np.int32)
    sc = np.empty((len(s), 8), np.int32)
    mn = np.empty((len(s), 8), np.int32)
    sc[:, :4], mn[:, :4] = s[:, 0:4] & 63, s[:, 4:8] & 63
    sc[:, 4:] = (s[:, 8:12] & 0xF) | ((s[:, 0:4] >> 6) << 4)
    mn[:, 4:] = (s[:, 8:12] >> 4) | ((s[:, 4:8] >> 6) << 4)
    return sc, mn


def q45_k(b, with_high_bit):  # Q4_K [n, 144] / Q5_K [n, 176]
    d, dmin = f16(b[:, 0:2]), f16(b[:, 2:4])
    sc, mn = k_scales(b[:, 4:16])
    qs = b[:, 48:176] if with_high_bit else b[:, 16:144]
    qs = qs.astype(np.int32).reshape(-1, 4, 32)  # 4 chunks of 64 weights
    q = np.stack([qs & 0xF, qs >> 4], axis=2)  # [n, chunk, low/high, 32]: sub-block 2c / 2c+1
    if with_high_bit:
        qh = b[:, 16:48].astype(np.int32)  # bit k of qh[l] -> sub-block k, weight l
        bits = np.stack([(qh >> k) & 1 for k in range(8)], axis=1).reshape(-1, 4, 2, 32)
        q = q | (bits << 4)
    q = q.reshape(-1, 8, 32).astype(F32)
    d1 = (d[:, None] * sc.astype(F32))[:, :, None]  # f32 products, as the format computes
    m1 = (dmin[:, None] * mn.astype(F32))[:, :, None]
    return (d1 * q - m1).reshape(-1, 256)


def q6_k(b):  # [n, 210]: ql[128] qh[64] scales[16] d
    ql = b[:, 0:128].astype(np.int32).reshape(-1, 2, 64)
    qh = b[:, 128:192].astype(np.int32).reshape(-1, 2, 32)
    sc = b[:, 192:208].view(np.int8).astype(F32).reshape(-1, 2, 8)
    d = f16(b[:, 208:210])
    out = np.empty((len(b), 2, 128), F32)
    for i in range(4):  # weights 32i..32i+31 of each half
        low = ql[:, :, 32 * (i % 2):32 * (i % 2) + 32]
        nib = (low & 0xF) if i < 2 else (low >> 4)
        q = (nib | (((qh >> (2 * i)) & 3) << 4)) - 32
        s = np.repeat(sc[:, :, 2 * i:2 * i + 2], 16, axis=2)  # sub-block = weight / 16
        out[:, :, 32 * i:32 * i + 32] = (d[:, None, None] * s) * q.astype(F32)
    return out.reshape(-1, 256)


TYPES = {  # name: (block bytes, weights per block, byte offsets of f16 scales, decoder)
    "q4_0": (18, 32, [0], q4_0),
    "q8_0": (34, 32, [0], q8_0),
    "q4_k": (144, 256, [0, 2], lambda b: q45_k(b, False)),
    "q5_k": (176, 256, [0, 2], lambda b: q45_k(b, True)),
    "q6_k": (210, 256, [208], q6_k),
}


def random_blocks(rng, count, size, scale_offsets):
    b = rng.integers(0, 256, (count, size), dtype=np.uint8)
    extremes = np.array([0.0, -0.0, 65504.0, -65504.0, 6e-8, 6.1e-5, 1e-3, 1.0, -2.5],
                        dtype="<f2").view(np.uint8).reshape(-1, 2)
    for off in scale_offsets:
        # Random finite f16 bits (exponent != 31) everywhere, extremes in a third of the blocks.
        bits = rng.integers(0, 0x10000, count, dtype=np.uint32)
        bits = np.where((bits & 0x7C00) == 0x7C00, bits & 0x83FF, bits).astype("<u2")
        b[:, off:off + 2] = bits.view(np.uint8).reshape(-1, 2)
        pick = rng.random(count) < 1 / 3
        b[pick, off:off + 2] = extremes[rng.integers(0, len(extremes), pick.sum())]
    return b


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bin", required=True)
    p.add_argument("--blocks", type=int, default=4000)
    a = p.parse_args()
    rng = np.random.default_rng(20261204)
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        for name, (size, qk, offsets, decode) in TYPES.items():
            blocks = random_blocks(rng, a.blocks, size, offsets)
            src, dst = os.path.join(tmp, name + ".bin"), os.path.join(tmp, name + ".f32")
            blocks.tofile(src)
            subprocess.run([a.bin, name, src, dst], check=True)
            ours = np.fromfile(dst, dtype="<f4").reshape(a.blocks, qk)
            with np.errstate(over="ignore", invalid="ignore"):
                want = decode(blocks)
            same = ours.view(np.uint32) == want.view(np.uint32)
            if not same.all():
                blk, w = np.argwhere(~same)[0]
                print(f"{name}: {(~same).sum()} of {same.size} weights differ; first block {blk} "
                      f"weight {w}: ours {ours[blk, w]!r}, NumPy {want[blk, w]!r}")
                failed = True
            else:
                print(f"{name}: {a.blocks} random blocks ({same.size} weights) bit-exact")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
