package kstate

import (
	"cmp"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/vpcnat/vpcnat/pkg/annotations"
)

// Flow is one conntrack entry: its original and reply tuples.
type Flow struct {
	Proto                  string // tcp, udp, icmp, ...
	OrigSrc, OrigDst       netip.Addr
	OrigSport, OrigDport   int
	ReplySrc, ReplyDst     netip.Addr
	ReplySport, ReplyDport int
	Raw                    string
}

// Conntrack lists the IPv4 conntrack entries of the netns at nsPath (`conntrack -L`).
func Conntrack(nsPath string) ([]Flow, error) {
	out, err := run(nsPath, "conntrack", "-L", "-f", "ipv4")
	if err != nil {
		return nil, err
	}
	var flows []Flow
	for _, line := range strings.Split(string(out), "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		f, err := ParseFlow(line)
		if err != nil {
			return nil, fmt.Errorf("in netns %s: %w", nsPath, err)
		}
		flows = append(flows, f)
	}
	return flows, nil
}

// ParseFlow parses one line of `conntrack -L` output.
func ParseFlow(line string) (Flow, error) {
	f := Flow{Raw: line}
	fields := strings.Fields(line)
	if len(fields) == 0 {
		return f, fmt.Errorf("conntrack line %q: empty", line)
	}
	f.Proto = fields[0]
	srcs, dsts, sports, dports := 0, 0, 0, 0
	for _, fl := range fields {
		k, v, ok := strings.Cut(fl, "=")
		if !ok {
			continue
		}
		switch k {
		case "src", "dst":
			a, err := netip.ParseAddr(v)
			if err != nil {
				return f, fmt.Errorf("conntrack line %q: %s=%q: %w", line, k, v, err)
			}
			if k == "src" {
				if srcs == 0 {
					f.OrigSrc = a
				} else {
					f.ReplySrc = a
				}
				srcs++
			} else {
				if dsts == 0 {
					f.OrigDst = a
				} else {
					f.ReplyDst = a
				}
				dsts++
			}
		case "sport", "dport":
			n, err := strconv.Atoi(v)
			if err != nil {
				return f, fmt.Errorf("conntrack line %q: %s=%q: %w", line, k, v, err)
			}
			if k == "sport" {
				if sports == 0 {
					f.OrigSport = n
				} else {
					f.ReplySport = n
				}
				sports++
			} else {
				if dports == 0 {
					f.OrigDport = n
				} else {
					f.ReplyDport = n
				}
				dports++
			}
		}
	}
	if srcs != 2 || dsts != 2 {
		return f, fmt.Errorf("conntrack line %q: not two tuples", line)
	}
	return f, nil
}

func (f Flow) String() string {
	return fmt.Sprintf("%s %s:%d -> %s:%d (reply %s:%d -> %s:%d)", f.Proto, f.OrigSrc, f.OrigSport, f.OrigDst, f.OrigDport,
		f.ReplySrc, f.ReplySport, f.ReplyDst, f.ReplyDport)
}

