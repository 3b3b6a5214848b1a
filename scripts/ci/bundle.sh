#!/usr/bin/env bash
# Lays out what the runtime images ship, from a finished build:
#   DEST/bin/iquest-*                 the binaries of build/bin
#   DEST/lib/libiquest_spm_shim.so    dlopened by iquest-serve from <exe dir>/../lib/
#   DEST/lib/*.so*                    every shared library they need (ldd), except glibc's own
#                                     and the GPU driver's, which the runtime base provides
# Copying the resolved libraries (instead of naming runtime packages) lets one script serve the
# Debian and the Ubuntu-based CUDA image, whose package names differ (t64 suffixes); the builder
# and runtime stages share a distribution release, so glibc matches.
# Usage: scripts/ci/bundle.sh BUILD_DIR DEST
set -euo pipefail
BUILD_DIR="${1:?usage: bundle.sh BUILD_DIR DEST}"
DEST="${2:?usage: bundle.sh BUILD_DIR DEST}"
# glibc (the runtime base has the same one) and the NVIDIA driver (mounted by the container
# toolkit at run time; it must match the host's kernel module).
SKIP='^(linux-vdso|ld-linux|libc|libm|libdl|libpthread|librt|libresolv|libutil|libcuda|libnvidia-)'
SKIP="$SKIP[.-]"

mkdir -p "$DEST/bin" "$DEST/lib"
cp "$BUILD_DIR"/bin/iquest-* "$DEST/bin/"
cp "$BUILD_DIR/lib/libiquest_spm_shim.so" "$DEST/lib/"
for file in "$DEST"/bin/* "$DEST/lib/libiquest_spm_shim.so"; do
  # The driver (libcuda) is absent from build machines by design; anything else must resolve.
  unresolved="$(ldd "$file" | grep "not found" | grep -Ev '^\s*(libcuda|libnvidia-)' || true)"
  if [ -n "$unresolved" ]; then
    echo "bundle: $file has unresolved libraries:" >&2
    echo "$unresolved" >&2
    exit 1
  fi
  ldd "$file" | awk '$2 == "=>" && $3 ~ /^\// {print $3}'
done | sort -u | while read -r lib; do
  if ! basename "$lib" | grep -Eq "$SKIP"; then
    cp -L "$lib" "$DEST/lib/"
  fi
done
echo "bundle: $(ls "$DEST/bin" | wc -l) binaries, $(ls "$DEST/lib" | wc -l) libraries in $DEST"
