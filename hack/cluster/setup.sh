#!/usr/bin/env bash
# One-time (idempotent) setup of the throwaway one-node cluster, as root: installs containerd and
# runc from the distribution if missing, builds (once per version, cached in VPCNAT_CACHE) the
# Kubernetes binaries, etcd, crictl and the reference CNI plugins, builds the images
# (hack/images.sh), and writes the PKI, kubeconfigs and configs into VPCNAT_CLUSTER_DIR/config.
# A second run only checks: a few seconds. Then: start.sh, stop.sh.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
[ "$(id -u)" -eq 0 ] || die "run as root (it installs packages and the cluster runs a kubelet)"
export GOFLAGS=-buildvcs=false
nice="nice -n 10"

mkdir -p "$CONF/pki" "$cache"
# Two setups at once (two test runs, a person and a test) would write the same files.
exec 8>"$D/.setup.lock"
flock 8

# --- packages: only the missing ones are named, or apt would upgrade installed ones ---------
need=()
command -v containerd >/dev/null || need+=(containerd)
command -v runc >/dev/null || need+=(runc)
command -v openssl >/dev/null || need+=(openssl)
command -v ip >/dev/null || need+=(iproute2)
command -v iptables-save >/dev/null || need+=(iptables)
if [ "${#need[@]}" -gt 0 ]; then
  log "apt-get install ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
for t in containerd containerd-shim-runc-v2 runc ctr openssl ip iptables-save ldd setsid flock ss; do
  command -v "$t" >/dev/null || die "$t not found after installing packages"
done

# --- binaries ---------------------------------------------------------------------------------
kb="$(kubebin)"
cni="$(VPCNAT_CACHE="$cache" "$repo/hack/build-cni-plugins.sh")"
if [ ! -x "$crictl_bin" ]; then
  # crictl talks CRI to containerd: stop.sh uses it to stop and remove pod sandboxes, which is
  # what makes containerd run CNI DEL. The distribution has no package for it.
  log "building crictl $crictl_version into $(dirname "$crictl_bin") (a few minutes cold)"
  GOBIN="$(dirname "$crictl_bin")" $nice go install "sigs.k8s.io/cri-tools/cmd/crictl@$crictl_version"
fi
"$repo/hack/images.sh"

