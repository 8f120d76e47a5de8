# Sourced by setup.sh, start.sh, stop.sh and env.sh: one place for the cluster's names, paths
# and ports, and the helpers that start and stop its processes.
#
# Every path, port, link name and cgroup below belongs to this cluster alone, so start and stop
# can tell exactly what is theirs; nothing here is shared with a system containerd or kubelet
# (there is none on a test machine, but a developer's machine may have one).

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cache="${VPCNAT_CACHE:-/var/cache/vpcnat}"

kube_version="${KUBE_VERSION:-1.37.2}"
crictl_version="${CRICTL_VERSION:-v1.37.0}"

# D: setup's output (PKI, kubeconfigs, configs) and, under D/run, every start's state, which
# stop.sh removes. /var/tmp: survives the checkout (CI clones afresh) and is not the repo.
D="${VPCNAT_CLUSTER_DIR:-/var/tmp/vpcnat-cluster}"
CONF="$D/config"
RUN="$D/run"          # etcd data, containerd root (images, snapshots), kubelet root, CNI dirs
PIDS="$RUN/pids"
HOSTSTATE="$RUN/host"  # host state saved at start and restored at stop (sysctls, dirs we create)
LOGS="$D/logs"         # kept after stop for post-mortems; emptied at the next start
# Sockets and runtime state must be on tmpfs; the name marks them as this cluster's.
RSTATE="/run/vpcnat-cluster"
CSOCK="$RSTATE/containerd/containerd.sock"
IMAGES="${VPCNAT_IMAGES:-$repo/bin/images}"

node_name="vpcnat-node"
# The node's pod network: a bridge made by the bridge CNI plugin on the first pod. The subnet
# is used by no other test here (see STYLE's address plan); the bridge is the one host-side
# link with an address, as a real node's cni0 would be.
bridge="vpcnat-cni0"
pod_cidr="${VPCNAT_POD_CIDR:-10.244.0.0/24}"
# The kubelet puts every pod cgroup under this root (cgroupRoot), so stop.sh removes one tree
# it owns instead of guessing which kubepods cgroups are whose.
cgroup_root="vpcnat-cluster"
# Fixed ports below the kernel's ephemeral range (32768+), so test/kubeenv's kernel-chosen ports
# can never take them; `ss -ltn` on the machines showed none of them in use.
etcd_port=23890 etcd_peer_port=23891 etcd_metrics_port=23892
apiserver_port=16443
kcm_port=10357 scheduler_port=10359
kubelet_port=10350 kubelet_healthz_port=10348
all_ports=($etcd_port $etcd_peer_port $etcd_metrics_port $apiserver_port $kcm_port $scheduler_port $kubelet_port $kubelet_healthz_port)

# The sysctls the cluster changes: the bridge plugin (isGateway) turns on forwarding, and the
# kubelet "tunes" the others (vm.overcommit_memory=1, kernel.panic=10, kernel.panic_on_oops=1,
# ...) with no way to turn that off short of refusing to start. start.sh saves them, stop.sh
# puts them back.
host_sysctls=(net.ipv4.ip_forward vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops
  kernel.keys.root_maxkeys kernel.keys.root_maxbytes)
# Host directories that containerd, the kubelet or libcni create on their own and that no flag
# moves. start.sh notes which already exist; stop.sh removes the others once they are empty of
# anything but directories (and our symlinks in /var/log/containers).
host_dirs=(/run/containerd /var/lib/cni /var/log/containers /var/log/pods /opt/containerd /var/lib/containerd /var/lib/kubelet /etc/cni
  /run/vpcnat) # the vpcnat plugin's attachment records (its default stateDir)

kubebin() { # prints the Kubernetes bin directory (built once, cached; waits for a build in progress)
  VPCNAT_CACHE="$cache" KUBE_VERSION="$kube_version" "$repo/hack/build-kube.sh"
}
crictl_bin="$cache/crictl-$crictl_version/crictl"

log() { printf '%s: %s\n' "$(basename "$0" .sh)" "$*" >&2; }
die() { log "$*"; exit 1; }

