#!/usr/bin/python3
"""Quantized GGUF files: iquest-quantize writes them and iquest-serve runs them, checked in NumPy.

For a tiny random llama model (whose q/k rows the GGUF layout permutes, untied) and a qwen2 one
(q/k/v biases, tied embeddings), hidden 256 so that every 2-D tensor is whole K-quant blocks,
and each of q8_0, q4_0, q4_k_m, q5_k_m and q6_k:
  1. iquest-quantize writes the .gguf;
  2. the file is read here with a GGUF parser written from the format (header, metadata, tensor
     infos, aligned data), every tensor's type is checked against llama.cpp's choice for that
     file type (q4_k_m / q5_k_m: attn_v and ffn_down of the use_more_bits layers and the output
     matrix in Q6_K), and the blocks are decoded by tests/kernels/ggml_quant_test.py's decoder;
  3. the decoded weights (q/k rows un-permuted) run through the float64 reference of
     tests/model/reference_llama.py, and iquest-logits on the .gguf must match it to --tol
     (each row's max |ours - ref| / max |ref|), with the same greedy token wherever the
     reference's top two are clearly apart, on the reference backend and on each ISA of the
     fast one (KERNEL_RUNS): the loader and the quantized GEMMs, not the weights, are tested;
  4. the quantization itself: each matrix's relative RMS error (decoded vs original) is within
     its type's bound, and the reference's logits on the decoded weights stay near those on the
     original ones (a quantizer that wrote garbage blocks of the right size fails here).

  gguf_quant_parity_test.py --make-model BIN --quantize BIN --logits BIN --tokenizer FILE
                            --workdir DIR [--tol 1e-4]
"""

import argparse
import json
import os
import shutil
import struct
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "kernels"))
import ggml_quant_test  # noqa: E402  (the independent block decoder)
import reference_llama  # noqa: E402  (the independent float64 model)

GGML_TYPES = {0: "f32", 1: "f16", 30: "bf16", 2: "q4_0", 8: "q8_0", 12: "q4_k", 13: "q5_k",
              14: "q6_k"}
# llama.cpp's general.file_type (LLAMA_FTYPE_MOSTLY_*) of each --type.
FILE_TYPES = {"q8_0": 7, "q4_0": 2, "q4_k_m": 15, "q5_k_m": 17, "q6_k": 18}
# Bound on a matrix's sqrt(mean (decoded - original)^2 / mean original^2), by its type in the
# file. The tiny models' weights are uniform on [-a, a]: a step of s gives s / sqrt(12) RMS
# error against a / sqrt(3) RMS weight. Q8_0 (s = a/127): 0.0039; Q6_K (a/32): 0.016; Q5_K
# (2a/31): 0.032; Q4_K (2a/15): 0.067; Q4_0 (a/8): 0.062. Measured 2026-12-04: 0.0038, 0.0150,
# 0.0305, 0.0625, 0.0656. The bounds leave about 25 %.
WEIGHT_BOUNDS = {"q8_0": 0.005, "q6_k": 0.019, "q5_k": 0.038, "q4_k": 0.08, "q4_0": 0.082}
# Bound on each row's max |logits(decoded) - logits(original)| / max |logits(original)|.
# Measured 2026-12-04 (llama / qwen2): q8_0 0.012 / 0.004, q6_k 0.047 / 0.018, q5_k_m 0.077 /
# 0.025, q4_k_m 0.159 / 0.050, q4_0 0.204 / 0.061; the bounds leave about 2x.
QUALITY_BOUNDS = {"q8_0": 0.025, "q6_k": 0.1, "q5_k_m": 0.15, "q4_k_m": 0.3, "q4_0": 0.4}
# iquest-logits runs on every file: the reference backend (dequantize, then the f32 op), and
# the fast CPU backend's quantized GEMM in each ISA (auto is AVX-512 where the CPU has it) for a
# one-chunk prefill (the dequantized-panel path) and chunks of 3 tokens (the decode path, rows
# dequantized into scratch and dotted).
KERNEL_RUNS = [("reference", 0), ("avx2", 0), ("avx2", 3), ("auto", 0), ("auto", 3)]
PROMPT_SEED = 20261204
PROMPT_LENGTH = 19

