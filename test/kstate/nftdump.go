package kstate

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
)

// NFTable is vpcnat's nftables table (`table ip vpcnat`) as nft itself reads it from the kernel
// (`nft -j list table`): nft's own netlink decoding, shared with nothing in vpcnat. Chains,
// rules and map elements are flattened into canonical text (nftText), so Compare can treat them
// as multisets like the iptables rules.
type NFTable struct {
	// Chains: every chain in nft's order, and for each its header ("type nat hook prerouting
	// priority -100 policy accept", "" for a regular chain).
	Chains      []string
	ChainHeader map[string]string
	// Rules: per chain, its rules in order, each its statements joined by "; ".
	Rules map[string][]string
	// Maps: per map (and set) its declaration ("ipv4_addr : ipv4_addr flags interval").
	Maps map[string]string
	// Elements: per map, its elements. Interval maps read as the address ranges they cover,
	// "10.0.1.0-10.0.1.255 : 192.168.0.112", adjacent ranges with the same value merged, so two
	// layouts of the same mapping read the same.
	Elements map[string][]string
	// Other: anything else nft listed in the table (flowtables, counters, ...), raw JSON.
	Other []string
}

// nftFamily and nftTable are the family and name of vpcnat's nftables table (docs/nftables.md), written here
// again rather than imported.
const (
	nftFamily = "ip"
	nftTable  = "vpcnat"
)

// dumpNFT reads the table ip vpcnat in the netns, nil if there is none, and the raw listing.
func dumpNFT(nsPath string) (*NFTable, string, error) {
	var tables struct {
		Objects []map[string]json.RawMessage `json:"nftables"`
	}
	if err := runJSON(nsPath, &tables, "nft", "-j", "list", "tables"); err != nil {
		return nil, "", err
	}
	found := false
	for _, o := range tables.Objects {
		var t struct{ Family, Name string }
		if raw, ok := o["table"]; ok && json.Unmarshal(raw, &t) == nil && t.Family == nftFamily && t.Name == nftTable {
			found = true
		}
	}
	if !found {
		return nil, "", nil
	}
	out, err := run(nsPath, "nft", "-j", "list", "table", nftFamily, nftTable)
	if err != nil {
		return nil, "", err
	}
	t, err := parseNFT(out)
	if err != nil {
		return nil, "", fmt.Errorf("in netns %s: nft -j list table %s %s: %w", nsPath, nftFamily, nftTable, err)
	}
	return t, string(out), nil
}

