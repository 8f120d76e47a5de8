#!/usr/bin/env bash
# Starts the one-node cluster that setup.sh prepared, as root: containerd (+ the images in
# VPCNAT_IMAGES, imported), etcd, kube-apiserver, kube-controller-manager, kube-scheduler and the
# kubelet, and waits for the node to be Ready. Prints how long each step took.
# Every process is recorded by PID in VPCNAT_CLUSTER_DIR/run/pids; stop.sh undoes all of it.
# When it fails, the logs are in VPCNAT_CLUSTER_DIR/logs; run stop.sh to clean up.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
[ "$(id -u)" -eq 0 ] || die "run as root"
[ -f "$CONF/paths" ] || die "not set up: run hack/cluster/setup.sh first"
. "$CONF/paths"
if [ -d "$RUN" ] || [ -d "$RSTATE" ]; then
  die "$RUN or $RSTATE exists: a cluster is running or was not stopped; run hack/cluster/stop.sh"
fi

# --- preflight: everything we are about to claim must be free --------------------------------
for p in "${all_ports[@]}"; do
  ! ss -Htln "sport = :$p" | grep -q . || die "port $p is in use (ss -ltnp 'sport = :$p')"
done
ip link show "$bridge" >/dev/null 2>&1 && die "link $bridge exists (left by an earlier run? stop.sh removes it)"
# Routes covering the pod network (other than the default) or inside it: the host would send
# pod traffic elsewhere, or ours would shadow someone's.
conflict="$({ ip -4 route show to match "$pod_cidr"; ip -4 route show root "$pod_cidr"; } | grep -v '^default' || true)"
[ -z "$conflict" ] || die "the host already routes $pod_cidr: $conflict"
for c in /sys/fs/cgroup/*/; do
  [ -d "$c$cgroup_root" ] && die "cgroup $c$cgroup_root exists (left by an earlier run? stop.sh removes it)"
done
node_ip="$(ip -4 -o route get 1.1.1.1 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p')"
[ -n "$node_ip" ] || node_ip="$(ip -4 -o addr show scope global | awk '{split($4, a, "/"); print a[1]; exit}')"
[ -n "$node_ip" ] || die "no global IPv4 address for the node (the kubelet cannot use loopback)"

mkdir -p "$PIDS" "$HOSTSTATE" "$RUN/cni/bin" "$RUN/cni/net.d" "$RSTATE" "$LOGS"
rm -f "$LOGS"/*.log
# Host state to restore at stop: sysctls, and which host directories already existed.
for s in "${host_sysctls[@]}"; do echo "$s=$(sysctl -n "$s")"; done >"$HOSTSTATE/sysctls"
for d in "${host_dirs[@]}"; do [ -e "$d" ] && echo "$d"; done >"$HOSTSTATE/dirs-before" || true
echo "$node_ip" >"$RUN/node-ip"

fail() { # NAME MESSAGE: say what failed, with the end of its log
  log "$1: $2 (log: $LOGS/$1.log; clean up with hack/cluster/stop.sh)"
  [ -f "$LOGS/$1.log" ] && tail -n 15 "$LOGS/$1.log" | sed 's/^/    /' >&2
  exit 1
}
# wait_for NAME SECONDS CMD...: until CMD succeeds, while NAME's process lives.
wait_for() {
  local name="$1" secs="$2" i pid; shift 2
  for ((i = 0; i < secs * 10; i++)); do
    pid="$(pid_of "$name")" || fail "$name" "exited"
    if "$@" >/dev/null 2>&1; then log "$name ready at +$(now)s"; return 0; fi
    sleep 0.1
  done
  fail "$name" "not ready after ${secs}s"
}

# The kubelet's cgroup root, in every v1 hierarchy (the kubelet checks it exists). cpuset needs
# its cpus and mems filled before anything can join it.
for c in /sys/fs/cgroup/*/; do
  case "$c" in */unified/) continue ;; esac
  [ -e "${c}cgroup.procs" ] || continue
  mkdir "$c$cgroup_root"
  if [ -e "${c}cpuset.cpus" ]; then
    cat "${c}cpuset.cpus" >"$c$cgroup_root/cpuset.cpus"
    cat "${c}cpuset.mems" >"$c$cgroup_root/cpuset.mems"
  fi
done
[ -d /sys/fs/cgroup/unified ] && mkdir /sys/fs/cgroup/unified/$cgroup_root

