package controller

import (
	"context"
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	v1 "github.com/vpcnat/vpcnat/pkg/apis/kubeovn/v1"
	"github.com/vpcnat/vpcnat/pkg/plan"
)

// seed are examples/seed.yaml's objects, typed.
func seed(t *testing.T) plan.Inputs {
	t.Helper()
	in, err := plan.LoadFile(filepath.Join(repoRoot, "examples", "seed.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return in
}

func configMap(image, enabled, nic string) *corev1.ConfigMap {
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: plan.ConfigMapName, Namespace: plan.ConfigMapNamespace},
		Data:       map[string]string{plan.KeyImage: image, plan.KeyEnable: enabled, plan.KeyNIC: nic},
	}
}

// createSeed creates the seed's ConfigMap, Vpc, Subnet and gateway and returns the gateway.
func createSeed(t *testing.T) *v1.VpcNatGateway {
	t.Helper()
	in := seed(t)
	createConfig(t, configMap(image1, "true", "eth1"))
	createObjects(t, in.Vpc, in.Subnets, in.Gateway)
	return in.Gateway
}

func createConfig(t *testing.T, cm *corev1.ConfigMap) {
	t.Helper()
	if _, err := admin.kube.CoreV1().ConfigMaps(cm.Namespace).Create(context.Background(), cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func createObjects(t *testing.T, vpc *v1.Vpc, subnets []*v1.Subnet, gws ...*v1.VpcNatGateway) {
	t.Helper()
	ctx := context.Background()
	if vpc != nil {
		if _, err := admin.ovn.Vpcs.Create(ctx, vpc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range subnets {
		if _, err := admin.ovn.Subnets.Create(ctx, s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, g := range gws {
		if _, err := admin.ovn.VpcNatGateways.Create(ctx, g, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
}

// second is a gateway "gw-b" of Vpc "vpc-b" in the test ranges, independent of the seed's.
func second(t *testing.T) (*v1.Vpc, *v1.Subnet, *v1.VpcNatGateway) {
	t.Helper()
	vpc := &v1.Vpc{ObjectMeta: metav1.ObjectMeta{Name: "vpc-b"}}
	sn := &v1.Subnet{ObjectMeta: metav1.ObjectMeta{Name: "sn-b"}, Spec: v1.SubnetSpec{
		Vpc: "vpc-b", CIDRBlock: "203.0.113.0/24", Gateway: "203.0.113.1",
		NatGatewayAttachment: &v1.SubnetAttachment{Bridge: "br-b"},
	}}
	gw := &v1.VpcNatGateway{ObjectMeta: metav1.ObjectMeta{Name: "gw-b"}, Spec: v1.VpcNatGatewaySpec{
		Vpc: "vpc-b", Subnet: "sn-b", LanIP: "203.0.113.254",
		Eips:      []v1.Eip{{EipCIDR: "198.51.100.11/24", Gateway: "198.51.100.1"}},
		DnatRules: []v1.DnatRule{{Eip: "198.51.100.11", ExternalPort: intstr.FromInt32(2222), Protocol: "tcp", InternalIP: "203.0.113.10", InternalPort: intstr.FromInt32(22)}},
		SnatRules: []v1.SnatRule{{Eip: "198.51.100.11", InternalCIDR: "203.0.113.0/24"}},
	}}
	return vpc, sn, gw
}

// expectedDesired is what the desired annotation of gateway name must be now: plan.Build of the
// objects as the API server has them.
func expectedDesired(t *testing.T, name string) (string, *annotations.Desired) {
	t.Helper()
	ctx := context.Background()
	gw, err := admin.ovn.VpcNatGateways.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	in := plan.Inputs{Gateway: gw}
	if vpc, err := admin.ovn.Vpcs.Get(ctx, gw.Spec.Vpc, metav1.GetOptions{}); err == nil {
		in.Vpc = vpc
	}
	subnets, err := admin.ovn.Subnets.List(ctx, listAll)
	if err != nil {
		t.Fatal(err)
	}
	for i := range subnets.Items {
		in.Subnets = append(in.Subnets, &subnets.Items[i])
	}
	cm, err := admin.kube.CoreV1().ConfigMaps(plan.ConfigMapNamespace).Get(ctx, plan.ConfigMapName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if in.Config, _ = plan.ParseConfig(cm.Data); !in.Config.Enabled {
		t.Fatal("expectedDesired with the gateways disabled")
	}
	_, d, errs := plan.Build(in)
	if len(errs) > 0 {
		t.Fatalf("expectedDesired: %v", errs.ToAggregate())
	}
	s, err := annotations.EncodeDesired(d)
	if err != nil {
		t.Fatal(err)
	}
	return s, d
}
