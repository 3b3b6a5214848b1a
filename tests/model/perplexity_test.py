#!/usr/bin/python3
"""iquest-perplexity against llama-perplexity's recipe, recomputed here in float64.

The text (this project's README) is tokenized by iquest-tokenize with special tokens (BOS
first, as llama.cpp's common_tokenize(add_special = true)); then, as llama-perplexity does:
n_chunk = tokens // ctx chunks, each run from position 0 with its first token replaced by BOS,
the positions j in [ctx / 2, ctx - 1) scored (row j predicting token j + 1) by -log softmax;
PPL = exp(mean), "+/-" = PPL * sqrt((mean(nll^2) - mean^2) / (count - 1)). The logits come
from the independent float64 model of tests/model/reference_llama.py. iquest-perplexity's
printed running figures and final estimate must match within what the logits' tolerance allows
(see LOGITS_TOL),
with --batch smaller than a chunk too; a text shorter than 2 * ctx tokens is an error that says
how many tokens it has and needs.

  perplexity_test.py --perplexity BIN --tokenize BIN --model DIR --text FILE [--ctx 64]
"""

import argparse
import json
import math
import os
import re
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import reference_llama  # noqa: E402

# Run with --cpu-kernels avx2: f32 arithmetic throughout (the bf16-dot GEMM that AVX512_BF16
# CPUs use for prefill rounds activations to bf16, forward_parity's 1e-2 set). Its logits are
# within LOGITS_TOL * max |logit| of the float64 ones (forward_parity's bound), so
# each -log p moves by at most twice that, and so does ln PPL, a mean of them. The "+/-" figure
# (a standard deviation of those values) gets twice the room again.
LOGITS_TOL = 1e-4


def log_softmax_rows(logits):
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def reference(model_dir, tokens, ctx, bos_id, chunks):
    cfg = reference_llama.load_config(model_dir)
    weights = reference_llama.load_weights(model_dir)
    n_chunk = len(tokens) // ctx if chunks < 0 else min(chunks, len(tokens) // ctx)
    first = ctx // 2
    nll = nll2 = 0.0
    count = 0
    running = []
    max_logit = 0.0
    for c in range(n_chunk):
        chunk = list(tokens[c * ctx:(c + 1) * ctx])
        if bos_id is not None:
            chunk[0] = bos_id
        logits = reference_llama.forward_loaded(cfg, weights, chunk)
        max_logit = max(max_logit, float(np.abs(logits).max()))
        logp = log_softmax_rows(logits)
        for j in range(first, ctx - 1):
            v = -logp[j, chunk[j + 1]]
            nll += v
            nll2 += v * v
        count += ctx - 1 - first
        running.append(math.exp(nll / count))
    mean = nll / count
    var = nll2 / count - mean * mean
    ppl = math.exp(mean)
    return running, ppl, ppl * math.sqrt(var / (count - 1)), max_logit


def run_ours(binary, model, text, ctx, extra):
    out = subprocess.run([binary, "--model", model, "--text-file", text, "--ctx", str(ctx),
                          "--threads", "2", "--cpu-kernels", "avx2"] + extra,
                         capture_output=True, text=True)
    return out


def parse(stdout):
    running = [float(x) for x in re.findall(r"\[\d+\]([0-9.]+),", stdout)]
    m = re.search(r"Final estimate: PPL = ([0-9.]+) \+/- ([0-9.]+)", stdout)
    if not m:
        raise RuntimeError(f"no final estimate in: {stdout!r}")
    return running, float(m.group(1)), float(m.group(2))


def close(a, b, tol):
    """Relative agreement of two positive figures, within `tol` in log space."""
    return abs(math.log(a) - math.log(b)) <= tol + 1e-7


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--perplexity", required=True)
    p.add_argument("--tokenize", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--text", required=True)
    p.add_argument("--ctx", type=int, default=64)
    args = p.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        with open(args.text, encoding="utf-8") as f:
            text = f.read()[:6000]  # Enough for a few chunks; the reference is float64 NumPy.
        text_path = os.path.join(tmp, "text.txt")
        with open(text_path, "w", encoding="utf-8") as f:
            f.write(text)
        jsonl = os.path.join(tmp, "text.jsonl")
        with open(jsonl, "w", encoding="utf-8") as f:
            f.write(json.dumps(text) + "\n")
        enc = subprocess.run([args.tokenize, "--model", args.model, "--jsonl", jsonl],
                             capture_output=True, text=True, check=True)
        tokens = json.loads(enc.stdout.splitlines()[0])
        plain = subprocess.run([args.tokenize, "--model", args.model, "--jsonl", jsonl,
                                "--no-special"], capture_output=True, text=True, check=True)
        plain_tokens = json.loads(plain.stdout.splitlines()[0])
        # The tokenizer adds a BOS exactly when the special encoding is one token longer.
        bos_id = tokens[0] if tokens[1:] == plain_tokens else None
        print(f"{len(tokens)} tokens, BOS {bos_id}, ctx {args.ctx}")

        failures = []
        *want, max_logit = reference(args.model, tokens, args.ctx, bos_id, chunks=4)
        tol = 2 * LOGITS_TOL * max_logit
        print(f"max |logit| {max_logit:.2f}: ln PPL within {tol:.2e}")
        for extra in (["--chunks", "4"], ["--chunks", "4", "--batch", "24"]):
            out = run_ours(args.perplexity, args.model, text_path, args.ctx, extra)
            if out.returncode != 0:
                failures.append(f"{extra}: exit {out.returncode}: {out.stderr.strip()}")
                continue
            got = parse(out.stdout)
            print(f"{' '.join(extra):22} ours PPL {got[1]:.4f} +/- {got[2]:.5f}   "
                  f"float64 {want[1]:.4f} +/- {want[2]:.5f}   running {got[0]}")
            if len(got[0]) != len(want[0]) or \
                    not all(close(a, b, tol) for a, b in zip(got[0], want[0])):
                failures.append(f"{extra}: running {got[0]} != {want[0]}")
            if not close(got[1], want[1], tol) or not close(got[2], want[2], 2 * tol):
                failures.append(f"{extra}: final {got[1:]} != {want[1:]}")

        # Too short: fewer than 2 * ctx tokens is refused, naming both counts.
        short_ctx = len(tokens) // 2 + 1
        out = run_ours(args.perplexity, args.model, text_path, short_ctx, [])
        if out.returncode == 0 or f"tokenizes to {len(tokens)} tokens" not in out.stderr or \
                f"at least {2 * short_ctx}" not in out.stderr:
            failures.append(f"short text: exit {out.returncode}, stderr {out.stderr.strip()!r}")
        else:
            print("short text refused:", out.stderr.strip().splitlines()[-1])

    if failures:
        print("FAILED:\n  " + "\n  ".join(failures))
        return 1
    print("iquest-perplexity matches llama-perplexity's recipe in float64")
    return 0


if __name__ == "__main__":
    sys.exit(main())
