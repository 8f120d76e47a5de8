package nat_test

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/vpcnat/vpcnat/pkg/nat"
	"github.com/vpcnat/vpcnat/pkg/nat/nattest"
)

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

func tcp(src string, sport int, dst string, dport int, in string) nattest.Packet {
	return nattest.Packet{Src: ip(src), Dst: ip(dst), Protocol: "tcp", SrcPort: sport, DstPort: dport, InIface: in}
}

func trace(t *testing.T, tb *nat.Table, p nattest.Packet, route nattest.Route) nattest.Result {
	t.Helper()
	res, err := nattest.Trace(tb, p, route)
	if err != nil {
		t.Fatalf("tracing %+v: %v", p, err)
	}
	return res
}

// expectOut checks the translated packet: src:sport -> dst:dport leaving on ifname.
func expectOut(t *testing.T, res nattest.Result, src string, sport int, dst string, dport int, ifname string) {
	t.Helper()
	o := res.Out
	if o.Src != ip(src) || o.SrcPort != sport || o.Dst != ip(dst) || o.DstPort != dport || res.OutIface != ifname {
		t.Errorf("packet left as %v:%d -> %v:%d on %s, want %s:%d -> %s:%d on %s\nmatched:\n  %s",
			o.Src, o.SrcPort, o.Dst, o.DstPort, res.OutIface, src, sport, dst, dport, ifname,
			strings.Join(res.Matched, "\n  "))
	}
}

func TestTraceSeed(t *testing.T) {
	k := kernelTable(t, nat.SeedDesired())
	t.Run("outside to FIP reaches the internal IP, source kept", func(t *testing.T) {
		res := trace(t, k, tcp("203.0.113.9", 40000, "192.168.0.111", 22, "net1"), nat.SeedRoute)
		expectOut(t, res, "203.0.113.9", 40000, "10.0.1.5", 22, "eth0")
	})
	t.Run("outside to EIP:8888/tcp is forwarded", func(t *testing.T) {
		res := trace(t, k, tcp("203.0.113.9", 40000, "192.168.0.112", 8888, "net1"), nat.SeedRoute)
		expectOut(t, res, "203.0.113.9", 40000, "10.0.1.10", 80, "eth0")
	})
	t.Run("outside to EIP:8888/udp has no forward", func(t *testing.T) {
		p := tcp("203.0.113.9", 40000, "192.168.0.112", 8888, "net1")
		p.Protocol = "udp"
		res := trace(t, k, p, nat.SeedRoute)
		if res.DNAT != "" || res.SNAT != "" {
			t.Errorf("udp packet translated: DNAT %q SNAT %q", res.DNAT, res.SNAT)
		}
	})
	t.Run("FIP's own address goes out as the FIP", func(t *testing.T) {
		res := trace(t, k, tcp("10.0.1.5", 5000, "203.0.113.9", 443, "eth0"), nat.SeedRoute)
		expectOut(t, res, "192.168.0.111", 5000, "203.0.113.9", 443, "net1")
	})
	t.Run("subnet goes out via SNAT", func(t *testing.T) {
		res := trace(t, k, tcp("10.0.1.6", 5000, "203.0.113.9", 443, "eth0"), nat.SeedRoute)
		expectOut(t, res, "192.168.0.112", 5000, "203.0.113.9", 443, "net1")
	})
	t.Run("hairpin: VPC pod to own EIP:port is masqueraded", func(t *testing.T) {
		res := trace(t, k, tcp("10.0.1.20", 6000, "192.168.0.112", 8888, "eth0"), nat.SeedRoute)
		expectOut(t, res, "10.0.1.254", 6000, "10.0.1.10", 80, "eth0")
	})
}

