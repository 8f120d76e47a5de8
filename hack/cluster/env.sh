#!/usr/bin/env bash
# Prints the cluster's names and paths as KEY=VALUE lines (no spaces; lists are comma-separated),
# for tests and people:
#   eval "$(hack/cluster/env.sh)"; kubectl --kubeconfig "$KUBECONFIG" get nodes
set -euo pipefail
. "$(dirname "$0")/lib.sh"
kube_bin=""
[ -f "$CONF/paths" ] && . "$CONF/paths"
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
