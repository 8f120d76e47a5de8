// Command vpcnat-daemon converges vpcnat gateways' network namespaces on a node.
//
//	vpcnat-daemon [flags]                                         node mode (the DaemonSet): watch this node's gateway pods
//	vpcnat-daemon apply --netns PATH --spec FILE [--master NIC]   no cluster: converge one netns once
//	vpcnat-daemon install-cni [flags]                             install the CNI plugin and chain it (init container)
//	vpcnat-daemon install-cni --watch [flags]                     install, then keep it so (the cni-keeper sidecar)
package main

import (
	"os"
)

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "apply":
			os.Exit(runApply(os.Args[2:]))
		case "install-cni":
			os.Exit(runInstallCNI(os.Args[2:]))
		}
	}
	os.Exit(runNode(os.Args[1:]))
}
