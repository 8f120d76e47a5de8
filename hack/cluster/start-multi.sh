#!/usr/bin/env bash
# Starts the multi-node cluster, as root, after setup.sh: `NODES=3 hack/cluster/start.sh` (or
# this script). The layout (a network namespace, containerd, kubelet and cgroup root per node;
# the shared node, external and tenant networks) is described in lib-multi.sh. Waits until every
# node is Ready and prints how long each step took. Then: node.sh for power off / partition /
# power on, stop.sh (or stop-multi.sh) to remove everything, env.sh (with NODES set) for names.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-multi.sh"
[ "$(id -u)" -eq 0 ] || die "run as root"
[ -f "$CONF/paths" ] || die "not set up: run hack/cluster/setup.sh first"
. "$CONF/paths"
nodes="${NODES:-3}"
[[ "$nodes" =~ ^[2-9]$ ]] || die "NODES=$nodes: the multi-node cluster has 2 to 9 nodes"
if [ -d "$RUN" ] || [ -d "$RSTATE" ]; then
  die "$RUN or $RSTATE exists: a multi-node cluster is running or was not stopped; run hack/cluster/stop.sh"
fi

# --- preflight: everything we are about to claim must be free --------------------------------
for p in "${all_ports[@]}"; do
  ! ss -Htln "sport = :$p" | grep -q . || die "port $p is in use (ss -ltnp 'sport = :$p')"
done
for l in "$phys" "$ext_bridge" "$vpc_bridge"; do
  ip link show "$l" >/dev/null 2>&1 && die "link $l exists (left by an earlier run? stop.sh removes it)"
