package netconf

import (
	"bufio"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	"github.com/vpcnat/vpcnat/pkg/nft"
)

const rolePod2 = "pod2" // 10.0.1.10, the seed's port-forward target

// echoServer answers every line on a TCP connection with the client's address as it saw it.
func (tp *topo) echoServer(role, addr string) {
	tp.t.Helper()
	var ln net.Listener
	if err := tp.do(role, func() error {
		var err error
		ln, err = net.Listen("tcp4", addr)
		return err
	}); err != nil {
		tp.t.Fatalf("listen %s in %s: %v", addr, role, err)
	}
	tp.t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					if _, err := r.ReadString('\n'); err != nil {
						return
					}
					host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
					if _, err := c.Write([]byte(host + "\n")); err != nil {
						return
					}
				}
			}()
		}
	}()
}

// exchange sends one line over c and returns the peer's answer (the address it saw us as).
func exchange(c net.Conn) (string, error) {
	if err := c.SetDeadline(time.Now().Add(2 * time.Second)); err != nil {
		return "", err
	}
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), err
}

// seenBy opens a connection from role to addr and returns the source address the server saw.
func (tp *topo) seenBy(role, addr string) string {
	tp.t.Helper()
	c, err := tp.dialTCP(role, addr)
	if err != nil {
		tp.t.Errorf("%s -> %s: %v", role, addr, err)
		return ""
	}
	got, err := exchange(c)
	if err != nil {
		tp.t.Errorf("%s -> %s: %v", role, addr, err)
	}
	return got
}

func nftSeed() *annotations.Desired {
	d := seedDesired()
	d.Dataplane = annotations.DataplaneNFTables
	return d
}

// Every rule kind of the seed through the nftables backend, with real packets: FIP both ways,
// the port forward, SNAT, hairpin; no iptables rule of ours exists; converging again changes
// nothing; a removed port forward takes its conntrack entry with it.
func TestNFTConvergeTraffic(t *testing.T) {
	needNFT(t)
	tp := newTopo(t)
	tp.addPod(rolePod, "10.0.1.5/24", "10.0.1.1")
	tp.addPod(rolePod2, "10.0.1.10/24", "10.0.1.1")
	g := tp.gateway()
	rep := tp.mustConverge(g, nftSeed(), true)
	if !hasChange(rep, "nftables: create table ip vpcnat (9 chains, 8 map elements)") { // every mapping has two: its translation and its mark; the FIP one each way
		t.Errorf("first converge: %q", rep.Changes)
	}
	if save := tp.natSave(roleGW); strings.Contains(save, "DNAT_FILTER") {
		t.Errorf("iptables rules with the nftables backend:\n%s", save)
	}

	tp.echoServer(rolePod, "10.0.1.5:7777")
	tp.echoServer(rolePod2, "10.0.1.10:80")
	tp.echoServer(roleExt, "192.168.0.254:7000")
	for _, c := range []struct{ from, to, want, what string }{
		{roleExt, "192.168.0.111:7777", "192.168.0.254", "FIP inbound keeps the client's address"},
		{rolePod, "192.168.0.254:7000", "192.168.0.111", "FIP outbound leaves from the FIP"},
		{roleExt, "192.168.0.112:8888", "192.168.0.254", "port forward keeps the client's address"},
		{rolePod2, "192.168.0.254:7000", "192.168.0.112", "SNAT of the subnet"},
		{rolePod, "192.168.0.112:8888", "10.0.1.1", "hairpin: the server sees the gateway"},
	} {
		if got := tp.seenBy(c.from, c.to); got != c.want {
			t.Errorf("%s: %s -> %s seen as %q, want %q", c.what, c.from, c.to, got, c.want)
		}
	}
	for _, full := range []bool{true, false} {
		if rep := tp.mustConverge(g, nftSeed(), full); len(rep.Changes) != 0 {
			t.Errorf("converging again (full=%v): %q", full, rep.Changes)
		}
	}

	noDNAT := nftSeed()
	noDNAT.DNATs = nil
	rep = tp.mustConverge(g, noDNAT, false)
	if !hasChange(rep, "nftables: delete element port_dnat 192.168.0.112 . tcp . 8888 : 10.0.1.10 . 80") ||
		!hasChange(rep, "conntrack: deleted the entries of tcp 192.168.0.112:8888 -> 10.0.1.10:80 by their mark") {
		t.Errorf("port forward removed: %q", rep.Changes)
	}
	if tp.hasFlow("->192.168.0.112:8888 reply 10.0.1.10:80->") {
		t.Errorf("the removed port forward's entries survived:\n%s", tp.dumpFlows())
	}
}

