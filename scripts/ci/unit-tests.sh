#!/usr/bin/env bash
# CI unit tests: every ctest test but the `gpu` label over an existing build, with a JUnit report
# at $JUNIT_XML (absolute: ctest resolves a relative --output-junit against the build folder).
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD_DIR="${BUILD_DIR:-build}"
JUNIT_XML="${JUNIT_XML:-$PWD/junit.xml}"

bash scripts/install-deps.sh
ctest --test-dir "$BUILD_DIR" -LE gpu --output-on-failure -j "$(nproc)" --timeout 900 \
  --output-junit "$JUNIT_XML"
