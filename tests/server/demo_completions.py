#!/usr/bin/python3
"""The demo model's stored completions (models/demo/eval/completions.json), through the real
iquest-serve: text prompts, the tokenizer, the engine, greedy and seeded sampling, streaming.
Each completion must equal the stored one token for token (on the reference CPU kernels).

  /usr/bin/python3 tests/server/demo_completions.py [--model models/demo] [--update]

--update rewrites the expectations from this build (after retraining the model, say).
Used by scripts/ci/eval.sh (the model-quality gate) and by demo_model_test.py.
"""

import argparse
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Server, collect, pb  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../..")
DEFAULT_MODEL = os.path.normpath(os.path.join(ROOT, "models/demo"))
# The reference kernels (plain f32 loops) give the same logits on every x86-64 machine; the fast
# kernels are picked by CPUID and may round differently, which could flip a sampled token.
SERVER_FLAGS = ("--cpu-kernels", "reference")


def complete(stub, case):
    """(token_ids, text) of one stored case."""
    sampling = pb.SamplingParams(max_tokens=case["max_tokens"], temperature=case["temperature"])
    if "top_p" in case:
        sampling.top_p = case["top_p"]
    if "seed" in case:
        sampling.seed = case["seed"]
    ids, text, last = collect(stub.Generate(pb.GenerateRequest(text=case["prompt"],
                                                               sampling=sampling), timeout=60))
    return ids, text


def check(stub, path):
    """The cases whose completion differs from the stored one, as messages."""
    with open(path) as f:
        cases = json.load(f)["completions"]
    problems = []
    for case in cases:
        ids, text = complete(stub, case)
        if ids != case["token_ids"] or text != case["text"]:
            problems.append(f"{case['name']}: want {case['text']!r}\n  got {text!r}")
    return problems


def update(stub, path):
    with open(path) as f:
        stored = json.load(f)
    for case in stored["completions"]:
        case["token_ids"], case["text"] = complete(stub, case)
    text = json.dumps(stored, indent=2, ensure_ascii=False)
    # One line per id list keeps the file readable.
    text = re.sub(r"\[\n\s+([\d,\s]+?)\n\s+\]",
                  lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]", text)
    with open(path, "w") as f:
        f.write(text + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--update", action="store_true")
    args = parser.parse_args()
    path = os.path.join(args.model, "eval", "completions.json")
    server = Server(args.model, *SERVER_FLAGS)
    try:
        if args.update:
            update(server.stub, path)
            print(f"demo completions: rewrote {path}")
            return 0
        problems = check(server.stub, path)
    finally:
        server.stop()
    for problem in problems:
        print(f"demo completions: {problem}", file=sys.stderr)
    print(f"demo completions: {'FAILED' if problems else 'ok'} ({path})")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
