#!/usr/bin/env bash
# CI sanitizer job: the whole project and its tests built (GCC) under AddressSanitizer and
# UndefinedBehaviorSanitizer (any report aborts the test), then the CPU tests. The e2e tests are
# left out: they time real servers, which ASan slows several-fold. (Under ASan the SentencePiece
# shim is loaded without RTLD_DEEPBIND, which the sanitizer runtime refuses, google/sanitizers#611;
# the CPU tests that load it link no gRPC, so there is no second protobuf to keep apart.) The
# CUDA backend is left out: no `cpu` test runs it, and nvcc would double the build.
# JUnit report at $JUNIT_XML.
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD_DIR="${BUILD_DIR:-build-asan}"
JUNIT_XML="${JUNIT_XML:-$PWD/junit-asan.xml}"
SAN_FLAGS="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"

bash scripts/install-deps.sh
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DIQUEST_CUDA=OFF \
  -DCMAKE_CXX_FLAGS="$SAN_FLAGS" \
  -DCMAKE_EXE_LINKER_FLAGS="$SAN_FLAGS" -DCMAKE_SHARED_LINKER_FLAGS="$SAN_FLAGS" \
  -DCMAKE_MODULE_LINKER_FLAGS="$SAN_FLAGS"
cmake --build "$BUILD_DIR" -j "$(nproc)"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:strict_string_checks=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
ctest --test-dir "$BUILD_DIR" -L cpu --output-on-failure -j "$(nproc)" \
  --timeout 1800 --output-junit "$JUNIT_XML"
