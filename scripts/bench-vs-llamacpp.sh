#!/usr/bin/env bash
# Side-by-side CPU figures: iquest-serve's engine against a llama.cpp build that you give it.
#
#   LLAMA_BENCH=/path/to/llama-bench LLAMA_SERVER=/path/to/llama-server \
#     scripts/bench-vs-llamacpp.sh
#
# llama.cpp is an outside program: this project never builds, vendors or copies it; the script
# only runs the binaries named by LLAMA_BENCH and LLAMA_SERVER.
#
# 1. Generates a Llama-3.2-1B-shaped model with seeded random weights (hidden 2048, 16 layers,
#    32 heads, 8 KV heads, intermediate 8192, vocab 128256, tied embeddings, bf16) with
#    iquest-make-tiny-model, plus the demo SentencePiece tokenizer, and converts it to GGUF with
#    iquest-convert-hf-to-gguf: the same weights in both formats (cached between runs).
# 2. Prefill and batch-1 decode: llama-bench pp512 / tg128 against iquest-bench-engine, both on
#    $THREADS threads; our batched decode at 32 sequences against our batch 1.
# 3. Serving: iquest-bench at concurrency 16 against iquest-serve, then
#    scripts/llama_server_load.py with the same prompts against llama-server -np 16
#    (continuous batching); never both at once. Output tokens/s.
# 4. One table: ours, llama.cpp, the ratio, each figure as a fraction of this machine's bound
#    (decode: weight bytes per token / $BW_GBS GB/s; prefill: FLOPs per token / $PEAK_GFLOPS
#    GFLOP/s; see docs/performance.md), and the target.
#
# Expected interface of iquest-bench-engine (its --json output on stdout):
#   iquest-bench-engine --model DIR --threads N --prefill-tokens 512 --decode-tokens 128 \
#     --batches 1,8,16,32 --repeats 3 --json
#   {"prefill_tok_s": {"min": .., "median": .., "max": ..},
#    "decode": [{"batch": 1, "tok_s": {"min": .., "median": .., "max": ..}}, ...]}
# ("prefill": {"tok_s": ..} and tokens_per_s are accepted too, and a bare number for the
# min/median/max object.)
#
# Environment (defaults in brackets): THREADS [2], BUILD_DIR [build], BENCH_DIR
# [$BUILD_DIR/bench-vs-llamacpp], BENCH_HIDDEN [2048], BENCH_LAYERS [16], BENCH_HEADS [32],
# BENCH_KV_HEADS [8], BENCH_INTERMEDIATE [8192], BENCH_VOCAB [128256], BENCH_DTYPE [bf16],
# PREFILL_TOKENS [512], DECODE_TOKENS [128], REPEATS [3], SERVE_CONCURRENCY [16],
# SERVE_REQUESTS [32], SERVE_WARMUP [2], SERVE_PROMPT_WORDS [80], SERVE_OUTPUT_LEN [128],
# BW_GBS [55.3], PEAK_GFLOPS [845], SKIP_SERVING [0], SKIP_ENGINE [0], SKIP_LLAMA_BENCH [0].
# A small smoke run: BENCH_HIDDEN=256 BENCH_LAYERS=2 BENCH_HEADS=8 BENCH_KV_HEADS=2
# BENCH_INTERMEDIATE=512 BENCH_VOCAB=8192 PREFILL_TOKENS=64 DECODE_TOKENS=16 REPEATS=1 ...
set -euo pipefail

die() {
  echo "error: $*" >&2
  exit 2
}

[[ -n "${LLAMA_BENCH:-}" ]] || die "set LLAMA_BENCH to llama.cpp's llama-bench binary"
[[ -n "${LLAMA_SERVER:-}" ]] || die "set LLAMA_SERVER to llama.cpp's llama-server binary"
[[ -x "$LLAMA_BENCH" ]] || die "LLAMA_BENCH=$LLAMA_BENCH is not an executable file"
[[ -x "$LLAMA_SERVER" ]] || die "LLAMA_SERVER=$LLAMA_SERVER is not an executable file"

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=/usr/bin/python3
THREADS=${THREADS:-2}
BUILD_DIR=$(cd "${BUILD_DIR:-$ROOT/build}" && pwd)
BIN=$BUILD_DIR/bin
BENCH_DIR=${BENCH_DIR:-$BUILD_DIR/bench-vs-llamacpp}
HIDDEN=${BENCH_HIDDEN:-2048}
LAYERS=${BENCH_LAYERS:-16}
HEADS=${BENCH_HEADS:-32}
KV_HEADS=${BENCH_KV_HEADS:-8}
INTERMEDIATE=${BENCH_INTERMEDIATE:-8192}
VOCAB=${BENCH_VOCAB:-128256}
DTYPE=${BENCH_DTYPE:-bf16}
PREFILL_TOKENS=${PREFILL_TOKENS:-512}
DECODE_TOKENS=${DECODE_TOKENS:-128}
REPEATS=${REPEATS:-3}
SERVE_CONCURRENCY=${SERVE_CONCURRENCY:-16}
SERVE_REQUESTS=${SERVE_REQUESTS:-32}
SERVE_WARMUP=${SERVE_WARMUP:-2}
SERVE_PROMPT_WORDS=${SERVE_PROMPT_WORDS:-80}
SERVE_OUTPUT_LEN=${SERVE_OUTPUT_LEN:-128}
BW_GBS=${BW_GBS:-55.3}
PEAK_GFLOPS=${PEAK_GFLOPS:-845}
CONTEXT=2048  # Per sequence, for both servers.

