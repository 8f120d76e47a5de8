package nodeagent

import (
	"fmt"

	"github.com/containernetworking/plugins/pkg/ns"
)

// nodeNetns is where the node side of every converge runs: netconf creates net1 on a node NIC
// and veths into node bridges found in the netns of the calling OS thread.
type nodeNetns struct {
	// ns is nil for the process's own netns: the DaemonSet runs with hostNetwork, so every
	// thread of the process is already on the node and nothing needs locking.
	ns ns.NetNS
}

// openNodeNetns opens path ("" = the process's netns). Tests and benchmarks run the daemon in
// the host's netns, where it reaches the API server on loopback, and point it at a simulated
// node's netns, so no converge ever touches the host's own links.
func openNodeNetns(path string) (*nodeNetns, error) {
	if path == "" {
		return &nodeNetns{}, nil
	}
	n, err := ns.GetNS(path)
	if err != nil {
		return nil, fmt.Errorf("opening the node netns %s: %w", path, err)
	}
	return &nodeNetns{ns: n}, nil
}

// do runs fn on the node side. With a netns of its own, ns.Do runs fn on a fresh OS thread
// locked into it (and discards the thread if it cannot switch back), so the worker's thread and
// the API client's connections never change netns.
func (n *nodeNetns) do(fn func() error) error {
	if n.ns == nil {
		return fn()
	}
	return n.ns.Do(func(ns.NetNS) error { return fn() })
}

func (n *nodeNetns) close() {
	if n.ns != nil {
		_ = n.ns.Close()
	}
}
