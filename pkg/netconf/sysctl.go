package netconf

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// sysctl is one value under /proc/sys/net of the gateway netns. Path is slash-separated below
// /proc/sys ("net/ipv4/conf/net1/rp_filter"), so interface names with dots stay intact.
type sysctl struct {
	Path  string
	Value string
	// Optional: a missing file is not an error (a primary NIC the primary CNI has not created).
	Optional bool
}

const forwardSysctl = "net/ipv4/ip_forward"

// linkSysctls are the per-link values our data plane needs. rp_filter must be 0 on every NIC
// (and on "all": the effective value is max(all, link)), because replies of policy-routed,
// NATed flows arrive on interfaces a strict reverse-path check would not choose. The external NIC
// gets promote_secondaries, so removing the first EIP of a network keeps the others (without it
// the kernel drops every secondary address together with the primary); so do the subnet NICs we
// create (their subnet gateway address and lanIp are one network too). Our NICs ignore IPv6
// IPv6 is off on the NICs we create (disable_ipv6, see ipv6Off): the data plane is IPv4 only,
// and an IPv6-enabled link sends router and neighbour solicitations and MLD reports onto the
// external and tenant segments from its link-local address. Set when the link is created, before
// it goes up, and kept here for links made by an older version (Optional: a kernel without IPv6
// has no such file).
func linkSysctls(ext string, subnets []string, primary map[string]bool) []sysctl {
	out := []sysctl{
		{Path: "net/ipv4/conf/all/rp_filter", Value: "0"},
		{Path: "net/ipv4/conf/" + ext + "/rp_filter", Value: "0"},
		{Path: "net/ipv4/conf/" + ext + "/promote_secondaries", Value: "1"},
		{Path: ipv6OffPath(ext), Value: "1", Optional: true},
	}
	for _, s := range subnets {
		out = append(out, sysctl{Path: "net/ipv4/conf/" + s + "/rp_filter", Value: "0", Optional: primary[s]})
		if !primary[s] {
			// A subnet NIC holds the subnet gateway and lanIp in one network: without
			// promote_secondaries, replacing the first of them (a new Subnet gateway) would
			// drop the just-added new address together with it.
			out = append(out, sysctl{Path: "net/ipv4/conf/" + s + "/promote_secondaries", Value: "1"},
				sysctl{Path: ipv6OffPath(s), Value: "1", Optional: true})
		}
	}
	return out
}

// sysctlMemo is what a Gateway remembers of its link sysctls: the values last found right (read
// back, or written by this process) and the identity of the links they were read on.
type sysctlMemo struct {
	want  []sysctl
	links map[string]linkID
}

// linkID identifies a link as it was when its sysctls were read: a link recreated under the same
// name has a new ifindex (and fresh per-link sysctls), and one set down or changed by hand
// shows in its flags.
type linkID struct {
	index int
	flags uint32
}

// linkIDsOf are the identities of the links of names (the zero linkID for a link that does not
// exist: a primary NIC not created yet).
func linkIDsOf(links map[string]netlink.Link, names []string) map[string]linkID {
	out := make(map[string]linkID, len(names))
	for _, name := range names {
		if l := links[name]; l != nil {
			out[name] = linkID{index: l.Attrs().Index, flags: l.Attrs().RawFlags}
		} else {
			out[name] = linkID{}
		}
	}
	return out
}

// holds reports whether m (nil: nothing known) vouches for want on links ids: the same values
// on the same links, unchanged since they were last found right.
func (m *sysctlMemo) holds(want []sysctl, ids map[string]linkID) bool {
	return m != nil && slices.Equal(m.want, want) && maps.Equal(m.links, ids)
}

// syncSysctls writes the values that differ, inside the gateway netns. /proc/sys/net shows the
// netns of the thread that opens the file, hence ns.Do (a locked thread inside the netns).
func syncSysctls(netNS ns.NetNS, want []sysctl) ([]string, error) {
	var changes []string
	err := netNS.Do(func(ns.NetNS) error {
		for _, s := range want {
			old, err := readSysctl(s.Path)
			if s.Optional && errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				return err
			}
			if old == s.Value {
				continue
			}
			if err := writeSysctl(s.Path, s.Value); err != nil {
				return err
			}
			changes = append(changes, fmt.Sprintf("sysctl %s: %s -> %s", s.Path, old, s.Value))
		}
		return nil
	})
	return changes, err
}

// getSysctl reads one value inside the gateway netns.
func getSysctl(netNS ns.NetNS, path string) (string, error) {
	var v string
	err := netNS.Do(func(ns.NetNS) error {
		var err error
		v, err = readSysctl(path)
		return err
	})
	return v, err
}

// setSysctl writes one value inside the gateway netns.
func setSysctl(netNS ns.NetNS, path, value string) error {
	return netNS.Do(func(ns.NetNS) error { return writeSysctl(path, value) })
}

func ipv6OffPath(ifName string) string { return "net/ipv6/conf/" + ifName + "/disable_ipv6" }

// ipv6Off turns IPv6 off on a link of the calling thread's netns, before the link goes up, so it
// never gets a link-local address nor sends a frame of IPv6 (DAD, router solicitation, MLD).
// A kernel without IPv6 has nothing to turn off.
func ipv6Off(ifName string) error {
	err := writeSysctl(ipv6OffPath(ifName), "1")
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// ipv6OffIn is ipv6Off for a link of the gateway netns.
func ipv6OffIn(gatewayNS netns.NsHandle, ifName string) error {
	n, err := ns.GetNS(fmt.Sprintf("/proc/self/fd/%d", int(gatewayNS)))
	if err != nil {
		return fmt.Errorf("entering the gateway netns to turn IPv6 off on %s: %w", ifName, err)
	}
	defer n.Close()
	return n.Do(func(ns.NetNS) error { return ipv6Off(ifName) })
}

// ipv6IsOff reports whether IPv6 is off on a link of the calling thread's netns (true also where
// the kernel has no IPv6).
func ipv6IsOff(ifName string) (bool, error) {
	v, err := readSysctl(ipv6OffPath(ifName))
	if errors.Is(err, fs.ErrNotExist) {
		return true, nil
	}
	return v == "1", err
}

// readSysctl and writeSysctl must run on a thread inside the target netns.
func readSysctl(path string) (string, error) {
	b, err := os.ReadFile("/proc/sys/" + path)
	if err != nil {
		return "", fmt.Errorf("reading sysctl %s: %w", path, err)
	}
	return strings.TrimSpace(string(b)), nil
}

func writeSysctl(path, value string) error {
	if err := os.WriteFile("/proc/sys/"+path, []byte(value), 0o644); err != nil {
		return fmt.Errorf("writing sysctl %s=%s: %w", path, value, err)
	}
	return nil
}
