// Command vpcnat-daemon converges vpcnat gateways' network namespaces on a node.
//
//	vpcnat-daemon apply --netns PATH --spec FILE [--master NIC]   no cluster: converge one netns once
//
// The node DaemonSet mode (watch the node's gateway pods) is the default when no subcommand is
// given.
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "apply" {
		os.Exit(runApply(os.Args[2:]))
	}
	fmt.Fprintln(os.Stderr, "vpcnat-daemon: the node (DaemonSet) mode is not built yet; use: vpcnat-daemon apply --netns PATH --spec FILE")
	os.Exit(2)
}
