#!/usr/bin/env bash
# Starts the one-node cluster that setup.sh prepared, as root: containerd (+ the images in
# VPCNAT_IMAGES, imported), etcd, kube-apiserver, kube-controller-manager, kube-scheduler and the
# kubelet, and waits for the node to be Ready. Prints how long each step took.
# Every process is recorded by PID in VPCNAT_CLUSTER_DIR/run/pids; stop.sh undoes all of it.
# When it fails, the logs are in VPCNAT_CLUSTER_DIR/logs; run stop.sh to clean up.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
# NODES=3 start.sh: the multi-node cluster instead (start-multi.sh; it has its own names).
[ "${NODES:-1}" = 1 ] || exec "$(dirname "$0")/start-multi.sh"
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
start_etcd_apiserver "$CONF" 127.0.0.1
kubectl="$kube_bin/kubectl --kubeconfig $CONF/admin.kubeconfig"
wait_for apiserver 90 $kubectl get --raw /readyz
start_controllers "$CONF"

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
