#!/usr/bin/env bash
# Engine step time against the number of open streams (issue 16, item 8): serves MODEL with
# iquest-serve and drives it with iquest-bench at each concurrency of CONCURRENCY, reading the
# engine step p50/p99 off the server's iquest_step_duration_seconds (--metrics-target). Prints one
# line per concurrency and leaves each iquest-bench JSON in OUT_DIR.
#   BUILD_DIR=build MODEL=models/demo CONCURRENCY="1 64" scripts/bench-step-time.sh
# SERVE=path/to/another/iquest-serve measures another build the same way.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${BUILD_DIR:-$ROOT/build}"
SERVE="${SERVE:-$BUILD_DIR/bin/iquest-serve}"
MODEL="${MODEL:-$ROOT/models/demo}"
CONCURRENCY="${CONCURRENCY:-1 64}"
REQUESTS_PER_STREAM="${REQUESTS_PER_STREAM:-4}"
INPUT_LEN="${INPUT_LEN:-32}"
OUTPUT_LEN="${OUTPUT_LEN:-128}"
PORT="${PORT:-50091}"
METRICS_PORT="${METRICS_PORT:-50092}"
OUT_DIR="${OUT_DIR:-$BUILD_DIR/bench-step-time}"
mkdir -p "$OUT_DIR"

"$SERVE" --model "$MODEL" --host 127.0.0.1 --port "$PORT" --health-port -1 --http-port -1 \
  --metrics-port "$METRICS_PORT" --max-num-seqs 256 --log-level warning &
server=$!
trap 'kill "$server" 2> /dev/null; wait "$server" 2> /dev/null || true' EXIT
for _ in $(seq 1 600); do
  "$BUILD_DIR/bin/iquest-cli" info --target "127.0.0.1:$PORT" > /dev/null 2>&1 && break
  kill -0 "$server" 2> /dev/null || { echo "iquest-serve exited" >&2; exit 1; }
  sleep 0.1
done

for c in $CONCURRENCY; do
  json="$OUT_DIR/c$c.json"
  "$BUILD_DIR/bin/iquest-bench" --target "127.0.0.1:$PORT" --metrics-target "127.0.0.1:$METRICS_PORT" \
    --concurrency "$c" --num-requests $((c * REQUESTS_PER_STREAM)) --warmup "$c" \
    --input-len "$INPUT_LEN" --output-len "$OUTPUT_LEN" --json-out "$json" > /dev/null
  /usr/bin/python3 - "$json" "$c" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
s, itl = r["engine_step_ms"], r["itl_ms"]
print(f"concurrency {sys.argv[2]:>3}: engine step p50 {s['p50']:.3f} ms  p99 {s['p99']:.3f} ms"
      f"  mean {s['mean']:.3f} ms over {s['count']} steps;  ITL p50 {itl['p50']:.2f} ms;"
      f"  {r['num_completed']} ok, {r['num_failed']} failed")
PY
done
