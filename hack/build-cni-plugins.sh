#!/usr/bin/env bash
# Builds the upstream reference CNI plugins the tests chain vpcnat after (bridge, host-local,
# loopback) from the Go module proxy, once per version, into a cache outside the checkout.
# Prints the directory holding them.
set -euo pipefail
version="${CNI_PLUGINS_VERSION:-v1.10.0}"
cache="${VPCNAT_CACHE:-/var/cache/vpcnat}"
dir="$cache/cni-plugins-$version"
if [ ! -x "$dir/bridge" ] || [ ! -x "$dir/host-local" ] || [ ! -x "$dir/loopback" ]; then
  mkdir -p "$dir"
  echo "building containernetworking/plugins $version into $dir" >&2
  GOBIN="$dir" CGO_ENABLED=0 GOFLAGS=-mod=mod go install \
    "github.com/containernetworking/plugins/plugins/main/bridge@$version" \
    "github.com/containernetworking/plugins/plugins/main/loopback@$version" \
    "github.com/containernetworking/plugins/plugins/ipam/host-local@$version" >&2
fi
echo "$dir"