# --- containerd and the node's CNI configuration ---------------------------------------------
for p in bridge host-local loopback; do ln -s "$cni_bin/$p" "$RUN/cni/bin/$p"; done
cp "$CONF/10-vpcnat-node.conflist" "$RUN/cni/net.d/"
start_proc containerd "$(command -v containerd)" --config "$CONF/containerd.toml"
wait_for containerd 30 ctr --address "$CSOCK" version
shopt -s nullglob
tars=("$IMAGES"/*.tar)
[ -f "$IMAGES/pause.tar" ] || die "$IMAGES/pause.tar missing: run hack/images.sh (or setup.sh)"
for t in "${tars[@]}"; do
  ctr_ images import "$t" >/dev/null || fail containerd "importing $t"
done
log "imported ${#tars[@]} images from $IMAGES at +$(now)s"

# --- control plane -------------------------------------------------------------------------
pki="$CONF/pki"
start_proc etcd "$kube_bin/etcd" --name "$node_name" --data-dir "$RUN/etcd" \
  --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
  --listen-peer-urls "http://127.0.0.1:$etcd_peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer_port" \
  --initial-cluster "$node_name=http://127.0.0.1:$etcd_peer_port" \
  --listen-metrics-urls "http://127.0.0.1:$etcd_metrics_port" \
  --unsafe-no-fsync --log-level warn # throwaway data: fsync would only cost time
# etcd answers /health once it has a leader; bash's /dev/tcp keeps curl off the requirements.
etcd_healthy() {
  exec 7<>"/dev/tcp/127.0.0.1/$etcd_port" || return 1
  printf 'GET /health HTTP/1.0\r\n\r\n' >&7
  local body; body="$(cat <&7)"; exec 7>&-
  [[ "$body" == *'"health":"true"'* ]]
}
wait_for etcd 30 etcd_healthy

# No --advertise-address: the API server refuses a loopback one, and picks the node's address.
# --enable-aggregator-routing: this cluster has no kube-proxy, so the API server could not reach
# a ClusterIP (the webhook Service vpcnat-webhook); with it, it calls the Service's endpoints
# (the controller pods' IPs, which the host routes).
start_proc apiserver "$kube_bin/kube-apiserver" --etcd-servers "http://127.0.0.1:$etcd_port" \
  --bind-address 127.0.0.1 --secure-port "$apiserver_port" \
  --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
  --client-ca-file "$pki/ca.crt" --token-auth-file "$pki/tokens.csv" \
  --service-account-issuer https://kubernetes.default.svc \
  --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
  --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
  --service-cluster-ip-range 10.96.0.0/16 \
  --kubelet-client-certificate "$pki/apiserver-kubelet-client.crt" \
  --kubelet-client-key "$pki/apiserver-kubelet-client.key" \
  --kubelet-preferred-address-types InternalIP,Hostname \
  --allow-privileged=true --enable-aggregator-routing=true
kubectl="$kube_bin/kubectl --kubeconfig $CONF/admin.kubeconfig"
wait_for apiserver 90 $kubectl get --raw /readyz

# --vmodule: the garbage collector logs its discovery resyncs (a CRD installed after the
# controller-manager started is watched only from the next one, every 30 s) and each deletion.
start_proc kcm "$kube_bin/kube-controller-manager" --kubeconfig "$CONF/admin.kubeconfig" \
  --authentication-kubeconfig "$CONF/admin.kubeconfig" --authorization-kubeconfig "$CONF/admin.kubeconfig" \
  --bind-address 127.0.0.1 --secure-port "$kcm_port" --leader-elect=false \
  --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
  --service-cluster-ip-range 10.96.0.0/16 --vmodule=garbagecollector=2
start_proc scheduler "$kube_bin/kube-scheduler" --kubeconfig "$CONF/admin.kubeconfig" \
  --authentication-kubeconfig "$CONF/admin.kubeconfig" --authorization-kubeconfig "$CONF/admin.kubeconfig" \
  --bind-address 127.0.0.1 --secure-port "$scheduler_port" --leader-elect=false

# --- the node ---------------------------------------------------------------------------------
sed "s/@NODE_IP@/$node_ip/" "$CONF/kubelet.yaml.in" >"$RUN/kubelet.yaml"
start_proc kubelet "$kube_bin/kubelet" --config "$RUN/kubelet.yaml" \
  --kubeconfig "$CONF/kubelet.kubeconfig" --root-dir "$RUN/kubelet" --cert-dir "$RUN/kubelet-pki" \
  --hostname-override "$node_name" --node-ip "$node_ip"
node_ready() {
  [ "$($kubectl get node "$node_name" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ]
}
wait_for kubelet 90 node_ready
# Pods need the namespace's default service account (made by the controller manager).
wait_for kcm 60 $kubectl -n default get serviceaccount default
log "cluster up in $(now)s: node $node_name ($node_ip), pods on $bridge $pod_cidr"
log "export KUBECONFIG=$CONF/admin.kubeconfig"
