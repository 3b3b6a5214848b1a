#!/usr/bin/env python3
"""Forward-pass parity: iquest-serve logits vs the independent float64 NumPy reference.

For each model variant this
  1. builds a small random checkpoint with the C++ --make-model tool,
  2. checks that config.json / tensors reflect the requested variant (so a tool that ignored a
     flag cannot make the test pass vacuously),
  3. runs the C++ --logits tool on prompts of length 1, 7 and 33 and compares each row of the
     [T, vocab] float32 output with reference_llama.forward (relative error per row =
     max|ours - ref| / max|ref|; fail above --tol),
  4. self-checks the reference: logits of a prompt prefix must equal the first rows of the
     longer prompt (causality) to 1e-12.

Usage: forward_parity_test.py --make-model PATH --logits PATH --workdir DIR
Exit status 0 when every check passes, 1 otherwise.
"""

import argparse
import json
import os
import subprocess
import sys
from dataclasses import dataclass

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference_llama  # noqa: E402  (sibling file; independent of the C++ project)

PROMPT_LENGTHS = (1, 7, 33)
LOOP_PROMPT_LENGTHS = (1, 7, 33, 100)  # 100: past a 64-token window
TOKEN_SEED = 20240611
MAX_POSITION = 128
CAUSALITY_TOL = 1e-12


@dataclass(frozen=True)
class Variant:
    name: str
    arch: str  # llama | qwen2
    dtype: str  # f32 | f16 | bf16
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    tie: bool
    rope_scaling: str  # none | linear | llama3
    rope_theta: float
    seed: int
    layers: int = 2
    window: int = 0  # --sliding-window (mistral: every layer; qwen2: layers >= 1)
    loop_num: int = 2  # loop only: --loop-num, --window, --gate-bias
    loop_window: int = 64
    gate_bias: float = 0.0
    prompt_lengths: tuple = PROMPT_LENGTHS


# Columns: name, arch, dtype, hidden, heads, kv_heads, head_dim, intermediate, vocab, tie,
# rope_scaling, rope_theta, seed.
VARIANTS = [
    # head_dim (32) != hidden / heads (16); GQA 2; llama3 rope scaling; separate lm_head.
    Variant(
        "llama-f32-llama3-hd32", "llama", "f32", 64, 4, 2, 32, 128, 256, False, "llama3", 5e5, 11
    ),
    # Qwen2 q/k/v biases, tied embeddings, large rope theta.
    Variant("qwen2-f32-tied", "qwen2", "f32", 64, 4, 2, 16, 160, 320, True, "none", 1e6, 12),
    # GQA ratio 4 with linear rope scaling, bf16 weights.
    Variant(
        "llama-bf16-gqa4-linear", "llama", "bf16", 128, 8, 2, 16, 256, 512, False, "linear", 1e4, 13
    ),
    # Qwen2 bf16, GQA ratio 3, untied.
    Variant("qwen2-bf16", "qwen2", "bf16", 96, 6, 2, 16, 192, 384, False, "none", 1e6, 14),
    # Plain multi-head attention, f16 weights, tied, no rope scaling.
    Variant("llama-f16-mha-tied", "llama", "f16", 64, 4, 4, 16, 128, 256, True, "none", 1e4, 15),
    # Mistral with a sliding window shorter than the 7- and 33-token prompts.
    Variant("mistral-f32-window5", "mistral", "f32", 64, 4, 2, 16, 128, 256, False, "none", 1e4,
            16, window=5),
    # Qwen2 use_sliding_window: layer 0 full, layers 1.. windowed (max_window_layers 1).
    Variant("qwen2-f32-window4", "qwen2", "f32", 64, 4, 2, 16, 128, 256, False, "none", 1e6, 17,
            layers=3, window=4),
    # IQuestLoopCoder with gates that matter (bias 0: both branches weigh ~1/2), windows 4 and 64,
    # prompts past the window; a third pass; bf16 weights; the real checkpoint's +2 gate bias.
    Variant("loop-f32-w4", "loop", "f32", 64, 4, 2, 16, 128, 256, False, "none", 5e5, 18,
            loop_window=4, prompt_lengths=LOOP_PROMPT_LENGTHS),
    Variant("loop-f32-w64", "loop", "f32", 64, 4, 2, 16, 128, 256, False, "none", 5e5, 19,
            loop_window=64, prompt_lengths=LOOP_PROMPT_LENGTHS),
    Variant("loop-f32-3pass-w5", "loop", "f32", 64, 4, 1, 16, 128, 256, False, "none", 5e5, 20,
            loop_num=3, loop_window=5, prompt_lengths=LOOP_PROMPT_LENGTHS),
    Variant("loop-bf16-w8-bias2", "loop", "bf16", 64, 4, 2, 16, 128, 256, False, "none", 5e5, 21,
            loop_window=8, gate_bias=2.0),
]

