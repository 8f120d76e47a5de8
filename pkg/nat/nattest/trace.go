package nattest

import (
	"fmt"
	"net/netip"

	"github.com/vpcnat/vpcnat/pkg/nat"
)

// Packet is the first packet of a connection as it enters the gateway (the nat table sees only
// first packets; conntrack applies the result to the rest of the flow).
type Packet struct {
	Src, Dst         netip.Addr
	Protocol         string // "tcp", "udp", "icmp", ...
	SrcPort, DstPort int
	// InIface is where the packet arrives (net1, or a subnet NIC).
	InIface string
}

// Route is the routing decision between PREROUTING and POSTROUTING, like `ip route get`: the
// output interface for a (possibly DNATed) destination and the source address the kernel would
// pick on it, which MASQUERADE uses. An empty ifname means local delivery (an address of the
// gateway itself): such a packet goes to INPUT and never passes POSTROUTING.
type Route func(dst netip.Addr) (ifname string, src netip.Addr)

// Result is a traced packet.
type Result struct {
	// Out is the packet as it leaves: addresses and ports after NAT.
	Out Packet
	// OutIface is the interface the route chose, "" for local delivery.
	OutIface string
	// DNAT and SNAT are the rules ("CHAIN: text") that translated the packet, "" if none.
	DNAT, SNAT string
	// Matched lists every rule that matched, in order, for failure messages.
	Matched []string
}

// maxJumpDepth bounds chain nesting; the kernel refuses loops, a parsed dump cannot be trusted to.
const maxJumpDepth = 32

// Trace walks a packet through PREROUTING, the route, then POSTROUTING of the table, as the
// kernel's nat table would for the first packet of a flow. It understands exactly the matches
// and targets vpcnat renders and returns an error on any rule it reaches and does not.
func Trace(t *nat.Table, p Packet, route Route) (Result, error) {
	w := &walker{t: t, pkt: p, res: Result{}}
	w.hook = "PREROUTING"
	if _, err := w.walk(w.hook, 0); err != nil {
		return w.res, err
	}
	if route == nil {
		return w.res, fmt.Errorf("tracing %v: no route function", p.Dst)
	}
	w.res.OutIface, w.routeSrc = route(w.pkt.Dst)
	if w.res.OutIface != "" {
		w.hook = "POSTROUTING"
		if _, err := w.walk(w.hook, 0); err != nil {
			return w.res, err
		}
	}
	w.res.Out = w.pkt
	return w.res, nil
}

type walker struct {
	t        *nat.Table
	pkt      Packet
	hook     string
	routeSrc netip.Addr
	dnated   bool // conntrack state DNAT, for --ctstate DNAT
	snated   bool
	res      Result
}

// walk runs one chain; done means a terminal target ended the hook.
func (w *walker) walk(chain string, depth int) (done bool, err error) {
	if depth > maxJumpDepth {
		return false, fmt.Errorf("chain %s: jumps nested deeper than %d", chain, maxJumpDepth)
	}
	rules, ok := w.t.Chains[chain]
	if !ok {
		if depth == 0 {
			return false, nil // a built-in chain that was never loaded: policy ACCEPT
		}
		return false, fmt.Errorf("jump to missing chain %q", chain)
	}
	for _, text := range rules {
		r, err := nat.ParseRule(text)
		if err != nil {
			return false, fmt.Errorf("chain %s rule %q: %w", chain, text, err)
		}
		ok, err := w.matches(r)
		if err != nil {
			return false, fmt.Errorf("chain %s rule %q: %w", chain, text, err)
		}
		if !ok {
			continue
		}
		where := chain + ": " + text
		w.res.Matched = append(w.res.Matched, where)
		switch r.Target {
		case "":
		case "RETURN":
			return false, nil
		case "ACCEPT":
			return true, nil
		case "DNAT", "SNAT", "MASQUERADE":
			return true, w.translate(r, where)
		default:
			if done, err := w.walk(r.Target, depth+1); done || err != nil {
				return done, err
			}
		}
	}
	return false, nil
}

func (w *walker) matches(r nat.Rule) (bool, error) {
	if (r.In != "" && w.hook == "POSTROUTING") || (r.Out != "" && w.hook == "PREROUTING") {
		return false, fmt.Errorf("interface match not valid in %s", w.hook)
	}
	if (r.Src.IsValid() && !r.Src.Contains(w.pkt.Src)) ||
		(r.Dst.IsValid() && !r.Dst.Contains(w.pkt.Dst)) ||
		(r.In != "" && r.In != w.pkt.InIface) ||
		(r.Out != "" && r.Out != w.res.OutIface) ||
		(r.Proto != "" && r.Proto != w.pkt.Protocol) ||
		(r.DPort != 0 && r.DPort != w.pkt.DstPort) {
		return false, nil
	}
	if len(r.CTState) == 0 {
		return true, nil
	}
	for _, s := range r.CTState {
		switch s {
		case "DNAT":
			if w.dnated {
				return true, nil
			}
		case "SNAT":
			if w.snated {
				return true, nil
			}
		case "NEW":
			return true, nil // the nat table only sees first packets
		default:
			return false, fmt.Errorf("ctstate %s not supported", s)
		}
	}
	return false, nil
}

// translate applies a NAT target; the kernel allows DNAT only before routing and SNAT and
// MASQUERADE only after it, so a misplaced one is an error here too.
func (w *walker) translate(r nat.Rule, where string) error {
	switch {
	case r.Target == "DNAT" && w.hook == "PREROUTING":
		w.pkt.Dst = r.ToAddr
		if r.ToPort != 0 {
			w.pkt.DstPort = r.ToPort
		}
		w.dnated, w.res.DNAT = true, where
	case r.Target == "SNAT" && w.hook == "POSTROUTING":
		w.pkt.Src = r.ToAddr
		if r.ToPort != 0 {
			w.pkt.SrcPort = r.ToPort
		}
		w.snated, w.res.SNAT = true, where
	case r.Target == "MASQUERADE" && w.hook == "POSTROUTING":
		if !w.routeSrc.IsValid() {
			return fmt.Errorf("%s: MASQUERADE out of %q, which has no source address", where, w.res.OutIface)
		}
		w.pkt.Src = w.routeSrc
		w.snated, w.res.SNAT = true, where
	default:
		return fmt.Errorf("%s: target %s not valid in %s", where, r.Target, w.hook)
	}
	return nil
}
