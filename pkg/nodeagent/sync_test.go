package nodeagent

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vpcnat/vpcnat/pkg/annotations"
)

// TestConvergeAndReport: a gateway pod with a record and a desired state is converged once
// (full: a new sandbox) and its applied annotation carries the generation and the hash of the
// annotation; the update the daemon's own patch causes converges nothing and patches nothing.
// A new generation converges again (fast path) and is reported.
func TestConvergeAndReport(t *testing.T) {
	c := newChain("ngw")
	h := start(t, c)
	v1 := desiredValue("ngw", 1)
	p := h.createPod(c, v1)
	h.writeRecord(p, "ngw", "ctr-1", "/run/netns/gw")
	h.applied(p, func(a *annotations.Applied) bool { return a.Generation == 1 })
	a := h.applied(p, func(a *annotations.Applied) bool { return a.Hash == rawHash(v1) && a.Error == "" })
	if a.Version != annotations.Version || a.Time == "" {
		t.Errorf("applied %+v", a)
	}
	time.Sleep(200 * time.Millisecond) // room for a wrong second converge or patch
	if calls := h.kernel.callsFor("/run/netns/gw"); len(calls) != 1 || calls[0] != "/run/netns/gw gen=1 full=true" {
		t.Errorf("converges %v, want one full converge", calls)
	}
	if n := h.patches(); n != 1 {
		t.Errorf("%d applied patches, want 1", n)
	}

	v2 := desiredValue("ngw", 2)
	h.setDesired(p, v2)
	h.applied(p, func(a *annotations.Applied) bool { return a.Hash == rawHash(v2) && a.Generation == 2 })
	if calls := h.kernel.callsFor("/run/netns/gw"); len(calls) != 2 || calls[1] != "/run/netns/gw gen=2 full=false" {
		t.Errorf("converges %v, want a fast converge of generation 2", calls)
	}
}

// TestInvalidDesired: an annotation that fails validation is never converged: applied says
// why (field path and value) with the refused generation, and the pod gets a Warning Event.
// Another gateway of the node is converged meanwhile.
func TestInvalidDesired(t *testing.T) {
	bad, good := newChain("bad"), newChain("good")
	good.pod.Name, good.pod.UID = "good-pod", "good-uid"
	h := start(t, bad, good)
	value := strings.Replace(desiredValue("bad", 7), `"192.168.0.111/24"`, `"192.168.0.300/24"`, 1)
	pb := h.createPod(bad, value)
	h.writeRecord(pb, "bad", "ctr-b", "/run/netns/bad")
	pg := h.createPod(good, desiredValue("good", 1))
	h.writeRecord(pg, "good", "ctr-g", "/run/netns/good")

	a := h.applied(pb, func(a *annotations.Applied) bool { return a.Error != "" })
	if a.Generation != 7 || a.Hash != rawHash(value) || !strings.Contains(a.Error, "eips[0].eipCIDR") ||
		!strings.Contains(a.Error, "192.168.0.300/24") {
		t.Errorf("applied %+v: want generation 7, the hash, and the field path and value in the error", a)
	}
	select {
	case ev := <-h.recorder.Events:
		if !strings.HasPrefix(ev, "Warning "+ReasonInvalidDesired) || !strings.Contains(ev, "eips[0].eipCIDR") {
			t.Errorf("event %q", ev)
		}
	case <-time.After(5 * time.Second):
		t.Error("no event")
	}
	h.applied(pg, func(a *annotations.Applied) bool { return a.Generation == 1 && a.Error == "" })
	if calls := h.kernel.callsFor("/run/netns/bad"); len(calls) != 0 {
		t.Errorf("invalid state converged: %v", calls)
	}
}

// TestNewSandbox: a record that appears after the pod starts the converge; a new container ID
// and netns for the same pod (sandbox recreated) is a full converge of the new netns, and the
// old netns is not touched again.
func TestNewSandbox(t *testing.T) {
	c := newChain("ngw")
	h := start(t, c)
	p := h.createPod(c, desiredValue("ngw", 1))
	time.Sleep(100 * time.Millisecond)
	if len(h.kernel.callsFor("/run/netns/a")) != 0 {
		t.Fatal("converged without a record")
	}
	h.writeRecord(p, "ngw", "ctr-1", "/run/netns/a")
	deadline := time.Now().Add(5 * time.Second)
	for len(h.kernel.callsFor("/run/netns/a")) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	h.writeRecord(p, "ngw", "ctr-2", "/run/netns/b")
	for len(h.kernel.callsFor("/run/netns/b")) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := h.kernel.callsFor("/run/netns/b"); len(got) != 1 || !strings.HasSuffix(got[0], "full=true") {
		t.Errorf("new sandbox converges %v, want one full", got)
	}
	if got := h.kernel.callsFor("/run/netns/a"); len(got) != 1 {
		t.Errorf("old sandbox converges %v, want just the first", got)
	}
}

