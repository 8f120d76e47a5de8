package main

import (
	"fmt"
	"time"

	"github.com/vpcnat/vpcnat/test/topo"
)

// The seed's rules (examples/seed.yaml).
const (
	eipFIP  = "192.168.0.111" // floatingIpRules: 192.168.0.111 <-> 10.0.1.5
	eipDNAT = "192.168.0.112" // dnatRules: 192.168.0.112:8888/tcp -> 10.0.1.10:80; snatRules: 10.0.1.0/24 -> .112
	gwIP    = "10.0.1.1"      // the subnet gateway the NAT gateway holds
)

type row struct {
	rule, sent, seen string
	ok               bool
}

type probe struct {
	rule, from, proto, to string
	wantSeen              string // source IP the receiver must see
	wantLocal             string // receiver's own address (after DNAT), "" = to
}

// checks starts the receivers and sends one request per rule kind.
func checks(t *topo.Topology) ([]row, error) {
	servers := []struct{ role, proto, addr string }{
		{topo.Inet, "tcp", topo.InetIP + ":8080"},
		{topo.Inet, "udp", topo.InetIP + ":8081"},
		{topo.Pod1, "tcp", ":7000"},
		{topo.Pod2, "tcp", topo.Pod2IP + ":80"},
	}
	for _, s := range servers {
		srv, err := t.Listen(s.role, s.proto, s.addr)
		if err != nil {
			return nil, err
		}
		defer srv.Close()
	}
	probes := []probe{
		{"snat", topo.Pod2, "tcp", topo.InetIP + ":8080", eipDNAT, ""},
		{"snat (udp)", topo.Pod2, "udp", topo.InetIP + ":8081", eipDNAT, ""},
		{"fip out", topo.Pod1, "tcp", topo.InetIP + ":8080", eipFIP, ""},
		{"fip in", topo.Client, "tcp", eipFIP + ":7000", topo.ClientIP, topo.Pod1IP + ":7000"},
		{"dnat", topo.Client, "tcp", eipDNAT + ":8888", topo.ClientIP, topo.Pod2IP + ":80"},
		{"hairpin", topo.Pod1, "tcp", eipDNAT + ":8888", gwIP, topo.Pod2IP + ":80"},
		{"static route", topo.Pod3, "tcp", topo.InetIP + ":8080", eipDNAT, ""},
	}
	rows := make([]row, 0, len(probes))
	for _, p := range probes {
		r := row{rule: p.rule, sent: fmt.Sprintf("%s -> %s/%s", p.from, p.to, p.proto)}
		if p.rule == "static route" {
			r.sent = "pod3 (default via lanIp 10.0.1.254) -> " + p.to + "/" + p.proto
		}
		reply, err := t.Request(p.from, p.proto, p.to, 2*time.Second)
		wantLocal := p.wantLocal
		if wantLocal == "" {
			wantLocal = p.to
		}
		switch {
		case err != nil:
			r.seen = "error: " + err.Error()
		default:
			r.seen = fmt.Sprintf("receiver %s saw source %s", reply.Local, reply.SeenIP())
			r.ok = reply.SeenIP() == p.wantSeen && reply.Local == wantLocal
			if !r.ok {
				r.seen += fmt.Sprintf(" (want %s at %s)", p.wantSeen, wantLocal)
			}
		}
		rows = append(rows, r)
	}
	return rows, nil
}