# now: seconds since the script started, for the timings it prints.
T0=$EPOCHREALTIME
now() { awk -v a="$T0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }'; }

# start_proc NAME BINARY ARGS...: run BINARY in its own session (it outlives the script), output
# to LOGS/NAME.log, and record "PID BINARY" in PIDS/NAME.pid. A background job of a
# non-interactive shell is not a process-group leader, so setsid execs in place and $! is the
# daemon's own PID. With START_NETNS set, BINARY runs in that named network namespace (a node of
# the multi-node cluster): nsenter execs in place too, so $! is still the daemon's PID. Not
# `ip netns exec`: it makes a mount namespace and remounts /sys, where the kubelet then finds no
# cgroup mounts.
start_proc() {
  local name="$1" bin="$2" pid i pre=(); shift 2
  [ -n "${START_NETNS:-}" ] && pre=(nsenter "--net=/run/netns/$START_NETNS")
  setsid "${pre[@]}" "$bin" "$@" >"$LOGS/$name.log" 2>&1 </dev/null &
  pid=$!
  echo "$pid $bin" >"$PIDS/$name.pid"
  # Until setsid has exec'd, the PID is setsid's; pid_of would take the daemon for dead.
  for ((i = 0; i < 500; i++)); do
    [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = "$(readlink -f "$bin")" ] && return 0
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.01
  done
  log "$name ($bin) did not start; see $LOGS/$name.log"
  return 1
}

# pid_of NAME: the recorded PID, if that process is still the binary we started (a PID reused
# after a reboot or a crash is someone else's and must not be signalled).
pid_of() {
  local f="$PIDS/$1.pid" pid bin exe
  [ -f "$f" ] || return 1
  read -r pid bin <"$f"
  exe="$(readlink "/proc/$pid/exe" 2>/dev/null)" || return 1
  [ "$exe" = "$(readlink -f "$bin")" ] || return 1
  echo "$pid"
}

# alive PID: the process exists and has not exited. Our daemons' parent is init (start.sh is
# gone), which may take a while to reap them: a zombie counts as exited.
alive() {
  local stat
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
  stat="${stat##*) }"
  [ "${stat%% *}" != Z ]
}

# stop_pid PID [GRACE_SECONDS]: SIGTERM, then SIGKILL if it is still there after GRACE.
stop_pid() {
  local pid="$1" grace="${2:-10}" i
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < grace * 20; i++)); do
    alive "$pid" || return 0
    sleep 0.05
  done
  log "pid $pid did not exit ${grace}s after SIGTERM; SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do alive "$pid" || return 0; sleep 0.05; done
  log "pid $pid survived SIGKILL (stuck in the kernel?)"
  return 1
}

# stop_proc NAME [GRACE]: stop a process start_proc started, by its recorded PID.
stop_proc() {
  local pid t=$EPOCHREALTIME
  if pid="$(pid_of "$1")"; then
    stop_pid "$pid" "${2:-10}"
    log "$1 stopped in $(awk -v a="$t" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }')s"
  fi
  rm -f "$PIDS/$1.pid"
}

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

# start_etcd_apiserver CONF ADDRESS: etcd on loopback, then (once etcd is healthy) the API server
# on ADDRESS:apiserver_port with the PKI and tokens in CONF/pki; does not wait for the API server.
start_etcd_apiserver() {
  local conf="$1" addr="$2" pki="$1/pki" adv=()
  start_proc etcd "$kube_bin/etcd" --name "$node_name" --data-dir "$RUN/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$etcd_peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer_port" \
    --initial-cluster "$node_name=http://127.0.0.1:$etcd_peer_port" \
    --listen-metrics-urls "http://127.0.0.1:$etcd_metrics_port" \
    --unsafe-no-fsync --log-level warn # throwaway data: fsync would only cost time
  wait_for etcd 30 etcd_healthy
  # On loopback no --advertise-address: the API server refuses a loopback one, and picks the
  # node's address. On another address (the multi-node cluster's bridge) it advertises that.
  [ "$addr" = 127.0.0.1 ] || adv=(--advertise-address "$addr")
  # --enable-aggregator-routing: this cluster has no kube-proxy, so the API server could not reach
  # a ClusterIP (the webhook Service vpcnat-webhook); with it, it calls the Service's endpoints
  # (the controller pods' IPs, which the host routes).
  start_proc apiserver "$kube_bin/kube-apiserver" --etcd-servers "http://127.0.0.1:$etcd_port" \
    --bind-address "$addr" "${adv[@]}" --secure-port "$apiserver_port" \
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
}

# etcd answers /health once it has a leader; bash's /dev/tcp keeps curl off the requirements.
etcd_healthy() {
  exec 7<>"/dev/tcp/127.0.0.1/$etcd_port" || return 1
  printf 'GET /health HTTP/1.0\r\n\r\n' >&7
  local body; body="$(cat <&7)"; exec 7>&-
  [[ "$body" == *'"health":"true"'* ]]
}

