# Sourced after lib.sh by start-multi.sh, node.sh, stop-multi.sh and env.sh (NODES > 1): the
# multi-node cluster's names, paths and ports, and the node operations.
#
# The multi-node cluster: a control plane in the host's network namespace (etcd,
# kube-apiserver, kube-controller-manager, kube-scheduler), and NODES (2..9, default 3) nodes,
# each a network namespace vpcnat-nodeN with its own containerd and kubelet (started with
# `nsenter --net`, so the mount namespace, /sys and the cgroup tree stay the host's), its own
# cgroup root /vpcnat-nodeN, state under run/nodeN and /run/vpcnat-multi/nodeN. Layout:
#
#   host netns                                  node N's netns vpcnat-nodeN
#   vpcnat-phys  bridge, 172.31.250.1/24  <--   vpcnat-vN ~ eth0     172.31.250.(10+N)/24: node IP
#     the "physical" node network: the API        routes 10.250.M.0/24 via 172.31.250.(10+M)
#     server binds here; host routes
#     10.250.N.0/24 via each node's IP          vpcnat-cniN bridge 10.250.N.1/24 (the bridge CNI
#                                                 plugin makes it at the first pod): pod CIDR
#   vpcnat-ext   bridge, no address       <--   vpcnat-eN ~ ext      no address: the external
#     the external L2 (EIPs, net1)                 network's NIC, net1 macvlans' master (ConfigMap nic)
#   vpcnat-vpc   bridge, no address       <--   vpcnat-tN ~ tenant   no address, enslaved to
#     the tenant L2 (a VPC subnet)                 br-sn (VPCNAT_TENANT_BRIDGE): the Subnet's
#                                                  natGatewayAttachment bridge, one per node
#
# So gateway replicas on different nodes share one external and one tenant L2, as on real
# machines. The node network 172.31.250.0/24 and pod CIDRs 10.250.0.0/16 are used by no other
# test here (STYLE's address plan); vpcnat-phys with its address and routes is the one host-side
# link with an address, as a control-plane host on a real node network would have; the host's
# ip_forward stays as it is (forwarding happens in the node namespaces).
#
# Node operations (node.sh): poweroff (SIGKILL of everything the node runs, its NICs down, its
# pods' network namespaces deleted: nothing of it answers), partition (NICs down, it keeps
# running), heal, poweron (a reboot: stale state wiped, containerd and kubelet started again).

# The one-node cluster's paths, from which the per-node configs are derived (setup.sh writes
# them for the one-node cluster; the multi-node cluster rewrites its paths).
one_run="$RUN" one_rstate="$RSTATE" one_cgroup_root="$cgroup_root" one_bridge="$bridge" one_pod_cidr="$pod_cidr"

MD="${VPCNAT_MULTI_DIR:-/var/tmp/vpcnat-multi}"
MCONF="$MD/config"
RUN="$MD/run"
PIDS="$RUN/pids"
HOSTSTATE="$RUN/host"
LOGS="$MD/logs"
RSTATE="/run/vpcnat-multi"
node_name="vpcnat-multi" # etcd's member name
cgroup_root="" bridge="" pod_cidr="" CSOCK=""   # per node: see the functions below

# Own ports, so that nothing of the one-node cluster's can be taken for ours.
etcd_port=24890 etcd_peer_port=24891 etcd_metrics_port=24892
apiserver_port=17443
kcm_port=11357 scheduler_port=11359
all_ports=($etcd_port $etcd_peer_port $etcd_metrics_port $apiserver_port $kcm_port $scheduler_port)

phys="vpcnat-phys" phys_net="172.31.250" phys_addr="172.31.250.1"
ext_bridge="vpcnat-ext" vpc_bridge="vpcnat-vpc"
tenant_bridge="${VPCNAT_TENANT_BRIDGE:-br-sn}"
pod_net="10.250"