// Switching a live gateway between backends leaves nothing of the previous one, and a TCP
// connection established through the port forward before the switch keeps working after it,
// both ways.
func TestDataplaneSwitch(t *testing.T) {
	needNFT(t)
	tp := newTopo(t)
	tp.addPod(rolePod2, "10.0.1.10/24", "10.0.1.1")
	g := tp.gateway()
	tp.mustConverge(g, seedDesired(), true)
	tp.echoServer(rolePod2, "10.0.1.10:80")
	held, err := tp.dialTCP(roleExt, "192.168.0.112:8888")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := exchange(held); err != nil || got != "192.168.0.254" {
		t.Fatalf("through iptables: %q, %v", got, err)
	}

	rep := tp.mustConverge(g, nftSeed(), false)
	t.Logf("to nftables: %q", rep.Changes)
	if !rep.Full || !hasChange(rep, "iptables: delete chain DNAT_FILTER") || !hasChange(rep, "iptables: delete hook PREROUTING -j DNAT_FILTER") {
		t.Errorf("switch to nftables: %q", rep.Changes)
	}
	if save := tp.natSave(roleGW); strings.Contains(save, "DNAT") || strings.Contains(save, "SNAT") {
		t.Errorf("iptables rules left after the switch:\n%s", save)
	}
	if got, err := exchange(held); err != nil || got != "192.168.0.254" {
		t.Errorf("established connection after the switch to nftables: %q, %v", got, err)
	}
	if got := tp.seenBy(roleExt, "192.168.0.112:8888"); got != "192.168.0.254" {
		t.Errorf("new connection through nftables seen as %q", got)
	}

	rep = tp.mustConverge(g, seedDesired(), false)
	t.Logf("back to iptables: %q", rep.Changes)
	if !hasChange(rep, "nftables: deleted table ip vpcnat") {
		t.Errorf("switch back to iptables: %q", rep.Changes)
	}
	if out := tp.exec(roleGW, "nft", "list", "tables"); strings.Contains(out, "vpcnat") {
		t.Errorf("nftables table left after the switch back: %q", out)
	}
	if got, err := exchange(held); err != nil || got != "192.168.0.254" {
		t.Errorf("established connection after the switch back: %q, %v", got, err)
	}
	if rep := tp.mustConverge(g, seedDesired(), true); len(rep.Changes) != 0 {
		t.Errorf("converging again: %q", rep.Changes)
	}
}

// A full converge skips the read-back while nothing was committed in the netns since the last
// one (the nf_tables generation is unchanged), and reads back and repairs as soon as anything
// was: a hand edit of our table, or a commit to a foreign table.
func TestNFTResyncByGeneration(t *testing.T) {
	needNFT(t)
	tp := newTopo(t)
	g := tp.gateway()
	tp.mustConverge(g, nftSeed(), true)
	gen := g.nftLast.gen
	if gen == 0 {
		t.Fatal("the first converge did not learn the generation of its own commit")
	}
	if rep := tp.mustConverge(g, nftSeed(), true); len(rep.Changes) != 0 || g.nftLast.gen != gen {
		t.Fatalf("in-sync resync: %q, generation %d -> %d", rep.Changes, gen, g.nftLast.gen)
	}

	tp.exec(roleGW, "nft", "delete", "element", "ip", "vpcnat", "fip_dnat", "{ 192.168.0.111 }")
	if rep := tp.mustConverge(g, nftSeed(), false); len(rep.Changes) != 0 {
		t.Errorf("a fast converge trusts memory, yet changed %q", rep.Changes)
	}
	rep := tp.mustConverge(g, nftSeed(), true)
	if !hasChange(rep, "nftables: add element fip_dnat 192.168.0.111 : 10.0.1.5") {
		t.Errorf("the resync after a hand edit: %q", rep.Changes)
	}
	if got, want := tp.nftList(roleGW), nft.Build(nftSeed()).Text(); got != want {
		t.Errorf("after the repair:\n%s\nwant\n%s", got, want)
	}

	// A commit elsewhere in the netns also forces a read-back (which finds nothing to do); the
	// generation is learned again from it.
	tp.exec(roleGW, "nft", "add", "table", "ip", "other")
	before := g.nftLast.gen
	if rep := tp.mustConverge(g, nftSeed(), true); len(rep.Changes) != 0 || g.nftLast.gen == before || g.nftLast.gen == 0 {
		t.Errorf("resync after a foreign commit: %q, generation %d -> %d", rep.Changes, before, g.nftLast.gen)
	}
}
