package nodeagent

import (
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	"github.com/vpcnat/vpcnat/pkg/netconf"
)

// addConflicts puts the gateway's current address conflicts into the report want, emits one
// Warning Event per conflict not reported before, and updates the conflict metrics. A gateway
// without a converger (no sandbox yet) has none.
func (a *Agent) addConflicts(pod *corev1.Pod, g *gateway, want *annotations.Applied) {
	var cs []netconf.Conflict
	if g.conv != nil {
		cs = g.conv.Conflicts()
		d := g.conv.Defenses()
		if d > g.defenses {
			a.metrics.defenses.WithLabelValues(g.name).Add(float64(d - g.defenses))
		}
		g.defenses = d
	}
	seen := make(map[string]bool, len(cs))
	want.Conflicts = nil
	for _, c := range cs {
		ac := annotations.AddressConflict{Address: c.Address.String(), Interface: c.Interface, MAC: c.MAC.String(),
			Since: c.Since.UTC().Format(time.RFC3339), Claimed: c.Claimed}
		want.Conflicts = append(want.Conflicts, ac)
		key := ac.Interface + "/" + ac.Address + "/" + ac.Since
		seen[key] = true
		if g.conflicts[key] {
			continue
		}
		what := "the gateway holds and defends it"
		if !c.Claimed {
			what = "the gateway has not claimed it and probes it again until it is free"
		}
		a.recorder.Eventf(pod, corev1.EventTypeWarning, ReasonAddressConflict,
			"Address %s on %s is claimed by another host, MAC %s: %s", ac.Address, ac.Interface, ac.MAC, what)
	}
	g.conflicts = seen
	a.metrics.conflicts.WithLabelValues(g.name).Set(float64(len(cs)))
}
