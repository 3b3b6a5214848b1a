#!/usr/bin/env bash
# CI deploy: renders deploy/k8s/overlays/$DEPLOY_OVERLAY (cpu or gpu) with the image this pipeline
# built and tested ($CI_REGISTRY_IMAGE:$CI_COMMIT_SHA-FLAVOR), applies it to $KUBE_NAMESPACE
# through $KUBE_CONTEXT (the GitLab agent for Kubernetes' context), and waits for the rollout.
# Credentials come from the agent or a masked, protected KUBECONFIG file variable; nothing secret
# is printed, and the script never runs with xtrace.
set -euo pipefail
cd "$(dirname "$0")/../.."
OVERLAY="${DEPLOY_OVERLAY:-cpu}"
case "$OVERLAY" in cpu) FLAVOR=cpu ;; gpu | gpu-model-image) FLAVOR=cuda ;;
  *) echo "deploy: unknown overlay $OVERLAY" >&2; exit 2 ;; esac
: "${KUBE_NAMESPACE:?deploy: set KUBE_NAMESPACE}"
IMAGE="$CI_REGISTRY_IMAGE:$CI_COMMIT_SHA-$FLAVOR"

# A throwaway overlay on top of the chosen one that only pins the image (kustomize resolves
# bases relative to the kustomization, so it lives inside deploy/k8s; .gitignore'd).
release=deploy/k8s/.release
rm -rf "$release" && mkdir -p "$release"
cat > "$release/kustomization.yaml" <<YAML
bases:
  - ../overlays/$OVERLAY
images:
  - name: registry.example.com/iquest/iquest-serve
    newName: ${IMAGE%:*}
    newTag: ${IMAGE##*:}
YAML
kubectl kustomize "$release" > "$release/rendered.yaml"
if [ "${DEPLOY_RENDER_ONLY:-0}" = 1 ]; then  # For tests: stop before touching a cluster.
  cat "$release/rendered.yaml"
  exit 0
fi

if [ -n "${KUBE_CONTEXT:-}" ]; then
  kubectl config use-context "$KUBE_CONTEXT" > /dev/null
fi
kubectl apply -n "$KUBE_NAMESPACE" -f "$release/rendered.yaml"
kubectl rollout status -n "$KUBE_NAMESPACE" deployment/iquest-serve \
  --timeout="${DEPLOY_TIMEOUT:-30m}"
echo "deploy: $IMAGE is live in $KUBE_NAMESPACE ($OVERLAY)"
