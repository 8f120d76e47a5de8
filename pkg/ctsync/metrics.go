package ctsync

import "github.com/prometheus/client_golang/prometheus"

// Registry holds the replication's metrics; cmd/vpcnat-keepalive serves it beside the
// election's (pkg/ha.Registry).
var Registry = prometheus.NewRegistry()

var metrics = func() (m struct {
	sent, received, errors *prometheus.CounterVec
	reconnects             prometheus.Counter
	cacheSize              prometheus.Gauge
	committed              *prometheus.CounterVec
	commitSeconds          prometheus.Histogram
	dumps                  prometheus.Counter
}) {
	m.sent = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vpcnat_keepalive_conntrack_sent_total",
		Help: "Conntrack messages the active replica sent to standbys, by kind (upsert, destroy)."}, []string{"kind"})
	m.received = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vpcnat_keepalive_conntrack_received_total",
		Help: "Conntrack entries a standby received from the active replica, by kind (upsert, destroy)."}, []string{"kind"})
	m.errors = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vpcnat_keepalive_conntrack_errors_total",
		Help: "Conntrack replication errors, by where (events: the kernel's event stream failed, e.g. lost events; dump; stream: a connection between replicas failed; refused: a stream from an address that is no live replica's, or of another gateway; commit: an entry the kernel refused at takeover)."}, []string{"where"})
	m.reconnects = prometheus.NewCounter(prometheus.CounterOpts{Name: "vpcnat_keepalive_conntrack_stream_reconnects_total",
		Help: "Times a standby (re)opened its stream from the active replica."})
	m.cacheSize = prometheus.NewGauge(prometheus.GaugeOpts{Name: "vpcnat_keepalive_conntrack_cache_entries",
		Help: "Conntrack entries a standby holds, ready to commit when it takes over."})
	m.committed = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vpcnat_keepalive_conntrack_committed_total",
		Help: "Conntrack entries written into the kernel on becoming active, by result (created, replaced: a stale entry of the same tuple was replaced, failed)."}, []string{"result"})
	m.commitSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "vpcnat_keepalive_conntrack_commit_seconds",
		Help:    "Time to write the cached conntrack entries into the kernel on becoming active (before the gratuitous ARPs).",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)})
	m.dumps = prometheus.NewCounter(prometheus.CounterOpts{Name: "vpcnat_keepalive_conntrack_dumps_sent_total",
		Help: "Full conntrack dumps the active replica sent (one per new stream, then one per resync interval)."})
	Registry.MustRegister(m.sent, m.received, m.errors, m.reconnects, m.cacheSize, m.committed, m.commitSeconds, m.dumps)
	return m
}()
