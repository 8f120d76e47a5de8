package annotations

import (
	"math/rand/v2"
	"net/netip"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation/field"
)

func TestCheckIfName(t *testing.T) {
	p := field.NewPath("x")
	for _, ok := range []string{"eth1", "br-sn", "eth0.100", "enp0s31f6", "a", "vpc-2010c9e0d4e", "bond_0"} {
		if fe := CheckIfName(ok, p); fe != nil {
			t.Errorf("%q refused: %v", ok, fe)
		}
	}
	for _, bad := range []string{"", ".", "..", "eth1/2", "eth:1", "eth 1", "eth\t1", "eth1\n", "abcdefghijklmnop",
		"eth+", "!eth0", "$(reboot)", "a;b", "`id`", "a\"b", "a'b", "ä"} {
		if CheckIfName(bad, p) == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestCheckMTU(t *testing.T) {
	for mtu, ok := range map[int]bool{0: true, 68: true, 1500: true, 65535: true, 67: false, -1: false, 65536: false, 1: false} {
		if got := CheckMTU(mtu, field.NewPath("mtu")) == nil; got != ok {
			t.Errorf("MTU %d: accepted %v, want %v", mtu, got, ok)
		}
	}
}

func TestParsers(t *testing.T) {
	p := field.NewPath("x")
	for s, ok := range map[string]bool{"10.0.1.5": true, "10.0.1.5/32": false, "010.0.1.5": false, "::1": false,
		"::ffff:10.0.1.5": false, "10.0.1": false, "": false, "10.0.1.5 ": false} {
		if _, fe := ParseIPv4(s, p); (fe == nil) != ok {
			t.Errorf("ParseIPv4(%q): %v", s, fe)
		}
	}
	for s, ok := range map[string]bool{"10.0.1.0/24": true, "0.0.0.0/0": true, "10.0.1.5/32": true, "10.0.1.5/24": false,
		"10.0.1.0/33": false, "10.0.1.0": false, "fd00::/64": false, "10.0.1.0/024": false} {
		if _, fe := ParseIPv4Prefix(s, p); (fe == nil) != ok {
			t.Errorf("ParseIPv4Prefix(%q): %v", s, fe)
		}
	}
	for s, ok := range map[string]bool{"192.168.0.111/24": true, "192.168.0.0/24": false, "192.168.0.255/24": false,
		"192.168.0.0/31": true, "192.168.0.1/32": true, "192.168.0.111": false, "192.168.0.111/24 ": false} {
		if _, fe := ParseIPv4HostPrefix(s, p); (fe == nil) != ok {
			t.Errorf("ParseIPv4HostPrefix(%q): %v", s, fe)
		}
	}
}

func TestBroadcast(t *testing.T) {
	for in, want := range map[string]string{"10.0.1.0/24": "10.0.1.255", "0.0.0.0/0": "255.255.255.255",
		"10.0.1.7/32": "10.0.1.7", "10.0.0.0/7": "11.255.255.255", "192.168.0.96/28": "192.168.0.111"} {
		if got := broadcast(netip.MustParsePrefix(in)).String(); got != want {
			t.Errorf("broadcast(%s) = %s, want %s", in, got, want)
		}
	}
}

// randomPrefixes draws IPv4 prefixes in a small space so that overlaps are common.
func randomPrefixes(r *rand.Rand, n int) []netip.Prefix {
	ps := make([]netip.Prefix, n)
	for i := range ps {
		a := netip.AddrFrom4([4]byte{10, byte(r.IntN(4)), byte(r.IntN(256)), 0})
		ps[i], _ = a.Prefix(14 + r.IntN(11))
	}
	return ps
}

func overlap(a, b netip.Prefix) bool { return a.Contains(b.Addr()) || b.Contains(a.Addr()) }

// TestOverlappingPairs against brute force: every pair returned overlaps, and every prefix that
// overlaps another is in some pair (so each overlap is reported at least once).
func TestOverlappingPairs(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 500 {
		ps := randomPrefixes(r, 1+r.IntN(12))
		inPair := map[int]bool{}
		for _, pr := range OverlappingPairs(ps) {
			if pr[0] >= pr[1] || !overlap(ps[pr[0]], ps[pr[1]]) {
				t.Fatalf("%v: bad pair %v", ps, pr)
			}
			inPair[pr[0]], inPair[pr[1]] = true, true
		}
		for i := range ps {
			for j := range ps {
				if i != j && overlap(ps[i], ps[j]) && !inPair[i] {
					t.Fatalf("%v: %s overlaps %s but is in no pair", ps, ps[i], ps[j])
				}
			}
		}
	}
}

// TestPrefixSet against brute force longest match.
func TestPrefixSet(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 200 {
		ps := randomPrefixes(r, 1+r.IntN(20))
		var s prefixSet
		for i, p := range ps {
			s.add(p, i)
		}
		for range 50 {
			a := netip.AddrFrom4([4]byte{10, byte(r.IntN(4)), byte(r.IntN(256)), byte(r.IntN(256))})
			want, found := -1, false
			for i, p := range ps {
				if p.Contains(a) && (!found || p.Bits() > ps[want].Bits()) {
					want, found = i, true
				}
			}
			got, ok := s.lookup(a)
			if ok != found || (ok && ps[got] != ps[want]) {
				t.Fatalf("lookup(%s) in %v = %d %v, want %d %v", a, ps, got, ok, want, found)
			}
		}
	}
}