# multi_nodes: how many nodes the running cluster has (run/nodes), else NODES (default 3).
multi_nodes() {
  if [ -f "$RUN/nodes" ]; then cat "$RUN/nodes"; else echo "${NODES:-3}"; fi
}
check_node() { # N: a node number of the running cluster
  [[ "$1" =~ ^[1-9]$ ]] && [ "$1" -le "$(multi_nodes)" ] || die "node $1: not a node of this cluster (1..$(multi_nodes))"
}
node_ns() { echo "vpcnat-node$1"; }        # its network namespace, Node name and cgroup root
node_ip() { echo "$phys_net.$((10 + $1))"; }
node_pod_cidr() { echo "$pod_net.$1.0/24"; }
node_run() { echo "$RUN/node$1"; }
node_rstate() { echo "$RSTATE/node$1"; }
node_sock() { echo "$RSTATE/node$1/containerd/containerd.sock"; }
node_host_links() { echo "vpcnat-v$1 vpcnat-e$1 vpcnat-t$1"; } # host-side ends of its NICs

# node_configs N: its containerd config, kubelet config and CNI conflist, derived from the
# one-node cluster's (setup.sh) by moving every path, cgroup root, bridge and pod CIDR to node N's.
node_configs() {
  local n="$1" r; r="$(node_run "$1")"
  local moves=(-e "s|$one_run/|$r/|g" -e "s|$one_rstate/|$(node_rstate "$n")/|g")
  # The CNI plugins' binaries are shared by the nodes: one directory that a DaemonSet's hostPath
  # can name on every node (the network configurations are per node).
  sed "${moves[@]}" -e "s|bin_dir = \"$r/cni/bin\"|bin_dir = \"$RUN/cni/bin\"|" \
    "$CONF/containerd.toml" >"$r/containerd.toml"
  sed "${moves[@]}" -e "s|^cgroupRoot: /$one_cgroup_root\$|cgroupRoot: /$(node_ns "$n")|" \
    -e "s|@NODE_IP@|$(node_ip "$n")|" "$CONF/kubelet.yaml.in" >"$r/kubelet.yaml"
  mkdir -p "$r/cni/net.d"
  sed "${moves[@]}" -e "s|\"$one_bridge\"|\"vpcnat-cni$n\"|" -e "s|\"$one_pod_cidr\"|\"$(node_pod_cidr "$n")\"|" \
    "$CONF/10-vpcnat-node.conflist" >"$r/cni/net.d/10-vpcnat-node.conflist"
  printf 'runtime-endpoint: unix://%s\nimage-endpoint: unix://%s\ntimeout: 30\n' "$(node_sock "$n")" "$(node_sock "$n")" >"$r/crictl.yaml"
  # Every path above must have moved: a config still naming the one-node cluster's would share
  # its state.
  ! grep -qF -e "$one_run/" -e "$one_rstate/" "$r/containerd.toml" "$r/kubelet.yaml" "$r/cni/net.d/10-vpcnat-node.conflist" ||
    die "node $n's configs still name the one-node cluster's paths (setup.sh's configs changed?)"
  grep -q "^cgroupRoot: /$(node_ns "$n")\$" "$r/kubelet.yaml" || die "node $n: kubelet.yaml has no cgroupRoot /$(node_ns "$n")"
}

ncrictl() { local n="$1"; shift; "$crictl_bin" --config "$(node_run "$n")/crictl.yaml" "$@"; }

