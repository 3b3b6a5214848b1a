#!/usr/bin/env bash
# The GPU check (DESIGN.md section 13; `make gpu-check`), for a bare GPU machine that has the
# CUDA toolkit but no gRPC, protobuf, abseil or gtest:
#   1. builds iquest-gpu-check with nvcc alone: the CUDA kernels (kernels/cuda/*.cu), their
#      float64 / cuBLAS references and benchmarks (tools/gpu_check), for this device's arch;
#   2. when gpu-bundle/ is present (scripts/gpu-bundle.sh builds it on a development machine and
#      the device tool carries it), runs its `gpu` gtest binaries: CudaBackend against the CPU
#      reference through the Backend interface, and greedy parity on tiny models;
#   3. runs the engine benchmark of the bundle (8B- and 40B-shaped random models);
#   4. runs iquest-gpu-check section by section, each under its own time limit; their tables
#      (op, shape, ours, reference, ratio, max relative error) come last, then the gtest line.
# Usage: scripts/gpu-check.sh [--quick] [--only=gemm,elementwise,attention,sampling]
# Exit status: 0 all passed; 1 a row or a test failed; 77 no CUDA device.
set -uo pipefail
cd "$(dirname "$0")/.."
NVCC="${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}"
BUILD="${GPU_BUILD_DIR:-build-gpu}"
LOG_DIR="${OUT:-$BUILD}"
mkdir -p "$BUILD/obj" "$LOG_DIR"

# This device's architecture: sm_90a on Hopper (wgmma, TMA), else its own sm_XY.
cap="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d ' .')"
case "$cap" in
  90) GENCODE="-gencode=arch=compute_90a,code=sm_90a" ;;
  "") GENCODE="-gencode=arch=compute_80,code=sm_80 -gencode=arch=compute_90a,code=sm_90a" ;;
  *) GENCODE="-gencode=arch=compute_${cap},code=sm_${cap}" ;;
esac
echo "gpu-check: nvcc $("$NVCC" --version | tail -1), $GENCODE" >&2

# 1. Build: every translation unit in parallel, then one link.
FLAGS=(-std=c++20 -O3 -I. $GENCODE --Werror all-warnings -Xptxas -v)
SOURCES=(kernels/cuda/activation.cu kernels/cuda/argmax.cu kernels/cuda/attention.cu
         kernels/cuda/attention_mma.cu
         kernels/cuda/attention_partitions.cu kernels/cuda/attention_simt.cu
         kernels/cuda/embed.cu kernels/cuda/gemm.cu kernels/cuda/gemm_sm90.cu
         kernels/cuda/gemm_sm90_plan.cc kernels/cuda/gemm_simt.cu
         kernels/cuda/kv_write.cu kernels/cuda/rms_norm.cu kernels/cuda/sampling.cu
         tools/gpu_check/main.cu tools/gpu_check/harness.cu tools/gpu_check/check_attention.cu
         tools/gpu_check/check_elementwise.cu tools/gpu_check/check_gemm.cu
         tools/gpu_check/check_sampling.cu
         kernels/cpu/sampling_reference.cc common/dtype.cc common/check.cc)
