#!/usr/bin/env bash
# CI build: the same configure + build as `make build` (Release, Ninja, into $BUILD_DIR). The
# Dockerfiles run this script too, so the images hold exactly what the test jobs test.
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD_DIR="${BUILD_DIR:-build}"
BUILD_TYPE="${BUILD_TYPE:-Release}"

bash scripts/install-deps.sh
# A build-only machine (the Docker build stages) has no test peers (Node, spm_train's corpus
# tools, Prometheus), so it builds no tests either.
TESTS=ON
if [ "${IQUEST_DEPS_BUILD_ONLY:-0}" = 1 ]; then TESTS=OFF; fi
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE="$BUILD_TYPE" -DIQUEST_BUILD_TESTS="$TESTS"
cmake --build "$BUILD_DIR" -j "$(nproc)"
