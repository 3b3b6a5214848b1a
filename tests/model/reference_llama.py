#!/usr/bin/env python3
"""Independent float64 NumPy reference of HF LlamaForCausalLM / Qwen2ForCausalLM / Mistral and
IQuestLoopCoderForCausalLM.

Used as ground truth for iquest-serve forward-pass parity tests, so it deliberately imports
nothing from the project: it parses config.json and safetensors itself and re-derives the
math of Hugging Face transformers (no KV cache, full causal attention over the prompt).

Sliding windows follow HF's masks: Mistral's `sliding_window` on every layer; Qwen2's with
use_sliding_window, on the layers layer_types calls "sliding_attention" (else those >=
max_window_layers). A query at position t sees keys t - W + 1 .. t.

IQuestLoopCoder (as vLLM's, SGLang's and MLX's iquest_loopcoder): the layer stack runs loop_num
times on the residual stream, no norm between passes. Pass 1 is the Llama stack and keeps each
layer's post-RoPE K1/V1. In pass p >= 2, layer i computes q, k, v with the same weights at the
same positions; A = causal attention of q over layer i's K1/V1, B = attention of q over this
pass's own k, v within loop_window_size keys (t - W + 1 .. t); per query head
g = sigmoid(q . gate_projections.i.weight[h] + bias[h]) and the attention output is
g * A + (1 - g) * B, then o_proj, residual and MLP. One final norm, then lm_head.

CLI:  reference_llama.py --model DIR --prompt-ids 1,2,3 [--positions 0,1,2] --out FILE.npy
      writes a float64 array of shape [num_tokens, vocab_size] (row t = logits after token t).
"""

import argparse
import json
import math
import os
import struct
import sys

import numpy as np

LLAMA_ARCHS = {"LlamaForCausalLM", "MistralForCausalLM", "IQuestCoderForCausalLM"}
QWEN2_ARCHS = {"Qwen2ForCausalLM"}
LOOP_ARCHS = {"IQuestLoopCoderForCausalLM"}

# safetensors dtype -> little-endian numpy dtype of the raw bytes (BF16 handled separately).
_RAW_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2"}


def _decode(raw, dtype, shape):
    """Decodes one tensor's raw bytes into a float64 array of the given shape."""
    if dtype == "BF16":
        # bf16 is the top half of an f32: widen the bits and reinterpret.
        bits = np.frombuffer(raw, dtype="<u2").astype("<u4") << 16
        arr = bits.view("<f4")
    elif dtype in _RAW_DTYPES:
        arr = np.frombuffer(raw, dtype=_RAW_DTYPES[dtype])
    else:
        raise ValueError(f"unsupported safetensors dtype {dtype}")
    if arr.size != math.prod(shape):
        raise ValueError(f"byte size of tensor does not match shape {shape} ({dtype})")
    return arr.astype(np.float64).reshape(shape)


def read_safetensors(path):
    """Returns {name: float64 ndarray} for one .safetensors file.

    Layout: u64 little-endian header length N, N bytes of JSON header, then the data blob;
    data_offsets are relative to the start of the blob (byte 8 + N).
    """
    with open(path, "rb") as f:
        buf = memoryview(f.read())
    (n,) = struct.unpack("<Q", buf[:8])
    header = json.loads(bytes(buf[8 : 8 + n]))
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        out[name] = _decode(buf[base + begin : base + end], info["dtype"], info["shape"])
    return out


def load_weights(model_dir):
    """Loads all tensors from model.safetensors or a sharded model.safetensors.index.json."""
    index = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            weight_map = json.load(f)["weight_map"]
        weights = {}
        for shard in sorted(set(weight_map.values())):
            weights.update(read_safetensors(os.path.join(model_dir, shard)))
        missing = [name for name in weight_map if name not in weights]
        if missing:
            raise ValueError(f"tensors listed in index but absent from shards: {missing[:5]}")
        return weights
    return read_safetensors(os.path.join(model_dir, "model.safetensors"))


