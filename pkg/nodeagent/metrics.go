package nodeagent

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vpcnat/vpcnat/pkg/annotations"
)

// Results of a sync, the values of the "result" label of vpcnat_daemon_syncs_total. A sync that
// finds nothing to do (the usual reaction to the daemon's own annotation patch) is not counted.
const (
	resultSuccess = "success"
	resultError   = "error"
	// resultInvalid: the desired annotation is unusable; nothing was applied.
	resultInvalid = "invalid"
	// resultNoRecord: the pod's sandbox has no attachment record (yet).
	resultNoRecord = "no_record"
)

// metrics are the daemon's Prometheus series. Per-gateway series are deleted when the daemon
// forgets the gateway, so a node's series follow the gateways it runs.
type metrics struct {
	duration    *prometheus.HistogramVec
	syncs       *prometheus.CounterVec
	changes     *prometheus.CounterVec
	rules       *prometheus.GaugeVec
	lastSuccess *prometheus.GaugeVec
	gateways    prometheus.Gauge
	patches     prometheus.Counter
	conflicts   *prometheus.GaugeVec
	defenses    *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "vpcnat_daemon_sync_duration_seconds",
			Help: "Time of one gateway converge, by whether it read the nat table back (full).",
			// 1 ms to 16 s: an in-sync fast path takes a few ms, 10 000 rules from nothing ~1 s.
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 15),
		}, []string{"full"}),
		syncs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vpcnat_daemon_syncs_total",
			Help: "Gateway syncs by result: success, error, invalid (bad desired annotation), no_record (no sandbox yet).",
		}, []string{"result"}),
		changes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vpcnat_daemon_kernel_changes_total",
			Help: "Kernel changes made in a gateway's netns (0 increments while everything is in sync).",
		}, []string{"gateway"}),
		rules: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "vpcnat_daemon_rules",
			Help: "Rules of the desired state last applied to a gateway, by kind.",
		}, []string{"gateway", "kind"}),
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "vpcnat_daemon_last_successful_sync_timestamp_seconds",
			Help: "Unix time of a gateway's last successful sync.",
		}, []string{"gateway"}),
		gateways: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "vpcnat_daemon_gateways",
			Help: "Gateway pods of this node the daemon tracks.",
		}),
		patches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vpcnat_daemon_applied_patches_total",
			Help: "Patches of pods' applied annotation (one per change of generation, hash or error).",
		}),
		conflicts: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "vpcnat_daemon_address_conflicts",
			Help: "Addresses of a gateway another host claims now (held and defended, or not claimed).",
		}, []string{"gateway"}),
		defenses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vpcnat_daemon_address_defenses_total",
			Help: "Announcements sent to defend a gateway's contested addresses.",
		}, []string{"gateway"}),
	}
	reg.MustRegister(m.duration, m.syncs, m.changes, m.rules, m.lastSuccess, m.gateways, m.patches, m.conflicts, m.defenses)
	// Zero series for every result, so a dashboard sees 0 rather than nothing.
	for _, r := range []string{resultSuccess, resultError, resultInvalid, resultNoRecord} {
		m.syncs.WithLabelValues(r)
	}
	return m
}

// observe records one converge.
func (m *metrics) observe(gateway string, full bool, seconds float64, changes int) {
	m.duration.WithLabelValues(strconv.FormatBool(full)).Observe(seconds)
	m.changes.WithLabelValues(gateway).Add(float64(changes))
}

// applied records a successful sync of d.
func (m *metrics) applied(gateway string, d *annotations.Desired, unix float64) {
	for kind, n := range map[string]int{
		"eip": len(d.EIPs), "floating_ip": len(d.FloatingIPs), "dnat": len(d.DNATs),
		"snat": len(d.SNATs), "route": len(d.Routes), "subnet": len(d.Subnets),
	} {
		m.rules.WithLabelValues(gateway, kind).Set(float64(n))
	}
	m.lastSuccess.WithLabelValues(gateway).Set(unix)
}

// forget deletes a gateway's series.
func (m *metrics) forget(gateway string) {
	labels := prometheus.Labels{"gateway": gateway}
	m.changes.DeletePartialMatch(labels)
	m.rules.DeletePartialMatch(labels)
	m.lastSuccess.DeletePartialMatch(labels)
	m.conflicts.DeletePartialMatch(labels)
	m.defenses.DeletePartialMatch(labels)
}
