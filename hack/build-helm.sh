#!/usr/bin/env bash
# Builds helm (pinned) from the Go module proxy into the cache outside the checkout, once per
# version, and prints its path. The chart tests (test/chart, test/helminstall) run it; users may
# too: `$(hack/build-helm.sh) install vpcnat charts/vpcnat ...`.
set -euo pipefail
ver="${HELM_VERSION:-v3.22.1}"
cache="${VPCNAT_CACHE:-/var/cache/vpcnat}"
# The suffix names the build recipe: change it when the flags below change, so that a cached
# binary of another recipe is not taken for this one.
dir="$cache/tools/helm-$ver-k8sv"
if [ ! -x "$dir/helm" ]; then
  mkdir -p "$dir"
  # One build at a time: parallel test packages (and people) may all ask for it.
  exec 9>"$dir.lock"
  flock 9
  if [ ! -x "$dir/helm" ]; then
    echo "building helm $ver into $dir (cold: a few minutes on 2 cores)" >&2
    # Stamped as helm's own Makefile does: its version, and the Kubernetes version of the
    # client-go it is built with, which `helm template` and `helm lint` assume offline (unstamped,
    # they assume 1.20 and refuse a chart that needs more).
    gomod="$(cd / && GOFLAGS=-buildvcs=false GO111MODULE=on go mod download -json "helm.sh/helm/v3@$ver" | sed -n 's/^\t"GoMod": "\(.*\)",$/\1/p')"
    cg="$(awk '$1 == "k8s.io/client-go" {print $2}' "$gomod")"   # v0.MINOR.PATCH
    minor="$(echo "$cg" | cut -d. -f2)"
    [ -n "$minor" ] || { echo "build-helm: no k8s.io/client-go version in $gomod" >&2; exit 1; }
    ld="-X helm.sh/helm/v3/internal/version.version=$ver"
    for p in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
      ld="$ld -X $p.k8sVersionMajor=1 -X $p.k8sVersionMinor=$minor"
    done
    # Outside any module, so the project's go.mod neither constrains nor records the tool.
    (cd / && GOBIN="$dir" GOFLAGS=-buildvcs=false GO111MODULE=on CGO_ENABLED=0 nice -n 10 \
      go install -ldflags "$ld" "helm.sh/helm/v3/cmd/helm@$ver" >&2)
  fi
fi
echo "$dir/helm"
