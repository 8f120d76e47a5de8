package nodeagent

import (
	"context"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	"github.com/vpcnat/vpcnat/pkg/netconf"
	"github.com/vpcnat/vpcnat/pkg/state"
)

// Converger converges one gateway network namespace; *netconf.Gateway is the real one. The
// seam lets the sync logic be tested without root.
type Converger interface {
	Converge(ctx context.Context, d *annotations.Desired, full bool) (*netconf.Report, error)
	// Conflicts are the gateway's addresses another host claims now (address conflict
	// detection runs between converges, see netconf.Gateway.OnConflictChange).
	Conflicts() []netconf.Conflict
	// Defenses counts the announcements sent to defend contested addresses.
	Defenses() uint64
	Close()
}

// NewNetconfConverger is the real Converger: netconf on the netns at nsPath. notify is called
// when the gateway's conflicts change between converges (converge: an address not claimed looks
// free, so a converge should claim it).
func NewNetconfConverger(nsPath string, notify func(converge bool)) Converger {
	g := netconf.NewGateway(nsPath)
	g.OnConflictChange(notify)
	return g
}

// gateway is what the daemon remembers about one gateway pod of its node. Only the sync of the
// pod's key touches it (the workqueue never hands one key to two workers at once), but for the
// atomic recheck flag.
type gateway struct {
	name string
	uid  types.UID
	// The sandbox the converger was made for: a new container ID or netns path is a new
	// sandbox, whose netns is empty, so it gets a new converger and a full init.
	containerID, netns string
	conv               Converger
	// synced is the desired annotation value last converged without error; "" when none or
	// when the last converge failed.
	synced string
	// lastFull is when the nat table was last read back (full converge); the next full
	// converge is due a resync period later.
	lastFull time.Time
	// recheck asks the next sync to converge even when the desired state is unchanged (links
	// are read back and repaired), because something outside the daemon may have changed the
	// sandbox: another sandbox of the same gateway was torn down (siblingRemoved). Set by the
	// record watcher, taken by the sync.
	recheck atomic.Bool
	// parsed is the desired annotation value raw, decoded and validated, with its applied hash
	// (or why it is not valid): decoding 10 000 rules takes tens of milliseconds, and every
	// update of the pod (the daemon's own patches included) and every resync would otherwise
	// pay it again.
	raw        string
	decoder    annotations.DesiredDecoder // remembers the parts of raw: the next edit decodes only those that changed
	parsed     *annotations.Desired
	parsedHash func() string
	parseErr   error
	// reported is the applied document last patched, computed from pod revision
	// reportedFrom (see reportApplied).
	reported     *annotations.Applied
	reportedFrom string
	// conflicts are the keys (conflictKey) of the conflicts last reported, so each new one gets
	// one Event; defenses is the converger's defence count last added to the metric.
	conflicts map[string]bool
	defenses  uint64
}

// attach makes sure g converges the sandbox of rec and says whether that is a new one. The old
// converger is closed without touching its netns: the sandbox it served is gone.
func (g *gateway) attach(rec *state.Record, newConverger func(nsPath string) Converger) bool {
	if g.conv != nil && g.containerID == rec.ContainerID && g.netns == rec.Netns {
		return false
	}
	if g.conv != nil {
		klog.InfoS("Gateway sandbox changed: converging the new one from scratch", "gateway", g.name,
			"oldContainerID", g.containerID, "containerID", rec.ContainerID, "netns", rec.Netns)
		g.conv.Close()
	}
	g.conv, g.containerID, g.netns = newConverger(rec.Netns), rec.ContainerID, rec.Netns
	g.synced, g.lastFull, g.defenses = "", time.Time{}, 0
	return true
}

// desired returns the desired state of the annotation value raw and its applied hash, parsing
// it only when it changed; fresh says it was parsed now.
func (g *gateway) desired(raw string, parse func(dd *annotations.DesiredDecoder, raw, gateway string) (*annotations.Desired, func() string, error)) (d *annotations.Desired, hash func() string, fresh bool, err error) {
	if g.parsed == nil && g.parseErr == nil || g.raw != raw {
		g.parsed, g.parsedHash, g.parseErr = parse(&g.decoder, raw, g.name)
		g.raw, fresh = raw, true
	}
	return g.parsed, g.parsedHash, fresh, g.parseErr
}

// detach forgets the sandbox: it is gone (its record was removed), so whatever comes next is a
// new one.
func (g *gateway) detach() {
	g.close()
	g.containerID, g.netns, g.synced, g.lastFull = "", "", "", time.Time{}
}

func (g *gateway) close() {
	if g.conv != nil {
		g.conv.Close()
		g.conv = nil
	}
	g.defenses = 0
}

// conflictChanged is the converger's notification for pod key: look at the gateway again (a
// re-report of its conflicts), and converge it when asked to (an address not claimed looks
// free). It runs on a listener goroutine: it only flags and queues.
func (a *Agent) conflictChanged(key string, g *gateway) func(converge bool) {
	return func(converge bool) {
		if converge {
			g.recheck.Store(true)
		}
		a.queue.Add(key)
	}
}

// lookup returns the state of key, made anew when the pod behind it is not the one remembered
// (deleted and recreated under the same name).
func (a *Agent) lookup(key, name string, uid types.UID) *gateway {
	a.mu.Lock()
	defer a.mu.Unlock()
	g := a.gateways[key]
	if g != nil && g.uid == uid && g.name == name {
		return g
	}
	if g != nil {
		g.close()
		a.metrics.forget(g.name)
	}
	g = &gateway{name: name, uid: uid}
	a.gateways[key] = g
	a.metrics.gateways.Set(float64(len(a.gateways)))
	return g
}

// forget drops what the daemon remembers of key, without touching the kernel: the pod is gone
// or no gateway (any more), and its sandbox is the runtime's to tear down.
func (a *Agent) forget(key, why string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	g, ok := a.gateways[key]
	if !ok {
		return
	}
	klog.InfoS("Forgetting gateway pod", "pod", key, "gateway", g.name, "reason", why)
	g.close()
	delete(a.gateways, key)
	a.metrics.forget(g.name)
	a.metrics.gateways.Set(float64(len(a.gateways)))
}

// siblingRemoved: the attachment record of pod UID podUID, a sandbox of gateway gw, was removed,
// so its CNI DEL (or GC) ran and deleted the node-side links the record names. Those names are
// the gateway's (plan.HostIfName: from the gateway's and the subnet's names), and a recreated
// gateway pod's sandbox is usually plumbed before the old one is torn down, so that DEL may have
// deleted the node-side veth of the gateway's current sandbox, taking its subnet NIC, with the
// subnet's routes, along. Every other pod of the gateway on the node is converged again (links
// are always read back and recreated), whatever its desired state: within milliseconds instead
// of at the next resync.
func (a *Agent) siblingRemoved(podUID, gw string) {
	if gw == "" {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for key, g := range a.gateways {
		if g.name != gw || string(g.uid) == podUID {
			continue
		}
		klog.V(2).InfoS("Another sandbox of the gateway was torn down: converging this one again",
			"pod", key, "gateway", gw, "removedPodUID", podUID)
		g.recheck.Store(true)
		a.queue.Add(key)
	}
}

// closeAll releases every converger at shutdown (pending gratuitous ARP repeats); the data
// plane stays exactly as it is.
func (a *Agent) closeAll() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, g := range a.gateways {
		g.close()
	}
}
