package nodeagent

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	"github.com/vpcnat/vpcnat/pkg/netconf"
)

// gauge reads a metric of the harness's registry by name and gateway label; -1 when absent.
func (h *harness) gauge(name, gw string) float64 {
	h.t.Helper()
	mfs, err := h.reg.Gather()
	if err != nil {
		h.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "gateway" && l.GetValue() == gw {
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	return -1
}

// events drains the recorder's Events.
func (h *harness) events() []string {
	var out []string
	for {
		select {
		case e := <-h.recorder.Events:
			out = append(out, e)
		case <-time.After(300 * time.Millisecond):
			return out
		}
	}
}

// TestConflictReported: a conflict the gateway's listener finds between converges is reported
// in the applied annotation (address, interface, foreign MAC, since, claimed) without waiting
// for a converge, with one Warning Event and the conflicts gauge; a repeated notification of the
// same conflict patches nothing and emits nothing; its end clears the report. A notification
// that asks for a converge (an address not claimed looks free) converges the unchanged state.
func TestConflictReported(t *testing.T) {
	c := newChain("ngw")
	h := start(t, c)
	p := h.createPod(c, desiredValue("ngw", 1))
	const path = "/run/netns/gw"
	h.writeRecord(p, "ngw", "ctr-1", path)
	h.applied(p, func(a *annotations.Applied) bool { return a.Generation == 1 && a.Error == "" })

	since := time.Date(2026, 11, 26, 2, 59, 58, 0, time.UTC)
	mac, _ := net.ParseMAC("02:42:c0:a8:00:6f")
	conflicts := []netconf.Conflict{{Address: netip.MustParseAddr("192.168.0.111"), Interface: "net1",
		MAC: mac, Since: since, Claimed: true}}
	h.kernel.setConflicts(path, conflicts)
	want := annotations.AddressConflict{Address: "192.168.0.111", Interface: "net1", MAC: "02:42:c0:a8:00:6f",
		Since: "2026-11-26T02:59:58Z", Claimed: true}
	a := h.applied(p, func(a *annotations.Applied) bool { return len(a.Conflicts) > 0 })
	if len(a.Conflicts) != 1 || a.Conflicts[0] != want || a.Generation != 1 || a.Error != "" {
		t.Errorf("applied %+v, want generation 1 with conflict %+v", a, want)
	}
	evs := h.events()
	if len(evs) != 1 || !strings.HasPrefix(evs[0], "Warning "+ReasonAddressConflict) ||
		!strings.Contains(evs[0], "192.168.0.111 on net1") || !strings.Contains(evs[0], "02:42:c0:a8:00:6f") {
		t.Errorf("events %q, want one AddressConflict Warning naming the address, interface and MAC", evs)
	}
	if v := h.gauge("vpcnat_daemon_address_conflicts", "ngw"); v != 1 {
		t.Errorf("vpcnat_daemon_address_conflicts{gateway=ngw} = %v, want 1", v)
	}
	patches := h.patches()
	h.kernel.setConflicts(path, conflicts) // same conflict, notified again
	time.Sleep(200 * time.Millisecond)     // room for a wrong patch or Event
	if n := h.patches(); n != patches {
		t.Errorf("%d patches for an unchanged conflict", n-patches)
	}
	if evs := h.events(); len(evs) != 0 {
		t.Errorf("events for an unchanged conflict: %q", evs)
	}
	converges := len(h.kernel.callsFor(path))

	h.kernel.setConflicts(path, nil)
	h.applied(p, func(a *annotations.Applied) bool { return len(a.Conflicts) == 0 })
	if v := h.gauge("vpcnat_daemon_address_conflicts", "ngw"); v != 0 {
		t.Errorf("vpcnat_daemon_address_conflicts{gateway=ngw} = %v after the conflict ended, want 0", v)
	}
	if n := len(h.kernel.callsFor(path)); n != converges {
		t.Errorf("a re-report converged (%d converges, want %d)", n, converges)
	}

	h.kernel.mu.Lock()
	notify := h.kernel.notify[path]
	h.kernel.mu.Unlock()
	notify(true)
	deadline := time.Now().Add(5 * time.Second)
	for len(h.kernel.callsFor(path)) == converges && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if calls := h.kernel.callsFor(path); len(calls) != converges+1 || calls[converges] != path+" gen=1 full=false" {
		t.Errorf("converges %v, want one more fast converge of generation 1", calls)
	}
}
