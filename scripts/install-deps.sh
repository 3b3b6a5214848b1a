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
  # Test peers: the NumPy reference of the forward pass; a Python gRPC client.
  python3 python3-numpy python3-grpcio python3-protobuf
  # A real Prometheus (and promtool) for the metrics, rules and dashboard tests.
  prometheus
)

missing=()
for pkg in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
echo "install-deps: installing ${missing[*]}"
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
