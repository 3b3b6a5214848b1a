#!/usr/bin/python3
"""pass@1 of a real checkpoint on a HumanEval-style subset, through the real serving path.

Starts iquest-serve on 127.0.0.1 with --model, sends each problem's prompt (a signature and a
docstring) greedily (temperature 0, fixed max_tokens, stop at the next top-level statement), runs
prompt + completion + the problem's asserts in a fresh python3 with a timeout, and fails when
pass@1 is below --floor. Writes per-problem results (results.jsonl) and metrics.txt lines.

The completions are model output executed on the CI runner: the GPU runner is a throwaway
container, and each program runs with a timeout and no input.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import time

STOPS = ["\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(args, port):
    return subprocess.Popen(
        [os.path.join(args.build_dir, "bin", "iquest-serve"), "--model", args.model,
         "--device", args.device, "--host", "127.0.0.1", "--port", str(port),
         "--metrics-port", "-1", "--http-port", "-1"])


def generate(stub, pb, prompt, max_tokens):
    request = pb.GenerateRequest(
        text=prompt, sampling=pb.SamplingParams(temperature=0.0, max_tokens=max_tokens, seed=0,
                                                stop=STOPS))
    return "".join(r.text for r in stub.Generate(request, timeout=300))


def passes(program, timeout_s):
    try:
        done = subprocess.run([sys.executable, "-c", program], capture_output=True,
                              timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build-dir", default="build")
    parser.add_argument("--model", required=True)
    parser.add_argument("--problems", required=True)
    parser.add_argument("--floor", type=float, required=True)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--max-tokens", type=int, default=384)
    parser.add_argument("--out", default="eval")
    args = parser.parse_args()

    sys.path.insert(0, os.path.join(args.build_dir, "python"))
    import grpc
    from iquest.serve.v1 import generation_pb2 as pb
    from iquest.serve.v1 import generation_pb2_grpc as rpc

    problems = [json.loads(line) for line in open(args.problems) if line.strip()]
    port = free_port()
    server = start_server(args, port)
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        stub = rpc.GenerationStub(channel)
        # Loading answers UNAVAILABLE; a 40B checkpoint can take minutes to load.
        deadline = time.monotonic() + 1800
        while True:
            try:
                stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=5)
                break
            except grpc.RpcError:
                if server.poll() is not None or time.monotonic() > deadline:
                    sys.exit("pass@1: iquest-serve did not become ready")
                time.sleep(2)
        results = []
        for problem in problems:
            completion = generate(stub, pb, problem["prompt"], args.max_tokens)
            program = problem["prompt"] + completion + "\n\n" + problem["test"] + "\n"
            ok = passes(program, timeout_s=10)
            results.append({"task_id": problem["task_id"], "passed": ok,
                            "completion": completion})
            print(f"pass@1: {problem['task_id']}: {'pass' if ok else 'FAIL'}", flush=True)
    finally:
        server.terminate()
        server.wait(timeout=60)

    score = sum(r["passed"] for r in results) / len(results)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "results.jsonl"), "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in results)
    with open(os.path.join(args.out, "metrics.txt"), "a") as f:
        f.write(f"eval_pass_at_1 {score:.4f}\n")
    print(f"pass@1: {score:.3f} over {len(results)} problems (floor {args.floor})")
    if score < args.floor:
        sys.exit(f"pass@1: {score:.3f} is below the floor {args.floor}")


if __name__ == "__main__":
    main()