def load_config(model_dir):
    """Reads config.json and resolves the defaults HF would apply."""
    with open(os.path.join(model_dir, "config.json")) as f:
        raw = json.load(f)
    arch = raw["architectures"][0]
    if arch not in LLAMA_ARCHS | QWEN2_ARCHS | LOOP_ARCHS:
        raise ValueError(f"unsupported architecture {arch}")
    if raw.get("hidden_act", "silu") != "silu":
        raise ValueError(f"unsupported hidden_act {raw['hidden_act']}")
    if raw.get("mlp_bias", False):
        raise ValueError("mlp_bias is not supported")
    heads = raw["num_attention_heads"]
    cfg = {
        "arch": arch,
        "hidden": raw["hidden_size"],
        "intermediate": raw["intermediate_size"],
        "layers": raw["num_hidden_layers"],
        "heads": heads,
        "kv_heads": raw.get("num_key_value_heads") or heads,
        "head_dim": raw.get("head_dim") or raw["hidden_size"] // heads,
        "eps": raw["rms_norm_eps"],
        "rope_theta": raw.get("rope_theta", 10000.0),
        "rope_scaling": raw.get("rope_scaling"),
        "vocab": raw["vocab_size"],
        "tie": raw.get("tie_word_embeddings", False),
        # Qwen2 always has q/k/v biases (never o); Llama has q/k/v/o biases iff attention_bias.
        "qkv_bias": arch in QWEN2_ARCHS or raw.get("attention_bias", False),
        "o_bias": arch not in QWEN2_ARCHS and raw.get("attention_bias", False),
        "windows": _layer_windows(raw, arch),
        "loop_num": raw.get("loop_num", 2) if arch in LOOP_ARCHS else 1,
        "loop_window": raw.get("loop_window_size", 64) if arch in LOOP_ARCHS else None,
    }
    if cfg["heads"] % cfg["kv_heads"] != 0:
        raise ValueError("num_attention_heads must be a multiple of num_key_value_heads")
    return cfg


def _layer_windows(raw, arch):
    """Per-layer sliding window (None: full attention), as HF's Mistral and Qwen2 masks."""
    layers = raw["num_hidden_layers"]
    window = raw.get("sliding_window")
    if arch == "MistralForCausalLM":
        return [window] * layers
    if arch in QWEN2_ARCHS and raw.get("use_sliding_window", False) and window:
        types = raw.get("layer_types")
        if types is None:
            first = raw.get("max_window_layers", layers)
            types = ["sliding_attention" if i >= first else "full_attention" for i in range(layers)]
        return [window if t == "sliding_attention" else None for t in types]
    return [None] * layers


def attention_mask(T, window):
    """[T, S] True where key s is hidden from query t: the future, and keys past the window."""
    t = np.arange(T)[:, None]
    s = np.arange(T)[None, :]
    hidden = s > t
    if window:
        hidden |= s <= t - window
    return hidden


def rope_inv_freq(cfg):
    """inv_freq [head_dim/2] including HF's linear / llama3 rope_scaling adjustments."""
    d = cfg["head_dim"]
    inv_freq = 1.0 / cfg["rope_theta"] ** (np.arange(0, d, 2, dtype=np.float64) / d)
    rs = cfg["rope_scaling"]
    kind = None if rs is None else rs.get("rope_type", rs.get("type"))
    if kind in (None, "default"):
        return inv_freq
    if kind == "linear":
        return inv_freq / rs["factor"]
    if kind == "llama3":  # transformers _compute_llama3_parameters
        factor, low, high = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"]
        orig = rs["original_max_position_embeddings"]
        wavelen = 2.0 * math.pi / inv_freq
        smooth = (orig / wavelen - low) / (high - low)
        smoothed = (1.0 - smooth) * inv_freq / factor + smooth * inv_freq
        out = np.where(wavelen > orig / low, inv_freq / factor, smoothed)
        return np.where(wavelen < orig / high, inv_freq, out)
    raise ValueError(f"unsupported rope_scaling type {kind}")


def _tensor(w, name, shape):
    if name not in w:
        raise KeyError(f"missing tensor {name}")
    if tuple(w[name].shape) != tuple(shape):
        raise ValueError(f"{name}: shape {w[name].shape}, expected {tuple(shape)}")
    return w[name]


def _linear(w, prefix, x, out_dim, in_dim, bias):
    """HF nn.Linear: y = x @ W.T (+ b), W stored [out, in]."""
    y = x @ _tensor(w, prefix + ".weight", (out_dim, in_dim)).T
    return y + _tensor(w, prefix + ".bias", (out_dim,)) if bias else y


def _rms_norm(x, weight, eps):
    return weight * (x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps))


def _rotate_half(x):
    half = x.shape[-1] // 2
    return np.concatenate([-x[..., half:], x[..., :half]], axis=-1)


def _silu(x):
    return x * 0.5 * (1.0 + np.tanh(0.5 * x))  # == x * sigmoid(x), without exp overflow


