package nat

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Rule is one parsed nat rule, of exactly the forms vpcnat renders. The parser is strict about
// canonical iptables-save form (option order -s -d -i -o -p, matches, -j; "/32" on hosts; no
// "0.0.0.0/0"), so it doubles as the check that rendered text will read back from the kernel
// unchanged, and anything else (negation, other matches) is an error rather than a guess.
type Rule struct {
	Src, Dst netip.Prefix // invalid: any
	In, Out  string
	Proto    string // "", "tcp" or "udp"
	DPort    int    // 0: any
	CTState  []string
	Target   string // "" (no target), a chain, or DNAT, SNAT, MASQUERADE, RETURN, ACCEPT
	ToAddr   netip.Addr
	ToPort   int
}

// Order of options in iptables-save output; an option may not come after a later one.
const (
	stageSrc = iota + 1
	stageDst
	stageIn
	stageOut
	stageProto
	stageMatch
	stageTarget
)

var stages = map[string]int{"-s": stageSrc, "-d": stageDst, "-i": stageIn, "-o": stageOut, "-p": stageProto, "-m": stageMatch, "-j": stageTarget}

// maxIfName is IFNAMSIZ (16) minus the NUL.
const maxIfName = 15

// ParseRule parses the text after "-A <chain> " of a rule vpcnat renders (see Rule).
func ParseRule(text string) (Rule, error) {
	var r Rule
	f := strings.Fields(text)
	stage := 0
	for i := 0; i < len(f); {
		opt := f[i]
		st, ok := stages[opt]
		if !ok {
			return r, fmt.Errorf("unsupported option %q", opt)
		}
		if st < stage || (st == stage && st != stageMatch) {
			return r, fmt.Errorf("option %q out of iptables-save order", opt)
		}
		stage = st
		if i+1 >= len(f) {
			return r, fmt.Errorf("option %q without a value", opt)
		}
		val := f[i+1]
		i += 2
		var err error
		switch opt {
		case "-s":
			r.Src, err = canonicalPrefix(val)
		case "-d":
			r.Dst, err = canonicalPrefix(val)
		case "-i", "-o":
			if val == "!" || len(val) > maxIfName {
				return r, fmt.Errorf("option %s %q: unsupported interface", opt, val)
			}
			if opt == "-i" {
				r.In = val
			} else {
				r.Out = val
			}
		case "-p":
			if val != "tcp" && val != "udp" {
				return r, fmt.Errorf("protocol %q not supported", val)
			}
			r.Proto = val
		case "-m":
			i, err = r.parseMatch(val, f, i)
		case "-j":
			r.Target = val
			i, err = r.parseTarget(f, i)
		}
		if err != nil {
			return r, err
		}
	}
	return r, nil
}

// parseMatch reads the options of match module mod starting at f[i]; it returns the next index.
func (r *Rule) parseMatch(mod string, f []string, i int) (int, error) {
	if i+1 >= len(f) {
		return i, fmt.Errorf("match %q without options", mod)
	}
	switch {
	case (mod == "tcp" || mod == "udp") && f[i] == "--dport":
		if mod != r.Proto || r.DPort != 0 {
			return i, fmt.Errorf("match -m %s needs -p %s before it, once", mod, mod)
		}
		p, err := strconv.Atoi(f[i+1])
		if err != nil || p < 1 || p > 65535 || strconv.Itoa(p) != f[i+1] {
			return i, fmt.Errorf("--dport %q: not a single port", f[i+1])
		}
		r.DPort = p
	case mod == "conntrack" && f[i] == "--ctstate":
		r.CTState = strings.Split(f[i+1], ",")
	default:
		return i, fmt.Errorf("match -m %s %s not supported", mod, f[i])
	}
	return i + 2, nil
}

// parseTarget reads the target options starting at f[i]; the target must end the rule.
func (r *Rule) parseTarget(f []string, i int) (int, error) {
	var flag string
	switch r.Target {
	case "DNAT":
		flag = "--to-destination"
	case "SNAT":
		flag = "--to-source"
	case "MASQUERADE", "RETURN", "ACCEPT":
	default:
		if strings.HasPrefix(r.Target, "-") || len(r.Target) > MaxChainName {
			return i, fmt.Errorf("target %q is not a chain name", r.Target)
		}
	}
	if flag == "" {
		if i != len(f) {
			return i, fmt.Errorf("target %s: unexpected %q", r.Target, f[i])
		}
		return i, nil
	}
	if i+2 != len(f) || f[i] != flag {
		return i, fmt.Errorf("target %s: want exactly %s ADDR[:PORT]", r.Target, flag)
	}
	addr, port, err := parseAddrPort(f[i+1])
	if err != nil {
		return i, fmt.Errorf("target %s %s %q: %w", r.Target, flag, f[i+1], err)
	}
	r.ToAddr, r.ToPort = addr, port
	return i + 2, nil
}

// canonicalPrefix parses an address match as iptables-save prints it: IPv4 with a prefix length,
// masked, and never /0 (iptables-save leaves out a match on everything).
func canonicalPrefix(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil || !p.Addr().Is4() {
		return p, fmt.Errorf("address %q: want an IPv4 CIDR such as 10.0.1.5/32", s)
	}
	if p.Masked() != p || p.Bits() == 0 {
		return p, fmt.Errorf("address %q: not canonical (iptables-save prints %s)", s, p.Masked())
	}
	return p, nil
}

func parseAddrPort(s string) (netip.Addr, int, error) {
	host, port, hasPort := strings.Cut(s, ":")
	a, err := netip.ParseAddr(host)
	if err != nil || !a.Is4() {
		return a, 0, fmt.Errorf("not an IPv4 address")
	}
	if !hasPort {
		return a, 0, nil
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 || strconv.Itoa(p) != port {
		return a, 0, fmt.Errorf("port %q not a single port", port)
	}
	return a, p, nil
}

// String prints the rule in canonical iptables-save form.
func (r Rule) String() string {
	var parts []string
	if r.Src.IsValid() {
		parts = append(parts, "-s", r.Src.String())
	}
	if r.Dst.IsValid() {
		parts = append(parts, "-d", r.Dst.String())
	}
	if r.In != "" {
		parts = append(parts, "-i", r.In)
	}
	if r.Out != "" {
		parts = append(parts, "-o", r.Out)
	}
	if r.Proto != "" {
		parts = append(parts, "-p", r.Proto)
	}
	if r.DPort != 0 {
		parts = append(parts, "-m", r.Proto, "--dport", strconv.Itoa(r.DPort))
	}
	if len(r.CTState) > 0 {
		parts = append(parts, "-m", "conntrack", "--ctstate", strings.Join(r.CTState, ","))
	}
	if r.Target != "" {
		parts = append(parts, "-j", r.Target)
		to := r.ToAddr.String()
		if r.ToPort != 0 {
			to += ":" + strconv.Itoa(r.ToPort)
		}
		switch r.Target {
		case "DNAT":
			parts = append(parts, "--to-destination", to)
		case "SNAT":
			parts = append(parts, "--to-source", to)
		}
	}
	return strings.Join(parts, " ")
}
