#!/usr/bin/env bash
# The soak (issue 22): 30 minutes of mixed load on a real iquest-serve over loopback; samples
# RSS, live heap, threads and fds every 10 s into $OUT/soak.csv and $OUT/soak.png, and passes
# when they stay flat after warm-up and a golden request is unchanged. Not part of `make test`.
#   MINUTES=30 OUT=build/soak scripts/soak.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export IQUEST_BUILD_DIR="${BUILD_DIR:-$ROOT/build}"
exec /usr/bin/python3 "$ROOT/scripts/soak.py" --minutes "${MINUTES:-30}" \
  --out "${OUT:-$IQUEST_BUILD_DIR/soak}" "$@"