// TestImpostor: a pod with the annotation, a desired state and a record, but not owned by a
// gateway Deployment, is never converged nor annotated.
func TestImpostor(t *testing.T) {
	real, fakeGW := newChain("ngw"), newChain("ngw")
	fakeGW.pod.Name, fakeGW.pod.UID, fakeGW.pod.OwnerReferences = "impostor", "impostor-uid", nil
	h := start(t, real)
	pi := h.createPod(fakeGW, desiredValue("ngw", 1))
	h.writeRecord(pi, "ngw", "ctr-i", "/run/netns/impostor")
	pr := h.createPod(real, desiredValue("ngw", 1))
	h.writeRecord(pr, "ngw", "ctr-r", "/run/netns/real")
	h.applied(pr, func(a *annotations.Applied) bool { return a.Generation == 1 })
	time.Sleep(100 * time.Millisecond)
	if got := h.kernel.callsFor("/run/netns/impostor"); len(got) != 0 {
		t.Errorf("impostor converged: %v", got)
	}
	if n := h.patches(); n != 1 {
		t.Errorf("%d applied patches, want only the real gateway's", n)
	}
}

// TestAppliedHashIsCanonical: the applied hash is that of the desired state's canonical JSON
// (annotations.Applied.Hash), the same whether the controller wrote it plain or in the
// compressed envelope, so the controller recognises its own write either way.
func TestAppliedHashIsCanonical(t *testing.T) {
	c := newChain("ngw")
	h := start(t, c)
	d, err := annotations.ParseDesired(desiredValue("ngw", 1))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2000 { // ~100 KB of JSON: compressed
		d.SNATs = append(d.SNATs, annotations.SNAT{EIP: "192.168.0.111", InternalCIDR: fmt.Sprintf("10.%d.%d.0/24", 1+i/256, i%256)})
	}
	value, err := annotations.EncodeDesired(d)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(value, `"encoding":"gzip"`) {
		t.Fatalf("test bug: %d bytes not compressed", len(value))
	}
	want, err := annotations.DesiredHash(d)
	if err != nil {
		t.Fatal(err)
	}
	p := h.createPod(c, value)
	h.writeRecord(p, "ngw", "ctr-1", "/run/netns/gw")
	a := h.applied(p, func(a *annotations.Applied) bool { return a.Generation == 1 })
	if a.Hash != want || a.Hash == rawHash(value) || a.Error != "" {
		t.Errorf("applied hash %s, want the canonical JSON's %s (error %q)", a.Hash, want, a.Error)
	}
}

