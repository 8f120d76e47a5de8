#!/usr/bin/env bash
# Tears down everything start.sh made, whatever state it is in (running, half-started, crashed):
# pods first through the CRI (so containerd runs CNI DEL: netns, veth and IP released), then
# the processes by their recorded PIDs, then what a crash could leave: container processes (the
# PIDs in the cluster's own cgroup tree), shims (those naming the cluster's containerd socket),
# network namespaces whose veth sits on the cluster's bridge, the test networks registered in
# run/owned-*, mounts under the cluster's directories, the cgroups, libcni's cache entries of
# our sandboxes, the host directories start.sh found absent, the sysctls. The multi-node cluster
# (NODES=3 start.sh) is stopped first, by stop-multi.sh. Safe to run twice; exits non-zero,
# naming it, if something could not be removed.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
[ "$(id -u)" -eq 0 ] || die "run as root"
[ -f "$CONF/paths" ] && . "$CONF/paths"
shopt -s globstar nullglob
problems=()
problem() { log "$*"; problems+=("$*"); }

# The multi-node cluster (start-multi.sh), if one runs or left state, has its own names.
"$(dirname "$0")/stop-multi.sh" || problem "stopping the multi-node cluster (stop-multi.sh) failed: see above"

# --- 1. nothing may recreate pods from here on ----------------------------------------------
for n in kubelet kcm scheduler; do stop_proc "$n" 10 & done
wait

# --- 2. pods, through containerd, so CNI DEL runs --------------------------------------------
if [ -d "$RUN/containerd" ]; then
  if ! pid_of containerd >/dev/null && [ -f "$CONF/containerd.toml" ] && [ -d "$RUN/cni/net.d" ]; then
    # containerd died (or was never stopped cleanly): bring it back just to tear pods down.
    log "containerd is not running; starting it to remove the pods"
    mkdir -p "$PIDS" "$LOGS"
    start_proc containerd "$(command -v containerd)" --config "$CONF/containerd.toml"
    for ((i = 0; i < 300; i++)); do ctr --address "$CSOCK" version >/dev/null 2>&1 && break; sleep 0.1; done
  fi
  if pid_of containerd >/dev/null && [ -x "$crictl_bin" ]; then
    mapfile -t pods < <(crictl_ pods -q 2>/dev/null)
    if [ "${#pods[@]}" -gt 0 ]; then
      crictl_ stopp "${pods[@]}" >/dev/null || problem "crictl stopp failed (CNI DEL may have failed; see $LOGS/containerd.log)"
      crictl_ rmp -f "${pods[@]}" >/dev/null || problem "crictl rmp failed"
      log "removed ${#pods[@]} pod sandboxes at +$(now)s"
    fi
  fi
fi
stop_proc containerd 10

# --- 3. what a crash leaves: container processes and shims -----------------------------------
# Container processes are in the kubelet's cgroup root, which is ours alone.
for round in 1 2 3; do
  mapfile -t left < <(cat /sys/fs/cgroup/pids/"$cgroup_root"/**/cgroup.procs 2>/dev/null | sort -u)
  [ "${#left[@]}" -eq 0 ] && break
  log "killing ${#left[@]} leftover container processes in cgroup $cgroup_root (round $round)"
  kill -KILL "${left[@]}" 2>/dev/null
  sleep 0.2
done
# A shim names our containerd's socket on its command line.
shim_exe="$(readlink -f "$(command -v containerd-shim-runc-v2)")"
for p in /proc/[0-9]*; do
  [ "$(readlink "$p/exe" 2>/dev/null)" = "$shim_exe" ] || continue
  tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -qF -- "-address $CSOCK " || continue
  log "killing leftover shim ${p#/proc/}"
  stop_pid "${p#/proc/}" 2
done

# --- 4. the control plane ---------------------------------------------------------------------
# In this order: an API server whose etcd is gone spends its whole grace period retrying.
stop_proc apiserver 10
stop_proc etcd 10

# --- 5. network: pod netns still behind a veth on our bridge, the veths, the bridge ----------
if ip link show "$bridge" >/dev/null 2>&1; then
  # A veth's peer namespace shows as "link-netns NAME" when it is a named (ip netns) one, else
  # as "link-netnsid N", which `ip netns list` maps to a name.
  declare -A nsname=()
  while read -r name _ id; do nsname[${id%)}]="$name"; done < <(ip netns list | awk '/\(id: / {print $1, $2, $3}')
  while read -r veth kind ns; do
    [ "$kind" = id ] && ns="${nsname[$ns]:-}"
    if [ -n "$ns" ] && [ -e "/run/netns/$ns" ]; then
      log "deleting leftover pod netns $ns (peer of $veth)"
      ip netns del "$ns" || problem "cannot delete netns $ns"
    fi
    ip link del "$veth" 2>/dev/null
  done < <(ip -o link show master "$bridge" | awk '{
    name = $2; sub(/@.*/, "", name); sub(/:$/, "", name); kind = "-"; ns = ""
    for (i = 1; i < NF; i++) {
      if ($i == "link-netns") { kind = "name"; ns = $(i+1) }
      if ($i == "link-netnsid") { kind = "id"; ns = $(i+1) }
    }
    print name, kind, ns }')
  ip link del "$bridge" || problem "cannot delete link $bridge"
fi

# libcni caches each attachment's result under /var/lib/cni/results/NETWORK-SANDBOXID-IFNAME
# until its DEL; when the pods could not be removed through containerd, remove our sandboxes'.
forget_cni_results "$RUN"/containerd/io.containerd.grpc.v1.cri/sandboxes/* "$RSTATE"/containerd/io.containerd.grpc.v1.cri/sandboxes/*

# Test networks attached to the node (an external network's bridge, a VPC's bridge, their test
# hosts' namespaces): a test lists what it creates in run/owned-netns and run/owned-links, one
# name per line, before creating it, so that even a killed test's are removed here.
remove_owned

# --- 6. mounts under the cluster's directories (overlays, shm, projected volumes), deepest first
for m in $(umount_under "$RUN"; umount_under "$RSTATE"); do problem "cannot unmount $m"; done

# --- 7. cgroups: our root in every hierarchy, deepest first ---------------------------------
for c in /sys/fs/cgroup/*/"$cgroup_root"; do
  [ -d "$c" ] || continue
  find "$c" -depth -type d -exec rmdir {} + 2>/dev/null
  [ -d "$c" ] && problem "cannot remove cgroup $c (processes left: $(cat "$c"/cgroup.procs 2>/dev/null | tr '\n' ' '))"
done

# --- 8. host sysctls and directories ---------------------------------------------------------
restore_host

# --- 9. state --------------------------------------------------------------------------------
rm -rf "$RSTATE" "$RUN" || problem "cannot remove $RUN or $RSTATE"
if [ "${#problems[@]}" -gt 0 ]; then
  log "stopped with ${#problems[@]} problem(s):"
  printf '  %s\n' "${problems[@]}" >&2
  exit 1
fi
log "stopped in $(now)s"
