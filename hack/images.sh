#!/usr/bin/env bash
# Builds the project's container images as docker-archive tarballs, without a container engine
# (hack/imgtool packs directories into layers), into OUT (default bin/images):
#
#   vpcnat-controller.tar  $REGISTRY/vpcnat-controller:$TAG  static binary (skipped while ./controller does not build)
#   vpcnat-daemon.tar      $REGISTRY/vpcnat-daemon:$TAG      iptables (nft) + the daemon + the CNI plugin in /opt/vpcnat/bin:
#                                                            vpcnat (dispatcher) and vpcnat-gateway (full plugin)
#   vpcnat-gateway.tar     $REGISTRY/vpcnat-gateway:$TAG     the gateway pod: vpcnat-pause, unprivileged;
#                                                            vpcnat-keepalive for replicated gateways
#   pause.tar              $REGISTRY/pause:3.10              the test cluster's pod sandbox image
#   e2e-probe.tar          $REGISTRY/e2e-probe:$TAG          the e2e suite's HTTP workload (test/e2e/podprobe)
#
# The daemon image's iptables is the build host's own nf_tables iptables (xtables-nft-multi),
# copied with its extension modules and the shared libraries they need (ldd closure), instead of
# a Debian root made with debootstrap: it takes a second and no network, the image is a few MiB
# instead of ~100, and it is exactly the iptables the kernel tests of `make test` exercise on this
# host. The price: the image follows the build host's distribution (release images come from
# images/daemon.Dockerfile, on debian:bookworm-slim). A smoke test runs the copied iptables in a
# throwaway network namespace with the rule kinds the daemon writes, so a missing library or
# extension fails here, not in a pod.
#
# Images are deterministic: unchanged inputs give the same image ID and the tarball is not
# rewritten (imgtool compares), so a second run costs the go builds' cache look-ups.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
out="${OUT:-$repo/bin/images}"
registry="${IMAGE_REGISTRY:-vpcnat.local}"
tag="${IMAGE_TAG:-dev}"
nice="nice -n 10"
go="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"
export GOFLAGS=-buildvcs=false

t0=$EPOCHREALTIME
since() { awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1fs", b - a }'; }

mkdir -p "$out"
stage="$out/.stage"
rm -rf "$stage"
mkdir -p "$stage/bin"
cd "$repo"

# Static binaries: the images have no libc for them (the daemon image has one, but only for
# iptables), and the CNI plugin runs on whichever node the daemon image lands on.
# -trimpath makes them independent of where the checkout is, so the images are too.
build_static() { # OUTPUT PACKAGE
  CGO_ENABLED=0 $nice "$go" build -trimpath -ldflags='-s -w' -o "$1" "$2"
}
"$go" build -o "$stage/bin/imgtool" ./hack/imgtool
build_static "$stage/bin/vpcnat-daemon" ./daemon
# The CNI plugin is two binaries that must sit side by side: vpcnat, the small dispatcher the
# runtime executes for every pod, and vpcnat-gateway, the full plugin it hands the rest to.
build_static "$stage/bin/vpcnat" ./plugins/vpcnat
build_static "$stage/bin/vpcnat-gateway" ./plugins/vpcnat-gateway
build_static "$stage/bin/vpcnat-pause" ./cmd/vpcnat-pause
build_static "$stage/bin/vpcnat-keepalive" ./cmd/vpcnat-keepalive
build_static "$stage/bin/podprobe" ./test/e2e/podprobe
# The controller is being written: until ./controller is a main package, say so and go on.
controller=no
if [ "$("$go" list -f '{{.Name}}' ./controller 2>/dev/null || true)" = main ]; then
  build_static "$stage/bin/vpcnat-controller" ./controller
  controller=yes
else
  echo "images: ./controller is not a buildable command yet; skipping the vpcnat-controller image" >&2
fi
echo "images: binaries built at +$(since)"

img="$stage/bin/imgtool"
# layer DIR FILE:DEST[:MODE]... : stage files at their place in an image's root.
layer() {
  local dir="$1"; shift
  local spec src dst mode
  for spec in "$@"; do
    IFS=: read -r src dst mode <<<"$spec"
    install -D -m "${mode:-0755}" "$src" "$dir$dst"
  done
}

# --- iptables (nft) from the build host -------------------------------------------------------
xt="$(command -v xtables-nft-multi || true)"
[ -n "$xt" ] || { echo "images: xtables-nft-multi not found (apt-get install iptables)" >&2; exit 1; }
xtver="$("$xt" iptables --version)"
case "$xtver" in *nf_tables*) ;; *) echo "images: $xt is not the nf_tables iptables: $xtver" >&2; exit 1 ;; esac
# The extension modules (-j DNAT, -m conntrack, ...) are dlopen()ed, so ldd of the binary does
# not list them; they sit in libxtables' directory (its compiled-in XTABLES_LIBDIR).
extdir="$(dirname "$(readlink -f "$(ldd "$xt" | awk '/libxtables/ {print $3}')")")/xtables"
[ -f "$extdir/libxt_conntrack.so" ] || { echo "images: iptables extension modules not found (looked in $extdir)" >&2; exit 1; }

ipt="$stage/daemon-iptables"
mkdir -p "$ipt"
# Keep the host's merged-/usr layout (/lib -> usr/lib, ...), or the loader path /lib64/ld-linux*
# and the library paths ldd printed would point nowhere.
for d in bin sbin lib lib64; do
  if [ -L "/$d" ]; then ln -s "$(readlink "/$d")" "$ipt/$d"; mkdir -p "$ipt/$(readlink -f "/$d")"; fi
