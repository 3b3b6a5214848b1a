#!/usr/bin/env bash
# HTTP (OpenAI /v1/completions, streaming) vs gRPC (Generate) serving throughput and TTFT on one
# iquest-serve, the same load through each front door, in interleaved pairs so that drift on a
# shared machine hits both. Prints one line per run and the HTTP/gRPC ratios of each pair.
#   scripts/bench-http-vs-grpc.sh [MODEL]   (env: PAIRS, CONCURRENCY, NUM_REQUESTS, INPUT_LEN,
#                                            OUTPUT_LEN, BUILD_DIR)
set -euo pipefail
BUILD_DIR="${BUILD_DIR:-build}"
MODEL="${1:-models/demo}"
PAIRS="${PAIRS:-3}"
CONCURRENCY="${CONCURRENCY:-16}"
NUM_REQUESTS="${NUM_REQUESTS:-128}"
INPUT_LEN="${INPUT_LEN:-128}"
OUTPUT_LEN="${OUTPUT_LEN:-128}"
PORT=50871
HTTP_PORT=18871
OUT="$(mktemp -d)"
"$BUILD_DIR/bin/iquest-serve" --model "$MODEL" --host 127.0.0.1 --port "$PORT" --health-port -1 \
  --metrics-port -1 --http-port "$HTTP_PORT" --log-level warning &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$OUT"' EXIT
for _ in $(seq 100); do
  "$BUILD_DIR/bin/iquest-cli" --target "127.0.0.1:$PORT" health > /dev/null 2>&1 && break
  sleep 0.2
done
run() {  # api pair
  "$BUILD_DIR/bin/iquest-bench" --target "127.0.0.1:$PORT" --http-target "127.0.0.1:$HTTP_PORT" \
    --api "$1" --concurrency "$CONCURRENCY" --num-requests "$NUM_REQUESTS" --warmup 8 \
    --input-len "$INPUT_LEN" --output-len "$OUTPUT_LEN" --json-out "$OUT/$1-$2.json" > /dev/null
  /usr/bin/python3 -c "
import json, sys
r = json.load(open('$OUT/$1-$2.json'))
print(f\"pair $2 $1: {r['output_throughput']:.1f} tok/s, TTFT p50 {r['ttft_ms']['p50']:.1f} ms \"
      f\"p99 {r['ttft_ms']['p99']:.1f} ms, failed {r['num_failed']}\")"
}
run grpc 0 > /dev/null  # Warms the server (kernels, allocator, caches); not reported.
for pair in $(seq "$PAIRS"); do
  if (( pair % 2 )); then run grpc "$pair"; run http "$pair"; else run http "$pair"; run grpc "$pair"; fi
  /usr/bin/python3 -c "
import json
g = json.load(open('$OUT/grpc-$pair.json')); h = json.load(open('$OUT/http-$pair.json'))
print(f\"pair $pair http/grpc: throughput {h['output_throughput'] / g['output_throughput']:.3f}, \"
      f\"TTFT p50 {h['ttft_ms']['p50'] / g['ttft_ms']['p50']:.3f}\")"
done
