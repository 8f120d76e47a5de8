package nodeagent

import (
	"context"
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
	Close()
}

// NewNetconfConverger is the real Converger: netconf on the netns at nsPath.
func NewNetconfConverger(nsPath string) Converger { return netconf.NewGateway(nsPath) }

// gateway is what the daemon remembers about one gateway pod of its node. Only the sync of the
// pod's key touches it (the workqueue never hands one key to two workers at once).
type gateway struct {
	name string
	uid  types.UID
	// The sandbox the converger was made for: a new container ID or netns path is a new
	// sandbox, whose netns is empty, so it gets a new converger and a full init.
	containerID, netns string
	conv               Converger
	// hash of the desired annotation last converged without error; "" when none or when the
	// last converge failed.
	hash string
	// lastFull is when the nat table was last read back (full converge); the next full
	// converge is due a resync period later.
	lastFull time.Time
	// parsed is the desired annotation value raw, decoded and validated, with its applied hash
	// (or why it is not valid): decoding 10 000 rules takes tens of milliseconds, and every
	// update of the pod (the daemon's own patches included) and every resync would otherwise
	// pay it again.
	raw        string
	parsed     *annotations.Desired
	parsedHash string
	parseErr   error
	// reported is the applied document last patched, computed from pod revision
	// reportedFrom (see reportApplied).
	reported     *annotations.Applied
	reportedFrom string
}

// attach makes sure g converges the sandbox of rec and says whether that is a new one. The old
// converger is closed without touching its netns: the sandbox it served is gone.
func (g *gateway) attach(rec *state.Record, newConverger func(string) Converger) bool {
	if g.conv != nil && g.containerID == rec.ContainerID && g.netns == rec.Netns {
		return false
	}
	if g.conv != nil {
		klog.InfoS("Gateway sandbox changed: converging the new one from scratch", "gateway", g.name,
			"oldContainerID", g.containerID, "containerID", rec.ContainerID, "netns", rec.Netns)
		g.conv.Close()
	}
	g.conv, g.containerID, g.netns = newConverger(rec.Netns), rec.ContainerID, rec.Netns
	g.hash, g.lastFull = "", time.Time{}
	return true
}

// desired returns the desired state of the annotation value raw and its applied hash, parsing
// it only when it changed; fresh says it was parsed now.
func (g *gateway) desired(raw string, parse func(raw, gateway string) (*annotations.Desired, string, error)) (d *annotations.Desired, hash string, fresh bool, err error) {
	if g.parsed == nil && g.parseErr == nil || g.raw != raw {
		g.parsed, g.parsedHash, g.parseErr = parse(raw, g.name)
		g.raw, fresh = raw, true
	}
	return g.parsed, g.parsedHash, fresh, g.parseErr
}

// detach forgets the sandbox: it is gone (its record was removed), so whatever comes next is a
// new one.
func (g *gateway) detach() {
	g.close()
	g.containerID, g.netns, g.hash, g.lastFull = "", "", "", time.Time{}
}

func (g *gateway) close() {
	if g.conv != nil {
		g.conv.Close()
		g.conv = nil
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

// closeAll releases every converger at shutdown (pending gratuitous ARP repeats); the data
// plane stays exactly as it is.
func (a *Agent) closeAll() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, g := range a.gateways {
		g.close()
	}
}