// TestSiblingSandboxRemoved: when a gateway pod is recreated, the new sandbox is usually plumbed
// before the old one is torn down, and the old one's CNI DEL deletes the node-side links its
// record names, names the new sandbox shares (they derive from the gateway's and the subnet's
// names): the new sandbox's subnet NIC goes with them. So the removal of a record of gateway ngw
// converges the gateway's other pod again, though its desired state did not change (links are
// read back and recreated); the removal of another gateway's record does not.
func TestSiblingSandboxRemoved(t *testing.T) {
	c, other := newChain("ngw"), newChain("other")
	other.rs.Name, other.rs.UID = "vpc-nat-gw-other-5d8f", "other-rs-uid"
	other.dep.UID = "other-dep-uid"
	other.rs.OwnerReferences[0].UID = other.dep.UID
	other.pod.Name, other.pod.UID = other.rs.Name+"-aaaaa", "other-pod-uid"
	other.pod.OwnerReferences[0].Name, other.pod.OwnerReferences[0].UID = other.rs.Name, other.rs.UID
	h := start(t, c, other)

	old := h.createPod(c, desiredValue("ngw", 1))
	h.writeRecord(old, "ngw", "ctr-old", "/run/netns/old")
	h.applied(old, func(a *annotations.Applied) bool { return a.Generation == 1 })
	po := h.createPod(other, desiredValue("other", 1))
	h.writeRecord(po, "other", "ctr-other", "/run/netns/other")
	h.applied(po, func(a *annotations.Applied) bool { return a.Generation == 1 })

	// The replacement pod, plumbed while the old one still runs.
	repl := c.pod.DeepCopy()
	repl.Name, repl.UID = c.rs.Name+"-b8p4z", "new-pod-uid"
	np := h.createPod(&chain{pod: repl, rs: c.rs, dep: c.dep}, desiredValue("ngw", 1))
	h.writeRecord(np, "ngw", "ctr-new", "/run/netns/new")
	h.applied(np, func(a *annotations.Applied) bool { return a.Generation == 1 })
	if got := h.kernel.callsFor("/run/netns/new"); len(got) != 1 {
		t.Fatalf("new sandbox converges %v, want one", got)
	}

	// Another gateway's sandbox goes: nothing to do for ngw.
	if err := h.store.Delete(string(po.UID), "ctr-other"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if got := h.kernel.callsFor("/run/netns/new"); len(got) != 1 {
		t.Errorf("another gateway's record removed: new sandbox converges %v, want still one", got)
	}

	// The old pod goes: deleted, then its sandbox's DEL removes its record.
	if err := h.client.CoreV1().Pods(old.Namespace).Delete(context.Background(), old.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := h.store.Delete(string(old.UID), "ctr-old"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(h.kernel.callsFor("/run/netns/new")) < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := h.kernel.callsFor("/run/netns/new"); len(got) != 2 || got[1] != "/run/netns/new gen=1 full=false" {
		t.Errorf("after the old sandbox's record went, the new sandbox converges %v, want a second (fast) converge", got)
	}
	if got := h.kernel.callsFor("/run/netns/old"); len(got) != 1 {
		t.Errorf("old sandbox converges %v, want just the first", got)
	}
}

// TestDesiredEncodings: the daemon lists the parts encoding in its report, and converges a
// large state written in gzip (as an older controller writes it) and then in parts (as the
// controller writes it to a daemon that lists it), reporting each one's hash of the state.
func TestDesiredEncodings(t *testing.T) {
	c := newChain("ngw")
	h := start(t, c)
	big := func(gen int64) *annotations.Desired {
		d := &annotations.Desired{Version: annotations.Version, Gateway: "ngw", Generation: gen,
			External: annotations.ExternalNIC{IfName: "net1", Master: "eth1", Mode: "bridge", MAC: "02:00:00:00:00:01"},
			Subnets: []annotations.SubnetNIC{{Subnet: "sn", IfName: "eth0", CIDR: "10.0.1.0/24", IP: "10.0.1.254",
				Attachment: annotations.Attachment{Type: annotations.AttachPrimary}}},
			EIPs: []annotations.EIP{{EipCIDR: "192.168.0.111/24", Gateway: "192.168.0.254"}}}
		for i := range 1000 {
			d.DNATs = append(d.DNATs, annotations.DNAT{EIP: "192.168.0.111", Protocol: "tcp", ExternalPort: 1000 + i + int(gen),
				InternalIP: "10.0.1.10", InternalPort: 80})
		}
		return d
	}
	d1, d2 := big(1), big(2)
	v1, err := annotations.EncodeDesired(d1)
	if err != nil {
		t.Fatal(err)
	}
	v2, err := annotations.EncodeDesiredParts(d2)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(v1, `"encoding":"gzip"`) || !strings.Contains(v2, `"encoding":"deflate-parts"`) {
		t.Fatalf("fixtures: want a gzip and a parts annotation")
	}
	h1, _ := annotations.DesiredHash(d1)
	h2, _ := annotations.DesiredHash(d2)
	p := h.createPod(c, v1)
	h.writeRecord(p, "ngw", "ctr-1", "/run/netns/gw")
	a := h.applied(p, func(a *annotations.Applied) bool { return a.Generation == 1 })
	if a.Hash != h1 || a.Error != "" || !slices.Contains(a.Encodings, annotations.EncodingParts) {
		t.Errorf("applied %+v: want the state's hash, no error, and the parts encoding listed", a)
	}
	h.setDesired(p, v2)
	a = h.applied(p, func(a *annotations.Applied) bool { return a.Generation == 2 })
	if a.Hash != h2 || a.Error != "" {
		t.Errorf("applied %+v: want the parts annotation's state hash %s and no error", a, h2)
	}
	if calls := h.kernel.callsFor("/run/netns/gw"); len(calls) != 2 || calls[1] != "/run/netns/gw gen=2 full=false" {
		t.Errorf("converges %v, want a fast converge of generation 2", calls)
	}
}
