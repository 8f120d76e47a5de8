#!/usr/bin/env bash
# Installs what `make demo` and `make test` need on a fresh Debian/Ubuntu machine, as root, and
# nothing when it is all there already (a second run is a few `command -v` checks).
# Packages, not downloads: everything comes from the distribution's archive or the Go module proxy.
set -euo pipefail

need_apt=()
command -v ip >/dev/null               || need_apt+=(iproute2)
command -v iptables-restore >/dev/null || need_apt+=(iptables)
command -v conntrack >/dev/null        || need_apt+=(conntrack)
# nft lists the nftables backend's table in its kernel tests and for operators.
command -v nft >/dev/null              || need_apt+=(nftables)

if [ "${#need_apt[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: missing ${need_apt[*]}; run as root (apt-get install) or install them" >&2
    exit 1
  fi
  echo "install-deps: apt-get install ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # --no-install-recommends keeps the set minimal; naming only missing packages avoids upgrading
  # unrelated installed ones as a side effect.
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

if ! command -v go >/dev/null && [ ! -x /usr/local/go/bin/go ]; then
  echo "install-deps: Go 1.26 is required (https://go.dev/doc/install); not found" >&2
  exit 1
fi

# The data-plane tests and the demo run real namespaces, macvlans and iptables: they need root.
if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: warning: not root; the demo and the kernel tests need root" >&2
fi
