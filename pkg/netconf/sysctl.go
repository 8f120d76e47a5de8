package netconf

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/containernetworking/plugins/pkg/ns"
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
// router advertisements: they hold exactly the desired addresses, and a SLAAC address would be
// removed by every converge and come back with the next advertisement (Optional: the netns may
// have IPv6 disabled).
func linkSysctls(ext string, subnets []string, primary map[string]bool) []sysctl {
	out := []sysctl{
		{Path: "net/ipv4/conf/all/rp_filter", Value: "0"},
		{Path: "net/ipv4/conf/" + ext + "/rp_filter", Value: "0"},
		{Path: "net/ipv4/conf/" + ext + "/promote_secondaries", Value: "1"},
		{Path: "net/ipv6/conf/" + ext + "/accept_ra", Value: "0", Optional: true},
	}
	for _, s := range subnets {
		out = append(out, sysctl{Path: "net/ipv4/conf/" + s + "/rp_filter", Value: "0", Optional: primary[s]})
		if !primary[s] {
			// A subnet NIC holds the subnet gateway and lanIp in one network: without
			// promote_secondaries, replacing the first of them (a new Subnet gateway) would
			// drop the just-added new address together with it.
			out = append(out, sysctl{Path: "net/ipv4/conf/" + s + "/promote_secondaries", Value: "1"},
				sysctl{Path: "net/ipv6/conf/" + s + "/accept_ra", Value: "0", Optional: true})
		}
	}
	return out
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
