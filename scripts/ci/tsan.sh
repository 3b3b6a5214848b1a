#!/usr/bin/env bash
# CI ThreadSanitizer job: the engine, server and client tests built (GCC) under TSan and run.
# These are the tests with threads of our own: the engine thread and its inbox, the stream pump,
# the reactors' callbacks, the load generator's channels. Any report fails the job.
# (Debian's gRPC is not instrumented; its internal synchronisation is invisible to TSan, which is
# why the suppressions file names gRPC's own frames and nothing of ours.)
# JUnit reports at $JUNIT_DIR/junit-tsan-*.xml.
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD_DIR="${BUILD_DIR:-build-tsan}"
JUNIT_DIR="${JUNIT_DIR:-$PWD}"
SAN_FLAGS="-fsanitize=thread -fno-omit-frame-pointer"
TESTS=(engine_test server_test tools_test scheduler_test)

bash scripts/install-deps.sh
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DIQUEST_CUDA=OFF \
  -DCMAKE_CXX_FLAGS="$SAN_FLAGS" -DCMAKE_C_FLAGS="$SAN_FLAGS" \
  -DCMAKE_EXE_LINKER_FLAGS="$SAN_FLAGS" -DCMAKE_SHARED_LINKER_FLAGS="$SAN_FLAGS" > /dev/null
cmake --build "$BUILD_DIR" -j "$(nproc)" --target "${TESTS[@]}"
export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:suppressions=$PWD/scripts/ci/tsan.supp"
status=0
for test in "${TESTS[@]}"; do
  echo "== $test"
  "$BUILD_DIR/tests/$test" --gtest_output="xml:$JUNIT_DIR/junit-tsan-$test.xml" || status=1
done
exit "$status"
