#!/usr/bin/env bash
# Prints the cluster's names and paths as KEY=VALUE lines (no spaces; lists are comma-separated),
# for tests and people:
#   eval "$(hack/cluster/env.sh)"; kubectl --kubeconfig "$KUBECONFIG" get nodes
# With NODES set (2..9), the multi-node cluster's (start-multi.sh).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
kube_bin=""
[ -f "$CONF/paths" ] && . "$CONF/paths"
if [ "${NODES:-1}" != 1 ]; then
  # The multi-node cluster (start-multi.sh): NODE_NAMES, NODE_IPS, POD_CIDRS, CGROUP_ROOTS and
  # CONTAINERD_SOCKETS list the nodes in order (node 1 first).
  . "$(dirname "$0")/lib-multi.sh"
  nodes="$(multi_nodes)"
  list() { local n out=(); for ((n = 1; n <= nodes; n++)); do out+=("$("$1" "$n")"); done; (IFS=,; echo "${out[*]}"); }
  cat <<EOT
KUBECONFIG=$MCONF/admin.kubeconfig
KUBE_BIN=$kube_bin
CRICTL=$crictl_bin
CLUSTER_DIR=$MD
RUN_DIR=$RUN
LOG_DIR=$LOGS
STATE_DIR=$RSTATE
IMAGES_DIR=$IMAGES
OWNED_NETNS_FILE=$RUN/owned-netns
OWNED_LINKS_FILE=$RUN/owned-links
CNI_BIN_DIR=$RUN/cni/bin
NODES=$nodes
NODE_NAMES=$(list node_ns)
NODE_IPS=$(list node_ip)
POD_CIDRS=$(list node_pod_cidr)
CGROUP_ROOTS=$(list node_ns)
CONTAINERD_SOCKETS=$(list node_sock)
NODE_NETWORK_BRIDGE=$phys
EXTERNAL_BRIDGE=$ext_bridge
TENANT_HOST_BRIDGE=$vpc_bridge
NODE_EXTERNAL_NIC=ext
NODE_TENANT_BRIDGE=$tenant_bridge
API_SERVER=$phys_addr:$apiserver_port
KUBELET_PORT=$kubelet_port
HOST_SYSCTLS=$(IFS=,; echo "${host_sysctls[*]}")
HOST_DIRS=$(IFS=,; echo "${host_dirs[*]}")
EOT
  exit 0
fi
cat <<EOT
KUBECONFIG=$CONF/admin.kubeconfig
KUBE_BIN=$kube_bin
CRICTL=$crictl_bin
CONTAINERD_SOCKET=$CSOCK
CLUSTER_DIR=$D
RUN_DIR=$RUN
LOG_DIR=$LOGS
STATE_DIR=$RSTATE
IMAGES_DIR=$IMAGES
OWNED_NETNS_FILE=$RUN/owned-netns
OWNED_LINKS_FILE=$RUN/owned-links
CNI_BIN_DIR=$RUN/cni/bin
CNI_CONF_DIR=$RUN/cni/net.d
NODE_NAME=$node_name
NODE_BRIDGE=$bridge
POD_CIDR=$pod_cidr
CGROUP_ROOT=$cgroup_root
HOST_SYSCTLS=$(IFS=,; echo "${host_sysctls[*]}")
HOST_DIRS=$(IFS=,; echo "${host_dirs[*]}")
EOT