// CheckFlows reports the conntrack entries whose translation is not what d says now:
//   - to an EIP: with a FIP on it, the entry must be DNATed to the FIP's internal IP (any
//     protocol); with a port forward for its protocol and port, DNATed to that internal IP:port;
//     otherwise not translated at all (a stale mapping of a removed rule is reported);
//   - from a VPC subnet to a destination the gateway forwards out of the external NIC: SNATed to
//     the FIP's EIP of the source when there is one (the lowest EIP if several), else to the EIP
//     of the longest SNAT prefix containing the source, else not translated;
//   - to any other address: not DNATed (only EIPs are; a DNATed one is a removed EIP's mapping).
//
// Each problem is one line naming the flow and what was expected. Entries of other flows (to the
// gateway's own subnet addresses, between subnets, via VPC routers, and the gateway's own traffic
// from its EIPs or subnet addresses as long as it is untranslated) are not judged.
func CheckFlows(flows []Flow, d *annotations.Desired) []string {
	eips := map[netip.Addr]bool{}
	var extNets []netip.Prefix
	for _, e := range d.EIPs {
		if p, err := netip.ParsePrefix(e.EipCIDR); err == nil {
			eips[p.Addr()] = true
			extNets = append(extNets, p.Masked())
		}
	}
	var subnets []netip.Prefix
	for _, s := range d.Subnets {
		if p, err := netip.ParsePrefix(s.CIDR); err == nil {
			subnets = append(subnets, p.Masked())
		}
	}
	fipIn := map[netip.Addr]netip.Addr{}  // EIP -> internal
	fipOut := map[netip.Addr]netip.Addr{} // internal -> lowest EIP
	for _, f := range d.FloatingIPs {
		eip, err1 := netip.ParseAddr(f.EIP)
		in, err2 := netip.ParseAddr(f.InternalIP)
		if err1 != nil || err2 != nil {
			continue
		}
		fipIn[eip] = in
		if cur, ok := fipOut[in]; !ok || eip.Less(cur) {
			fipOut[in] = eip
		}
	}
	type dkey struct {
		eip   netip.Addr
		proto string
		port  int
	}
	type dval struct {
		ip   netip.Addr
		port int
	}
	dnats := map[dkey]dval{}
	for _, r := range d.DNATs {
		eip, err1 := netip.ParseAddr(r.EIP)
		in, err2 := netip.ParseAddr(r.InternalIP)
		if err1 != nil || err2 != nil {
			continue
		}
		dnats[dkey{eip, r.Protocol, r.ExternalPort}] = dval{in, r.InternalPort}
	}
	type snat struct {
		pfx netip.Prefix
		eip netip.Addr
	}
	var snats []snat
	for _, s := range d.SNATs {
		p, err := netip.ParsePrefix(s.InternalCIDR)
		if err != nil {
			a, err2 := netip.ParseAddr(s.InternalCIDR)
			if err2 != nil {
				continue
			}
			p = netip.PrefixFrom(a, 32)
		}
		eip, err := netip.ParseAddr(s.EIP)
		if err != nil {
			continue
		}
		snats = append(snats, snat{p.Masked(), eip})
	}
	slices.SortStableFunc(snats, func(a, b snat) int { return cmp.Compare(b.pfx.Bits(), a.pfx.Bits()) })
	ownAddr := map[netip.Addr]bool{}
	for _, s := range d.Subnets {
		for _, a := range s.Addresses {
			if p, err := netip.ParsePrefix(a); err == nil {
				ownAddr[p.Addr()] = true
			}
		}
		if a, err := netip.ParseAddr(s.IP); err == nil {
			ownAddr[a] = true
		}
	}
	// Destinations routed into the VPC by a policyDst static route leave by a subnet NIC.
	var inward []netip.Prefix
	for _, r := range d.Routes {
		nh, err := netip.ParseAddr(r.NextHopIP)
		if err != nil || r.Policy != annotations.PolicyDst || eips[nh] {
			continue
		}
		if p, err := netip.ParsePrefix(r.CIDR); err == nil && !containedIn(extNets, nh) && containedIn(subnets, nh) && !ownAddr[nh] {
			inward = append(inward, p.Masked())
		}
	}
	in := func(list []netip.Prefix, a netip.Addr) int { // longest match length, -1 for none
		best := -1
		for _, p := range list {
			if p.Contains(a) && p.Bits() > best {
				best = p.Bits()
			}
		}
		return best
	}
	// leavesExt: the longest route to dst (policyDst; policySrc routes are not modelled) is the
	// external NIC's: a connected EIP network or the default route via the EIP gateway.
	leavesExt := func(dst netip.Addr) bool {
		if eips[dst] {
			return false
		}
		ext := in(extNets, dst)
		if ext < 0 && len(d.EIPs) > 0 {
			ext = 0
		}
		return ext >= 0 && ext > in(inward, dst) && ext > in(subnets, dst)
	}
	var problems []string
	for _, f := range flows {
		switch {
		case (eips[f.OrigSrc] || ownAddr[f.OrigSrc]) && f.ReplySrc == f.OrigDst && f.ReplyDst == f.OrigSrc:
			// The gateway's own traffic, never translated: nat OUTPUT holds no DNAT, and the
			// SNAT rules are the VPC's (the daemon leaves such entries alone too).
		case eips[f.OrigDst]:
			if internal, ok := fipIn[f.OrigDst]; ok {
				if f.ReplySrc != internal {
					problems = append(problems, fmt.Sprintf("%s: to FIP %s, want DNAT to %s", f, f.OrigDst, internal))
				}
				continue
			}
			if v, ok := dnats[dkey{f.OrigDst, f.Proto, f.OrigDport}]; ok {
				if f.ReplySrc != v.ip || f.ReplySport != v.port {
					problems = append(problems, fmt.Sprintf("%s: to port forward %s:%d/%s, want DNAT to %s:%d", f, f.OrigDst, f.OrigDport, f.Proto, v.ip, v.port))
				}
				continue
			}
			if f.ReplySrc != f.OrigDst || (f.ReplySport != f.OrigDport) {
				problems = append(problems, fmt.Sprintf("%s: to %s with no mapping, but translated (stale mapping)", f, f.OrigDst))
			}
		case f.ReplySrc != f.OrigDst:
			// Only EIPs are translated on the way in: this is the mapping of an EIP removed or moved.
			problems = append(problems, fmt.Sprintf("%s: DNATed, but %s is no EIP of the gateway (stale mapping)", f, f.OrigDst))
		case containedIn(subnets, f.OrigSrc) && leavesExt(f.OrigDst):
			want := f.OrigSrc // no rule: leaves untranslated
			if e, ok := fipOut[f.OrigSrc]; ok {
				want = e
			} else {
				for _, s := range snats {
					if s.pfx.Contains(f.OrigSrc) {
						want = s.eip
						break
					}
				}
			}
			if f.ReplyDst != want {
				problems = append(problems, fmt.Sprintf("%s: from the VPC out of the external NIC, want source %s", f, want))
			}
		}
	}
	return problems
}

