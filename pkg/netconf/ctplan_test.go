package netconf

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	"github.com/vpcnat/vpcnat/pkg/nft"
)

// The clean-up by marks against the sweep, over random changes of random gateways: for every
// change the nftables backend may clean up by marks (nft.CtPlan OK, no flushed mark held by a
// mapping of the new state), the entries it deletes (those its flushes select by mark and reply
// EIP, plus those its filtered dumps find that the sweep judges stale) are exactly the entries
// the sweep of the whole table deletes, over the entries the old state keeps, made as its table
// translates and marks them: inbound through every FIP and port forward, outbound from every
// source an SNAT rule or FIP covers, and untranslated ones to the EIPs; and every entry it keeps
// carries the mark the new state gives it, or is seen by a filtered dump. The marks are computed
// the sweep's way (wantMark), not by pkg/nft's tables.
func TestCtPlanAgreesWithTheSweep(t *testing.T) {
	fast, trials := 0, 20000
	for trial := range trials {
		rng := rand.New(rand.NewPCG(uint64(trial), 2026))
		d1 := randomGateway(rng)
		d2 := valid(mutateGateway(rng, d1))
		var b nft.Builder
		t1 := b.Build(d1)
		t2 := b.Build(d2)
		plan := b.Diff(t2, t1).CtPlan(t1)
		if !plan.OK || slices.ContainsFunc(plan.Flush, b.MarkHeld) {
			continue
		}
		fast++
		s1, s2 := newSweepFilter(d1, nil), newSweepFilter(d2, nil)
		for _, fl := range entriesOf(t1, t2, s1) {
			if s1.translatedStale(fl) || s1.untranslatedStale(fl) {
				continue // stale already: the last clean-up deleted it
			}
			stale := s2.translatedStale(fl) || s2.untranslatedStale(fl)
			byPlan := flushed(plan, fl) || (planFinds(plan, fl) && stale)
			if byPlan != stale {
				t.Fatalf("trial %d: entry %s mark %#x: deleted by the plan %v, stale for the sweep %v\nplan %+v\nbefore %+v\nafter %+v",
					trial, flowDesc(fl), fl.Mark, byPlan, stale, plan, d1, d2)
			}
			// An entry kept must carry the mark the new state gives it, or be seen by a filtered
			// dump (whose check sends the gateway back to dumps): else a later flush misses it.
			if m, ok := s2.wantMark(fl); !byPlan && ok && (m == 0 || m != fl.Mark) && !planFinds(plan, fl) {
				t.Fatalf("trial %d: entry %s kept with mark %#x, the new state's is %#x\nplan %+v\nbefore %+v\nafter %+v",
					trial, flowDesc(fl), fl.Mark, m, plan, d1, d2)
			}
		}
	}
	t.Logf("%d of %d random changes cleaned up by marks", fast, trials)
	if fast < trials/4 {
		t.Errorf("only %d of %d random changes cleaned up by marks: the check says little", fast, trials)
	}
}

// flushed says whether one of the plan's flushes deletes fl: its mark, and its reply to the
// flush's EIP if it names one.
func flushed(p nft.CtPlan, fl *netlink.ConntrackFlow) bool {
	_, _, _, rdst, _ := tuple(fl)
	return slices.ContainsFunc(p.Flush, func(f nft.MarkFlush) bool {
		return f.Mark == fl.Mark && (!f.EIP.IsValid() || f.EIP == rdst)
	})
}

// planFinds says whether one of the plan's filtered dumps returns fl.
func planFinds(p nft.CtPlan, fl *netlink.ConntrackFlow) bool {
	osrc, odst, _, _, _ := tuple(fl)
	return slices.ContainsFunc(p.Ports, func(e nft.Element) bool {
		return e.Addr == odst && e.Proto == fl.Forward.Protocol && e.Port == fl.Forward.DstPort
	}) || slices.Contains(p.EIPs, odst) || slices.Contains(p.Sources, osrc)
}