# loop_num 1: the Loop model must be the Llama path bit for bit (same seed, same tensors).
LOOP1_TWIN = Variant("loop1", "loop", "f32", 64, 4, 2, 16, 128, 256, False, "none", 5e5, 22,
                     loop_num=1)

EXPECTED_ARCH = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM",
                 "qwen2": "Qwen2ForCausalLM", "loop": "IQuestLoopCoderForCausalLM"}
EXPECTED_DTYPE = {"f32": "F32", "f16": "F16", "bf16": "BF16"}


# ctest's SKIP_RETURN_CODE for this test.
SKIP_EXIT_CODE = 77
# /proc/cpuinfo flags each ISA of kernels/cpu/fast/cpu_isa.cc needs.
ISA_CPU_FLAGS = {
    "avx2": ["avx2", "fma", "f16c"],
    "avx512": ["avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl"],
    "avx512-bf16": ["avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_bf16"],
}


def missing_cpu_flags(kernels):
    """The CPU flags `kernels` needs that this machine lacks (none for auto/reference)."""
    needed = ISA_CPU_FLAGS.get(kernels, [])
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f
                          if line.startswith("flags")), [])
    except OSError:
        flags = []
    return [flag for flag in needed if flag not in flags]


def run_tool(cmd):
    """Runs a C++ tool; returns None on success or a one-line error description."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"{os.path.basename(cmd[0])}: {e}"
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return f"{os.path.basename(cmd[0])} exit {proc.returncode}: {' | '.join(tail)}"
    return None


def make_model(tool, v, out_dir):
    cmd = [tool, "--out", out_dir, "--arch", v.arch, "--hidden", str(v.hidden)]
    cmd += ["--layers", str(v.layers), "--heads", str(v.heads), "--kv-heads", str(v.kv_heads)]
    cmd += ["--head-dim", str(v.head_dim), "--intermediate", str(v.intermediate)]
    cmd += ["--vocab", str(v.vocab), "--seed", str(v.seed), "--dtype", v.dtype]
    cmd += ["--rope-scaling", v.rope_scaling, "--rope-theta", repr(v.rope_theta)]
    cmd += ["--max-position", str(MAX_POSITION), "--sliding-window", str(v.window)]
    if v.tie:
        cmd.append("--tie-embeddings")
    if v.arch == "loop":
        cmd += ["--loop-num", str(v.loop_num), "--window", str(v.loop_window)]
        cmd += ["--gate-bias", repr(v.gate_bias)]
    return run_tool(cmd)


def check_checkpoint(v, model_dir):
    """Returns a list of mismatches between the written checkpoint and the variant."""
    with open(os.path.join(model_dir, "config.json")) as f:
        raw = json.load(f)
    cfg = reference_llama.load_config(model_dir)
    rs = cfg["rope_scaling"]
    rope_kind = "none" if rs is None else rs.get("rope_type", rs.get("type"))
    with open(os.path.join(model_dir, "model.safetensors"), "rb") as f:
        header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
    dtypes = {info["dtype"] for name, info in header.items() if name != "__metadata__"}
    checks = {
        "architecture": (raw["architectures"][0], EXPECTED_ARCH[v.arch]),
        "hidden": (cfg["hidden"], v.hidden),
        "layers": (cfg["layers"], v.layers),
        "heads": (cfg["heads"], v.heads),
        "kv_heads": (cfg["kv_heads"], v.kv_heads),
        "head_dim": (cfg["head_dim"], v.head_dim),
        "intermediate": (cfg["intermediate"], v.intermediate),
        "vocab": (cfg["vocab"], v.vocab),
        "tie": (bool(cfg["tie"]), v.tie),
        "lm_head present": ("lm_head.weight" in header, not v.tie),
        "rope_scaling": ("none" if rope_kind in (None, "default") else rope_kind, v.rope_scaling),
        "rope_theta": (float(cfg["rope_theta"]), v.rope_theta),
        "tensor dtypes": (dtypes, {EXPECTED_DTYPE[v.dtype]}),
        "windowed layers": (sum(1 for w in cfg["windows"] if w == v.window and w),
                            0 if not v.window else (v.layers if v.arch == "mistral"
                                                    else v.layers - 1)),
        "loop_num": (cfg["loop_num"], v.loop_num if v.arch == "loop" else 1),
        "loop gates": (sum(1 for name in header if name.startswith("model.gate_projections.")),
                       2 * v.layers if v.arch == "loop" and v.loop_num > 1 else 0),
    }
    if v.arch == "loop":
        checks["loop_window"] = (cfg["loop_window"], v.loop_window)
    if rope_kind == "llama3":
        # Every llama3 branch (kept / smoothed / divided) must be hit, or parity proves little.
        checks["llama3 bands hit"] = (llama3_bands(cfg), {"keep", "smooth", "scale"})
    return [f"{k}: got {got}, want {want}" for k, (got, want) in checks.items() if got != want]


def llama3_bands(cfg):
    """Which branches of HF's llama3 inv_freq rule the frequencies of this config fall into."""
    d, rs = cfg["head_dim"], cfg["rope_scaling"]
    inv_freq = 1.0 / cfg["rope_theta"] ** (np.arange(0, d, 2) / d)
    wavelen = 2.0 * np.pi / inv_freq
    orig = rs["original_max_position_embeddings"]
    high_wl, low_wl = orig / rs["high_freq_factor"], orig / rs["low_freq_factor"]
    bands = np.where(wavelen < high_wl, "keep", np.where(wavelen > low_wl, "scale", "smooth"))
    return set(bands.tolist())


