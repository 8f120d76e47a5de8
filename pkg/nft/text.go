package nft

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
)

// Text renders the table exactly as `nft list table ip vpcnat` (nftables 1.0.x) prints a table
// that was created from it: a golden file of it reads like the seed's chains, and a kernel test
// compares it with the real listing byte for byte.
func (t *Table) Text() string {
	var b strings.Builder
	b.WriteString("table ip " + TableName + " {\n")
	first := true
	sep := func() {
		if !first {
			b.WriteString("\n")
		}
		first = false
	}
	for _, m := range t.Maps {
		sep()
		b.WriteString("\tmap " + m.Name + " {\n")
		b.WriteString("\t\ttype " + keyType(m.Kind) + "\n")
		if m.Kind.IsInterval() {
			b.WriteString("\t\tflags interval\n")
		}
		if len(m.Elements) > 0 {
			b.WriteString("\t\telements = { ")
			// nft puts two address elements on a line and one concatenation.
			perLine := 2
			if m.Kind == PortMap || m.Kind == PortMarkMap {
				perLine = 1
			}
			for i, e := range m.Elements {
				if i > 0 {
					if i%perLine == 0 {
						b.WriteString(",\n\t\t\t     ")
					} else {
						b.WriteString(", ")
					}
				}
				b.WriteString(e.Text(m.Kind))
			}
			b.WriteString(" }\n")
		}
		b.WriteString("\t}\n")
	}
	for _, c := range t.Chains {
		sep()
		b.WriteString("\tchain " + c.Name + " {\n")
		if c.Hook != "" {
			fmt.Fprintf(&b, "\t\ttype nat hook %s priority %s; policy accept;\n", c.Hook, priorityText(c.Priority))
		}
		for _, r := range c.Rules {
			b.WriteString("\t\t" + r.Text() + "\n")
		}
		b.WriteString("\t}\n")
	}
	b.WriteString("}\n")
	return b.String()
}

func keyType(k MapKind) string {
	switch k {
	case PortMap:
		return "ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service"
	case PortMarkMap:
		return "ipv4_addr . inet_proto . inet_service : mark"
	case AddrMarkMap, IntervalMarkMap:
		return "ipv4_addr : mark"
	}
	return "ipv4_addr : ipv4_addr"
}

func priorityText(p int) string {
	switch p {
	case PriorityDstNAT:
		return "dstnat"
	case PrioritySrcNAT:
		return "srcnat"
	}
	return strconv.Itoa(p)
}

// Text prints one element of a map of kind k as nft lists it.
func (e Element) Text(k MapKind) string {
	switch k {
	case PortMap:
		return e.Addr.String() + " . " + protoText(e.Proto) + " . " + strconv.Itoa(int(e.Port)) +
			" : " + e.To.String() + " . " + strconv.Itoa(int(e.ToPort))
	case IntervalMap:
		return rangeText(e.Addr, e.End) + " : " + e.To.String()
	case PortMarkMap:
		return e.Addr.String() + " . " + protoText(e.Proto) + " . " + strconv.Itoa(int(e.Port)) +
			" : " + fmt.Sprintf("0x%08x", listedMark(e.MarkValue()))
	case AddrMarkMap:
		return e.Addr.String() + " : " + fmt.Sprintf("0x%08x", listedMark(e.MarkValue()))
	case IntervalMarkMap:
		return rangeText(e.Addr, e.End) + " : " + fmt.Sprintf("0x%08x", listedMark(e.MarkValue()))
	}
	return e.Addr.String() + " : " + e.To.String()
}

// listedMark is a conntrack mark as nft lists it in a map written by vpcnat: the kernel keeps
// the mark in host byte order, but google/nftables writes no data byte order in the map's user
// data, so nft reads the 4 bytes as big endian (on a little-endian machine, the mark with its
// bytes reversed; `conntrack -L` shows the mark itself).
func listedMark(m uint32) uint32 {
	return binary.BigEndian.Uint32(binary.NativeEndian.AppendUint32(nil, m))
}

func protoText(p uint8) string {
	if n, ok := protoNames[p]; ok {
		return n
	}
	return strconv.Itoa(int(p))
}

// Text prints the rule as nft lists it.
func (r Rule) Text() string {
	var parts []string
	if r.SAddr.IsValid() {
		if r.SAddr.IsSingleIP() {
			parts = append(parts, "ip saddr "+r.SAddr.Addr().String())
		} else {
			parts = append(parts, "ip saddr "+r.SAddr.String())
		}
	}
	if r.OIfName != "" {
		parts = append(parts, "oifname "+strconv.Quote(r.OIfName))
	}
	if r.CtDNAT {
		parts = append(parts, "ct status dnat")
	}
	switch r.Verb {
	case Jump:
		parts = append(parts, "jump "+r.Target)
	case DNATMap:
		if r.Map == MapPortDNAT {
			parts = append(parts, "dnat ip to ip daddr . meta l4proto . th dport map @"+r.Map)
		} else {
			parts = append(parts, "dnat to ip daddr map @"+r.Map)
		}
	case SNATMap:
		parts = append(parts, "snat to ip saddr map @"+r.Map)
	case Masquerade:
		parts = append(parts, "masquerade")
	case MarkMap:
		parts = append(parts, "ct mark set ip daddr . meta l4proto . th dport map @"+r.Map)
	case MarkDstMap:
		parts = append(parts, "ct mark set ip daddr map @"+r.Map)
	case MarkSrcMap:
		parts = append(parts, "ct mark set ip saddr map @"+r.Map)
	}
	return strings.Join(parts, " ")
}
