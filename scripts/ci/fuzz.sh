#!/usr/bin/env bash
# CI fuzzing job: every libFuzzer target (tests/fuzz) for FUZZ_SECONDS each, two at a time.
# A crash, leak, timeout or out-of-memory input fails the job; it is kept as an artifact under
# build-fuzz/fuzz/artifacts/ (replay: build-fuzz/fuzz/NAME ARTIFACT).
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/install-deps.sh
FUZZ_SECONDS="${FUZZ_SECONDS:-300}" JOBS="${JOBS:-2}" bash scripts/fuzz.sh
