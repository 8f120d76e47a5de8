#!/usr/bin/env bash
# Builds helm (pinned) from the Go module proxy into the cache outside the checkout, once per
# version, and prints its path. The chart test (test/chart) runs `helm lint` and `helm template`
# with it; users may run it too: `$(hack/build-helm.sh) install vpcnat charts/vpcnat ...`.
set -euo pipefail
ver="${HELM_VERSION:-v3.22.1}"
cache="${VPCNAT_CACHE:-/var/cache/vpcnat}"
dir="$cache/tools/helm-$ver"
if [ ! -x "$dir/helm" ]; then
  mkdir -p "$dir"
  # One build at a time: parallel test packages (and people) may all ask for it.
  exec 9>"$dir.lock"
  flock 9
  if [ ! -x "$dir/helm" ]; then
    echo "building helm $ver into $dir (cold: a few minutes on 2 cores)" >&2
    # Outside any module, so the project's go.mod neither constrains nor records the tool.
    # The version is stamped as helm's own Makefile does, so `helm version` names it.
    (cd / && GOBIN="$dir" GOFLAGS=-buildvcs=false GO111MODULE=on CGO_ENABLED=0 nice -n 10 \
      go install -ldflags "-X helm.sh/helm/v3/internal/version.version=$ver" \
      "helm.sh/helm/v3/cmd/helm@$ver" >&2)
  fi
fi
echo "$dir/helm"
