#!/usr/bin/env bash
# CI build: the same configure + build as `make build` (Release, Ninja, into $BUILD_DIR). The
# Dockerfiles run this script too, so the images hold exactly what the test jobs test.
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD_DIR="${BUILD_DIR:-build}"
BUILD_TYPE="${BUILD_TYPE:-Release}"

bash scripts/install-deps.sh
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE="$BUILD_TYPE"
cmake --build "$BUILD_DIR" -j "$(nproc)"
