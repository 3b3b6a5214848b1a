#!/usr/bin/env bash
# Builds, on a development machine, the `gpu` gtest binaries and the CUDA engine benchmark, and
# lays them out in gpu-bundle/ (git-ignored) with every shared library they need except glibc
# and the NVIDIA driver: the GPU machine has no abseil, protobuf or gtest to build them with.
# scripts/gpu-check.sh runs what it finds there. The device tool carries the folder:
#   scripts/gpu-bundle.sh && (device run, carry: gpu-bundle) scripts/gpu-check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR="${BUILD_DIR:-build}"
cmake --build "$BUILD_DIR" -j "$(nproc)" --target cuda_backend_test iquest-bench-engine
rm -rf gpu-bundle
mkdir -p gpu-bundle/tests gpu-bundle/bin gpu-bundle/lib
cp "$BUILD_DIR/tests/cuda_backend_test" gpu-bundle/tests/
cp "$BUILD_DIR/bin/iquest-bench-engine" gpu-bundle/bin/
SKIP='^(linux-vdso|ld-linux|libc|libm|libmvec|libdl|libpthread|librt|libresolv|libutil|libgcc_s|libcuda|libnvidia-)[.-]'
for file in gpu-bundle/tests/* gpu-bundle/bin/*; do
  ldd "$file" | awk '$2 == "=>" && $3 ~ /^\// {print $3}'
done | sort -u | while read -r lib; do
  if ! basename "$lib" | grep -Eq "$SKIP"; then cp -L "$lib" gpu-bundle/lib/; fi
done
echo "gpu-bundle: $(du -sh gpu-bundle | cut -f1) in gpu-bundle/ ($(ls gpu-bundle/lib | wc -l) libraries)"
