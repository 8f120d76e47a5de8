package controller

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	"github.com/vpcnat/vpcnat/pkg/controller"
	"github.com/vpcnat/vpcnat/pkg/plan"
	"github.com/vpcnat/vpcnat/test/kubeenv"
)

// writeApplied plays the daemon: it writes an applied annotation on the pod reporting d (by
// hash) applied, with the rule errors given.
func writeApplied(t *testing.T, pod *corev1.Pod, d *annotations.Desired, syncErr string, ruleErrors map[string]string) {
	t.Helper()
	if err := kubeenv.ReportApplied(context.Background(), admin.kube, pod, d, syncErr, ruleErrors, ""); err != nil {
		t.Fatal(err)
	}
}

// TestSeedApplies: examples/seed.yaml applies as is with kubectl (strict server-side field
// validation) on the CRDs of deploy/crds; the gateway pod gets exactly plan.Build's desired state;
// after the daemon's report `kubectl get vpc-nat-gw` shows the columns, and the Vpc lists it.
func TestSeedApplies(t *testing.T) {
	fresh(t)
	ctx := context.Background()
	if out, err := env.Kubectl(ctx, "apply", "--validate=strict", "-f", filepath.Join(repoRoot, "examples", "seed.yaml")); err != nil {
		t.Fatal(err)
	} else {
		t.Logf("kubectl apply:\n%s", out)
	}
	startController(t)
	runPods(t)
	pod := waitDesired(t, "ngw")
	d, err := annotations.ParseDesired(pod.Annotations[annotations.DesiredKey])
	if err != nil {
		t.Fatalf("the daemon could not read the annotation: %v", err)
	}
	in := seed(t)
	_, want, errs := plan.Build(in)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	want.Generation = getGateway(t, "ngw").Generation
	if !reflect.DeepEqual(d, want) {
		t.Fatalf("desired state\n got %+v\nwant %+v", d, want)
	}
	if len(d.EIPs) != 2 || len(d.FloatingIPs) != 1 || len(d.DNATs) != 1 || len(d.SNATs) != 1 || len(d.Routes) != 1 {
		t.Fatalf("the seed's rules are not all there: %+v", d)
	}
	writeApplied(t, pod, d, "", nil)
	condition(t, "ngw", controller.CondReady, metav1.ConditionTrue, controller.ReasonReady)

	out, err := env.Kubectl(ctx, "get", "vpc-nat-gw")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("kubectl get vpc-nat-gw:\n%s", out)
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 2 || !regexp.MustCompile(`^NAME\s+VPC\s+SUBNET\s+LANIP\s+EIPS\s+READY\s+ACTIVE\s+STANDBYS\s+AGE$`).MatchString(lines[0]) ||
		!regexp.MustCompile(`^ngw\s+test-vpc-1\s+sn\s+10\.0\.1\.254\s+2\s+True\s+\S+$`).MatchString(lines[1]) {
		t.Errorf("kubectl get vpc-nat-gw printed:\n%s", out)
	}
	eventually(t, waitLong, "Vpc status", func() error {
		vpc, err := admin.ovn.Vpcs.Get(ctx, "test-vpc-1", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if !slices.Equal(vpc.Status.NatGateways, []string{"ngw"}) {
			return errorf("natGateways %v", vpc.Status.NatGateways)
		}
		return nil
	})
}

// TestDeploymentShape: the Deployment a gateway gets, field by field, and the pod the
// ReplicaSet makes of it.
func TestDeploymentShape(t *testing.T) {
	fresh(t)
	in := seed(t)
	gw := in.Gateway
	gw.Spec.Selector = []string{"kubernetes.io/os: linux", "example.com/nat-node:  yes"}
	gw.Spec.Tolerations = []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "nat", Effect: corev1.TaintEffectNoSchedule}}
	gw.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
		NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "zone", Operator: corev1.NodeSelectorOpIn, Values: []string{"a"}}}}}}}}
	gw.Spec.Resources = &corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("16Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")},
	}
	createConfig(t, configMap(image1, "true", "eth1"))
	createObjects(t, in.Vpc, in.Subnets, gw)
	startController(t)
	d := getDeployment(t, "ngw")
	stored := getGateway(t, "ngw")

	if ref := metav1.GetControllerOf(d); ref == nil || ref.UID != stored.UID || ref.Kind != "VpcNatGateway" || ref.APIVersion != "kubeovn.io/v1" ||
		ref.BlockOwnerDeletion == nil || !*ref.BlockOwnerDeletion {
		t.Errorf("controller reference %+v, want the gateway %s", ref, stored.UID)
	}
	wantLabels := map[string]string{plan.LabelGateway: "ngw", plan.LabelApp: "vpc-nat-gw-ngw"}
	if d.Name != "vpc-nat-gw-ngw" || d.Namespace != ns || !subset(wantLabels, d.Labels) {
		t.Errorf("Deployment %s/%s labels %v", d.Namespace, d.Name, d.Labels)
	}
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 1 || d.Spec.Strategy.Type != "Recreate" || d.Spec.Strategy.RollingUpdate != nil {
		t.Errorf("replicas %v strategy %+v", d.Spec.Replicas, d.Spec.Strategy)
	}
	if !reflect.DeepEqual(d.Spec.Selector.MatchLabels, map[string]string{plan.LabelGateway: "ngw"}) || !subset(wantLabels, d.Spec.Template.Labels) {
		t.Errorf("selector %v template labels %v", d.Spec.Selector, d.Spec.Template.Labels)
	}
	nics, _, errs := plan.Build(in)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	wantAnn, err := plan.TemplateAnnotations(nics, controller.DefaultExternalNetwork)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(d.Spec.Template.Annotations, wantAnn) {
		t.Errorf("template annotations\n got %v\nwant %v", d.Spec.Template.Annotations, wantAnn)
	}
	if _, ok := d.Spec.Template.Annotations[annotations.DesiredKey]; ok {
		t.Error("the desired state is on the template: a rule change would restart the pod")
	}
	ps := d.Spec.Template.Spec
	if !reflect.DeepEqual(ps.NodeSelector, map[string]string{"kubernetes.io/os": "linux", "example.com/nat-node": "yes"}) {
		t.Errorf("node selector %v", ps.NodeSelector)
	}
	if !reflect.DeepEqual(ps.Tolerations, gw.Spec.Tolerations) || !reflect.DeepEqual(ps.Affinity, gw.Spec.Affinity) {
		t.Errorf("tolerations %+v affinity %+v", ps.Tolerations, ps.Affinity)
	}
	if ps.AutomountServiceAccountToken == nil || *ps.AutomountServiceAccountToken || ps.HostNetwork || len(ps.Containers) != 1 {
		t.Errorf("pod spec: automount %v hostNetwork %v containers %d", ps.AutomountServiceAccountToken, ps.HostNetwork, len(ps.Containers))
	}
	c := ps.Containers[0]
	if c.Image != image1 || !reflect.DeepEqual(c.Resources, *gw.Spec.Resources) {
		t.Errorf("container image %q resources %+v", c.Image, c.Resources)
	}
	sc := c.SecurityContext
	if sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.Privileged == nil || *sc.Privileged || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.Capabilities == nil || !reflect.DeepEqual(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0 {
		t.Errorf("container security context %+v", sc)
	}
	if ps.SecurityContext == nil || ps.SecurityContext.RunAsUser == nil || *ps.SecurityContext.RunAsUser == 0 {
		t.Errorf("pod security context %+v", ps.SecurityContext)
	}
	// The ReplicaSet controller makes a pod of it, with the template's annotations for the plugin.
	eventually(t, waitLong, "gateway pod", func() error {
		p, err := livePod("ngw")
		if err != nil {
			return err
		}
		if !subset(wantAnn, p.Annotations) {
			return errorf("pod annotations %v", p.Annotations)
		}
		return nil
	})
}

