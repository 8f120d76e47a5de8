package kstate_test

import (
	"math/rand/v2"
	"os"
	"strings"
	"testing"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	"github.com/vpcnat/vpcnat/pkg/nft"
	"github.com/vpcnat/vpcnat/test/kstate"
	"github.com/vpcnat/vpcnat/test/topo"
)

// nftProblems are the differences Compare finds in the NAT of either backend.
func nftProblems(st *kstate.State, d *annotations.Desired) kstate.Diff {
	var out kstate.Diff
	for _, p := range kstate.Compare(st, d) {
		if p.NAT() {
			out = append(out, p)
		}
	}
	return out
}

// loadNFT loads text into the netns with nft itself (nft's parser, not vpcnat's netlink code)
// after flushing its ruleset, and dumps the netns.
func loadNFT(t *testing.T, tp *topo.Topology, text string) *kstate.State {
	t.Helper()
	if _, err := tp.Exec(topo.Gateway, "nft", "flush", "ruleset"); err != nil {
		t.Fatal(err)
	}
	f, err := os.CreateTemp(t.TempDir(), "table-*.nft")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if _, err := tp.Exec(topo.Gateway, "nft", "-f", f.Name()); err != nil {
		t.Fatalf("nft -f of:\n%s\n%v", text, err)
	}
	st, err := kstate.Dump(tp.Path(topo.Gateway))
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// nftOnly is a bare netns for loading tables into.
func nftOnly(t *testing.T) *topo.Topology {
	t.Helper()
	topo.NeedRoot(t)
	tp := &topo.Topology{Prefix: topo.NewPrefix()}
	t.Cleanup(func() {
		if err := tp.Close(); err != nil {
			t.Error(err)
		}
	})
	if err := tp.AddNS(topo.Gateway); err != nil {
		t.Fatal(err)
	}
	return tp
}

// TestNFTModelAgreesWithBuilder: for the seed and many random gateways, the table pkg/nft
// builds, loaded into a kernel by nft and read back with nft's JSON listing, is exactly what
// kstate's own model of the nftables layout expects (the model shares no code with pkg/nft; the
// SNAT ranges are compared by the addresses they cover, found by brute force on kstate's side).
func TestNFTModelAgreesWithBuilder(t *testing.T) {
	tp := nftOnly(t)
	ds := []*annotations.Desired{seedDesired(t), {}}
	r := rand.New(rand.NewPCG(3, 4))
	for i := range 80 {
		ds = append(ds, randomDesired(r, 1+i%30))
	}
	for i, d := range ds {
		d.Dataplane = annotations.DataplaneNFTables
		st := loadNFT(t, tp, nft.Build(d).Text())
		if diff := nftProblems(st, d); !diff.Empty() {
			t.Fatalf("gateway %d: pkg/nft and kstate's model disagree: %s\nloaded:\n%s", i, diff, nft.Build(d).Text())
		}
	}
}

// TestNFTModelCatchesPlantedBugs plants one table bug after another into the seed's table (as a
// buggy pkg/nft or commit would leave it in the kernel) and requires kstate to report each,
// naming the chain or map.
func TestNFTModelCatchesPlantedBugs(t *testing.T) {
	tp := nftOnly(t)
	d := seedDesired(t)
	d.Dataplane = annotations.DataplaneNFTables
	// A second SNAT of a longer prefix, so the interval map has more than one range.
	d.SNATs = append(d.SNATs, annotations.SNAT{EIP: d.FloatingIPs[0].EIP, InternalCIDR: "10.0.1.128/25"})
	good := nft.Build(d).Text()
	if diff := nftProblems(loadNFT(t, tp, good), d); !diff.Empty() {
		t.Fatalf("the correct table already differs: %s\n%s", diff, good)
	}
	// The port forward's mark element, and the same forward's with a mark of another target.
	markAt := strings.Index(good, "192.168.0.112 . tcp . 8888 : 0x")
	if markAt < 0 {
		t.Fatalf("the seed's table has no mark of its port forward:\n%s", good)
	}
	markElem := good[markAt : markAt+len("192.168.0.112 . tcp . 8888 : 0x")+8]
	for _, c := range []struct {
		name, old, new string
		want           string // named in the report
	}{
		{"a port forward's mark of another target", markElem, "192.168.0.112 . tcp . 8888 : 0x00000001", "port_mark"},
		{"port forwards not marked", "ct mark set ip daddr . meta l4proto . th dport map @port_mark\n\t\t", "", "SHARED_DNAT"},
		{"a port forward to the wrong internal port", "10.0.1.10 . 80", "10.0.1.10 . 8080", "port_dnat"},
		{"a FIP's outbound SNAT to another EIP", "10.0.1.5 : 192.168.0.111", "10.0.1.5 : 192.168.0.112", "fip_snat"},
		{"SNAT of the /25 to the /24's EIP", "10.0.1.128/25 : 192.168.0.111", "10.0.1.128/25 : 192.168.0.112", "snat_prefixes"},
		{"hairpin on the external NIC", `oifname "` + d.Subnets[0].IfName + `" ct status dnat`, `oifname "net1" ct status dnat`, "HAIRPIN_SNAT"},
		{"SNAT for every interface", `oifname "net1" jump SHARED_SNAT`, `jump SHARED_SNAT`, "SNAT_FILTER"},
		{"DNAT hooked at the wrong priority", "priority dstnat", "priority 0", "PREROUTING"},
		{"a port forward of the wrong protocol", "192.168.0.112 . tcp . 8888", "192.168.0.112 . udp . 8888", "port_dnat"},
		{"a foreign map", "map fip_snat {", "map mine {\n\t\ttype ipv4_addr : ipv4_addr\n\t}\n\n\tmap fip_snat {", "mine"},
		{"a FIP left over", "192.168.0.111 : 10.0.1.5 }", "192.168.0.111 : 10.0.1.5, 192.168.0.120 : 10.0.1.6 }", "fip_dnat"},
		{"a foreign chain", "chain SHARED_SNAT {", "chain MINE {\n\t}\n\n\tchain SHARED_SNAT {", "MINE"},
		{"a counter on the FIP lookup", "dnat to ip daddr map @fip_dnat", "counter dnat to ip daddr map @fip_dnat", "EXCLUSIVE_DNAT"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if !strings.Contains(good, c.old) {
				t.Fatalf("the seed's table has no %q:\n%s", c.old, good)
			}
			st := loadNFT(t, tp, strings.Replace(good, c.old, c.new, 1))
			diff := nftProblems(st, d)
			if diff.Empty() {
				t.Fatalf("kstate found nothing wrong")
			}
			if !strings.Contains(diff.String(), c.want) {
				t.Errorf("kstate's report does not name %s:\n%s", c.want, diff)
			}
		})
	}
	// Each backend's state is foreign to the other.
	st := loadNFT(t, tp, good)
	d.Dataplane = ""
	if diff := kstate.Compare(st, d); diff.Count(kstate.Foreign, "nft table") != 1 {
		t.Errorf("an iptables gateway holding table ip vpcnat: %s", diff)
	}
}

