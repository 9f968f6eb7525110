#!/bin/sh
# Renders an overlay with the images of one build: every nocode-<service> image name in
# the manifests becomes <registry>/<prefix><service>:<tag>. What buildspec.yml applies;
# by hand:  k8s/render.sh k8s/overlays/prod "$ECR_REGISTRY" "$GIT_SHA" | kubectl apply -f -
#
#   k8s/render.sh OVERLAY REGISTRY TAG [SERVICES]
# SERVICES defaults to the six services; ECR_REPOSITORY_PREFIX defaults to nocode-.
# Uses `kubectl kustomize` (KUBECTL, default kubectl; `make install` puts one in .venv).
#
# An overlay that lists the component `images-set-by-render.sh` (prod) does not render without it, so
# `kubectl apply -k` on it fails instead of pulling nocode-<service>:latest: this script
# writes that component (the images), renders, and removes it.
set -eu
if [ $# -lt 3 ]; then
  echo "usage: $0 OVERLAY REGISTRY TAG [SERVICES]" >&2
  exit 2
fi
overlay="${1%/}"
registry="$2"
tag="$3"
services="${4:-gateway model notice core target mypage-cqrs console}"
prefix="${ECR_REPOSITORY_PREFIX:-nocode-}"
if [ -z "$registry" ] || [ -z "$tag" ]; then
  echo "$0: REGISTRY and TAG must not be empty" >&2
  exit 2
fi

images() {
  echo "images:"
  for service in $services; do
    echo "  - {name: nocode-$service, newName: \"$registry/$prefix$service\", newTag: \"$tag\"}"
  done
}

component="$overlay/images-set-by-render.sh"
if grep -Eq '^[[:space:]]*-[[:space:]]*images-set-by-render\.sh[[:space:]]*$' "$overlay/kustomization.yaml"; then
  # mkdir fails if another render of this overlay is under way.
  mkdir "$component"
  trap 'rm -rf "$component"' EXIT
  {
    echo "# Written by k8s/render.sh for one render, then removed."
    echo "apiVersion: kustomize.config.k8s.io/v1alpha1"
    echo "kind: Component"
    images
  } > "$component/kustomization.yaml"
  "${KUBECTL:-kubectl}" kustomize "$overlay"
  exit 0
fi

# Any other overlay: a throwaway kustomization on top of it that only sets the images
# (what `kustomize edit set image` would write), so the overlay in git stays untouched.
# It sits next to the overlay: kustomize takes relative resource paths only.
work="$(mktemp -d "$(dirname "$overlay")/.render.XXXXXX")"
trap 'rm -rf "$work"' EXIT
{
  echo "apiVersion: kustomize.config.k8s.io/v1beta1"
  echo "kind: Kustomization"
  echo "resources: [\"../$(basename "$overlay")\"]"
  images
} > "$work/kustomization.yaml"
"${KUBECTL:-kubectl}" kustomize "$work"
