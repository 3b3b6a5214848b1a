#!/bin/sh
# CI image build: deploy/docker/Dockerfile.FLAVOR (cpu or cuda) with BuildKit, cached in the
# registry ($CI_REGISTRY_IMAGE/cache:FLAVOR, mode=max so the build stage's layers are cached too),
# pushed as $CI_REGISTRY_IMAGE:$CI_COMMIT_SHA-FLAVOR. The package job later promotes that exact
# image; nothing is rebuilt after the tests.
# POSIX sh: it runs in the docker:cli image (busybox, no bash), with a docker:dind service.
# The registry password goes through stdin only; this script never runs with xtrace.
set -eu
cd "$(dirname "$0")/../.."
FLAVOR="${1:?usage: docker-build.sh cpu|cuda}"
case "$FLAVOR" in cpu | cuda) ;; *) echo "docker-build: unknown flavor $FLAVOR" >&2; exit 2 ;; esac
IMAGE="$CI_REGISTRY_IMAGE:$CI_COMMIT_SHA-$FLAVOR"
CACHE="$CI_REGISTRY_IMAGE/cache:$FLAVOR"

printf '%s' "$CI_REGISTRY_PASSWORD" | docker login -u "$CI_REGISTRY_USER" --password-stdin \
  "$CI_REGISTRY"
# Docker >= 27's default builder stores registry caches only with the containerd image store;
# a docker-container builder always can.
docker buildx create --name iquest --driver docker-container --use > /dev/null 2>&1 \
  || docker buildx use iquest
docker buildx build -f "deploy/docker/Dockerfile.$FLAVOR" \
  --cache-from "type=registry,ref=$CACHE" --cache-to "type=registry,ref=$CACHE,mode=max" \
  --label "org.opencontainers.image.revision=$CI_COMMIT_SHA" \
  --label "org.opencontainers.image.source=$CI_PROJECT_URL" \
  --push -t "$IMAGE" .
echo "docker-build: pushed $IMAGE"