# (name, arch, tie, seed)
MODELS = [("llama-untied", "llama", False, 31), ("qwen2-tied", "qwen2", True, 32)]
HIDDEN, HEADS, KV_HEADS, INTERMEDIATE, LAYERS = 256, 4, 2, 512, 2


class GgufReader:
    """A GGUF v2/v3 file: metadata values and tensors as raw bytes (little-endian throughout)."""

    SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
               10: "<Q", 11: "<q", 12: "<d"}

    def __init__(self, path):
        with open(path, "rb") as f:
            self.buf = f.read()
        self.pos = 0
        if self.buf[:4] != b"GGUF":
            raise ValueError("not a GGUF file")
        self.pos = 4
        version, n_tensors, n_kv = self._u32(), self._u64(), self._u64()
        if version not in (2, 3):
            raise ValueError(f"GGUF version {version}")
        self.kv = {}
        for _ in range(n_kv):
            key = self._str()
            self.kv[key] = self._value(self._u32())
        infos = []
        for _ in range(n_tensors):
            name = self._str()
            dims = [self._u64() for _ in range(self._u32())]  # innermost first
            ggml_type, offset = self._u32(), self._u64()
            infos.append((name, dims[::-1], ggml_type, offset))
        alignment = self.kv.get("general.alignment", 32)
        data_start = (self.pos + alignment - 1) // alignment * alignment
        self.tensors = {}  # name -> (shape outermost first, type name, bytes)
        for name, shape, ggml_type, offset in infos:
            type_name = GGML_TYPES[ggml_type]
            numel = int(np.prod(shape))
            if type_name in ggml_quant_test.TYPES:
                block_bytes, block_elems = ggml_quant_test.TYPES[type_name][:2]
                size = numel // block_elems * block_bytes
            else:
                size = numel * {"f32": 4, "f16": 2, "bf16": 2}[type_name]
            begin = data_start + offset
            if begin + size > len(self.buf):
                raise ValueError(f"tensor {name} ends past the file")
            self.tensors[name] = (shape, type_name, self.buf[begin:begin + size])

    def _take(self, fmt):
        (value,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += struct.calcsize(fmt)
        return value

    def _u32(self):
        return self._take("<I")

    def _u64(self):
        return self._take("<Q")

    def _str(self):
        n = self._u64()
        text = self.buf[self.pos:self.pos + n].decode("utf-8")
        self.pos += n
        return text

    def _value(self, value_type):
        if value_type == 8:
            return self._str()
        if value_type == 9:
            element_type, count = self._u32(), self._u64()
            return [self._value(element_type) for _ in range(count)]
        return self._take(self.SCALARS[value_type])

    def decoded(self, name):
        """float64 ndarray of a tensor's values, shape outermost first."""
        shape, type_name, raw = self.tensors[name]
        data = np.frombuffer(raw, dtype=np.uint8)
        if type_name == "f32":
            values = data.view("<f4")
        elif type_name == "f16":
            values = data.view("<f2")
        elif type_name == "bf16":
            values = (data.view("<u2").astype(np.uint32) << 16).view("<f4")
        else:
            block_bytes, _, _, decode = ggml_quant_test.TYPES[type_name]
            values = decode(data.reshape(-1, block_bytes))
        return values.astype(np.float64).reshape(shape)


def use_more_bits(layer, num_layers):
    """llama.cpp's rule for the layers whose attn_v / ffn_down get Q6_K in a _M mix."""
    return (layer < num_layers // 8 or layer >= 7 * num_layers // 8
            or (layer - num_layers // 8) % 3 == 2)


def expected_type(quant, gguf_name, tied):
    """The type llama.cpp's quantizer gives this 2-D tensor for `quant` (rows of 256 or 512)."""
    base = {"q8_0": "q8_0", "q4_0": "q4_0", "q4_k_m": "q4_k", "q5_k_m": "q5_k", "q6_k": "q6_k"}
    is_output = gguf_name == "output.weight" or (tied and gguf_name == "token_embd.weight")
    if is_output and quant != "q8_0":
        return "q6_k"
    if quant.endswith("_m") and gguf_name.startswith("blk."):
        layer = int(gguf_name.split(".")[1])
        if gguf_name.endswith((".attn_v.weight", ".ffn_down.weight")) and use_more_bits(
                layer, LAYERS):
            return "q6_k"
    return base[quant]


HF_NAMES = {"attn_norm": "input_layernorm", "attn_q": "self_attn.q_proj",
            "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
            "attn_output": "self_attn.o_proj", "ffn_norm": "post_attention_layernorm",
            "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj"}


def hf_name(gguf_name):
    top = {"token_embd.weight": "model.embed_tokens.weight", "output.weight": "lm_head.weight",
           "output_norm.weight": "model.norm.weight"}
    if gguf_name in top:
        return top[gguf_name]
    _, layer, kind, suffix = gguf_name.split(".")
    return f"model.layers.{layer}.{HF_NAMES[kind]}.{suffix}"


def unpermute(w, n_head):
    """Inverse of llama.cpp's convert_hf_to_gguf permute() of q/k rows (and biases)."""
    rows = w.shape[0]
    return (w.reshape(n_head, rows // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2)
            .reshape(w.shape))


def weights_of(reader, arch):
    weights = {}
    for name in reader.tensors:
        value = reader.decoded(name)
        if arch == "llama" and (".attn_q." in name or ".attn_k." in name):
            value = unpermute(value, HEADS if ".attn_q." in name else KV_HEADS)
        weights[hf_name(name)] = value
    return weights


def rel_err_rows(ours, ref):
    err = np.abs(ours - ref).max(axis=1) / np.maximum(np.abs(ref).max(axis=1), 1e-300)
    return np.where(np.isfinite(ours).all(axis=1), err, np.inf)


def run(cmd):
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"{os.path.basename(cmd[0])} exit {proc.returncode}: "
                           f"{(proc.stderr or proc.stdout).strip()[-400:]}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--make-model", required=True)
    p.add_argument("--quantize", required=True)
    p.add_argument("--logits", required=True)
    p.add_argument("--tokenizer", required=True)
    p.add_argument("--workdir", required=True)
    p.add_argument("--tol", type=float, default=1e-4)
    args = p.parse_args()

    failures = []
    print(f"{'model':14} {'type':7} {'loader err':>11} {'logits err':>10} {'bound':>6} "
          f"{'weights/bound':>13}  notes")
    for model_name, arch, tied, seed in MODELS:
        model_dir = os.path.join(args.workdir, model_name)
        shutil.rmtree(model_dir, ignore_errors=True)
        os.makedirs(model_dir)
        vocab = 4200  # >= the tokenizer's pieces (about 4096), which the converter requires
        cmd = [args.make_model, "--out", model_dir, "--arch", arch, "--hidden", str(HIDDEN),
               "--layers", str(LAYERS), "--heads", str(HEADS), "--kv-heads", str(KV_HEADS),
               "--intermediate", str(INTERMEDIATE), "--vocab", str(vocab), "--seed", str(seed)]
        run(cmd + (["--tie-embeddings"] if tied else []))
        shutil.copy(args.tokenizer, os.path.join(model_dir, "tokenizer.model"))
        cfg = reference_llama.load_config(model_dir)
        original = reference_llama.load_weights(model_dir)
        ids = np.random.default_rng(PROMPT_SEED + seed).integers(0, vocab, PROMPT_LENGTH).tolist()
        ref_original = reference_llama.forward_loaded(cfg, original, ids)

        for quant in QUALITY_BOUNDS:
            gguf_path = os.path.join(args.workdir, f"{model_name}-{quant}.gguf")
            notes = []
            try:
                run([args.quantize, "--model", model_dir, "--out", gguf_path, "--type", quant])
                reader = GgufReader(gguf_path)
                if reader.kv.get("general.file_type") != FILE_TYPES[quant]:
                    notes.append(f"general.file_type {reader.kv.get('general.file_type')}")
                for name, (shape, type_name, _) in reader.tensors.items():
                    want = expected_type(quant, name, tied) if len(shape) == 2 else "f32"
                    if type_name != want:
                        notes.append(f"{name} is {type_name}, want {want}")
                weights = weights_of(reader, arch)
                if set(weights) != set(original):
                    notes.append(f"tensors differ: {sorted(set(weights) ^ set(original))[:4]}")
                    raise RuntimeError("; ".join(notes))
                worst_weight = 0.0
                for name, (shape, type_name, _) in reader.tensors.items():
                    if type_name not in WEIGHT_BOUNDS:
                        continue
                    a, b = weights[hf_name(name)], original[hf_name(name)]
                    err = float(np.sqrt(((a - b) ** 2).mean() / (b ** 2).mean()))
                    worst_weight = max(worst_weight, err / WEIGHT_BOUNDS[type_name])
                    if not err <= WEIGHT_BOUNDS[type_name]:
                        notes.append(f"{name} ({type_name}) RMS error {err:.4f}")
                ref = reference_llama.forward_loaded(cfg, weights, ids)
                loader_err = 0.0
                for kernels, chunk in KERNEL_RUNS:
                    out_path = gguf_path + f".{kernels}.{chunk}.logits"
                    run([args.logits, "--model", gguf_path, "--prompt-ids",
                         ",".join(map(str, ids)), "--out", out_path, "--cpu-kernels", kernels,
                         "--chunk", str(chunk)])
                    ours = np.fromfile(out_path, dtype="<f4").astype(np.float64).reshape(-1, vocab)
                    err = rel_err_rows(ours, ref).max()
                    loader_err = max(loader_err, err)
                    if err > args.tol:
                        notes.append(f"--cpu-kernels {kernels} --chunk {chunk}: err {err:.2e}")
                    # Greedy parity: the same argmax wherever the reference's top two are apart
                    # by more than the tolerance allows either to move.
                    top2 = np.sort(ref, axis=1)[:, -2:]
                    clear = (top2[:, 1] - top2[:, 0]) > 4 * args.tol * np.abs(ref).max(axis=1)
                    differ = clear & (ours.argmax(axis=1) != ref.argmax(axis=1))
                    if differ.any():
                        notes.append(f"--cpu-kernels {kernels}: argmax differs at rows "
                                     f"{np.flatnonzero(differ).tolist()}")
                quant_err = rel_err_rows(ref, ref_original).max()
            except (RuntimeError, ValueError, KeyError, OSError) as e:
                failures.append(f"{model_name} {quant}: {e}")
                print(f"{model_name:14} {quant:7} FAIL: {e}")
                continue
            ok = loader_err <= args.tol and quant_err <= QUALITY_BOUNDS[quant] and not notes
            print(f"{model_name:14} {quant:7} {loader_err:11.2e} {quant_err:10.4f} "
                  f"{QUALITY_BOUNDS[quant]:6.3f} {worst_weight:13.2f}  "
                  f"{'ok' if ok else 'FAIL'} {'; '.join(notes)}")
            if not ok:
                failures.append(f"{model_name} {quant}")
    if failures:
        print("FAILED:", "; ".join(failures))
        return 1
    print("all quantized files load and match the float64 reference")
    return 0


if __name__ == "__main__":
    sys.exit(main())