def rel_err_rows(ours, ref):
    """Per-row max|ours - ref| / max|ref|; non-finite values count as infinite error."""
    err = np.abs(ours - ref).max(axis=1) / np.maximum(np.abs(ref).max(axis=1), 1e-300)
    return np.where(np.isfinite(ours).all(axis=1), err, np.inf)


def run_variant(v, args, rows):
    """Appends (variant, check, T, err, ok, note) rows for one variant."""
    vdir = os.path.join(args.workdir, v.name)
    model_dir = os.path.join(vdir, "model")
    os.makedirs(model_dir, exist_ok=True)
    rng = np.random.default_rng(TOKEN_SEED + v.seed)
    all_ids = rng.integers(0, v.vocab, size=max(v.prompt_lengths)).tolist()
    err = make_model(args.make_model, v, model_dir)
    try:  # a malformed checkpoint must show up as a FAIL row, not a traceback
        if err is None:
            problems = check_checkpoint(v, model_dir)
            err = "; ".join(problems) if problems else None
        if err is None:
            cfg = reference_llama.load_config(model_dir)
            weights = reference_llama.load_weights(model_dir)
            full_ref = reference_llama.forward_loaded(cfg, weights, all_ids)  # [T_max, V]
    except (OSError, ValueError, KeyError) as e:
        err = f"{type(e).__name__}: {e}"
    if err is not None:
        rows.append((v.name, "make-model", "-", float("nan"), False, err))
        return

    for T in v.prompt_lengths:
        ids = all_ids[:T]  # prompts are prefixes of one sequence: gives the causality check
        ref = reference_llama.forward_loaded(cfg, weights, ids)
        causal = rel_err_rows(ref, full_ref[:T]).max()
        rows.append((v.name, "ref-causal", T, causal, causal <= CAUSALITY_TOL, ""))

        out_path = os.path.join(vdir, f"logits_T{T}.f32")
        if os.path.exists(out_path):
            os.remove(out_path)
        cmd = [args.logits, "--model", model_dir, "--prompt-ids", ",".join(map(str, ids)),
               "--cpu-kernels", args.cpu_kernels]
        err = run_tool(cmd + ["--out", out_path])
        if err is None and not os.path.exists(out_path):
            err = "logits tool wrote no output"
        if err is None:
            ours = np.fromfile(out_path, dtype="<f4").astype(np.float64)
            if ours.size != T * v.vocab:
                err = f"logits file has {ours.size} floats, want {T}x{v.vocab}"
        if err is not None:
            rows.append((v.name, "parity", T, float("nan"), False, err))
            continue
        row_err = rel_err_rows(ours.reshape(T, v.vocab), ref)
        worst = int(np.argmax(row_err))
        note = f"worst row {worst}" if T > 1 else ""
        rows.append((v.name, "parity", T, row_err.max(), bool(row_err.max() <= args.tol), note))