# --- PKI: a CA, the API server's serving cert, its client cert for kubelets, the service
# account key pair, and static tokens (admin, the node). Kept between runs; renewed when the
# CA expires within a day.
pki="$CONF/pki"
if ! [ -f "$pki/ca.crt" ] || ! openssl x509 -checkend 86400 -noout -in "$pki/ca.crt" >/dev/null \
   || ! [ -f "$pki/tokens.csv" ] || ! [ -f "$CONF/admin.kubeconfig" ]; then
  log "making the cluster PKI in $pki"
  tmp="$(mktemp -d "$CONF/pki.XXXXXX")"
  (
    cd "$tmp"
    key() { openssl genpkey -quiet -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1.key"; }
    sign() { # NAME SUBJECT EXTENSIONS
      key "$1"
      openssl req -new -key "$1.key" -subj "$2" -out "$1.csr"
      printf '%s\n' "$3" >"$1.ext"
      openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 365 -sha256 \
        -extfile "$1.ext" -out "$1.crt" 2>/dev/null
      rm -f "$1.csr" "$1.ext"
    }
    key ca
    openssl req -x509 -new -key ca.key -subj "/CN=vpcnat-cluster-ca" -days 365 -sha256 -out ca.crt
    sign apiserver "/CN=kube-apiserver" "$(printf '%s\n%s\n%s' \
      "subjectAltName=DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:127.0.0.1,IP:10.96.0.1" \
      "extendedKeyUsage=serverAuth" "keyUsage=critical,digitalSignature,keyEncipherment")"
    # The API server's identity towards the kubelet API (logs, exec, port-forward).
    sign apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" \
      "$(printf '%s\n%s' "extendedKeyUsage=clientAuth" "keyUsage=critical,digitalSignature,keyEncipherment")"
    key sa
    openssl pkey -in sa.key -pubout -out sa.pub
    # Static tokens keep the kubelet out of TLS bootstrapping: it is system:node:<name>, in
    # system:nodes, which the Node authorizer and NodeRestriction expect.
    printf '%s,admin,admin,system:masters\n%s,system:node:%s,system:node:%s,system:nodes\n' \
      "$(openssl rand -hex 24)" "$(openssl rand -hex 24)" "$node_name" "$node_name" >tokens.csv
    chmod 600 ./*.key tokens.csv
  )
  rm -rf "$pki" && mv "$tmp" "$pki"
  kubeconfig() { # FILE TOKEN
    cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: vpcnat
  cluster: {server: "https://127.0.0.1:$apiserver_port", certificate-authority: "$pki/ca.crt"}
users:
- name: user
  user: {token: "$2"}
contexts:
- name: vpcnat
  context: {cluster: vpcnat, user: user}
current-context: vpcnat
EOF
    chmod 600 "$1"
  }
  kubeconfig "$CONF/admin.kubeconfig" "$(awk -F, '$2 == "admin" {print $1}' "$pki/tokens.csv")"
  kubeconfig "$CONF/kubelet.kubeconfig" "$(awk -F, '$2 ~ /^system:node:/ {print $1}' "$pki/tokens.csv")"
fi

# --- configs (rewritten every time: cheap, and a changed lib.sh takes effect) ---------------
cat >"$CONF/containerd.toml" <<EOF
version = 2
root = "$RUN/containerd"
state = "$RSTATE/containerd"
# The opt plugin would create /opt/containerd; the other snapshotters are never used.
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "$CSOCK"
[ttrpc]
  address = "$CSOCK.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  # No registry can be reached: the sandbox image is imported by start.sh.
  sandbox_image = "vpcnat.local/pause:3.10"
  # Root here lacks CAP_SYS_RESOURCE: runc cannot lower a sandbox's oom_score_adj to -998.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        # runc's state beside ours instead of /run/containerd/runc.
        Root = "$RSTATE/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    # The node's CNI directories are the cluster's own (made by start.sh, removed by stop.sh),
    # not the host's /opt/cni/bin and /etc/cni/net.d.
    bin_dir = "$RUN/cni/bin"
    conf_dir = "$RUN/cni/net.d"
    max_conf_num = 1
EOF

cat >"$CONF/kubelet.yaml.in" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# The machines' cgroups are v1 (hybrid); kubelet 1.37 refuses v1 unless told otherwise.
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: /$cgroup_root
containerRuntimeEndpoint: unix://$CSOCK
address: @NODE_IP@
port: $kubelet_port
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $kubelet_healthz_port
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $pki/ca.crt}
authorization:
  mode: Webhook
failSwapOn: false
# A test node's disk and memory are shared with the rest of the suite: evict only when
# nearly nothing is left, and never garbage-collect the imported images (they cannot be pulled).
evictionHard:
  memory.available: "100Mi"
  nodefs.available: "1%"
  imagefs.available: "1%"
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
resolvConf: /etc/resolv.conf
# No iptables rules in the host's namespace (KUBE-FIREWALL, canaries): nothing to leave behind.
makeIPTablesUtilChains: false
# Paths that would otherwise be the host's: logs, FlexVolume plugins.
podLogsDir: $RUN/pod-logs
volumePluginDir: $RUN/kubelet-plugins
# Node graceful shutdown would ask systemd-logind for an inhibitor lock; there is none.
shutdownGracePeriod: 0s
shutdownGracePeriodCriticalPods: 0s
EOF

cat >"$CONF/10-vpcnat-node.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "vpcnat-node",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$bridge",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$pod_cidr"}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": "$RUN/cni-ipam"
      }
    }
  ]
}
EOF
# crictl reads a config file (or warns that /etc/crictl.yaml is missing): give it ours.
cat >"$CONF/crictl.yaml" <<EOF
runtime-endpoint: unix://$CSOCK
image-endpoint: unix://$CSOCK
timeout: 30
EOF
# start.sh reads these to know what it runs.
{
  echo "kube_bin=$kb"
  echo "cni_bin=$cni"
} >"$CONF/paths"
log "done: $D (kube $kb, cni $cni, crictl $crictl_bin, images $IMAGES)"