// entriesOf are conntrack entries as table t translates them, marked as the sweep of its
// desired state (s) expects: a FIP's and a port forward's inbound entries, outbound entries
// from sources of the SNAT rules and FIPs (at the boundaries of t's ranges and of next's),
// untranslated entries to the EIPs. Not modelled: untranslated outbound entries, which the
// sweep judges by the gateway's routing (an SNAT range covering addresses no rule covered
// before: the plan refuses it; test/reliability's TestMappingAddedAfterFlow has such flows).
func entriesOf(t, next *nft.Table, s *sweepFilter) []*netlink.ConntrackFlow {
	client := netip.MustParseAddr("203.0.113.9")
	var out []*netlink.ConntrackFlow
	add := func(proto uint8, osrc netip.Addr, sport uint16, odst netip.Addr, dport uint16, rsrc netip.Addr, rsport uint16, rdst netip.Addr) {
		fl := &netlink.ConntrackFlow{FamilyType: unix.AF_INET,
			Forward: netlink.IPTuple{Protocol: proto, SrcIP: net.IP(osrc.AsSlice()), SrcPort: sport, DstIP: net.IP(odst.AsSlice()), DstPort: dport},
			Reverse: netlink.IPTuple{Protocol: proto, SrcIP: net.IP(rsrc.AsSlice()), SrcPort: rsport, DstIP: net.IP(rdst.AsSlice()), DstPort: sport}}
		if m, ok := s.wantMark(fl); ok {
			fl.Mark = m
		}
		out = append(out, fl)
	}
	for _, e := range t.Map(nft.MapFIPDNAT).Elements {
		add(unix.IPPROTO_TCP, client, 40000, e.Addr, 22, e.To, 22, client)
	}
	for _, e := range t.Map(nft.MapPortDNAT).Elements {
		add(e.Proto, client, 40001, e.Addr, e.Port, e.To, e.ToPort, client)
	}
	sources := map[netip.Addr]netip.Addr{} // source -> the EIP it leaves with
	// Every range's ends and their neighbours, in both tables (a range of the new table may cut
	// a rule of the old one), every rule's.
	for _, tb := range []*nft.Table{t, next} {
		for _, m := range []string{nft.MapSNAT, nft.MapSNATMark} {
			for _, e := range tb.Map(m).Elements {
				for _, a := range []netip.Addr{e.Addr, e.End, e.Addr.Prev(), e.End.Next()} {
					if eip, ok := s.sourceEIP(a); ok && a.IsValid() {
						sources[a] = eip
					}
				}
			}
		}
	}
	for _, e := range t.Map(nft.MapFIPSNAT).Elements {
		sources[e.Addr] = e.To
	}
	for src, eip := range sources {
		add(unix.IPPROTO_TCP, src, 40002, client, 443, client, 443, eip)
	}
	for _, eip := range []string{"198.51.100.1", "198.51.100.2", "198.51.100.3", "198.51.100.4", "198.51.100.5"} {
		a := netip.MustParseAddr(eip)
		add(unix.IPPROTO_TCP, client, 40003, a, 1, a, 1, client)
	}
	return out
}

// sourceEIP is the EIP the desired state of s sends a out with: its FIP's, else its longest
// SNAT prefix's.
func (f *sweepFilter) sourceEIP(a netip.Addr) (netip.Addr, bool) {
	if eip, ok := f.fipOut[a]; ok {
		return eip, true
	}
	for _, s := range f.snat {
		if s.pfx.Contains(a) {
			return s.eip, true
		}
	}
	return netip.Addr{}, false
}

// randomGateway has a few FIPs, port forwards and nested SNAT rules over few addresses, so
// that changes meet each other.
func randomGateway(r *rand.Rand) *annotations.Desired {
	d := &annotations.Desired{EIPs: []annotations.EIP{{EipCIDR: "198.51.100.1/24"}}}
	for range r.IntN(4) {
		d.FloatingIPs = append(d.FloatingIPs, randomFIP(r))
	}
	for range r.IntN(4) {
		d.DNATs = append(d.DNATs, randomForward(r))
	}
	for range r.IntN(6) {
		d.SNATs = append(d.SNATs, randomSNATRule(r))
	}
	return valid(d)
}