func subset(want, got map[string]string) bool {
	for k, v := range want {
		if got[k] != v {
			return false
		}
	}
	return true
}

// TestCRDsUpToDate: deploy/crds is what controller-gen makes of pkg/apis today, and so is the
// deepcopy code: regenerate both into a temporary directory and compare.
func TestCRDsUpToDate(t *testing.T) {
	out, err := exec.Command(filepath.Join(repoRoot, "hack", "controller-gen.sh")).Output()
	if err != nil {
		t.Fatalf("hack/controller-gen.sh: %v", err)
	}
	gen := strings.TrimSpace(string(out))
	tmp := t.TempDir()
	cmd := exec.Command(gen, "crd", "paths=./pkg/apis/...", "output:crd:dir="+filepath.Join(tmp, "crds"),
		"object", "output:object:dir="+filepath.Join(tmp, "object"))
	cmd.Dir = repoRoot
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("controller-gen: %v\n%s", err, b)
	}
	compareDir(t, filepath.Join(tmp, "crds"), filepath.Join(repoRoot, "deploy", "crds"), "make crds")
	compareFile(t, filepath.Join(tmp, "object", "zz_generated.deepcopy.go"),
		filepath.Join(repoRoot, "pkg", "apis", "kubeovn", "v1", "zz_generated.deepcopy.go"), "make generate")
}

func compareDir(t *testing.T, fresh, checkedIn, fix string) {
	t.Helper()
	names := func(dir string) []string {
		es, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, e := range es {
			out = append(out, e.Name())
		}
		return out
	}
	if a, b := names(fresh), names(checkedIn); !slices.Equal(a, b) {
		t.Fatalf("%s holds %v, controller-gen makes %v: run %s", checkedIn, b, a, fix)
	}
	for _, n := range names(fresh) {
		compareFile(t, filepath.Join(fresh, n), filepath.Join(checkedIn, n), fix)
	}
}

func compareFile(t *testing.T, fresh, checkedIn, fix string) {
	t.Helper()
	a, err := os.ReadFile(fresh)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(checkedIn)
	if err != nil {
		t.Fatal(err)
	}
	if string(a) != string(b) {
		t.Errorf("%s differs from what controller-gen makes of the types: run %s", checkedIn, fix)
	}
}