def check_loop1_twin(args, rows):
    """A loop_num 1 Loop checkpoint and the Llama one of the same seed give identical bytes."""
    twin_llama = Variant(**{**LOOP1_TWIN.__dict__, "name": "loop1-llama", "arch": "llama"})
    logits = []
    ids = ",".join(map(str, range(3, 40)))
    for v in (LOOP1_TWIN, twin_llama):
        model_dir = os.path.join(args.workdir, v.name, "model")
        os.makedirs(model_dir, exist_ok=True)
        out_path = os.path.join(args.workdir, v.name, "logits.f32")
        err = make_model(args.make_model, v, model_dir) or run_tool(
            [args.logits, "--model", model_dir, "--prompt-ids", ids, "--cpu-kernels",
             args.cpu_kernels, "--out", out_path])
        if err is not None:
            rows.append(("loop1 == llama", "bitwise", 37, float("nan"), False, err))
            return
        with open(out_path, "rb") as f:
            logits.append(f.read())
    same = len(logits[0]) > 0 and logits[0] == logits[1]
    rows.append(("loop1 == llama", "bitwise", 37, 0.0 if same else float("inf"), same, ""))


def main(argv=None):
    ap = argparse.ArgumentParser(description="iquest-serve forward-pass parity test")
    ap.add_argument("--make-model", required=True, help="C++ random-checkpoint writer")
    ap.add_argument("--logits", required=True, help="C++ tool writing float32 [T, vocab]")
    ap.add_argument("--workdir", required=True, help="scratch folder for checkpoints/logits")
    ap.add_argument("--tol", type=float, default=1e-4, help="max per-row relative error")
    ap.add_argument("--only", action="append", help="run only the named variant(s)")
    ap.add_argument("--cpu-kernels", default="reference",
                    help="the CPU kernels under test (iquest-logits --cpu-kernels)")
    args = ap.parse_args(argv)
    missing = missing_cpu_flags(args.cpu_kernels)
    if missing:
        print(f"SKIP: --cpu-kernels={args.cpu_kernels} needs {' '.join(missing)}, absent here")
        return SKIP_EXIT_CODE
    os.makedirs(args.workdir, exist_ok=True)

    variants = [v for v in VARIANTS if not args.only or v.name in args.only]
    if not variants:
        print(f"no variant matches {args.only}; known: {[v.name for v in VARIANTS]}")
        return 1
    rows = []
    for v in variants:
        run_variant(v, args, rows)
    if not args.only:
        check_loop1_twin(args, rows)

    print(f"{'variant':<24} {'check':<11} {'T':>3}  {'max_rel_err':>11}  status")
    for name, check, T, err, ok, note in rows:
        print(f"{name:<24} {check:<11} {T!s:>3}  {err:>11.3e}  {'PASS' if ok else 'FAIL'}  {note}")
    failed = sum(1 for r in rows if not r[4])
    print(f"\n{len(rows) - failed}/{len(rows)} checks passed (tol {args.tol:g})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
