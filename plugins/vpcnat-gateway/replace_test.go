package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/vpcnat/vpcnat/pkg/state"
	"github.com/vpcnat/vpcnat/test/cnichain"
	"github.com/vpcnat/vpcnat/test/topo"
)

// A replaced gateway pod: sandboxes A (old) and B (new) of the same gateway use the same
// node-side veth name (plan.HostIfName). The old sandbox's DEL removes net1 first; B's ADD,
// which waits only for net1's MAC to be free, then runs and replaces the node-side veth by one
// of its own, of the same name; the rest of A's DEL (or a GC of A) must not delete it. The
// interleaving is made deterministic: A's net1 is deleted by hand, then B is added, then A is
// deleted (or garbage-collected).

// replaced sets up A, then B after A's net1 is gone, and returns them with A's record.
// oldRecord rewrites A's record as a plugin without host-link indexes wrote it.
func replaced(t *testing.T, h *harness, oldRecord bool) (a, b cnichain.Pod, recA *state.Record) {
	t.Helper()
	list := h.list("1.1.0")
	annots := gatewayAnnotations(t)
	a = h.pod("kube-system", annots)
	if _, err := h.chain.Add(list, a); err != nil {
		t.Fatal(err)
	}
	store := state.Store{Dir: h.chain.StateDir}
	recA, err := store.Read(a.UID)
	if err != nil {
		t.Fatal(err)
	}
	if len(recA.HostIfNames) == 0 {
		t.Fatalf("record of A names no node-side link: %+v", recA)
	}
	if oldRecord {
		stripHostLinkIndexes(t, filepath.Join(h.chain.StateDir, a.UID+".json"))
	}
	if _, err := h.topo.Exec(a.Role, "ip", "link", "del", "net1"); err != nil {
		t.Fatal(err)
	}
	b = h.pod("kube-system", annots)
	if _, err := h.chain.Add(list, b); err != nil {
		t.Fatal(err)
	}
	return a, b, recA
}

// stripHostLinkIndexes keeps only the members a record had before host links were recorded
// with their ifindexes (names only).
func stripHostLinkIndexes(t *testing.T, path string) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	for k := range m {
		switch k {
		case "version", "podUID", "namespace", "name", "gateway", "containerID", "netns", "ifnames", "hostIfnames":
		default:
			delete(m, k)
		}
	}
	out, _ := json.Marshal(m)
	if err := os.WriteFile(path, out, 0o600); err != nil {
		t.Fatal(err)
	}
}

// plumbing is what a test compares of sandbox p: its links, addresses and routes, and the
// node-side links named in hostNames (with ifindex, master and peer).
func (h *harness) plumbing(p cnichain.Pod, hostNames []string) string {
	h.t.Helper()
	var parts []string
	for _, argv := range [][]string{
		{"ip", "-o", "link", "show"},
		{"ip", "-o", "-4", "addr", "show"}, // IPv4 only: IPv6 link-local DAD changes with time
		{"ip", "-4", "route", "show", "table", "all"},
	} {
		out, err := h.topo.Exec(p.Role, argv...)
		if err != nil {
			h.t.Fatal(err)
		}
		parts = append(parts, strings.Join(argv, " ")+":\n"+out)
	}
	for _, n := range hostNames {
		out, err := h.topo.Exec(topo.Node, "ip", "-o", "link", "show", "dev", n)
		if err != nil {
			out = "missing: " + err.Error()
		}
		parts = append(parts, "node "+n+":\n"+out)
	}
	return strings.Join(parts, "\n")
}

// nodeHas reports whether the node namespace has a link called name.
func (h *harness) nodeHas(name string) bool {
	_, err := h.topo.Exec(topo.Node, "ip", "link", "show", "dev", name)
	return err == nil
}

func TestReplacementOldSandboxDelLast(t *testing.T) {
	for name, oldRecord := range map[string]bool{"record with ifindexes": false, "record with names only": true} {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t)
			a, b, recA := replaced(t, h, oldRecord)
			want := h.plumbing(b, recA.HostIfNames)
			if strings.Contains(want, "missing") || !strings.Contains(want, ": net1@") || !strings.Contains(want, "master br-sn") {
				t.Fatalf("B is not plumbed after its ADD:\n%s", want)
			}
			if err := h.chain.Del(h.list("1.1.0"), a); err != nil {
				t.Fatal(err)
			}
			if got := h.plumbing(b, recA.HostIfNames); got != want {
				t.Errorf("DEL of the old sandbox A changed the new sandbox B:\nbefore:\n%s\nafter:\n%s", want, got)
			}
			if recs := h.chain.Records(); len(recs) != 1 || recs[0] != b.UID+".json" {
				t.Errorf("records after DEL of A: %v, want only %s.json", recs, b.UID)
			}
			// B's own DEL still removes B's links.
			if err := h.chain.Del(h.list("1.1.0"), b); err != nil {
				t.Fatal(err)
			}
			for _, n := range recA.HostIfNames {
				if h.nodeHas(n) {
					t.Errorf("node-side %s left after DEL of B", n)
				}
			}
		})
	}
}

// TestReplacementOldSandboxGC: GC of the old sandbox's attachment (the runtime lists only B as
// valid) keeps B's node-side veth; a GC that lists neither removes B's own.
func TestReplacementOldSandboxGC(t *testing.T) {
	for name, oldRecord := range map[string]bool{"record with ifindexes": false, "record with names only": true} {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t)
			list := h.list("1.1.0")
			_, b, recA := replaced(t, h, oldRecord)
			want := h.plumbing(b, recA.HostIfNames)
			if err := h.chain.GC(list, []types.GCAttachment{{ContainerID: b.ContainerID, IfName: "eth0"}}); err != nil {
				t.Fatal(err)
			}
			if got := h.plumbing(b, recA.HostIfNames); got != want {
				t.Errorf("GC of the old sandbox A changed the new sandbox B:\nbefore:\n%s\nafter:\n%s", want, got)
			}
			if recs := h.chain.Records(); len(recs) != 1 || recs[0] != b.UID+".json" {
				t.Errorf("records after GC: %v, want only %s.json", recs, b.UID)
			}
			if err := h.chain.GC(list, nil); err != nil {
				t.Fatal(err)
			}
			for _, n := range recA.HostIfNames {
				if h.nodeHas(n) {
					t.Errorf("GC of B (netns still there) left its node-side %s", n)
				}
			}
		})
	}
}

// TestDelWithoutNetnsRemovesOwnHostLinks: a DEL in which the runtime passes no netns (the pod's
// netns still exists) removes the sandbox's node-side veth when no other sandbox has taken the
// name.
func TestDelWithoutNetnsRemovesOwnHostLinks(t *testing.T) {
	h := newHarness(t)
	list := h.list("1.1.0")
	a := h.pod("kube-system", gatewayAnnotations(t))
	if _, err := h.chain.Add(list, a); err != nil {
		t.Fatal(err)
	}
	rec, err := state.Store{Dir: h.chain.StateDir}.Read(a.UID)
	if err != nil {
		t.Fatal(err)
	}
	rt := h.chain.Runtime(a)
	rt.NetNS = ""
	if err := h.topo.Do(topo.Node, func() error { return h.chain.CNI.DelNetworkList(context.Background(), list, rt) }); err != nil {
		t.Fatal(err)
	}
	for _, n := range rec.HostIfNames {
		if h.nodeHas(n) {
			t.Errorf("node-side %s left after DEL of its sandbox", n)
		}
	}
	if recs := h.chain.Records(); len(recs) != 0 {
		t.Errorf("records after DEL: %v", recs)
	}
}
