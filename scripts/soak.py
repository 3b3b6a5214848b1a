"""Soak: mixed load on a real iquest-serve over loopback for --minutes, sampling the server's RSS,
live heap (iquest_heap_in_use_bytes), threads and open fds every --interval seconds into a CSV and
a PNG plot. Passes when each stays flat after the warm-up and a golden greedy request gives the
same tokens at the end as at the start. Not part of `make test` (scripts/soak.sh runs it).

The mix, on eight client threads: plain streams; streams cancelled after their first token;
deadlines of a few milliseconds; Abort by request_id; bad inputs from the reliability table;
and every minute a burst of 300 streams at once, far over --max-queue, which must be answered
RESOURCE_EXHAUSTED without harm.
"""

import argparse
import csv
import math
import os
import random
import struct
import sys
import tempfile
import threading
import time
import zlib

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "../tests/server"))
import grpc  # noqa: E402

from harness import Server, collect, greedy, pb, proc_status  # noqa: E402

MODEL = os.path.join(os.path.dirname(__file__), "../models/demo")


class Load:
    def __init__(self, server, vocab, stop):
        self.server, self.vocab, self.stop = server, vocab, stop
        self.codes = {}
        self.lock = threading.Lock()

    def count(self, kind, code):
        with self.lock:
            self.codes[(kind, code)] = self.codes.get((kind, code), 0) + 1

    def prompt(self, rng):
        return [rng.randrange(1, self.vocab) for _ in range(rng.randrange(4, 48))]

    def one(self, rng, n):
        stub = self.server.stub
        kind = ("stream", "cancel", "deadline", "abort", "bad")[n % 5]
        request = greedy(self.prompt(rng), rng.randrange(4, 40))
        try:
            if kind == "stream":
                collect(stub.Generate(request, timeout=60))
            elif kind == "cancel":
                call = stub.Generate(request, timeout=60)
                next(call)
                call.cancel()
            elif kind == "deadline":
                collect(stub.Generate(request, timeout=rng.choice([0.002, 0.01, 0.05])))
            elif kind == "abort":
                request.request_id = f"soak-{threading.get_ident()}-{n}"
                call = stub.Generate(request, timeout=60)
                next(call)
                stub.Abort(pb.AbortRequest(request_ids=[request.request_id]), timeout=5)
                for _ in call:
                    pass
            else:
                bad = rng.choice([
                    pb.SamplingParams(temperature=math.nan),
                    pb.SamplingParams(top_p=0.0),
                    pb.SamplingParams(max_tokens=10**9),
                    pb.SamplingParams(stop=["x"] * 100),
                    pb.SamplingParams(logit_bias={self.vocab: 1.0}),
                ])
                collect(stub.Generate(pb.GenerateRequest(token_ids=request.token_ids,
                                                         sampling=bad), timeout=10))
            self.count(kind, "OK")
        except grpc.RpcError as e:
            self.count(kind, e.code().name)

    def worker(self, seed):
        rng = random.Random(seed)
        n = seed
        while not self.stop.is_set():
            self.one(rng, n)
            n += 1

    def bursts(self):
        while not self.stop.wait(60):
            calls = [self.server.stub.Generate(greedy([1, 2, 3], 8), timeout=60)
                     for _ in range(300)]
            for call in calls:
                try:
                    collect(call)
                    self.count("burst", "OK")
                except grpc.RpcError as e:
                    self.count("burst", e.code().name)


def write_png(path, columns, rows, width=900, panel_height=160):
    """A plain line chart per column (pure Python: no plotting library on the machine)."""
    height = panel_height * len(columns)
    pixels = bytearray(b"\xff" * (width * height * 3))

    def put(x, y, rgb):
        if 0 <= x < width and 0 <= y < height:
            i = (y * width + x) * 3
            pixels[i:i + 3] = bytes(rgb)

    for p, name in enumerate(columns):
        top = p * panel_height
        values = [row[name] for row in rows]
        lo, hi = min(values), max(values)
        span = (hi - lo) or 1.0
        for x in range(width):
            put(x, top + panel_height - 1, (180, 180, 180))
        for i in range(1, len(values)):
            x0 = int((i - 1) * (width - 1) / max(1, len(values) - 1))
            x1 = int(i * (width - 1) / max(1, len(values) - 1))
            y0 = top + 10 + int((1 - (values[i - 1] - lo) / span) * (panel_height - 30))
            y1 = top + 10 + int((1 - (values[i] - lo) / span) * (panel_height - 30))
            steps = max(abs(x1 - x0), abs(y1 - y0), 1)
            for s in range(steps + 1):
                put(x0 + (x1 - x0) * s // steps, y0 + (y1 - y0) * s // steps, (20, 60, 200))
    raw = b"".join(b"\x00" + bytes(pixels[y * width * 3:(y + 1) * width * 3])
                   for y in range(height))

    def chunk(tag, data):
        return (struct.pack(">I", len(data)) + tag + data
                + struct.pack(">I", zlib.crc32(tag + data) & 0xffffffff))

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)))
        f.write(chunk(b"IDAT", zlib.compress(raw, 9)))
        f.write(chunk(b"IEND", b""))