done
for ((n = 1; n <= nodes; n++)); do
  [ -e "/run/netns/$(node_ns $n)" ] && die "netns $(node_ns $n) exists (left by an earlier run? stop.sh removes it)"
  for c in /sys/fs/cgroup/*/; do
    [ -d "$c$(node_ns $n)" ] && die "cgroup $c$(node_ns $n) exists (left by an earlier run? stop.sh removes it)"
  done
done
conflict="$({ ip -4 route show to match "$phys_net.0/24"; ip -4 route show root "$pod_net.0.0/16"; ip -4 route show root "$phys_net.0/24"; } | grep -v '^default' || true)"
[ -z "$conflict" ] || die "the host already routes $phys_net.0/24 or $pod_net.0.0/16: $conflict"
[ -f "$IMAGES/pause.tar" ] || die "$IMAGES/pause.tar missing: run hack/images.sh (or setup.sh)"

mkdir -p "$PIDS" "$HOSTSTATE" "$RUN/cni/bin" "$RSTATE" "$LOGS" "$MCONF/pki"
rm -f "$LOGS"/*.log
echo "$nodes" >"$RUN/nodes"
for s in "${host_sysctls[@]}"; do echo "$s=$(sysctl -n "$s")"; done >"$HOSTSTATE/sysctls"
for d in "${host_dirs[@]}"; do [ -e "$d" ] && echo "$d"; done >"$HOSTSTATE/dirs-before" || true

# --- PKI: the one-node cluster's CA, service-account keys and kubelet-client certificate; an
# API server certificate for the node network's address, and a token per node (each kubelet is
# system:node:vpcnat-nodeN, so the Node authorizer and NodeRestriction apply per node).
pki="$MCONF/pki" one_pki="$CONF/pki"
for f in ca.crt sa.key sa.pub apiserver-kubelet-client.crt apiserver-kubelet-client.key; do
  cp "$one_pki/$f" "$pki/$f"
done
if ! openssl verify -CAfile "$pki/ca.crt" "$pki/apiserver.crt" >/dev/null 2>&1 ||
   ! openssl x509 -checkend 86400 -noout -in "$pki/apiserver.crt" >/dev/null; then
  log "making the API server certificate for $phys_addr"
  openssl genpkey -quiet -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$pki/apiserver.key"
  openssl req -new -key "$pki/apiserver.key" -subj "/CN=kube-apiserver" -out "$pki/apiserver.csr"
  printf '%s\n' \
    "subjectAltName=DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:$phys_addr,IP:10.96.0.1" \
    "extendedKeyUsage=serverAuth" "keyUsage=critical,digitalSignature,keyEncipherment" >"$pki/apiserver.ext"
  openssl x509 -req -in "$pki/apiserver.csr" -CA "$one_pki/ca.crt" -CAkey "$one_pki/ca.key" -CAcreateserial \
    -CAserial "$pki/ca.srl" -days 365 -sha256 -extfile "$pki/apiserver.ext" -out "$pki/apiserver.crt" 2>/dev/null
  rm -f "$pki/apiserver.csr" "$pki/apiserver.ext"
fi
if [ ! -f "$pki/tokens.csv" ]; then
  {
    echo "$(openssl rand -hex 24),admin,admin,system:masters"
    for ((n = 1; n <= 9; n++)); do
      echo "$(openssl rand -hex 24),system:node:$(node_ns $n),system:node:$(node_ns $n),system:nodes"
    done
  } >"$pki/tokens.csv.new"
  chmod 600 "$pki/tokens.csv.new" "$pki/apiserver.key"
  mv "$pki/tokens.csv.new" "$pki/tokens.csv"
fi
kubeconfig() { # FILE USER
  local token; token="$(awk -F, -v u="$2" '$2 == u {print $1}' "$pki/tokens.csv")"
  [ -n "$token" ] || die "no token for $2 in $pki/tokens.csv"
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: vpcnat-multi
  cluster: {server: "https://$phys_addr:$apiserver_port", certificate-authority: "$pki/ca.crt"}
users:
- name: user
  user: {token: "$token"}
contexts:
- name: vpcnat-multi
  context: {cluster: vpcnat-multi, user: user}
current-context: vpcnat-multi
EOF
  chmod 600 "$1"
}
kubeconfig "$MCONF/admin.kubeconfig" admin
for ((n = 1; n <= nodes; n++)); do kubeconfig "$MCONF/node$n.kubeconfig" "system:node:$(node_ns $n)"; done
log "PKI and kubeconfigs at +$(now)s"

# --- networks ----------------------------------------------------------------------------------
ip link add "$phys" type bridge
ip addr add "$phys_addr/24" dev "$phys"
ip link add "$ext_bridge" type bridge
ip link add "$vpc_bridge" type bridge
for l in "$phys" "$ext_bridge" "$vpc_bridge"; do ip link set "$l" up; done
for ((n = 1; n <= nodes; n++)); do
  ns="$(node_ns $n)"
  ip netns add "$ns"
  ip link add "vpcnat-v$n" type veth peer name eth0 netns "$ns"
  ip link add "vpcnat-e$n" type veth peer name ext netns "$ns"
  ip link add "vpcnat-t$n" type veth peer name tenant netns "$ns"
  ip link set "vpcnat-v$n" master "$phys" up
  ip link set "vpcnat-e$n" master "$ext_bridge" up
  ip link set "vpcnat-t$n" master "$vpc_bridge" up
  ip -n "$ns" link set lo up
  ip -n "$ns" addr add "$(node_ip $n)/24" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" link set ext up
  ip -n "$ns" link add "$tenant_bridge" type bridge
  ip -n "$ns" link set tenant master "$tenant_bridge" up
  ip -n "$ns" link set "$tenant_bridge" up
  for ((m = 1; m <= nodes; m++)); do
    [ "$m" = "$n" ] || ip -n "$ns" route add "$(node_pod_cidr $m)" via "$(node_ip $m)"
  done
  ip route add "$(node_pod_cidr $n)" via "$(node_ip $n)" dev "$phys"
done
log "networks of $nodes nodes at +$(now)s"

# --- nodes: containerd first (the images are imported while the control plane starts) ----------
for p in bridge host-local loopback; do ln -s "$cni_bin/$p" "$RUN/cni/bin/$p"; done
shopt -s nullglob
tars=("$IMAGES"/*.tar)
import_pids=()
for ((n = 1; n <= nodes; n++)); do
  mkdir -p "$(node_run $n)" "$(node_rstate $n)"
  node_configs "$n"
  start_containerd "$n"
done
for ((n = 1; n <= nodes; n++)); do
  wait_for "containerd-$n" 30 ctr --address "$(node_sock $n)" version
  # Each containerd has its own content store: every node gets every image.
  (
    for t in "${tars[@]}"; do
      ctr --address "$(node_sock $n)" --namespace k8s.io images import "$t" >/dev/null || { log "node $n: importing $t failed"; exit 1; }
    done
  ) &
  import_pids+=($!)
done

start_etcd_apiserver "$MCONF" "$phys_addr"
# The kubelets retry until the API server answers: start them now.
for ((n = 1; n <= nodes; n++)); do start_kubelet "$n"; done
kubectl="$kube_bin/kubectl --kubeconfig $MCONF/admin.kubeconfig"
wait_for apiserver 90 $kubectl get --raw /readyz
start_controllers "$MCONF"
# Only the import subshells: waiting for every child would wait for the daemons.
for p in "${import_pids[@]}"; do wait "$p" || die "importing images failed (see above)"; done
log "imported ${#tars[@]} images into $nodes nodes at +$(now)s"

all_ready() {
  local st
  st="$($kubectl get nodes -o jsonpath='{range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}')"
  for ((n = 1; n <= nodes; n++)); do grep -qx "$(node_ns $n)=True" <<<"$st" || return 1; done
}
wait_for kubelet-1 90 all_ready
wait_for kcm 60 $kubectl -n default get serviceaccount default
log "cluster up in $(now)s: $nodes nodes $(node_ns 1)..$(node_ns $nodes) on $phys $phys_net.0/24, pods in $pod_net.N.0/24"
log "export KUBECONFIG=$MCONF/admin.kubeconfig"