func containedIn(list []netip.Prefix, a netip.Addr) bool {
	for _, p := range list {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Leaks lists what vpcnat (or a test of it) may have left on a node: links of the node netns at
// nodeNS named like vpcnat's node-side veths (vnat*) or subnet NICs (vpc-*) (skipped when nodeNS
// is ""; "/proc/self/ns/net" is the caller's own), network namespaces under /run/netns whose
// name starts with nsPrefix (skipped when ""), and attachment records in stateDir (skipped when
// ""). Each leak is one line: "link <name>", "netns <name>", "record <path>".
func Leaks(nodeNS, nsPrefix, stateDir string) ([]string, error) {
	var out []string
	if nodeNS != "" {
		var links []struct {
			Name string `json:"ifname"`
		}
		if err := runJSON(nodeNS, &links, "ip", "-j", "link", "show"); err != nil {
			return nil, err
		}
		for _, l := range links {
			if strings.HasPrefix(l.Name, annotations.HostIfNamePrefix) || strings.HasPrefix(l.Name, subnetPrefix) {
				out = append(out, "link "+l.Name)
			}
		}
	}
	if nsPrefix != "" {
		ents, err := os.ReadDir("/run/netns")
		if err != nil && !os.IsNotExist(err) {
			return nil, fmt.Errorf("listing /run/netns: %w", err)
		}
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), nsPrefix) {
				out = append(out, "netns "+e.Name())
			}
		}
	}
	if stateDir != "" {
		ents, err := os.ReadDir(stateDir)
		if err != nil && !os.IsNotExist(err) {
			return nil, fmt.Errorf("listing %s: %w", stateDir, err)
		}
		for _, e := range ents {
			out = append(out, "record "+stateDir+"/"+e.Name())
		}
	}
	return out, nil
}
