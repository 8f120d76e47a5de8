package controller

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	v1 "github.com/vpcnat/vpcnat/pkg/apis/kubeovn/v1"
	"github.com/vpcnat/vpcnat/pkg/plan"
)

// Address plan: the seed's (192.168.0.0/24, 10.0.1.0/24); values only, nothing is configured.

func seedInputs(t *testing.T) plan.Inputs {
	t.Helper()
	in, err := plan.LoadFile(filepath.Join("..", "..", "examples", "seed.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return in
}

func build(t *testing.T, in plan.Inputs, image string) (*annotations.Desired, string) {
	t.Helper()
	nics, d, errs := plan.Build(in)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	tmpl, err := plan.TemplateAnnotations(nics, DefaultExternalNetwork)
	if err != nil {
		t.Fatal(err)
	}
	sel, selErrs := parseSelector(in.Gateway.Spec.Selector)
	if len(selErrs) > 0 {
		t.Fatal(selErrs)
	}
	return d, buildDeployment(in.Gateway, plan.GatewayNamespace, image, tmpl, sel).Annotations[SpecHashKey]
}

// TestTemplateIdentity: rule and route changes leave the Deployment as it is (same spec hash:
// no restart); image, lanIp, nic, subnet attachment and scheduling changes do not.
func TestTemplateIdentity(t *testing.T) {
	_, base := build(t, seedInputs(t), "img:1")
	same := map[string]func(in *plan.Inputs){
		"dnat port":    func(in *plan.Inputs) { in.Gateway.Spec.DnatRules[0].ExternalPort = intstr.FromInt32(9999) },
		"snat removed": func(in *plan.Inputs) { in.Gateway.Spec.SnatRules = nil },
		"fip changed":  func(in *plan.Inputs) { in.Gateway.Spec.FloatingIPRules[0].InternalIP = "10.0.1.6" },
		"eip added": func(in *plan.Inputs) {
			in.Gateway.Spec.Eips = append(in.Gateway.Spec.Eips, v1.Eip{EipCIDR: "192.168.0.113/24", Gateway: "192.168.0.254"})
		},
		"route added": func(in *plan.Inputs) {
			in.Vpc.Spec.StaticRoutes = append(in.Vpc.Spec.StaticRoutes, v1.StaticRoute{CIDR: "198.51.100.0/24", NextHopIP: "10.0.1.100"})
		},
		"generation": func(in *plan.Inputs) { in.Gateway.Generation = 7 },
	}
	for name, change := range same {
		in := seedInputs(t)
		change(&in)
		if _, h := build(t, in, "img:1"); h != base {
			t.Errorf("%s changed the Deployment: a rule change would restart the gateway", name)
		}
	}
	different := map[string]func(in *plan.Inputs) string{
		"image":      func(*plan.Inputs) string { return "img:2" },
		"lanIp":      func(in *plan.Inputs) string { in.Gateway.Spec.LanIP = "10.0.1.253"; return "img:1" },
		"nic":        func(in *plan.Inputs) string { in.Config.NIC = "eth9"; return "img:1" },
		"attachment": func(in *plan.Inputs) string { in.Subnets[0].Spec.NatGatewayAttachment.Bridge = "br-x"; return "img:1" },
		"selector":   func(in *plan.Inputs) string { in.Gateway.Spec.Selector = []string{"zone: a"}; return "img:1" },
		"tolerations": func(in *plan.Inputs) string {
			in.Gateway.Spec.Tolerations = []corev1.Toleration{{Key: "k", Operator: corev1.TolerationOpExists}}
			return "img:1"
		},
	}
	for name, change := range different {
		in := seedInputs(t)
		image := change(&in)
		if _, h := build(t, in, image); h == base {
			t.Errorf("a %s change left the Deployment as it was", name)
		}
	}
}

// TestBuildDeploymentLeavesInputs: the gateway (a cache object) is not changed, and the
// Deployment shares no memory with it.
func TestBuildDeploymentLeavesInputs(t *testing.T) {
	in := seedInputs(t)
	in.Gateway.Spec.Tolerations = []corev1.Toleration{{Key: "k", Operator: corev1.TolerationOpExists}}
	in.Gateway.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{}}
	before, _ := json.Marshal(in.Gateway)
	d := buildDeployment(in.Gateway, "kube-system", "img", map[string]string{"a": "b"}, nil)
	d.Spec.Template.Spec.Tolerations[0].Key = "changed"
	d.Spec.Template.Spec.Affinity.NodeAffinity = nil
	if after, _ := json.Marshal(in.Gateway); string(after) != string(before) {
		t.Fatalf("the gateway changed:\n%s\n%s", before, after)
	}
}

func TestParseSelector(t *testing.T) {
	got, errs := parseSelector([]string{"kubernetes.io/os: linux", "zone:a", "  team :  nat "})
	if len(errs) > 0 || !reflect.DeepEqual(got, map[string]string{"kubernetes.io/os": "linux", "zone": "a", "team": "nat"}) {
		t.Fatalf("%v %v", got, errs)
	}
	for _, bad := range []string{"no-colon", "bad key!: x", "k: bad value!", ": v"} {
		if _, errs := parseSelector([]string{bad}); len(errs) == 0 || !strings.Contains(errs[0].Field, "spec.selector[0]") {
			t.Errorf("%q: %v", bad, errs)
		}
	}
	if _, errs := parseSelector([]string{"k: a", "k: b"}); len(errs) != 1 || !strings.Contains(errs[0].Detail, "already selected") {
		t.Errorf("conflicting keys: %v", errs)
	}
	if got, errs := parseSelector(nil); got != nil || errs != nil {
		t.Errorf("empty selector: %v %v", got, errs)
	}
}

// TestRuleKeys: the documented key of each kind, unique across the seed's rules.
func TestRuleKeys(t *testing.T) {
	d, _ := build(t, seedInputs(t), "img")
	want := []RuleKey{{"eip", "192.168.0.111/24"}, {"eip", "192.168.0.112/24"}, {"fip", "192.168.0.111"},
		{"dnat", "192.168.0.112:8888/tcp"}, {"snat", "10.0.1.0/24"}}
	if got := RuleKeys(d); !reflect.DeepEqual(got, want) {
		t.Fatalf("keys %v", got)
	}
}

// TestRuleStatusesTrim: above maxStatusRules the rules needing attention come first.
func TestRuleStatusesTrim(t *testing.T) {
	d := &annotations.Desired{}
	for i := range maxStatusRules + 10 {
		d.DNATs = append(d.DNATs, annotations.DNAT{EIP: "192.168.0.112", Protocol: "tcp", ExternalPort: 1 + i, InternalIP: "10.0.1.10", InternalPort: 80})
	}
	last := fmt.Sprintf("192.168.0.112:%d/tcp", maxStatusRules+10)
	rs, failed := ruleStatuses(d, &annotations.Applied{RuleErrors: map[string]string{last: "boom"}})
	if len(rs) != maxStatusRules || failed != 1 || rs[0].Key != last || rs[0].State != StateFailed || rs[1].State != StateApplied {
		t.Fatalf("%d entries, %d failed, first %+v", len(rs), failed, rs[0])
	}
}

func TestErrorsMessage(t *testing.T) {
	var errs field.ErrorList
	for i := range 8 {
		errs = append(errs, field.Invalid(field.NewPath("spec", "dnatRules").Index(i).Child("internalIp"), strings.Repeat("x", 500), "outside"))
	}
	m := errorsMessage(errs)
	if !strings.HasPrefix(m, `spec.dnatRules[0].internalIp: Invalid value: "xxx`) || !strings.HasSuffix(m, "and 3 more") ||
		strings.Count(m, "Invalid value") != 5 || len(m) > 5*(maxErrorLen+10)+20 {
		t.Fatalf("%d bytes: %s", len(m), m)
	}
}

// TestComputeStatus: conditions from an observation; the old status (a cache object's) is not
// changed, and a repeated computation keeps the transition times (no status write, no Event).
func TestComputeStatus(t *testing.T) {
	d, _ := build(t, seedInputs(t), "img")
	hash, err := annotations.DesiredHash(d)
	if err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "p"}, Spec: corev1.PodSpec{NodeName: "n1"},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}}
	obs := &observation{generation: 3, pod: pod, desired: d, hash: hash, report: &annotations.Applied{Hash: hash}}
	old := v1.VpcNatGatewayStatus{}
	st := computeStatus(&old, obs)
	if len(old.Conditions) != 0 {
		t.Fatal("computeStatus changed the old status")
	}
	for typ, want := range map[string]metav1.ConditionStatus{CondReady: "True", CondApplied: "True", CondDegraded: "False"} {
		if c := meta.FindStatusCondition(st.Conditions, typ); c == nil || c.Status != want || c.ObservedGeneration != 3 {
			t.Errorf("%s: %+v", typ, c)
		}
	}
	if st.Pod != "kube-system/p" || st.Node != "n1" || st.EipCount != 2 || len(st.Rules) != 5 || st.ObservedGeneration != 3 {
		t.Errorf("status %+v", st)
	}
	for i := range st.Conditions {
		st.Conditions[i].LastTransitionTime = metav1.NewTime(time.Unix(1000, 0))
	}
	again := computeStatus(&st, obs)
	if !reflect.DeepEqual(again, st) || len(transitions(st.Conditions, again.Conditions)) != 0 {
		t.Errorf("a second computation differs:\n%+v\n%+v", st, again)
	}
	obs.problem = &problem{ReasonInvalidSpec, "spec.lanIp: bad"}
	bad := computeStatus(&st, obs)
	tr := transitions(st.Conditions, bad.Conditions)
	if len(tr) != 2 || tr[0].Type != CondReady || tr[1].Type != CondDegraded || healthy(tr[0]) || healthy(tr[1]) {
		t.Errorf("transitions %+v", tr)
	}
}

