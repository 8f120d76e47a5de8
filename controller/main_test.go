package main

import (
	"strings"
	"testing"
	"time"
)

// TestFlags: the defaults are the deployment's (kube-system, Kube-OVN's external network, leader
// election on), identities differ per process, and stray arguments are refused.
func TestFlags(t *testing.T) {
	f, err := parseFlags(nil)
	if err != nil {
		t.Fatal(err)
	}
	if f.opts.GatewayNamespace != "kube-system" || f.opts.ExternalNetwork != "ovn-vpc-external-network" || !f.leaderElect ||
		f.le.Namespace != "kube-system" || f.le.Name != "vpcnat-controller" || f.le.LeaseDuration != 15*time.Second || f.profiling {
		t.Errorf("defaults %+v", f)
	}
	g, err := parseFlags([]string{"--gateway-namespace=gw", "--leader-elect=false", "--workers=8"})
	if err != nil {
		t.Fatal(err)
	}
	if g.opts.GatewayNamespace != "gw" || g.leaderElect || g.opts.Workers != 8 || g.le.Identity == f.le.Identity || !strings.Contains(g.le.Identity, "_") {
		t.Errorf("parsed %+v", g)
	}
	if _, err := parseFlags([]string{"extra"}); err == nil {
		t.Error("a stray argument was accepted")
	}
	if _, err := parseFlags([]string{"--no-such-flag"}); err == nil {
		t.Error("an unknown flag was accepted")
	}
}