# start_controllers CONF: kube-controller-manager and kube-scheduler with CONF's admin kubeconfig.
start_controllers() {
  local conf="$1"
  # --vmodule: the garbage collector logs its discovery resyncs (a CRD installed after the
  # controller-manager started is watched only from the next one, every 30 s) and each deletion.
  start_proc kcm "$kube_bin/kube-controller-manager" --kubeconfig "$conf/admin.kubeconfig" \
    --authentication-kubeconfig "$conf/admin.kubeconfig" --authorization-kubeconfig "$conf/admin.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$kcm_port" --leader-elect=false \
    --service-account-private-key-file "$conf/pki/sa.key" --root-ca-file "$conf/pki/ca.crt" \
    --service-cluster-ip-range 10.96.0.0/16 --vmodule=garbagecollector=2
  start_proc scheduler "$kube_bin/kube-scheduler" --kubeconfig "$conf/admin.kubeconfig" \
    --authentication-kubeconfig "$conf/admin.kubeconfig" --authorization-kubeconfig "$conf/admin.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$scheduler_port" --leader-elect=false
}

# umount_under PREFIX: unmount everything at or under PREFIX, deepest first; prints what could
# not be unmounted (mount points with spaces come out as \040).
umount_under() {
  local prefix="$1" m mounts
  mapfile -t mounts < <(awk -v p="$prefix" '{ m = $5; gsub(/\\040/, " ", m); if (m == p || index(m, p "/") == 1) print m }' /proc/self/mountinfo | sort -r)
  for m in "${mounts[@]}"; do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || echo "${m// /\\040}"
  done
}

# forget_cni_results SANDBOX_DIR...: remove libcni's cached results of these sandboxes (the
# directories are containerd's, named by sandbox ID).
forget_cni_results() {
  local sb id
  for sb in "$@"; do
    id="$(basename "$sb")"
    [[ "$id" =~ ^[0-9a-f]{64}$ ]] && rm -f /var/lib/cni/results/*-"$id"-*
  done
  return 0
}

# remove_owned: the network namespaces and links tests registered in RUN/owned-netns and
# RUN/owned-links; reports through the caller's problem().
remove_owned() {
  local ns l
  if [ -f "$RUN/owned-netns" ]; then
    while read -r ns; do
      [ -n "$ns" ] && [ -e "/run/netns/$ns" ] && { ip netns del "$ns" || problem "cannot delete netns $ns"; }
    done <"$RUN/owned-netns"
  fi
  if [ -f "$RUN/owned-links" ]; then
    while read -r l; do
      # A veth whose peer was in a netns deleted just above goes away asynchronously: gone
      # between the show and the del is gone.
      [ -n "$l" ] && ip link show dev "$l" >/dev/null 2>&1 && { ip link del dev "$l" 2>/dev/null || ! ip link show dev "$l" >/dev/null 2>&1 || problem "cannot delete link $l"; }
    done <"$RUN/owned-links"
  fi
  return 0
}

# restore_host: the sysctls and host directories as HOSTSTATE recorded them at start (stop.sh,
# stop-multi.sh); reports through the caller's problem().
restore_host() {
  local k v l d
  if [ -f "$HOSTSTATE/sysctls" ]; then
    while IFS='=' read -r k v; do
      [ "$(sysctl -n "$k")" = "$v" ] || sysctl -qw "$k=$v" || problem "cannot restore $k=$v"
    done <"$HOSTSTATE/sysctls"
  fi
  if [ -f "$HOSTSTATE/dirs-before" ]; then
    # Symlinks the kubelet makes to our pod logs (/var/log/containers is not configurable).
    for l in /var/log/containers/*.log; do
      [ -L "$l" ] && [[ "$(readlink "$l")" == "$RUN/"* ]] && rm -f "$l"
    done
    for d in "${host_dirs[@]}"; do
      grep -qxF "$d" "$HOSTSTATE/dirs-before" && continue
      [ -d "$d" ] || continue
      # What the components leave there on their own: empty directories and sockets (the
      # kubelet's device-plugin socket is always /var/lib/kubelet/device-plugins/kubelet.sock).
      find "$d" -depth \( -type s -o -type d -empty \) -delete
      [ -e "$d" ] && problem "$d was created while the cluster ran and is not empty: $(find "$d" ! -type d | head -3 | tr '\n' ' ')"
    done
  fi
}

kubectl_() { "$(kubebin)/kubectl" --kubeconfig "$CONF/admin.kubeconfig" "$@"; }
crictl_() { "$crictl_bin" --config "$CONF/crictl.yaml" "$@"; }
ctr_() { ctr --address "$CSOCK" --namespace k8s.io "$@"; }
