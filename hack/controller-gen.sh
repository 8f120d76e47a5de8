#!/usr/bin/env bash
# Installs controller-gen (pinned) from the Go module proxy into the cache outside the checkout,
# once per version, and prints its path. `make generate` (deepcopy) and `make crds` (deploy/crds)
# run it; the CRD drift test in test/controller runs it too.
set -euo pipefail
ver="${CONTROLLER_GEN_VERSION:-v0.23.0}"
cache="${VPCNAT_CACHE:-/var/cache/vpcnat}"
dir="$cache/tools/controller-gen-$ver"
if [ ! -x "$dir/controller-gen" ]; then
  mkdir -p "$dir"
  # One install at a time: parallel test packages may all ask for it.
  exec 9>"$dir.lock"
  flock 9
  if [ ! -x "$dir/controller-gen" ]; then
    echo "installing controller-gen $ver into $dir" >&2
    # Outside any module, so the project's go.mod neither constrains nor records the tool.
    (cd / && GOBIN="$dir" GOFLAGS=-buildvcs=false GO111MODULE=on go install "sigs.k8s.io/controller-tools/cmd/controller-gen@$ver" >&2)
  fi
fi
echo "$dir/controller-gen"
