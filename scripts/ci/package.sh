#!/bin/sh
# CI package: after the tests and the eval gate pass, gives the images built for this commit
# their release names by registry-side retagging, so the digest that was tested is the one that
# ships: $CI_COMMIT_SHA-FLAVOR -> $CI_COMMIT_REF_SLUG-FLAVOR (and $CI_COMMIT_TAG-FLAVOR on tags).
# POSIX sh: it runs in the docker:cli image (busybox, no bash).
set -eu
cd "$(dirname "$0")/../.."

printf '%s' "$CI_REGISTRY_PASSWORD" | docker login -u "$CI_REGISTRY_USER" --password-stdin \
  "$CI_REGISTRY"
for flavor in cpu cuda; do
  source_image="$CI_REGISTRY_IMAGE:$CI_COMMIT_SHA-$flavor"
  set -- -t "$CI_REGISTRY_IMAGE:$CI_COMMIT_REF_SLUG-$flavor"
  if [ -n "${CI_COMMIT_TAG:-}" ]; then
    set -- "$@" -t "$CI_REGISTRY_IMAGE:$CI_COMMIT_TAG-$flavor"
  fi
  docker buildx imagetools create "$@" "$source_image"
  echo "package: $source_image -> $*"
done
