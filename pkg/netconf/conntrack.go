package netconf

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vpcnat/vpcnat/pkg/nat"
)

// mappingFilter matches the conntrack entries of one FIP or DNAT mapping: the NAT decision is
// taken on a flow's first packet and stored in its entry, so an entry outlives a removed or
// changed rule and keeps the old mapping alive until it is deleted.
type mappingFilter struct {
	proto        uint8 // 0: any protocol (a FIP takes all of them)
	eip          net.IP
	port         uint16
	internal     net.IP // nil: any
	internalPort uint16 // 0: any
}

func newMappingFilter(m nat.Mapping) (mappingFilter, error) {
	f := mappingFilter{eip: net.ParseIP(m.EIP).To4(), port: uint16(m.Port), internalPort: uint16(m.InternalPort)}
	if f.eip == nil {
		return f, fmt.Errorf("conntrack clean-up of %s: EIP %q is not IPv4", mappingString(m), m.EIP)
	}
	if m.InternalIP != "" {
		if f.internal = net.ParseIP(m.InternalIP).To4(); f.internal == nil {
			return f, fmt.Errorf("conntrack clean-up of %s: internal IP %q is not IPv4", mappingString(m), m.InternalIP)
		}
	}
	switch m.Protocol {
	case "":
	case "tcp":
		f.proto = unix.IPPROTO_TCP
	case "udp":
		f.proto = unix.IPPROTO_UDP
	default:
		return f, fmt.Errorf("conntrack clean-up of %s: unknown protocol %q", mappingString(m), m.Protocol)
	}
	return f, nil
}

// MatchConntrackFlow implements netlink.CustomConntrackFilter. Inbound flows are those sent to
// the EIP (and port) and answered by the internal address (the old DNAT target); for a FIP also
// the outbound flows of the internal address that were SNATed to the EIP.
func (f mappingFilter) MatchConntrackFlow(fl *netlink.ConntrackFlow) bool {
	in := fl.Forward.DstIP.Equal(f.eip) &&
		(f.internal == nil || fl.Reverse.SrcIP.Equal(f.internal))
	if f.proto != 0 {
		return in && fl.Forward.Protocol == f.proto && fl.Forward.DstPort == f.port &&
			(f.internalPort == 0 || fl.Reverse.SrcPort == f.internalPort)
	}
	out := f.internal != nil && fl.Forward.SrcIP.Equal(f.internal) && fl.Reverse.DstIP.Equal(f.eip)
	return in || out
}

// deleteMappings deletes the conntrack entries of stale mappings in the gateway netns, with one
// dump of the table for all of them.
func deleteMappings(gw *netlink.Handle, stale []nat.Mapping) ([]string, error) {
	if len(stale) == 0 {
		return nil, nil
	}
	filters := make([]netlink.CustomConntrackFilter, 0, len(stale))
	for _, m := range stale {
		f, err := newMappingFilter(m)
		if err != nil {
			return nil, err
		}
		filters = append(filters, f)
	}
	n, err := gw.ConntrackDeleteFilters(netlink.ConntrackTable, unix.AF_INET, filters...)
	if err != nil {
		return nil, fmt.Errorf("deleting conntrack entries of %d removed mappings: %w", len(stale), err)
	}
	if n == 0 {
		return nil, nil
	}
	return []string{fmt.Sprintf("conntrack: deleted %d entries of %s", n, mappingsString(stale))}, nil
}

// flushConntrack empties the gateway netns's conntrack table.
func flushConntrack(gw *netlink.Handle) error {
	if err := gw.ConntrackTableFlush(netlink.ConntrackTable); err != nil {
		return fmt.Errorf("flushing the conntrack table of the gateway netns: %w", err)
	}
	return nil
}

func mappingString(m nat.Mapping) string {
	if m.Protocol == "" {
		return "fip " + m.EIP + " -> " + m.InternalIP
	}
	return m.Protocol + " " + m.EIP + ":" + strconv.Itoa(m.Port) + " -> " + m.InternalIP + ":" + strconv.Itoa(m.InternalPort)
}

func mappingsString(ms []nat.Mapping) string {
	const show = 5
	parts := make([]string, 0, show+1)
	for i, m := range ms {
		if i == show {
			parts = append(parts, fmt.Sprintf("and %d more", len(ms)-show))
			break
		}
		parts = append(parts, mappingString(m))
	}
	return strings.Join(parts, ", ")
}