func TestChangedEIPsInForce(t *testing.T) {
	gw := func(keys ...string) *v1.VpcNatGateway {
		g := &v1.VpcNatGateway{}
		for _, k := range keys {
			g.Status.Rules = append(g.Status.Rules, v1.RuleStatus{Kind: KindEIP, Key: k})
		}
		g.Status.Rules = append(g.Status.Rules, v1.RuleStatus{Kind: KindFIP, Key: "192.168.0.9"})
		return g
	}
	got := changedEIPsInForce(gw("192.168.0.1/24", "192.168.0.2/24"), gw("192.168.0.2/24", "192.168.0.3/24"))
	if len(got) != 2 || !(got[0] == "192.168.0.1" && got[1] == "192.168.0.3" || got[0] == "192.168.0.3" && got[1] == "192.168.0.1") {
		t.Fatalf("%v", got)
	}
}

// TestCompactPod: the pod cache keeps what sync reads and a digest of the desired annotation
// that equals the digest of the same value and gives its length back.
func TestCompactPod(t *testing.T) {
	value := `{"version":"v1","gateway":"ngw"}`
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Annotations: map[string]string{annotations.DesiredKey: value, "other": "x"},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "m"}}},
		Spec:   corev1.PodSpec{NodeName: "n1", Containers: []corev1.Container{{Name: "c", Image: "i"}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: "True"}}},
	}
	obj, err := compactPod(p)
	if err != nil {
		t.Fatal(err)
	}
	c := obj.(*corev1.Pod)
	if c.Spec.NodeName != "n1" || len(c.Spec.Containers) != 0 || !podReady(c) || c.ManagedFields != nil || c.Annotations["other"] != "x" {
		t.Fatalf("compacted pod %+v", c)
	}
	d := c.Annotations[annotations.DesiredKey]
	if d != desiredDigest(value) || d == desiredDigest(value+" ") || digestLen(d) != len(value) {
		t.Fatalf("digest %q", d)
	}
	// A second transform (a relist of the same object) keeps the digest as it is.
	if obj, _ := compactPod(c); obj.(*corev1.Pod).Annotations[annotations.DesiredKey] != d {
		t.Fatal("the digest was digested again")
	}
}
