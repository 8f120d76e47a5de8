package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	"github.com/vpcnat/vpcnat/test/topo"
)

// nodeVeths lists the veths of the node namespace (the bridge plugin's and ours).
func (h *harness) nodeVeths() string {
	h.t.Helper()
	out, _ := h.topo.Exec(topo.Node, "ip", "-o", "link", "show", "type", "veth")
	var names []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if f := strings.Fields(line); len(f) > 1 {
			names = append(names, strings.SplitN(strings.TrimSuffix(f[1], ":"), "@", 2)[0])
		}
	}
	return strings.Join(names, " ")
}

// TestFailedAddRollsBack: an ADD that fails after it created net1 and a subnet NIC (its veth's
// node end included) removes them again: the pod keeps only what the primary CNI gave it, the
// node only its own links, and no record is written; DEL then succeeds.
func TestFailedAddRollsBack(t *testing.T) {
	h := newHarness(t)
	annots := gatewayAnnotations(t)
	nics, err := annotations.ParseNICPlan(annots[annotations.NICsKey])
	if err != nil {
		t.Fatal(err)
	}
	first := nics.Subnets[0]
	if first.Attachment.Type != annotations.AttachBridge || first.Attachment.HostIfName == "" {
		t.Fatalf("the seed's first subnet NIC is not a bridge veth: %+v", first)
	}
	// A second subnet NIC on a bridge the node does not have: it fails after net1 and the
	// first subnet NIC (with its addresses and node-side veth end) were made.
	second := first
	second.Subnet, second.CIDR, second.IP = "s-broken", "10.0.2.0/24", "10.0.2.1"
	second.IfName, second.MAC = first.IfName[:len(first.IfName)-1]+"x", ""
	second.Addresses = []string{"10.0.2.1/24"}
	second.Attachment.Bridge, second.Attachment.HostIfName = "br-missing", first.Attachment.HostIfName[:len(first.Attachment.HostIfName)-1]+"x"
	nics.Subnets = append(nics.Subnets, second)
	b, err := json.Marshal(nics)
	if err != nil {
		t.Fatal(err)
	}
	annots[annotations.NICsKey] = string(b)
	if _, err := annotations.ParseNICPlan(string(b)); err != nil {
		t.Fatalf("the test's NIC plan is invalid: %v", err)
	}
	vethsBefore := h.nodeVeths()
	p := h.pod("kube-system", annots)
	list := h.list("1.1.0")
	if _, err := h.chain.Add(list, p); err == nil || !strings.Contains(err.Error(), "br-missing") {
		t.Fatalf("ADD: error %v, want one naming bridge br-missing", err)
	}
	if got := h.links(p.Role); got != "lo eth0" {
		t.Errorf("pod links after the failed ADD %q, want \"lo eth0\" (net1 and %s rolled back)", got, first.IfName)
	}
	if got := h.nodeVeths(); strings.Contains(got, first.Attachment.HostIfName) {
		t.Errorf("node veths after the failed ADD %q still hold %s (before: %q)", got, first.Attachment.HostIfName, vethsBefore)
	}
	if recs := h.chain.Records(); len(recs) != 0 {
		t.Errorf("records after the failed ADD: %v", recs)
	}
	if err := h.chain.Del(list, p); err != nil {
		t.Errorf("DEL after the failed ADD: %v", err)
	}
}

// TestMACCollisionRollsBack: a second pod carrying an already-plumbed gateway's annotations
// cannot bring its net1 up (same MAC on the same master, after the plugin's wait): its ADD fails
// naming the reason and leaves nothing in its netns, and the first gateway is untouched.
func TestMACCollisionRollsBack(t *testing.T) {
	h := newHarness(t)
	annots := gatewayAnnotations(t)
	nics, err := annotations.ParseNICPlan(annots[annotations.NICsKey])
	if err != nil {
		t.Fatal(err)
	}
	list := h.list("1.1.0")
	p1 := h.pod("kube-system", annots)
	if _, err := h.chain.Add(list, p1); err != nil {
		t.Fatal(err)
	}
	want1 := h.links(p1.Role)
	p2 := h.pod("kube-system", annots)
	start := time.Now()
	_, err = h.chain.Add(list, p2)
	if err == nil || !strings.Contains(err.Error(), "net1") || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("second ADD with the same net1 MAC: error %v, want net1's address already in use", err)
	}
	t.Logf("second ADD failed after %v: %v", time.Since(start).Round(time.Millisecond), err)
	if got := h.links(p2.Role); got != "lo eth0" {
		t.Errorf("second pod's links after its failed ADD %q, want \"lo eth0\" (net1 rolled back)", got)
	}
	if got := h.links(p1.Role); got != want1 {
		t.Errorf("first gateway's links changed: %q, want %q", got, want1)
	}
	if got := h.nodeVeths(); !strings.Contains(got, nics.Subnets[0].Attachment.HostIfName) {
		t.Errorf("first gateway's node-side veth %s was removed: node veths %q", nics.Subnets[0].Attachment.HostIfName, got)
	}
	if recs := h.chain.Records(); len(recs) != 1 || recs[0] != p1.UID+".json" {
		t.Errorf("records %v, want only %s.json", recs, p1.UID)
	}
	if err := h.chain.Del(list, p2); err != nil {
		t.Errorf("DEL of the second pod: %v", err)
	}
	if err := h.chain.Del(list, p1); err != nil {
		t.Errorf("DEL of the first pod: %v", err)
	}
}
