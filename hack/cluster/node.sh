#!/usr/bin/env bash
# Node operations on the multi-node cluster (start-multi.sh), as root, for tests and people:
#   node.sh poweroff N             SIGKILL of everything node N runs (kubelet, containerd, shims,
#                                  every pod process), its NICs down and its pods' network
#                                  namespaces gone: nothing of it answers any more
#   node.sh partition N [NIC...]   its NICs (node, ext, tenant; all when none is named) cut; it
#                                  keeps running
#   node.sh heal N                 every NIC of node N up again
#   node.sh poweron N              a reboot: stale mounts and tmpfs state wiped, NICs up,
#                                  containerd and the kubelet started again (not waiting for Ready)
#   node.sh pids N                 the PIDs of everything node N runs, one a line
# Node N's name (Node object, network namespace, cgroup root) is vpcnat-nodeN.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-multi.sh"
[ "$(id -u)" -eq 0 ] || die "run as root"
usage="usage: node.sh poweroff|partition|heal|poweron|pids N [NIC...]"
[ $# -ge 2 ] || die "$usage"
op="$1" n="$2"; shift 2
[ -d "$RUN" ] || die "no multi-node cluster is running ($RUN is missing): NODES=3 hack/cluster/start.sh"
check_node "$n"
. "$CONF/paths"
powered_off() { [ -f "$RUN/node$n/powered-off" ]; }
case "$op" in
  poweroff)
    powered_off && die "node $n is powered off already"
    # A power cut stops everything at once. Every process of the node is stopped first, so none
    # of them sees its NICs go down and reacts (a gateway agent seeing its external NIC lose
    # carrier would hand over at once, which a dead node cannot); then the NICs: from this
    # instant nothing of the node reaches the others.
    mapfile -t pids < <(node_pids "$n")
    [ "${#pids[@]}" -eq 0 ] || kill -STOP "${pids[@]}" 2>/dev/null || true
    node_links "$n" down
    touch "$RUN/node$n/powered-off"
    kill_node "$n" || die "node $n: processes survived SIGKILL"
    for p in containerd kubelet; do rm -f "$PIDS/$p-$n.pid"; done
    # A powered-off machine has no network stack: its pods' namespaces (addresses, NAT rules,
    # conntrack) go with it; containerd's CNI DEL at power-on tolerates their absence.
    wipe_node "$n"
    log "node $n powered off at +$(now)s"
    ;;
  partition)
    [ $# -eq 0 ] || [[ " $* " =~ ^(\ (node|ext|tenant))+\ $ ]] || die "NIC $*: each must be node, ext or tenant"
    node_links "$n" down "$@"
    log "node $n partitioned (${*:-node ext tenant})"
    ;;
  heal)
    powered_off && die "node $n is powered off: poweron, not heal"
    node_links "$n" up
    log "node $n healed"
    ;;
  poweron)
    powered_off || die "node $n is not powered off"
    wipe_node "$n" # power-off wiped it already; again in case that was interrupted
    node_links "$n" up
    start_containerd "$n"
    wait_for "containerd-$n" 30 ctr --address "$(node_sock "$n")" version
    start_kubelet "$n"
    rm -f "$RUN/node$n/powered-off"
    log "node $n powered on at +$(now)s"
    ;;
  pids) node_pids "$n" ;;
  *) die "$usage" ;;
esac