def forward_loaded(cfg, w, token_ids, positions=None):
    """Logits [T, vocab] float64 for an already loaded (cfg, weights) pair."""
    ids = np.asarray(token_ids, dtype=np.int64)
    T = len(ids)
    pos = np.arange(T) if positions is None else np.asarray(positions, dtype=np.int64)
    if T == 0 or pos.shape != (T,):
        raise ValueError("need >= 1 token and exactly one position per token")
    if ids.min() < 0 or ids.max() >= cfg["vocab"]:
        raise ValueError("token id out of range")
    H, NH, NKV, D, eps = cfg["hidden"], cfg["heads"], cfg["kv_heads"], cfg["head_dim"], cfg["eps"]
    I, V = cfg["intermediate"], cfg["vocab"]

    embed = _tensor(w, "model.embed_tokens.weight", (V, H))
    x = embed[ids]  # [T, H]

    angle = pos[:, None].astype(np.float64) * rope_inv_freq(cfg)[None, :]  # [T, D/2]
    emb = np.concatenate([angle, angle], axis=-1)[:, None, :]  # [T, 1, D], broadcast over heads
    cos, sin = np.cos(emb), np.sin(emb)

    def attend(q, k, v, hidden):
        """softmax(q k^T / sqrt(D)) v with the [T, S] mask `hidden`; k, v: [T, NKV, D]."""
        # GQA: query head h reads kv head h // (NH // NKV) (HF repeat_kv order).
        k = np.repeat(k, NH // NKV, axis=1)  # [T, NH, D]
        v = np.repeat(v, NH // NKV, axis=1)
        scores = np.einsum("thd,shd->hts", q, k) / math.sqrt(D)  # [NH, T, S]
        scores[:, hidden] = -np.inf
        probs = np.exp(scores - scores.max(axis=-1, keepdims=True))
        probs /= probs.sum(axis=-1, keepdims=True)
        return np.einsum("hts,shd->thd", probs, v)  # [T, NH, D]

    pass1_kv = {}  # layer -> post-RoPE (k, v) of pass 1
    for loop in range(cfg["loop_num"]):
        for i in range(cfg["layers"]):
            p = f"model.layers.{i}."
            h = _rms_norm(x, _tensor(w, p + "input_layernorm.weight", (H,)), eps)
            q = _linear(w, p + "self_attn.q_proj", h, NH * D, H, cfg["qkv_bias"]).reshape(T, NH, D)
            k = _linear(w, p + "self_attn.k_proj", h, NKV * D, H, cfg["qkv_bias"])
            v = _linear(w, p + "self_attn.v_proj", h, NKV * D, H, cfg["qkv_bias"])
            k, v = k.reshape(T, NKV, D), v.reshape(T, NKV, D)
            q = q * cos + _rotate_half(q) * sin
            k = k * cos + _rotate_half(k) * sin
            if loop == 0:
                pass1_kv[i] = (k, v)
                attn = attend(q, k, v, attention_mask(T, cfg["windows"][i]))
            else:
                k1, v1 = pass1_kv[i]
                global_attn = attend(q, k1, v1, attention_mask(T, None))
                local_attn = attend(q, k, v, attention_mask(T, cfg["loop_window"]))
                g_p = f"model.gate_projections.{i}."
                logit = np.einsum("thd,hd->th", q, _tensor(w, g_p + "weight", (NH, D)))
                logit = logit + _tensor(w, g_p + "bias", (NH,))[None, :]
                gate = (1.0 / (1.0 + np.exp(-logit)))[:, :, None]  # [T, NH, 1]
                attn = gate * global_attn + (1.0 - gate) * local_attn
            attn = attn.reshape(T, NH * D)
            x = x + _linear(w, p + "self_attn.o_proj", attn, H, NH * D, cfg["o_bias"])

            h = _rms_norm(x, _tensor(w, p + "post_attention_layernorm.weight", (H,)), eps)
            gate_mlp = _linear(w, p + "mlp.gate_proj", h, I, H, False)
            up = _linear(w, p + "mlp.up_proj", h, I, H, False)
            x = x + _linear(w, p + "mlp.down_proj", _silu(gate_mlp) * up, H, I, False)

    x = _rms_norm(x, _tensor(w, "model.norm.weight", (H,)), eps)
    # Tied: HF shares embed_tokens as lm_head (a stored lm_head.weight would be overwritten).
    head = embed if cfg["tie"] else _tensor(w, "lm_head.weight", (V, H))
    return x @ head.T  # [T, V]


def forward(model_dir, token_ids, positions=None):
    """Loads the HF checkpoint in model_dir and returns logits [T, vocab] float64."""
    return forward_loaded(load_config(model_dir), load_weights(model_dir), token_ids, positions)


def _int_list(text):
    return [int(t) for t in text.split(",") if t.strip()]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="HF checkpoint folder")
    ap.add_argument("--prompt-ids", required=True, type=_int_list, help="e.g. 1,2,3")
    ap.add_argument("--positions", type=_int_list, default=None, help="default 0..T-1")
    ap.add_argument("--out", required=True, help="output .npy, float64 [T, vocab]")
    args = ap.parse_args(argv)
    logits = forward(args.model, args.prompt_ids, args.positions)
    np.save(args.out, logits)
    print(f"wrote {args.out}: shape {logits.shape}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
