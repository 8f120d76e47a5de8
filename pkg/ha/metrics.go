package ha

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	role          prometheus.Gauge
	failovers     prometheus.Counter
	lastChange    prometheus.Gauge
	heartbeats    *prometheus.CounterVec
	sent          *prometheus.CounterVec
	announcements prometheus.Counter
	rtt           *prometheus.HistogramVec
	stalls        prometheus.Counter
	stalled       prometheus.Counter
}

// Registry holds the agent's metrics; cmd/vpcnat-keepalive serves it when asked to.
var Registry = prometheus.NewRegistry()

var sharedMetrics = func() *metrics {
	m := &metrics{
		role: prometheus.NewGauge(prometheus.GaugeOpts{Name: "vpcnat_keepalive_active",
			Help: "1 while this replica is the gateway's active one, 0 while standby."}),
		failovers: prometheus.NewCounter(prometheus.CounterOpts{Name: "vpcnat_keepalive_became_active_total",
			Help: "Times this replica became active."}),
		lastChange: prometheus.NewGauge(prometheus.GaugeOpts{Name: "vpcnat_keepalive_role_change_timestamp_seconds",
			Help: "Unix time of this replica's last role change."}),
		heartbeats: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vpcnat_keepalive_heartbeats_received_total",
			Help: "Heartbeats received from the gateway's other replicas, per NIC."}, []string{"interface"}),
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vpcnat_keepalive_heartbeats_sent_total",
			Help: "Heartbeats sent, per NIC."}, []string{"interface"}),
		announcements: prometheus.NewCounter(prometheus.CounterOpts{Name: "vpcnat_keepalive_announcements_total",
			Help: "Gratuitous ARPs sent on becoming active."}),
		rtt: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "vpcnat_keepalive_heartbeat_rtt_seconds",
			Help:    "Round-trip time of this replica's heartbeats to a peer and back on a NIC (the peer's echo of its stamp, the peer's hold time taken off), per NIC.",
			Buckets: prometheus.ExponentialBuckets(0.00005, 2, 16)}, []string{"interface"}), // 50 µs .. 1.6 s
		stalls: prometheus.NewCounter(prometheus.CounterOpts{Name: "vpcnat_keepalive_stalls_total",
			Help: "Times the agent found it had not run for more than an interval and a half (CPU starvation, a stopped process): that time is not counted as a peer's or the gateway's silence."}),
		stalled: prometheus.NewCounter(prometheus.CounterOpts{Name: "vpcnat_keepalive_stalled_seconds_total",
			Help: "Time the agent did not run beyond its heartbeat interval, summed over its stalls."}),
	}
	Registry.MustRegister(m.role, m.failovers, m.lastChange, m.heartbeats, m.sent, m.announcements, m.rtt, m.stalls, m.stalled)
	return m
}()

func newMetrics() *metrics { return sharedMetrics }

func (m *metrics) transition(r Role) {
	m.lastChange.Set(float64(time.Now().UnixNano()) / 1e9)
	if r == Active {
		m.role.Set(1)
		m.failovers.Inc()
		return
	}
	m.role.Set(0)
}
