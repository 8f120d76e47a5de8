package controller

import (
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/vpcnat/vpcnat/pkg/apis/kubeovn/v1"
)

// Sync results, the values of the result label.
const (
	resultOK      = "ok"      // in sync, or brought in sync
	resultInvalid = "invalid" // a spec (or the ConfigMap) that cannot be projected: reported, not retried
	resultError   = "error"   // an API error: retried with backoff
)

// metrics of one Controller. Each Controller registers its own (on the Registerer it is given) so
// that two controllers in one test process do not share counters.
type metrics struct {
	syncs        *prometheus.CounterVec
	syncDuration *prometheus.HistogramVec
	patches      prometheus.Counter
	deployments  *prometheus.CounterVec
	statuses     *prometheus.CounterVec
	conflicts    *prometheus.GaugeVec
	ready        *prometheus.GaugeVec
	standbys     *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		syncs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vpcnat_controller_syncs_total",
			Help: "Syncs by kind of object (gateway, vpc) and result (ok, invalid, error).",
		}, []string{"kind", "result"}),
		syncDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "vpcnat_controller_sync_duration_seconds",
			Help:    "Duration of one sync, by kind of object.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14), // 0.5 ms .. 4 s
		}, []string{"kind"}),
		patches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vpcnat_controller_desired_patches_total",
			Help: "Patches of a gateway pod's desired (and network-status) annotations.",
		}),
		deployments: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vpcnat_controller_deployment_writes_total",
			Help: "Gateway Deployments created or updated.",
		}, []string{"op"}),
		statuses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vpcnat_controller_status_updates_total",
			Help: "Status updates, by kind of object.",
		}, []string{"kind"}),
		conflicts: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "vpcnat_controller_address_conflicts",
			Help: "Addresses of a gateway another host claims, as its daemon reports them (status condition AddressConflict).",
		}, []string{"gateway"}),
		ready: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "vpcnat_controller_gateway_ready",
			Help: "1 when the gateway's Ready condition is True, else 0 (its reason is in the status).",
		}, []string{"gateway"}),
		standbys: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "vpcnat_controller_gateway_standbys_ready",
			Help: "Converged standby replicas ready to take over, of a gateway with spec.replicas of 2 or more (status.standbysReady); no series for a gateway of one replica.",
		}, []string{"gateway"}),
	}
	if reg != nil {
		reg.MustRegister(m.syncs, m.syncDuration, m.patches, m.deployments, m.statuses, m.conflicts, m.ready, m.standbys)
	}
	return m
}

// observeConflicts sets a gateway's conflict gauge from the status computed for it.
func (m *metrics) observeConflicts(gateway string, o *observation) {
	m.conflicts.WithLabelValues(gateway).Set(float64(len(conflictsOf(o))))
}

// observeStatus sets a gateway's Ready and standby gauges from the status computed for it.
func (m *metrics) observeStatus(gw *v1.VpcNatGateway, st *v1.VpcNatGatewayStatus) {
	ready := 0.0
	if c := meta.FindStatusCondition(st.Conditions, CondReady); c != nil && c.Status == metav1.ConditionTrue {
		ready = 1
	}
	m.ready.WithLabelValues(gw.Name).Set(ready)
	if gw.Spec.Replicas >= 2 {
		m.standbys.WithLabelValues(gw.Name).Set(float64(st.StandbysReady))
	} else {
		m.standbys.DeleteLabelValues(gw.Name)
	}
}

// forgetGateway deletes a deleted gateway's series.
func (m *metrics) forgetGateway(gateway string) {
	for _, v := range []*prometheus.GaugeVec{m.conflicts, m.ready, m.standbys} {
		v.DeletePartialMatch(prometheus.Labels{"gateway": gateway})
	}
}