done
objects=("$xt" "$extdir"/*.so)
libs=()
for o in "${objects[@]}"; do
  # ldd lines: "libx.so => /path (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)".
  while read -r lib; do libs+=("$lib"); done < <(ldd "$o" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}')
done
mapfile -t libs < <(printf '%s\n' "${libs[@]}" | sort -u)
for f in "${libs[@]}"; do install -D -m 0755 "$(readlink -f "$f")" "$ipt$f"; done
install -D -m 0755 "$xt" "$ipt/usr/sbin/xtables-nft-multi"
for e in "$extdir"/*.so; do install -D -m 0644 "$e" "$ipt$extdir/$(basename "$e")"; done
# What Debian's alternatives would point at the nft backend.
for n in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore \
         iptables-nft iptables-nft-save iptables-nft-restore ip6tables-nft ip6tables-nft-save ip6tables-nft-restore; do
  ln -s xtables-nft-multi "$ipt/usr/sbin/$n"
done
# Protocol names beyond iptables' built-in few (tcp, udp, icmp, ...) are looked up here.
[ -f /etc/protocols ] && install -D -m 0644 /etc/protocols "$ipt/etc/protocols"
mkdir -p "$ipt/tmp" "$ipt/run" && chmod 1777 "$ipt/tmp"

# Smoke test: the copied iptables, chrooted into the staged root, in a network namespace that
# lives only as long as the command (unshare -n): nothing on the host is touched. It loads the
# rule kinds the daemon writes (nat chains, DNAT, SNAT, conntrack match) and reads them back.
if [ "$(id -u)" -eq 0 ]; then
  rules=$'*nat\n:SMOKE_DNAT - [0:0]\n-A PREROUTING -j SMOKE_DNAT\n-A SMOKE_DNAT -d 203.0.113.10/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 198.51.100.10:8080\n-A POSTROUTING -s 198.51.100.0/24 -m conntrack --ctstate NEW -j SNAT --to-source 203.0.113.10\nCOMMIT\n'
  # One namespace for both commands: the image has no shell, so the host's bash (with a fixed
  # script; the rules and the root are its arguments) chroots into it twice.
  if ! saved="$(unshare -n -- "$BASH" -c 'printf "%s" "$1" | chroot "$2" /usr/sbin/iptables-restore -w 5 && chroot "$2" /usr/sbin/iptables-save -t nat' _ "$rules" "$ipt" 2>&1)"; then
    echo "images: iptables in the daemon image's root failed: $saved" >&2; exit 1
  fi
  for want in 'DNAT --to-destination 198.51.100.10:8080' 'SNAT --to-source 203.0.113.10' '--ctstate NEW' ':SMOKE_DNAT'; do
    grep -qF -- "$want" <<<"$saved" || { echo "images: iptables-save in the daemon image's root lost '$want':"$'\n'"$saved" >&2; exit 1; }
  done
  echo "images: daemon image iptables smoke test passed ($xtver)"
else
  echo "images: not root: skipping the daemon image's iptables smoke test (needs unshare -n and chroot)" >&2
fi

# --- the images -----------------------------------------------------------------------------
daemon_top="$stage/daemon-top"
layer "$daemon_top" "$stage/bin/vpcnat-daemon:/usr/local/bin/vpcnat-daemon" "$stage/bin/vpcnat:/opt/vpcnat/bin/vpcnat" \
  "$stage/bin/vpcnat-gateway:/opt/vpcnat/bin/vpcnat-gateway"
"$img" --out "$out/vpcnat-daemon.tar" --tag "$registry/vpcnat-daemon:$tag" \
  --entrypoint /usr/local/bin/vpcnat-daemon --env PATH=/usr/local/bin:/usr/sbin:/usr/bin \
  --layer "$ipt" --layer "$daemon_top"

# A replicated gateway (spec.replicas ≥ 2) runs vpcnat-keepalive instead (the Deployment sets
# its command): the failover agent, docs/ha.md.
layer "$stage/gateway" "$stage/bin/vpcnat-pause:/usr/local/bin/vpcnat-pause" \
  "$stage/bin/vpcnat-keepalive:/usr/local/bin/vpcnat-keepalive"
"$img" --out "$out/vpcnat-gateway.tar" --tag "$registry/vpcnat-gateway:$tag" \
  --entrypoint /usr/local/bin/vpcnat-pause --user 65534:65534 --layer "$stage/gateway"

# The sandbox process runs as the upstream pause image's user.
layer "$stage/pause" "$stage/bin/vpcnat-pause:/pause"
"$img" --out "$out/pause.tar" --tag "$registry/pause:3.10" --entrypoint /pause --user 65535:65535 --layer "$stage/pause"

layer "$stage/probe" "$stage/bin/podprobe:/usr/local/bin/podprobe"
"$img" --out "$out/e2e-probe.tar" --tag "$registry/e2e-probe:$tag" \
  --entrypoint /usr/local/bin/podprobe --user 65534:65534 --layer "$stage/probe"

if [ "$controller" = yes ]; then
  layer "$stage/controller" "$stage/bin/vpcnat-controller:/usr/local/bin/vpcnat-controller"
  "$img" --out "$out/vpcnat-controller.tar" --tag "$registry/vpcnat-controller:$tag" \
    --entrypoint /usr/local/bin/vpcnat-controller --user 65532:65532 --layer "$stage/controller"
else
  rm -f "$out/vpcnat-controller.tar" # an old one would be a stale controller
fi
rm -rf "$stage"
echo "images: done in $(since) -> $out"
