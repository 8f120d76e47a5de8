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
# daemon's own PID.
start_proc() {
  local name="$1" bin="$2" pid i; shift 2
  setsid "$bin" "$@" >"$LOGS/$name.log" 2>&1 </dev/null &
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

kubectl_() { "$(kubebin)/kubectl" --kubeconfig "$CONF/admin.kubeconfig" "$@"; }
crictl_() { "$crictl_bin" --config "$CONF/crictl.yaml" "$@"; }
ctr_() { ctr --address "$CSOCK" --namespace k8s.io "$@"; }