# node_cgroups N: create its cgroup root in every hierarchy (cpuset needs cpus and mems first).
node_cgroups() {
  local cg c; cg="$(node_ns "$1")"
  for c in /sys/fs/cgroup/*/; do
    [ -e "${c}cgroup.procs" ] || continue
    [ -d "$c$cg" ] || mkdir "$c$cg"
    if [ -e "${c}cpuset.cpus" ] && [ -z "$(cat "$c$cg/cpuset.cpus")" ]; then
      cat "${c}cpuset.cpus" >"$c$cg/cpuset.cpus"
      cat "${c}cpuset.mems" >"$c$cg/cpuset.mems"
    fi
  done
}

# start_containerd N, start_kubelet N: node N's daemons, in its namespace (no wait).
start_containerd() {
  mkdir -p "$(node_rstate "$1")"
  node_cgroups "$1"
  START_NETNS="$(node_ns "$1")" start_proc "containerd-$1" "$(command -v containerd)" --config "$(node_run "$1")/containerd.toml"
}
start_kubelet() {
  local r; r="$(node_run "$1")"
  START_NETNS="$(node_ns "$1")" start_proc "kubelet-$1" "$kube_bin/kubelet" --config "$r/kubelet.yaml" \
    --kubeconfig "$MCONF/node$1.kubeconfig" --root-dir "$r/kubelet" --cert-dir "$r/kubelet-pki" \
    --hostname-override "$(node_ns "$1")" --node-ip "$(node_ip "$1")"
}

# node_pids N: every process of node N: those in its network namespace (containerd, kubelet,
# shims, host-network pods) and those in its cgroup root (every container, whatever its netns).
node_pids() {
  local ns; ns="$(node_ns "$1")"
  shopt -s globstar nullglob
  { ip netns pids "$ns" 2>/dev/null; cat /sys/fs/cgroup/pids/"$ns"/**/cgroup.procs 2>/dev/null; } | sort -un
}

# node_pod_netns N: the pod network namespaces whose veth peer is in node N's namespace.
node_pod_netns() {
  local ns want; want="$(node_ns "$1")"
  for ns in /run/netns/cni-*; do
    [ -e "$ns" ] || continue
    ns="${ns#/run/netns/}"
    ip -n "$ns" -o link show 2>/dev/null | awk -v w="$want" '{ for (i = 1; i < NF; i++) if ($i == "link-netns" && $(i+1) == w) f = 1 } END { exit !f }' &&
      echo "$ns"
  done
}

# kill_node N: SIGKILL everything node N runs, until nothing is left (a shim may fork while we
# look). Returns non-zero if something survives.
kill_node() {
  local round pids
  for round in 1 2 3 4 5; do
    mapfile -t pids < <(node_pids "$1")
    [ "${#pids[@]}" -eq 0 ] && return 0
    kill -KILL "${pids[@]}" 2>/dev/null
    for ((i = 0; i < 40; i++)); do
      local any=0 p
      for p in "${pids[@]}"; do alive "$p" && any=1 && break; done
      [ "$any" = 0 ] && break
      sleep 0.05
    done
  done
  mapfile -t pids < <(node_pids "$1")
  local live=() p
  for p in "${pids[@]}"; do alive "$p" && live+=("$p"); done
  [ "${#live[@]}" -eq 0 ] || { log "node $1: processes survive SIGKILL: ${live[*]}"; return 1; }
}

# node_links N up|down [node|ext|tenant ...]: the host-side ends of node N's NICs (all of them
# when none is named). A veth whose peer is down has no carrier: the node's end is cut too.
node_links() {
  local n="$1" state="$2" l; shift 2
  local which=("$@")
  [ "${#which[@]}" -gt 0 ] || which=(node ext tenant)
  for l in "${which[@]}"; do
    case "$l" in
      node) ip link set "vpcnat-v$n" "$state" ;;
      ext) ip link set "vpcnat-e$n" "$state" ;;
      tenant) ip link set "vpcnat-t$n" "$state" ;;
      *) die "NIC $l: not one of node, ext, tenant" ;;
    esac
  done
}

# wipe_node N: what a power cycle loses: its pods' network namespaces, its mounts (overlays,
# shm, projected volumes) and its tmpfs state (/run/vpcnat-multi/nodeN). Disks (run/nodeN) stay.
wipe_node() {
  local n="$1" ns
  for ns in $(node_pod_netns "$n"); do ip netns del "$ns" 2>/dev/null || log "node $n: cannot delete netns $ns"; done
  umount_under "$(node_run "$n")" | sed "s/^/cannot unmount /" >&2
  umount_under "$(node_rstate "$n")" | sed "s/^/cannot unmount /" >&2
  rm -rf "$(node_rstate "$n")"
}