func TestTraceRich(t *testing.T) {
	k := kernelTable(t, nat.RichDesired())
	t.Run("udp forward exists on this EIP", func(t *testing.T) {
		p := tcp("203.0.113.9", 40000, "198.51.100.12", 8888, "net1")
		p.Protocol = "udp"
		expectOut(t, trace(t, k, p, nat.RichRoute), "203.0.113.9", 40000, "10.0.2.9", 9999, "eth1")
	})
	t.Run("tcp forward on the same port differs", func(t *testing.T) {
		res := trace(t, k, tcp("203.0.113.9", 40000, "198.51.100.12", 8888, "net1"), nat.RichRoute)
		expectOut(t, res, "203.0.113.9", 40000, "10.0.1.10", 80, "eth0")
	})
	t.Run("port without a forward is untouched", func(t *testing.T) {
		res := trace(t, k, tcp("203.0.113.9", 40000, "198.51.100.12", 9, "net1"), nat.RichRoute)
		expectOut(t, res, "203.0.113.9", 40000, "198.51.100.12", 9, "")
	})

	// Longest prefix wins among SNAT rules; the FIP's own SNAT wins over all of them.
	for _, c := range []struct{ name, src, eip string }{
		{"/32 beats /25, /24, /16, /8", "10.0.1.77", "198.51.100.14"},
		{"/25 beats /24", "10.0.1.200", "198.51.100.15"},
		{"/24 beats /16", "10.0.1.6", "198.51.100.12"},
		{"/16 beats /8", "10.0.3.4", "198.51.100.13"},
		{"/24 in another /16 group", "10.1.2.9", "198.51.100.14"},
		{"/16 of the other group", "10.1.9.9", "198.51.100.13"},
		{"/8 inline after all groups", "10.7.0.1", "198.51.100.12"},
		{"/12 inline", "172.16.5.5", "198.51.100.15"},
		{"/0 catches the rest", "192.168.50.1", "198.51.100.16"},
		{"FIP beats covering /24", "10.0.1.5", "198.51.100.10"},
		{"FIP beats covering /24 in another subnet", "10.0.2.7", "198.51.100.11"},
	} {
		t.Run("snat "+c.name, func(t *testing.T) {
			res := trace(t, k, tcp(c.src, 5000, "203.0.113.50", 80, "eth0"), nat.RichRoute)
			expectOut(t, res, c.eip, 5000, "203.0.113.50", 80, "net1")
		})
	}

	t.Run("hairpin to own EIP from the target's subnet", func(t *testing.T) {
		res := trace(t, k, tcp("10.0.1.20", 6000, "198.51.100.12", 443, "eth0"), nat.RichRoute)
		expectOut(t, res, "10.0.1.1", 6000, "10.0.1.10", 8443, "eth0")
	})
	t.Run("own EIP from another subnet is routed, not masqueraded", func(t *testing.T) {
		res := trace(t, k, tcp("10.0.2.20", 6000, "198.51.100.12", 443, "eth1"), nat.RichRoute)
		expectOut(t, res, "10.0.2.20", 6000, "10.0.1.10", 8443, "eth0")
	})
	t.Run("hairpin to a FIP", func(t *testing.T) {
		res := trace(t, k, tcp("10.0.1.20", 6000, "198.51.100.10", 22, "eth0"), nat.RichRoute)
		expectOut(t, res, "10.0.1.1", 6000, "10.0.1.5", 22, "eth0")
	})
	t.Run("outside client keeps its source", func(t *testing.T) {
		res := trace(t, k, tcp("203.0.113.9", 40000, "198.51.100.12", 443, "net1"), nat.RichRoute)
		expectOut(t, res, "203.0.113.9", 40000, "10.0.1.10", 8443, "eth0")
	})
	t.Run("subnet to subnet is not SNATed to an EIP", func(t *testing.T) {
		res := trace(t, k, tcp("10.0.1.20", 6000, "10.0.2.30", 5432, "eth0"), nat.RichRoute)
		expectOut(t, res, "10.0.1.20", 6000, "10.0.2.30", 5432, "eth1")
		if res.SNAT != "" {
			t.Errorf("SNAT by %s", res.SNAT)
		}
	})
}

func TestTraceRefusesWhatItDoesNotKnow(t *testing.T) {
	k := kernelTable(t, nat.SeedDesired())
	k.Chains["PREROUTING"] = append(k.Chains["PREROUTING"], "-m mark --mark 0x1 -j ACCEPT")
	// A packet DNATed by our hook never reaches the foreign rule...
	if _, err := nattest.Trace(k, tcp("203.0.113.9", 1, "192.168.0.111", 22, "net1"), nat.SeedRoute); err != nil {
		t.Errorf("DNATed packet: %v", err)
	}
	// ...one that falls through does, and the tracer must not guess.
	_, err := nattest.Trace(k, tcp("203.0.113.9", 1, "192.168.0.200", 22, "net1"), nat.SeedRoute)
	if err == nil || !strings.Contains(err.Error(), "-m mark") {
		t.Errorf("unknown match: err = %v, want an error naming it", err)
	}

	for name, rule := range map[string]string{
		"negation":           "! -s 10.0.0.0/8 -j ACCEPT",
		"missing chain":      "-j NOWHERE",
		"host without /32":   "-d 192.168.0.111 -j ACCEPT",
		"options misplaced":  "-p tcp -s 10.0.0.0/8 -j ACCEPT",
		"-o in PREROUTING":   "-o net1 -j ACCEPT",
		"SNAT in PREROUTING": "-j SNAT --to-source 192.168.0.111",
	} {
		k := kernelTable(t, nat.SeedDesired())
		k.Chains["PREROUTING"] = []string{rule}
		if _, err := nattest.Trace(k, tcp("203.0.113.9", 1, "192.168.0.111", 22, "net1"), nat.SeedRoute); err == nil {
			t.Errorf("%s: %q traced without error", name, rule)
		}
	}
}