// valid drops what the validator refuses: a second FIP on an EIP or an internal IP, a second
// port forward of a key, a second SNAT rule of a prefix (the FIPs' EIPs, .3-.5, carry no port
// forward; SNAT rules share some of them).
func valid(d *annotations.Desired) *annotations.Desired {
	seen := map[string]bool{}
	first := func(keys ...string) bool {
		for _, k := range keys {
			if seen[k] {
				return false
			}
		}
		for _, k := range keys {
			seen[k] = true
		}
		return true
	}
	d.FloatingIPs = slices.DeleteFunc(d.FloatingIPs, func(f annotations.FloatingIP) bool { return !first("eip "+f.EIP, "in "+f.InternalIP) })
	d.DNATs = slices.DeleteFunc(d.DNATs, func(r annotations.DNAT) bool {
		return !first(fmt.Sprint(r.EIP, r.Protocol, r.ExternalPort))
	})
	d.SNATs = slices.DeleteFunc(d.SNATs, func(r annotations.SNAT) bool { return !first("snat " + r.InternalCIDR) })
	return d
}

func randomFIP(r *rand.Rand) annotations.FloatingIP {
	return annotations.FloatingIP{EIP: fmt.Sprintf("198.51.100.%d", 3+r.IntN(3)), InternalIP: fmt.Sprintf("10.0.%d.%d", r.IntN(2), r.IntN(4))}
}

func randomForward(r *rand.Rand) annotations.DNAT {
	return annotations.DNAT{EIP: fmt.Sprintf("198.51.100.%d", 1+r.IntN(2)), Protocol: []string{"tcp", "udp"}[r.IntN(2)],
		ExternalPort: 1 + r.IntN(3), InternalIP: fmt.Sprintf("10.0.0.%d", r.IntN(3)), InternalPort: 1 + r.IntN(2)}
}

func randomSNATRule(r *rand.Rand) annotations.SNAT {
	bits := []int{0, 16, 23, 24, 30, 32}[r.IntN(6)]
	a := netip.AddrFrom4([4]byte{10, 0, byte(r.IntN(2)), byte(r.IntN(4))})
	return annotations.SNAT{EIP: fmt.Sprintf("198.51.100.%d", 1+r.IntN(4)), InternalCIDR: netip.PrefixFrom(a, bits).Masked().String()}
}

// mutateGateway is d with one to three mappings added, removed or changed.
func mutateGateway(r *rand.Rand, d *annotations.Desired) *annotations.Desired {
	n := *d
	n.FloatingIPs, n.DNATs, n.SNATs = slices.Clone(d.FloatingIPs), slices.Clone(d.DNATs), slices.Clone(d.SNATs)
	for range 1 + r.IntN(3) {
		switch r.IntN(9) {
		case 0:
			n.FloatingIPs = append(n.FloatingIPs, randomFIP(r))
		case 1:
			if len(n.FloatingIPs) > 0 {
				n.FloatingIPs = slices.Delete(n.FloatingIPs, 0, 1)
			}
		case 2:
			if len(n.FloatingIPs) > 0 {
				n.FloatingIPs[0].InternalIP = randomFIP(r).InternalIP
			}
		case 3:
			n.DNATs = append(n.DNATs, randomForward(r))
		case 4:
			if len(n.DNATs) > 0 {
				n.DNATs = slices.Delete(n.DNATs, 0, 1)
			}
		case 5:
			if len(n.DNATs) > 0 {
				n.DNATs[0].InternalPort = 1 + r.IntN(2)
			}
		case 6:
			n.SNATs = append(n.SNATs, randomSNATRule(r))
		case 7:
			if len(n.SNATs) > 0 {
				n.SNATs = slices.Delete(n.SNATs, r.IntN(len(n.SNATs)), len(n.SNATs))
			}
		case 8:
			if len(n.SNATs) > 0 {
				n.SNATs[r.IntN(len(n.SNATs))].EIP = randomSNATRule(r).EIP
			}
		}
	}
	return &n
}
