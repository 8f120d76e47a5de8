#!/usr/bin/env bash
# Tears down everything start-multi.sh made, whatever state it is in (running, half-started,
# nodes powered off or partitioned); stop.sh runs it first, so stop.sh stops either cluster.
# Per node: the pods through the CRI (a powered-off node's containerd is started again for this,
# so that CNI DEL releases addresses and libcni's cache), then every process of the node (its
# network namespace and cgroup root); then the control plane, the pods' and nodes' network
# namespaces, the bridges (their routes go with them), mounts, cgroups, sysctls and host
# directories. Exits 0 at once when no multi-node cluster ran; non-zero, naming it, if something
# could not be removed.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-multi.sh"
[ "$(id -u)" -eq 0 ] || die "run as root"
shopt -s globstar nullglob
nodes=9 # the most a cluster can have: a half-started one may not have written run/nodes
[ -f "$RUN/nodes" ] && nodes="$(cat "$RUN/nodes")"
left=0
[ -d "$RUN" ] || [ -d "$RSTATE" ] && left=1
for l in "$phys" "$ext_bridge" "$vpc_bridge"; do ip link show "$l" >/dev/null 2>&1 && left=1; done
for ((n = 1; n <= nodes; n++)); do [ -e "/run/netns/$(node_ns $n)" ] && left=1; done
[ "$left" = 1 ] || exit 0
[ -f "$CONF/paths" ] && . "$CONF/paths"
problems=()
problem() { log "$*"; problems+=("$*"); }

# --- 1. nothing may recreate pods from here on ------------------------------------------------
for p in kcm scheduler $(for ((n = 1; n <= nodes; n++)); do echo "kubelet-$n"; done); do stop_proc "$p" 10 & done
wait

# --- 2. per node: pods through containerd (CNI DEL), then containerd, then whatever is left ----
stop_node() {
  local n="$1" pods
  [ -d "$(node_run "$n")/containerd" ] && [ -e "/run/netns/$(node_ns "$n")" ] || return 0
  if ! pid_of "containerd-$n" >/dev/null; then
    log "node $n: containerd is not running (powered off?); starting it to remove the pods"
    start_containerd "$n"
    for ((i = 0; i < 300; i++)); do ctr --address "$(node_sock "$n")" version >/dev/null 2>&1 && break; sleep 0.1; done
  fi
  if pid_of "containerd-$n" >/dev/null && [ -x "$crictl_bin" ]; then
    mapfile -t pods < <(ncrictl "$n" pods -q 2>/dev/null)
    if [ "${#pods[@]}" -gt 0 ]; then
      ncrictl "$n" stopp "${pods[@]}" >/dev/null || log "node $n: crictl stopp failed (see $LOGS/containerd-$n.log)"
      ncrictl "$n" rmp -f "${pods[@]}" >/dev/null || log "node $n: crictl rmp failed"
      log "node $n: removed ${#pods[@]} pod sandboxes at +$(now)s"
    fi
  fi
  stop_proc "containerd-$n" 10
}
for ((n = 1; n <= nodes; n++)); do stop_node "$n" & done
wait
for ((n = 1; n <= nodes; n++)); do
  kill_node "$n" || problem "node $n: processes survive SIGKILL"
  rm -f "$PIDS/containerd-$n.pid" "$PIDS/kubelet-$n.pid"
done

# --- 3. the control plane (the API server may need its whole grace with dead peers) ------------
stop_proc apiserver 10
stop_proc etcd 10

# --- 4. network: pod namespaces, test networks registered by tests, nodes, bridges --------------
for ((n = 1; n <= nodes; n++)); do
  for ns in $(node_pod_netns "$n"); do
    log "deleting leftover pod netns $ns of node $n"
    ip netns del "$ns" || problem "cannot delete netns $ns"
  done
done
forget_cni_results "$RUN"/node*/containerd/io.containerd.grpc.v1.cri/sandboxes/*
remove_owned
for ((n = 1; n <= nodes; n++)); do
  ns="$(node_ns $n)"
  [ -e "/run/netns/$ns" ] && { ip netns del "$ns" || problem "cannot delete netns $ns"; }
  for l in $(node_host_links "$n"); do
    # The node's veth goes away on its own once its netns is deleted just above: gone between
    # the show and the del is gone.
    ip link show dev "$l" >/dev/null 2>&1 && { ip link del dev "$l" 2>/dev/null || ! ip link show dev "$l" >/dev/null 2>&1 || problem "cannot delete link $l"; }
  done
done
for l in "$phys" "$ext_bridge" "$vpc_bridge"; do
  ip link show "$l" >/dev/null 2>&1 && { ip link del "$l" || problem "cannot delete link $l"; }
done

# --- 5. mounts, cgroups, host state, our directories -------------------------------------------
for m in $(umount_under "$RUN"; umount_under "$RSTATE"); do problem "cannot unmount $m"; done
for ((n = 1; n <= nodes; n++)); do
  for c in /sys/fs/cgroup/*/"$(node_ns $n)"; do
    find "$c" -depth -type d -exec rmdir {} + 2>/dev/null
    [ -d "$c" ] && problem "cannot remove cgroup $c (processes left: $(cat "$c"/cgroup.procs 2>/dev/null | tr '\n' ' '))"
  done
done
restore_host
rm -rf "$RSTATE" "$RUN" || problem "cannot remove $RUN or $RSTATE"
if [ "${#problems[@]}" -gt 0 ]; then
  log "stopped with ${#problems[@]} problem(s):"
  printf '  %s\n' "${problems[@]}" >&2
  exit 1
fi
log "stopped the multi-node cluster in $(now)s"
