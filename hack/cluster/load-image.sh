#!/usr/bin/env bash
# Imports docker-archive tarballs into the running cluster's containerd (namespace k8s.io, the
# one the kubelet uses), optionally under an extra tag:
#   hack/cluster/load-image.sh bin/images/vpcnat-gateway.tar [--tag vpcnat.local/vpcnat-gateway:v2]
# Pods must use imagePullPolicy Never or IfNotPresent (any tag but :latest): the node cannot pull.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
[ -S "$CSOCK" ] || die "no containerd at $CSOCK: start the cluster first (hack/cluster/start.sh)"
[ $# -ge 1 ] || die "usage: load-image.sh IMAGE.tar [--tag REF]"
tar="$1"; shift
extra=""
if [ $# -gt 0 ]; then
  [ "$1" = --tag ] && [ $# -eq 2 ] || die "usage: load-image.sh IMAGE.tar [--tag REF]"
  extra="$2"
fi
out="$(ctr_ images import "$tar")" || die "importing $tar failed"
# ctr prints "unpacking REF (sha256:...)...done" per image.
ref="$(awk '/^unpacking / {print $2; exit}' <<<"$out")"
[ -n "$ref" ] || die "importing $tar: no image in ctr's output: $out"
if [ -n "$extra" ]; then
  ctr_ images tag --force "$ref" "$extra" >/dev/null || die "tagging $ref as $extra failed"
  echo "$extra"
else
  echo "$ref"
fi