// TestCheckCatchesEachFaultNFT converges the seed with the nftables backend, sees no difference,
// then breaks its table with nft in one way after another (each repaired by a full converge) and
// checks that Check names the fault; the iptables nat table is then expected empty.
func TestCheckCatchesEachFaultNFT(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	tp, converge, check := convergedSeed(t, annotations.DataplaneNFTables)
	faults := []struct {
		name       string
		argv       [][]string
		kind, what string
		item       string
	}{
		{"missing FIP", [][]string{{"nft", "delete", "element", "ip", "vpcnat", "fip_dnat", "{", "192.168.0.111", "}"}}, kstate.Missing, "nft element", "192.168.0.111 : 10.0.1.5"},
		{"foreign port forward", [][]string{{"nft", "add", "element", "ip", "vpcnat", "port_dnat", "{", "192.168.0.112", ".", "udp", ".", "7", ":", "10.0.1.9", ".", "7", "}"}},
			kstate.Foreign, "nft element", "192.168.0.112 . udp . 7"},
		{"flushed SNAT chain", [][]string{{"nft", "flush", "chain", "ip", "vpcnat", "SHARED_SNAT"}}, kstate.Missing, "nft rule", "snat_prefixes"},
		{"foreign rule", [][]string{{"nft", "add", "rule", "ip", "vpcnat", "DNAT_FILTER", "counter"}}, kstate.Foreign, "nft rule", "DNAT_FILTER"},
		{"table deleted", [][]string{{"nft", "delete", "table", "ip", "vpcnat"}}, kstate.Missing, "nft table", "vpcnat"},
		{"an iptables rule left", [][]string{{"iptables", "-t", "nat", "-A", "PREROUTING", "-j", "ACCEPT"}}, kstate.Foreign, "nat rule", "PREROUTING"},
	}
	for _, f := range faults {
		for _, argv := range f.argv {
			if _, err := tp.Exec(topo.Gateway, argv...); err != nil {
				t.Fatalf("%s: %v", f.name, err)
			}
		}
		diff := check()
		found := false
		for _, p := range diff {
			found = found || (p.Kind == f.kind && p.What == f.what && strings.Contains(p.Item, f.item))
		}
		if !found {
			t.Errorf("%s: not reported as %s %s %q; got %s", f.name, f.kind, f.what, f.item, diff)
		}
		_, _ = tp.Exec(topo.Gateway, "iptables", "-t", "nat", "-F", "PREROUTING")
		// A hand edit of the table is repaired by a full converge (the nf_tables generation
		// moved, so it reads back).
		converge()
		if diff := check(); !diff.Empty() {
			t.Fatalf("after %s, repaired: %s", f.name, diff)
		}
	}
}
