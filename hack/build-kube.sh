#!/usr/bin/env bash
# Builds the Kubernetes binaries the API-server tests and the one-node cluster use, from the Go
# module proxy, once per version, into a cache outside the checkout; prints the bin directory.
#   hack/build-kube.sh            kube-apiserver, kube-controller-manager, kube-scheduler, kubelet,
#                                 kubectl and etcd (one go build: they share most packages)
# Kubernetes' staging modules (k8s.io/api, client-go, ...) are replaced by their published
# v0.X.Y releases, which is what the module proxy serves.
set -euo pipefail
kube="${KUBE_VERSION:-1.37.2}"
etcd="${ETCD_VERSION:-3.6.16}"
cache="${VPCNAT_CACHE:-/var/cache/vpcnat}"
bin="$cache/kube-v$kube/bin"
nice="nice -n 10"
export GOFLAGS=-buildvcs=false

kube_bins=(kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl)
have_all() {
  for b in "${kube_bins[@]}" etcd; do [ -x "$bin/$b" ] || return 1; done
}
if have_all; then echo "$bin"; exit 0; fi
mkdir -p "$bin"
# One build at a time: parallel test packages (and people) may all ask for the binaries.
exec 9>"$cache/kube-v$kube.lock"
flock 9
if have_all; then echo "$bin"; exit 0; fi

if ! [ -x "$bin/kube-apiserver" ] || ! [ -x "$bin/kubelet" ] || ! [ -x "$bin/kubectl" ] \
   || ! [ -x "$bin/kube-controller-manager" ] || ! [ -x "$bin/kube-scheduler" ]; then
  mod="$cache/kube-v$kube/mod"
  mkdir -p "$mod"
  cd "$mod"
  echo "building Kubernetes v$kube into $bin (cold: about 20 minutes on 2 cores)" >&2
  go mod download -json "k8s.io/kubernetes@v$kube" >/dev/null
  kmod="$(go env GOMODCACHE)/cache/download/k8s.io/kubernetes/@v/v$kube.mod"
  {
    echo "module kmod"
    echo "go 1.26.0"
    echo "require k8s.io/kubernetes v$kube"
    echo "replace ("
    grep -E "=> ./staging" "$kmod" | awk -v v="0.${kube#1.}" '{print "\t" $1 " => " $1 " v" v}'
    echo ")"
  } > go.mod
  {
    printf '//go:build tools\n\npackage kmod\n\nimport (\n'
    for c in "${kube_bins[@]}"; do printf '\t_ "k8s.io/kubernetes/cmd/%s"\n' "$c"; done
    printf ')\n'
  } > tools.go
  $nice go mod tidy >&2
  minor="$(echo "$kube" | cut -d. -f2)"
  ldflags="-X k8s.io/component-base/version.gitVersion=v$kube -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
  pkgs=()
  for c in "${kube_bins[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
  $nice go build -ldflags "$ldflags" -o "$bin/" "${pkgs[@]}" >&2
fi

if ! [ -x "$bin/etcd" ]; then
  emod="$cache/kube-v$kube/etcdmod"
  mkdir -p "$emod"
  cd "$emod"
  echo "building etcd v$etcd into $bin" >&2
  printf 'package main\n\nimport (\n\t"os"\n\n\t"go.etcd.io/etcd/server/v3/etcdmain"\n)\n\nfunc main() { etcdmain.Main(os.Args) }\n' > main.go
  [ -f go.mod ] || go mod init etcdmod >&2
  $nice go get "go.etcd.io/etcd/server/v3@v$etcd" >&2
  $nice go mod tidy >&2
  $nice go build -o "$bin/etcd" . >&2
fi
echo "$bin"
