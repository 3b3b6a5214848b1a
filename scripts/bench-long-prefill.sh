#!/usr/bin/env bash
# ITL of decoding streams while long prompts arrive, with and without
# --long-prefill-token-threshold (issue 21, item 3). For each THRESHOLDS value: serves MODEL,
# runs DECODE_STREAMS short-prompt streams (the ITL measured) and, beside them, LONG_STREAMS
# streams of LONG_INPUT-token prompts; prints the decode streams' ITL p50/p99.
#   BUILD_DIR=build MODEL=build/models/random THRESHOLDS="0 256" scripts/bench-long-prefill.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${BUILD_DIR:-$ROOT/build}"
MODEL="${MODEL:-$BUILD_DIR/models/random}"
THRESHOLDS="${THRESHOLDS:-0 256}"
DECODE_STREAMS="${DECODE_STREAMS:-8}"
LONG_STREAMS="${LONG_STREAMS:-2}"
LONG_INPUT="${LONG_INPUT:-1800}"
PORT="${PORT:-50093}"
OUT_DIR="${OUT_DIR:-$BUILD_DIR/bench-long-prefill}"
mkdir -p "$OUT_DIR"
target="127.0.0.1:$PORT"

for threshold in $THRESHOLDS; do
  "$BUILD_DIR/bin/iquest-serve" --model "$MODEL" --host 127.0.0.1 --port "$PORT" \
    --health-port -1 --metrics-port -1 --http-port -1 --log-level warning \
    --long-prefill-token-threshold "$threshold" &
  server=$!
  for _ in $(seq 1 600); do
    "$BUILD_DIR/bin/iquest-cli" info --target "$target" > /dev/null 2>&1 && break
    sleep 0.1
  done
  # The long prompts keep coming for LONG_SECONDS, longer than the measured decodes take.
  "$BUILD_DIR/bin/iquest-bench" --target "$target" --concurrency "$LONG_STREAMS" \
    --num-requests 100000 --input-len "$LONG_INPUT" --output-len 1 --max-duration-s "${LONG_SECONDS:-60}" \
    --seed 2 --json-out "$OUT_DIR/long-t$threshold.json" > /dev/null 2>&1 &
  long=$!
  sleep 1
  "$BUILD_DIR/bin/iquest-bench" --target "$target" --concurrency "$DECODE_STREAMS" \
    --num-requests $((DECODE_STREAMS * 2)) --input-len 32 --output-len 128 --seed 1 \
    --json-out "$OUT_DIR/decode-t$threshold.json" > /dev/null
  wait "$long" || true
  kill "$server"
  wait "$server" 2> /dev/null || true
  /usr/bin/python3 - "$OUT_DIR/decode-t$threshold.json" "$OUT_DIR/long-t$threshold.json" \
    "$threshold" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
itl, tpot = r["itl_ms"], r["tpot_ms"]
long = json.load(open(sys.argv[2]))
long_text = (f"long prompts: {long['num_completed']} done, TTFT p50 "
             f"{long['ttft_ms']['p50']:.0f} ms")
print(f"threshold {sys.argv[3]:>5}: decode ITL p50 {itl['p50']:.1f} ms  p99 {itl['p99']:.1f} ms;"
      f"  TPOT mean {tpot['mean']:.1f} ms;  {r['num_completed']} ok, {r['num_failed']} failed;"
      f"  {long_text}")
PY
done