start=$(date +%s)
compile() {
  local obj="$BUILD/obj/$(echo "$1" | tr / _).o"
  "$NVCC" -x cu "${FLAGS[@]}" -c "$1" -o "$obj" >"${obj%.o}.log" 2>&1 \
    || { cat "${obj%.o}.log" >&2; return 1; }
}
pids=()
for src in "${SOURCES[@]}"; do compile "$src" & pids+=($!); done
build_failed=0
for pid in "${pids[@]}"; do wait "$pid" || build_failed=1; done
if [ "$build_failed" -ne 0 ]; then echo "gpu-check: build failed" >&2; exit 1; fi
"$NVCC" $GENCODE -o "$BUILD/iquest-gpu-check" "$BUILD"/obj/*.o -lcublas \
  || { echo "gpu-check: link failed" >&2; exit 1; }
cat "$BUILD"/obj/*.log > "$LOG_DIR/ptxas.log"
echo "gpu-check: built in $(( $(date +%s) - start )) s; ptxas report in $LOG_DIR/ptxas.log" >&2
if grep -Eq "[1-9][0-9]* bytes spill (stores|loads)" "$LOG_DIR/ptxas.log"; then
  echo "gpu-check: WARNING: a kernel spills registers (see ptxas.log)" >&2
fi

# 2. The gtest `gpu` binaries carried in gpu-bundle/ (built on a development machine).
gtest_summary="gtest gpu tests: not run (no gpu-bundle/; scripts/gpu-bundle.sh makes one)"
gtest_failed=0
if [ -d gpu-bundle/tests ]; then
  passed=0; failed=0
  for test in gpu-bundle/tests/*; do
    log="$LOG_DIR/$(basename "$test").log"
    if LD_LIBRARY_PATH="$PWD/gpu-bundle/lib" timeout 300 "$test" --gtest_brief=1 >"$log" 2>&1; then
      passed=$((passed + 1))
    else
      failed=$((failed + 1)); gtest_failed=1
      tail -40 "$log" >&2
    fi
  done
  gtest_summary="gtest gpu tests: $passed binaries passed, $failed failed (logs in $LOG_DIR)"
fi

# 3. The engine benchmark of the bundle on 8B- and 40B-shaped random models (weights made on the
#    GPU: too big to carry), batch 1/8/64/256 decode and a 2048-token prefill.
bench_summary=()
if [ -x gpu-bundle/bin/iquest-bench-engine ]; then
  for shape in llama3-8b iquest-40b; do
    log="$LOG_DIR/bench-$shape.txt"
    LD_LIBRARY_PATH="$PWD/gpu-bundle/lib" timeout 240 gpu-bundle/bin/iquest-bench-engine \
      --device=cuda --shape="$shape" --batches=1,8,64,256 --decode-tokens=64 \
      --prefill-tokens=2048 --repeats=1 --overhead-requests=0 >"$log" 2>&1 \
      || { gtest_failed=1; tail -20 "$log" >&2; }
    bench_summary+=("$shape: $(grep -E '^(prefill|1 |8 |64 |256 |weights)' "$log" | tr '\n' ';')")
  done
fi

# 4. The kernels' check and benchmarks, one process per section with its own time limit, so that
#    a kernel that hangs (a lost mbarrier phase, say) costs its section, not the whole check. The
#    sections' tables come last.
only=""
args=()
for arg in "$@"; do
  case "$arg" in --only=*) only="${arg#--only=}" ;; *) args+=("$arg") ;; esac
done
status=0
for section in elementwise gemm attention sampling; do
  case ",${only:-$section}," in *",$section,"*) ;; *) continue ;; esac
  timeout 200 "$BUILD/iquest-gpu-check" --only="$section" "${args[@]}" \
    >"$LOG_DIR/table-$section.txt" 2>"$LOG_DIR/gpu-check-$section.log"
  rc=$?
  if [ "$rc" -eq 124 ]; then
    echo "gpu-check: section $section timed out after 200 s; its last lines:" >&2
    tail -3 "$LOG_DIR/gpu-check-$section.log" >&2
  fi
  if [ "$rc" -eq 77 ]; then status=77; break; fi
  if [ "$rc" -ne 0 ]; then status=1; fi
done
cat "$LOG_DIR"/gpu-check-*.log > "$LOG_DIR/gpu-check.log" 2>/dev/null
copy_gbs="$(grep -o 'copy bandwidth [0-9]*' "$LOG_DIR/gpu-check.log" | head -1 | grep -o '[0-9]*$')"
for line in "${bench_summary[@]}"; do
  echo "engine $line"
  # Batch-1 decode against the weight-bandwidth bound (target >= 0.85 of the copy bandwidth).
  gbs="$(echo "$line" | grep -o 'at [0-9.]* GB/s' | grep -o '[0-9.]*')"
  if [ -n "$gbs" ] && [ -n "$copy_gbs" ]; then
    echo "  batch-1 decode reads weights at $gbs GB/s = $(awk "BEGIN {printf \"%.2f\", $gbs / $copy_gbs}") of the copy bandwidth ($copy_gbs GB/s; target 0.85)"
  fi
done
for section in elementwise gemm attention sampling; do
  [ -s "$LOG_DIR/table-$section.txt" ] && cat "$LOG_DIR/table-$section.txt"
done
echo "$gtest_summary"
if [ "$status" -eq 0 ] && [ "$gtest_failed" -ne 0 ]; then status=1; fi
exit "$status"