for tool in iquest-make-tiny-model iquest-convert-hf-to-gguf iquest-bench-engine iquest-serve \
  iquest-bench iquest-cli; do
  [[ -x "$BIN/$tool" ]] || die "$BIN/$tool is missing; build the project first (make build)"
done
DEMO_TOKENIZER=$BUILD_DIR/models/random/tokenizer.model
[[ -f "$DEMO_TOKENIZER" ]] || die "$DEMO_TOKENIZER is missing; build the project first"

mkdir -p "$BENCH_DIR"
RESULTS=$BENCH_DIR/results
mkdir -p "$RESULTS"
rm -f "$RESULTS"/*

# Servers started here are stopped on any exit.
SERVER_PID=""
stop_server() {
  if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 100); do
      kill -0 "$SERVER_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  SERVER_PID=""
}
trap stop_server EXIT
trap 'exit 130' INT TERM

free_port() {
  $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

log() { echo "== $*" >&2; }

# --- 1. The model, in both formats ------------------------------------------------------------
SHAPE="h${HIDDEN}_l${LAYERS}_a${HEADS}_kv${KV_HEADS}_i${INTERMEDIATE}_v${VOCAB}_${DTYPE}"
HF_DIR=$BENCH_DIR/model-$SHAPE
GGUF_DIR=$BENCH_DIR/model-$SHAPE-gguf
GGUF=$GGUF_DIR/model.gguf
if [[ ! -f "$HF_DIR/.complete" ]]; then
  log "generating $SHAPE (seeded random weights) in $HF_DIR"
  rm -rf "$HF_DIR" "$GGUF_DIR"
  "$BIN/iquest-make-tiny-model" --out "$HF_DIR" --arch llama --hidden "$HIDDEN" \
    --layers "$LAYERS" --heads "$HEADS" --kv-heads "$KV_HEADS" --intermediate "$INTERMEDIATE" \
    --vocab "$VOCAB" --dtype "$DTYPE" --tie-embeddings --max-position "$CONTEXT" \
    --rope-theta 500000 --seed 1
  cp "$DEMO_TOKENIZER" "$HF_DIR/tokenizer.model"
  touch "$HF_DIR/.complete"
fi
if [[ ! -f "$GGUF_DIR/.complete" ]]; then
  log "converting to GGUF: $GGUF"
  mkdir -p "$GGUF_DIR"
  "$BIN/iquest-convert-hf-to-gguf" --model "$HF_DIR" --out "$GGUF" --dtype keep
  cp "$DEMO_TOKENIZER" "$GGUF_DIR/tokenizer.model"
  touch "$GGUF_DIR/.complete"
fi

# --- 2. Prefill and batch-1 decode ------------------------------------------------------------
if [[ "${SKIP_LLAMA_BENCH:-0}" != 1 ]]; then
  log "llama-bench pp$PREFILL_TOKENS tg$DECODE_TOKENS, $THREADS threads, $REPEATS repetitions"
  "$LLAMA_BENCH" -m "$GGUF" -t "$THREADS" -p "$PREFILL_TOKENS" -n "$DECODE_TOKENS" \
    -r "$REPEATS" -o json >"$RESULTS/llama_bench.json" 2>"$RESULTS/llama_bench.log" ||
    die "llama-bench failed; see $RESULTS/llama_bench.log"
fi

if [[ "${SKIP_ENGINE:-0}" != 1 ]]; then
  if "$BIN/iquest-bench-engine" --help 2>&1 | grep -q -- '--prefill-tokens'; then
    log "iquest-bench-engine prefill $PREFILL_TOKENS, decode $DECODE_TOKENS at batches 1,8,16,32"
    NO_OVERHEAD=()  # The step-overhead figure is not part of this comparison.
    if "$BIN/iquest-bench-engine" --help 2>&1 | grep -q -- '--overhead-requests'; then
      NO_OVERHEAD=(--overhead-requests 0)
    fi
    "$BIN/iquest-bench-engine" --model "$HF_DIR" --threads "$THREADS" \
      --prefill-tokens "$PREFILL_TOKENS" --decode-tokens "$DECODE_TOKENS" --batches 1,8,16,32 \
      --repeats "$REPEATS" --json "${NO_OVERHEAD[@]}" >"$RESULTS/engine.json" \
      2>"$RESULTS/engine.log" ||
      die "iquest-bench-engine failed; see $RESULTS/engine.log"
  else
    log "iquest-bench-engine has no --prefill-tokens yet: engine rows skipped"
  fi
fi

# --- 3. Serving, one server at a time ----------------------------------------------------------
PROMPTS=$RESULTS/prompts.txt
$PY - "$PROMPTS" "$SERVE_PROMPT_WORDS" <<'EOF'
import random, sys
words = ("def return self value index count buffer tensor block token request batch step "
         "cache layer weight shape offset status error result stream engine kernel thread "
         "queue prompt model config size start end list map key name file path data").split()
rng = random.Random(7)
with open(sys.argv[1], "w") as f:
    for _ in range(64):
        f.write(" ".join(rng.choice(words) for _ in range(int(sys.argv[2]))) + "\n")
EOF

if [[ "${SKIP_SERVING:-0}" != 1 ]]; then
  PORT=$(free_port)
  THREAD_FLAG=()
  if "$BIN/iquest-serve" --help 2>&1 | grep -q -- '--threads'; then
    THREAD_FLAG=(--threads "$THREADS")
  else
    log "iquest-serve has no --threads flag yet: it runs with its default"
  fi
  log "iquest-serve on 127.0.0.1:$PORT; iquest-bench at concurrency $SERVE_CONCURRENCY"
  "$BIN/iquest-serve" --model "$HF_DIR" --host 127.0.0.1 --port "$PORT" --metrics-port -1 --http-port -1 \
    --max-num-seqs "$SERVE_CONCURRENCY" --max-model-len "$CONTEXT" --kv-cache-mb 2048 \
    "${THREAD_FLAG[@]}" >"$RESULTS/iquest_serve.log" 2>&1 &
  SERVER_PID=$!
  ready=0
  for _ in $(seq 1 600); do
    kill -0 "$SERVER_PID" 2>/dev/null || die "iquest-serve exited; see $RESULTS/iquest_serve.log"
    if "$BIN/iquest-cli" health --target "127.0.0.1:$PORT" \
      --service iquest.serve.v1.Generation >/dev/null 2>&1; then
      ready=1
      break
    fi
    sleep 0.5
  done
  [[ $ready == 1 ]] || die "iquest-serve did not become ready; see $RESULTS/iquest_serve.log"
  "$BIN/iquest-bench" --target "127.0.0.1:$PORT" --concurrency "$SERVE_CONCURRENCY" \
    --num-requests "$SERVE_REQUESTS" --warmup "$SERVE_WARMUP" --prompt-file "$PROMPTS" \
    --output-len "$SERVE_OUTPUT_LEN" --json-out "$RESULTS/iquest_serving.json" \
    >"$RESULTS/iquest_bench.log" 2>&1 || die "iquest-bench failed; see $RESULTS/iquest_bench.log"
  stop_server

  PORT=$(free_port)
  log "llama-server on 127.0.0.1:$PORT (-np $SERVE_CONCURRENCY, continuous batching)"
  "$LLAMA_SERVER" -m "$GGUF" -t "$THREADS" -tb "$THREADS" -np "$SERVE_CONCURRENCY" \
    -c $((SERVE_CONCURRENCY * CONTEXT)) -cb --host 127.0.0.1 --port "$PORT" \
    >"$RESULTS/llama_server.log" 2>&1 &
  SERVER_PID=$!
  $PY "$ROOT/scripts/llama_server_load.py" --port "$PORT" --prompt-file "$PROMPTS" \
    --concurrency "$SERVE_CONCURRENCY" --num-requests "$SERVE_REQUESTS" \
    --warmup "$SERVE_WARMUP" --output-len "$SERVE_OUTPUT_LEN" --wait-ready-s 600 \
    --server-pid "$SERVER_PID" --json-out "$RESULTS/llama_serving.json" \
    >"$RESULTS/llama_load.log" 2>&1 ||
    die "the llama-server run failed; see $RESULTS/llama_load.log and llama_server.log"
  log "stopping llama-server (this build may abort on SIGTERM: its own shutdown, after the run)"
  stop_server
fi

# --- 4. The table ------------------------------------------------------------------------------
$PY - "$RESULTS" <<EOF
import json, os, sys
results = sys.argv[1]
H, L, A, KV, I, V = $HIDDEN, $LAYERS, $HEADS, $KV_HEADS, $INTERMEDIATE, $VOCAB
BYTES = {"bf16": 2, "f16": 2, "f32": 4}["$DTYPE"]
BW, PEAK, P, THREADS = $BW_GBS * 1e9, $PEAK_GFLOPS * 1e9, $PREFILL_TOKENS, $THREADS
CONC = $SERVE_CONCURRENCY

def load(name):
    path = os.path.join(results, name)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        text = f.read()
    return json.loads(text) if text.strip() else None

head_dim = H // A
linear = H * A * head_dim * 2 + H * KV * head_dim * 2 + 3 * H * I  # q, o, k, v, gate/up/down.
params_layer = linear + 2 * H                                      # + the two norms.
decode_bytes = (L * params_layer + V * H) * BYTES                  # Every weight + the LM head.
decode_flops = 2 * (L * linear + V * H)
prefill_flops = 2 * L * linear + 4 * L * A * head_dim * (P + 1) / 2 + 2 * V * H / P

def decode_bound(batch):  # Context ~0 (section 3.3 of the performance notes).
    return min(batch * BW / decode_bytes, PEAK / decode_flops)

def median(entry):
    if entry is None:
        return None
    for key in ("tok_s", "tokens_per_s", "tok_per_s"):
        if key in entry:
            entry = entry[key]
            break
    if isinstance(entry, dict):
        return entry.get("median")
    return entry if isinstance(entry, (int, float)) else None

llama = load("llama_bench.json") or []
pp = next((r["avg_ts"] for r in llama if r.get("n_prompt") == P and r.get("n_gen") == 0), None)
tg = next((r["avg_ts"] for r in llama if r.get("n_gen", 0) > 0 and r.get("n_prompt") == 0), None)

engine = load("engine.json") or {}
our_prefill = median(engine.get("prefill", engine.get("prefill_tok_s")))
decode = {}
entries = engine.get("decode", [])
if isinstance(entries, dict):
    entries = [dict(v, batch=int(k)) if isinstance(v, dict) else {"batch": int(k), "tok_s": v}
               for k, v in entries.items()]
for e in entries:
    decode[int(e["batch"])] = median(e)

ours_serving = (load("iquest_serving.json") or {}).get("output_throughput")
llama_serving = (load("llama_serving.json") or {}).get("output_throughput")

def fmt(x, spec="{:.1f}"):
    return "n/a" if x is None else spec.format(x)

def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b

rows = [
    ("decode b1 (tok/s)", decode.get(1), tg, ratio(decode.get(1), tg),
     ratio(decode.get(1), decode_bound(1)), ratio(tg, decode_bound(1)), ">= 1.2x llama.cpp tg"),
    (f"prefill {P} (tok/s)", our_prefill, pp, ratio(our_prefill, pp),
     ratio(our_prefill, PEAK / prefill_flops), ratio(pp, PEAK / prefill_flops),
     ">= 1.2x llama.cpp pp"),
    # No llama.cpp figure: the ratio is our batch 32 over our batch 1.
    ("decode b32 (ratio: / our b1)", decode.get(32), None, ratio(decode.get(32), decode.get(1)),
     ratio(decode.get(32), decode_bound(32)), None, ">= 8x our b1"),
    (f"serving c{CONC} out tok/s", ours_serving, llama_serving, ratio(ours_serving, llama_serving),
     ratio(ours_serving, decode_bound(CONC)), ratio(llama_serving, decode_bound(CONC)),
     ">= 2x llama-server"),
]
print()
print(f"model: hidden {H}, {L} layers, {A}/{KV} heads, intermediate {I}, vocab {V}, $DTYPE; "
      f"threads {THREADS}")
print(f"bounds: decode b1 {decode_bound(1):.1f} tok/s ({decode_bytes / 1e9:.3f} GB/token at "
      f"$BW_GBS GB/s); prefill {PEAK / prefill_flops:.1f} tok/s ({prefill_flops / 1e9:.3f} "
      f"GFLOP/token at $PEAK_GFLOPS GFLOP/s); decode b{CONC} {decode_bound(CONC):.1f}, "
      f"b32 {decode_bound(32):.1f} tok/s")
header = ("row", "ours", "llama.cpp", "ratio", "ours/bound", "llama/bound", "target")
widths = (28, 10, 10, 8, 11, 12, 22)
line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths))
print(line(header))
print(line(["-" * w for w in widths]))
for name, ours, theirs, r, fo, ft, target in rows:
    print(line((name, fmt(ours), fmt(theirs), fmt(r, "{:.2f}x"), fmt(fo, "{:.0%}"),
                fmt(ft, "{:.0%}"), target)))
if len(decode) > 0:
    print("our decode by batch (median tok/s): " +
          ", ".join(f"b{b} {v:.1f}" for b, v in sorted(decode.items()) if v is not None))
print(f"raw results: {results}")
EOF
