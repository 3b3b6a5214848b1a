#!/usr/bin/python3
"""llama.cpp runs our converted GGUF files and agrees with us (skipped unless LLAMA_SERVER names a
llama-server binary; llama.cpp is an outside program, never a project dependency).

For a tiny random llama model (whose q/k rows the converter permutes) and a qwen2 one (not
permuted), in f32: iquest-convert-hf-to-gguf writes the GGUF; llama-server greedily continues a
prompt of token ids; iquest-generate does the same on the safetensors folder and on the .gguf.
The three continuations must be the same text (ours detokenized by llama-server itself).
"""
import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

SKIP = 77
PROMPT = [1, 450, 1200, 37, 999, 2048, 5, 77]
NEW_TOKENS = 24


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(port, path, body):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    response = conn.getresponse()
    data = response.read()
    if response.status != 200:
        raise RuntimeError(f"{path}: HTTP {response.status}: {data[:200]!r}")
    return json.loads(data)


def wait_ready(port, server):
    for _ in range(240):
        if server.poll() is not None:
            raise RuntimeError("llama-server exited")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError("llama-server did not become ready")


def generate(bin_dir, model):
    out = subprocess.run([os.path.join(bin_dir, "iquest-generate"), "--model", model,
                          "--prompt-ids", ",".join(map(str, PROMPT)),
                          "--max-tokens", str(NEW_TOKENS)],
                         capture_output=True, text=True, check=True).stdout
    return [int(x) for x in out.split()]


def check(arch, args, work):
    hf = os.path.join(work, arch)
    gguf = os.path.join(work, arch + ".gguf")
    subprocess.run([os.path.join(args.bin_dir, "iquest-make-tiny-model"), "--out", hf, "--arch",
                    arch, "--hidden", "256", "--layers", "4", "--heads", "8", "--kv-heads", "2",
                    "--intermediate", "688", "--vocab", "4200", "--dtype", "f32",
                    "--max-position", "2048", "--seed", "7"], check=True)
    shutil.copy(args.tokenizer, os.path.join(hf, "tokenizer.model"))
    subprocess.run([os.path.join(args.bin_dir, "iquest-convert-hf-to-gguf"), "--model", hf,
                    "--out", gguf], check=True)
    port = free_port()
    log = open(os.path.join(work, arch + "-server.log"), "w")
    server = subprocess.Popen([args.llama_server, "-m", gguf, "-t", "1", "-c", "512",
                               "--host", "127.0.0.1", "--port", str(port)],
                              stdout=log, stderr=log)
    try:
        wait_ready(port, server)
        theirs = post(port, "/completion", {"prompt": PROMPT, "n_predict": NEW_TOKENS,
                                            "temperature": 0, "top_k": 1, "ignore_eos": True,
                                            "cache_prompt": False})["content"]
        ours_ids = generate(args.bin_dir, hf)
        ours_gguf_ids = generate(args.bin_dir, gguf)
        ours = post(port, "/detokenize", {"tokens": ours_ids})["content"]
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    ok = ours_ids == ours_gguf_ids and ours == theirs
    print(f"{arch}: llama.cpp {theirs!r}\n{arch}: ours      {ours!r} -> {'ok' if ok else 'MISMATCH'}")
    return ok


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin-dir", required=True)
    parser.add_argument("--tokenizer", required=True, help="a SentencePiece tokenizer.model")
    args = parser.parse_args()
    args.llama_server = os.environ.get("LLAMA_SERVER", "")
    if not args.llama_server or not os.access(args.llama_server, os.X_OK):
        print("skipped: set LLAMA_SERVER to a llama-server binary to run this test")
        return SKIP
    with tempfile.TemporaryDirectory(prefix="iquest-gguf-llamacpp-") as work:
        results = [check(arch, args, work) for arch in ("llama", "qwen2")]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