# Flat: the mean of the last third of the steady samples exceeds the mean of the first third by at
# most this much. (A least-squares slope was tried first: a single +1 step of gRPC's thread pool
# read as "+9 threads/h", so halves of the run are compared instead.) A leak of one stream's
# state per request would pass these bounds within minutes.
GROWTH_BOUNDS = {"rss_kb": 8 * 1024, "heap_bytes": 8 << 20, "threads": 2, "fds": 2}


def evaluate(rows, warmup_s):
    steady = [r for r in rows if r["t_s"] >= warmup_s] or rows
    third = max(1, len(steady) // 3)
    verdicts = {}
    for name, bound in GROWTH_BOUNDS.items():
        first = sum(r[name] for r in steady[:third]) / third
        last = sum(r[name] for r in steady[-third:]) / third
        verdicts[name] = (first, last, last - first <= bound)
    return steady, verdicts


def report(rows, warmup_s):
    steady, verdicts = evaluate(rows, warmup_s)
    ok = True
    for name, (first, last, flat) in verdicts.items():
        values = [r[name] for r in steady]
        ok = ok and flat
        print(f"{name:>10}: steady min {min(values):.0f} max {max(values):.0f}; first third "
              f"{first:.0f}, last third {last:.0f} (growth bound {GROWTH_BOUNDS[name]}) "
              f"{'flat' if flat else 'GROWING'}")
    return ok


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--interval", type=float, default=10)
    parser.add_argument("--warmup-minutes", type=float, default=3)
    parser.add_argument("--out", default="soak")
    parser.add_argument("--model", default=MODEL)
    parser.add_argument("--check", help="only judge an earlier run's soak.csv")
    args = parser.parse_args()
    if args.check:
        with open(args.check) as f:
            rows = [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]
        return 0 if report(rows, args.warmup_minutes * 60) else 1
    os.makedirs(args.out, exist_ok=True)
    env = dict(os.environ, GLIBC_TUNABLES="glibc.malloc.tcache_count=0")
    server = Server(args.model, "--max-queue", "64", env=env)
    try:
        vocab = server.stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=5).vocab_size
        golden_request = greedy([1, 40, 41, 42, 43], 24)
        golden = collect(server.stub.Generate(golden_request, timeout=30))[0]
        stop = threading.Event()
        load = Load(server, vocab, stop)
        threads = [threading.Thread(target=load.worker, args=(i,)) for i in range(8)]
        threads.append(threading.Thread(target=load.bursts))
        for t in threads:
            t.start()
        rows = []
        pid = server.process.pid
        started = time.time()
        columns = ["rss_kb", "heap_bytes", "threads", "fds"]
        with open(os.path.join(args.out, "soak.csv"), "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["t_s"] + columns)
            writer.writeheader()
            while time.time() - started < args.minutes * 60:
                time.sleep(args.interval)
                row = {"t_s": round(time.time() - started, 1),
                       "rss_kb": proc_status(pid, "VmRSS"),
                       "heap_bytes": server.metric("iquest_heap_in_use_bytes"),
                       "threads": proc_status(pid, "Threads"),
                       "fds": len(os.listdir(f"/proc/{pid}/fd"))}
                rows.append(row)
                writer.writerow(row)
                f.flush()
        stop.set()
        for t in threads:
            t.join(timeout=120)
        server.wait_kv_free(seconds=30)
        after = collect(server.stub.Generate(golden_request, timeout=30))[0]
        write_png(os.path.join(args.out, "soak.png"), columns, rows)
    finally:
        code = server.stop()
    print(f"requests by kind and code: {dict(sorted(load.codes.items()))}")
    ok = report(rows, args.warmup_minutes * 60) and after == golden and code == 0
    print(f"golden request unchanged: {after == golden}; server exit code {code}")
    print(f"{'PASS' if ok else 'FAIL'}: {len(rows)} samples in {args.out}/soak.csv, plot {args.out}/soak.png")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
