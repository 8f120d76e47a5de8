package topo

import "fmt"

// NewSeed builds the seed topology described in the package comment (everything but the
// gateway's own NICs, which vpcnat creates). On error it removes what it built.
func NewSeed(prefix string) (*Topology, error) {
	t := &Topology{Prefix: prefix}
	if err := t.BuildSeed(); err != nil {
		_ = t.Close()
		return nil, err
	}
	return t, nil
}

// BuildSeed builds the seed topology into t, for a caller that must be able to Close it while it
// is being built (a demo interrupted early). On error the caller closes t.
func (t *Topology) BuildSeed() error {
	prefix := t.Prefix
	steps := []func() error{
		func() error { return t.AddNS(Ext) },
		func() error { return t.Bridge(Ext, "br0") },
		func() error { return t.AddNS(Node) },
		// node eth1 <-> ext p-node: the node NIC of the ConfigMap's "nic: eth1".
		func() error { return t.Veth(Node, "eth1", Ext, "p-node") },
		func() error { return t.ip(Ext, "link", "set", "p-node", "master", "br0") },
		func() error { return t.Bridge(Node, "br-sn") },
		func() error { return t.Bridge(Node, "br-sn2") },
		func() error { return t.Host(Router, Ext, "br0", "p-rtr", RouterIP+"/24", "") },
		func() error { return t.Forwarding(Router) },
		func() error { return t.AddNS(Inet) },
		func() error { return t.Veth(Router, "eth1", Inet, "eth0") },
		func() error { return t.ip(Router, "addr", "add", "198.51.100.1/24", "dev", "eth1") },
		func() error { return t.ip(Inet, "addr", "add", InetIP+"/24", "dev", "eth0") },
		func() error { return t.ip(Inet, "route", "add", "default", "via", "198.51.100.1") },
		func() error { return t.Host(Client, Ext, "br0", "p-cli", ClientIP+"/24", RouterIP) },
		func() error { return t.AddNS(Gateway) },
		func() error { return t.Host(Pod1, Node, "br-sn", "p-pod1", Pod1IP+"/24", "10.0.1.1") },
		func() error { return t.Host(Pod2, Node, "br-sn", "p-pod2", Pod2IP+"/24", "10.0.1.1") },
		// pod3 follows the seed's Vpc static route: 0.0.0.0/0 via the gateway's lanIp.
		func() error { return t.Host(Pod3, Node, "br-sn", "p-pod3", Pod3IP+"/24", "10.0.1.254") },
		func() error { return t.Host(Pod4, Node, "br-sn2", "p-pod4", Pod4IP+"/24", "10.0.2.1") },
		func() error { return t.Host(VR, Node, "br-sn", "p-vr", VRIP+"/24", "10.0.1.1") },
		func() error { return t.Forwarding(VR) },
		func() error { return t.AddNS(Lab) },
		func() error { return t.Veth(VR, "eth1", Lab, "eth0") },
		func() error { return t.ip(VR, "addr", "add", "203.0.113.1/25", "dev", "eth1") },
		func() error { return t.ip(Lab, "addr", "add", LabIP+"/25", "dev", "eth0") },
		func() error { return t.ip(Lab, "route", "add", "default", "via", "203.0.113.1") },
	}
	for i, step := range steps {
		if err := step(); err != nil {
			return fmt.Errorf("building seed topology %s (step %d): %w", prefix, i, err)
		}
	}
	return nil
}
