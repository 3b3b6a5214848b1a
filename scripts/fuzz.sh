#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz) with clang-14 under AddressSanitizer and
# UndefinedBehaviorSanitizer in $FUZZ_BUILD_DIR, writes their seed corpora, and runs each for
# FUZZ_SECONDS. The corpus of each fuzzer persists in $FUZZ_BUILD_DIR/fuzz/corpus/NAME, so later
# runs start where earlier ones stopped; a crash, leak or timeout is written to
# $FUZZ_BUILD_DIR/fuzz/artifacts/ and fails the run.
#   FUZZ_SECONDS=600 FUZZERS="gguf_fuzz safetensors_fuzz" JOBS=2 scripts/fuzz.sh
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZ_BUILD_DIR="${FUZZ_BUILD_DIR:-build-fuzz}"
FUZZ_SECONDS="${FUZZ_SECONDS:-60}"
FUZZERS="${FUZZERS:-safetensors_fuzz gguf_fuzz tokenizer_json_fuzz tokenizer_config_fuzz generate_request_fuzz openai_request_fuzz jinja_fuzz grammar_fuzz}"
JOBS="${JOBS:-1}"  # Fuzzers run at once (each on one core).
SAN="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"

cmake -S . -B "$FUZZ_BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_COMPILER=clang-14 -DCMAKE_CXX_COMPILER=clang++-14 \
  -DCMAKE_C_FLAGS="$SAN" -DCMAKE_CXX_FLAGS="$SAN" \
  -DIQUEST_FUZZ=ON -DIQUEST_BUILD_TESTS=OFF -DIQUEST_CUDA=OFF > /dev/null
cmake --build "$FUZZ_BUILD_DIR" --target fuzzers -j "$(nproc)"
out="$FUZZ_BUILD_DIR/fuzz"
"$out/iquest-fuzz-seeds" "$out/seeds"
# The Jinja fuzzer starts from the chat templates the tests render.
mkdir -p "$out/seeds/jinja_fuzz"
cp tests/model/tokenizer/templates/*.jinja "$out/seeds/jinja_fuzz/"
# The grammar fuzzer: a kind byte (0 JSON schema, 1 regex, 2 GBNF), then the constraint's text.
mkdir -p "$out/seeds/grammar_fuzz"
printf '\x00{"type":"object","properties":{"a":{"type":"integer","minimum":-5}},"required":["a"]}' \
  > "$out/seeds/grammar_fuzz/schema"
printf '\x01[a-z]{2,5}(\\.[0-9]+)?|x*y' > "$out/seeds/grammar_fuzz/regex"
printf '\x02root ::= "(" root ")" | [^()]{1,3}' > "$out/seeds/grammar_fuzz/gbnf"
mkdir -p "$out/artifacts"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"

run() {
  local name="$1"
  mkdir -p "$out/corpus/$name"
  # -rss_limit_mb: a parser that allocates what a header claims would be found here.
  "$out/$name" "$out/corpus/$name" "$out/seeds/$name" -max_total_time="$FUZZ_SECONDS" \
    -rss_limit_mb=2048 -timeout=10 -max_len=65536 -print_final_stats=1 \
    -artifact_prefix="$out/artifacts/$name-" > "$out/$name.log" 2>&1
}

status=0
running=0
for name in $FUZZERS; do
  run "$name" &
  running=$((running + 1))
  if [ "$running" -ge "$JOBS" ]; then
    wait -n || status=1
    running=$((running - 1))
  fi
done
while [ "$running" -gt 0 ]; do
  wait -n || status=1
  running=$((running - 1))
done
for name in $FUZZERS; do
  found="$(ls "$out/artifacts" | grep -c "^$name-" || true)"
  printf '%-24s %s  corpus %s files  %s\n' "$name" \
    "$(grep -E '^stat::number_of_executed_units' "$out/$name.log" | tail -1)" \
    "$(ls "$out/corpus/$name" | wc -l)" \
    "$([ "$found" -eq 0 ] && echo clean || echo "FINDINGS: $found in $out/artifacts")"
done
exit "$status"