// parseNFT reads `nft -j list table` output.
func parseNFT(out []byte) (*NFTable, error) {
	var doc struct {
		Objects []map[string]json.RawMessage `json:"nftables"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		return nil, err
	}
	t := &NFTable{ChainHeader: map[string]string{}, Rules: map[string][]string{}, Maps: map[string]string{}, Elements: map[string][]string{}}
	for _, o := range doc.Objects {
		for kind, raw := range o {
			switch kind {
			case "metainfo", "table":
			case "chain":
				var c struct {
					Name, Type, Hook, Policy string
					Prio                     *int
				}
				if err := json.Unmarshal(raw, &c); err != nil {
					return nil, fmt.Errorf("chain: %w", err)
				}
				t.Chains = append(t.Chains, c.Name)
				hdr := ""
				if c.Hook != "" {
					prio := "?"
					if c.Prio != nil {
						prio = fmt.Sprint(*c.Prio)
					}
					hdr = fmt.Sprintf("type %s hook %s priority %s policy %s", c.Type, c.Hook, prio, c.Policy)
				}
				t.ChainHeader[c.Name] = hdr
				if _, ok := t.Rules[c.Name]; !ok {
					t.Rules[c.Name] = []string{}
				}
			case "rule":
				var r struct {
					Chain string
					Expr  []any
				}
				if err := json.Unmarshal(raw, &r); err != nil {
					return nil, fmt.Errorf("rule: %w", err)
				}
				stmts := make([]string, len(r.Expr))
				for i, e := range r.Expr {
					stmts[i] = nftText(e)
				}
				t.Rules[r.Chain] = append(t.Rules[r.Chain], strings.Join(stmts, "; "))
			case "map", "set":
				var m struct {
					Name  string
					Type  any
					Map   any
					Flags []string
					Elem  []any
				}
				if err := json.Unmarshal(raw, &m); err != nil {
					return nil, fmt.Errorf("%s: %w", kind, err)
				}
				decl := kind + " " + typeText(m.Type)
				if m.Map != nil {
					decl += " : " + typeText(m.Map)
				}
				if len(m.Flags) > 0 {
					decl += " flags " + strings.Join(m.Flags, ",")
				}
				t.Maps[m.Name] = decl
				els, err := elementsText(m.Elem, hasFlag(m.Flags, "interval"))
				if err != nil {
					return nil, fmt.Errorf("%s %s: %w", kind, m.Name, err)
				}
				t.Elements[m.Name] = els
			default:
				t.Other = append(t.Other, kind+" "+string(raw))
			}
		}
	}
	return t, nil
}

func hasFlag(flags []string, f string) bool {
	for _, x := range flags {
		if x == f {
			return true
		}
	}
	return false
}

// typeText is a set's key or data type: "ipv4_addr", or a concatenation "a . b".
func typeText(v any) string {
	if l, ok := v.([]any); ok {
		parts := make([]string, len(l))
		for i, x := range l {
			parts[i] = fmt.Sprint(x)
		}
		return strings.Join(parts, " . ")
	}
	return fmt.Sprint(v)
}

// elementsText renders the elements "key : value". An interval map's keys (single addresses,
// prefixes, ranges) become address ranges, sorted, adjacent ones with the same value merged.
func elementsText(elems []any, interval bool) ([]string, error) {
	out := []string{}
	type rng struct {
		lo, hi netip.Addr
		val    string
	}
	var rs []rng
	for _, e := range elems {
		key, val := e, any(nil)
		if pair, ok := e.([]any); ok && len(pair) == 2 {
			key, val = pair[0], pair[1]
		}
		// An element with options (timeout, counter) is {"elem": {"val": ...}}.
		if m, ok := key.(map[string]any); ok {
			if inner, ok := m["elem"].(map[string]any); ok {
				key = inner["val"]
			}
		}
		if !interval {
			s := nftText(key)
			if val != nil {
				s += " : " + nftText(val)
			}
			out = append(out, s)
			continue
		}
		lo, hi, err := addrRange(key)
		if err != nil {
			return nil, err
		}
		v := ""
		if val != nil {
			v = nftText(val)
		}
		rs = append(rs, rng{lo, hi, v})
	}
	if !interval {
		sort.Strings(out)
		return out, nil
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i].lo.Less(rs[j].lo) })
	var merged []rng
	for _, r := range rs {
		if n := len(merged); n > 0 && merged[n-1].val == r.val && merged[n-1].hi.Next() == r.lo {
			merged[n-1].hi = r.hi
			continue
		}
		merged = append(merged, r)
	}
	for _, r := range merged {
		s := r.lo.String() + "-" + r.hi.String()
		if r.val != "" {
			s += " : " + r.val
		}
		out = append(out, s)
	}
	return out, nil
}

// addrRange is the first and last address an interval key covers.
func addrRange(key any) (lo, hi netip.Addr, err error) {
	switch k := key.(type) {
	case string:
		a, err := netip.ParseAddr(k)
		return a, a, err
	case map[string]any:
		if p, ok := k["prefix"].(map[string]any); ok {
			a, err := netip.ParseAddr(fmt.Sprint(p["addr"]))
			if err != nil {
				return lo, hi, err
			}
			bits, _ := p["len"].(float64)
			pfx := netip.PrefixFrom(a, int(bits)).Masked()
			return pfx.Addr(), lastAddr(pfx), nil
		}
		if r, ok := k["range"].([]any); ok && len(r) == 2 {
			if lo, err = netip.ParseAddr(fmt.Sprint(r[0])); err != nil {
				return lo, hi, err
			}
			hi, err = netip.ParseAddr(fmt.Sprint(r[1]))
			return lo, hi, err
		}
	}
	return lo, hi, fmt.Errorf("interval key %s not understood", nftText(key))
}

func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Addr().As4()
	n := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	n |= uint32(0xffffffff) >> p.Bits() // a shift by 32 is 0 in Go: a /32 is its address
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})
}

// nftText renders one expression or statement of nft's JSON as short canonical text: matches
// "ip saddr == 10.0.1.0/24", "jump X", "dnat ip to ip daddr . meta l4proto . th dport map @m",
// "masquerade". Anything else is its JSON (keys sorted), so it still compares exactly.
func nftText(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64) // a mark above 2^21 in full, not as 2.1e+06
	case []any:
		parts := make([]string, len(x))
		for i, p := range x {
			parts[i] = nftText(p)
		}
		return strings.Join(parts, ",")
	case map[string]any:
		if len(x) == 1 {
			for k, body := range x {
				m, _ := body.(map[string]any)
				switch k {
				case "match":
					return nftText(m["left"]) + " " + fmt.Sprint(m["op"]) + " " + nftText(m["right"])
				case "payload":
					return fmt.Sprint(m["protocol"]) + " " + fmt.Sprint(m["field"])
				case "meta", "ct":
					return k + " " + fmt.Sprint(m["key"])
				case "prefix":
					return fmt.Sprint(m["addr"]) + "/" + fmt.Sprint(m["len"])
				case "range":
					if l, ok := body.([]any); ok && len(l) == 2 {
						return nftText(l[0]) + "-" + nftText(l[1])
					}
				case "concat":
					if l, ok := body.([]any); ok {
						parts := make([]string, len(l))
						for i, p := range l {
							parts[i] = nftText(p)
						}
						return strings.Join(parts, " . ")
					}
				case "set":
					if l, ok := body.([]any); ok {
						return "{ " + nftText(l) + " }"
					}
				case "map":
					return nftText(m["key"]) + " map " + nftText(m["data"])
				case "mangle":
					return nftText(m["key"]) + " set " + nftText(m["value"])
				case "jump", "goto":
					return k + " " + fmt.Sprint(m["target"])
				case "dnat", "snat":
					plain := true
					for f := range m {
						plain = plain && (f == "addr" || f == "family" || f == "port")
					}
					if !plain {
						break // flags or other fields: left to the JSON form
					}
					s := k
					if f, ok := m["family"]; ok {
						s += " " + fmt.Sprint(f)
					}
					s += " to " + nftText(m["addr"])
					if p, ok := m["port"]; ok {
						s += ":" + nftText(p)
					}
					return s
				case "masquerade", "accept", "drop", "return":
					if body == nil {
						return k
					}
				}
			}
		}
	}
	b, _ := json.Marshal(v)
	return string(b)
}
