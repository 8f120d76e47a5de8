package controller

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	v1 "github.com/vpcnat/vpcnat/pkg/apis/kubeovn/v1"
	"github.com/vpcnat/vpcnat/pkg/plan"
)

// TestRuleChangesWithoutRestart: every kind of rule change (EIP, FIP, DNAT, SNAT, added, changed,
// removed) and a Vpc route change reach the running pod's desired annotation, exactly as
// plan.Build computes it, while the pod and the Deployment's template stay as they were.
func TestRuleChangesWithoutRestart(t *testing.T) {
	pod := runningSeed(t)
	deploy := getDeployment(t, "ngw")

	gatewayChange := func(f func(*v1.VpcNatGatewaySpec)) func() {
		return func() { updateGateway(t, "ngw", func(g *v1.VpcNatGateway) { f(&g.Spec) }) }
	}
	steps := []struct {
		name   string
		change func()
		check  func(d *annotations.Desired) bool
	}{
		{"add eip", gatewayChange(func(s *v1.VpcNatGatewaySpec) {
			s.Eips = append(s.Eips, v1.Eip{EipCIDR: "192.168.0.113/24", Gateway: "192.168.0.254"})
		}), func(d *annotations.Desired) bool { return len(d.EIPs) == 3 }},
		{"add fip", gatewayChange(func(s *v1.VpcNatGatewaySpec) {
			s.FloatingIPRules = append(s.FloatingIPRules, v1.FloatingIPRule{Eip: "192.168.0.113", InternalIP: "10.0.1.6"})
		}), func(d *annotations.Desired) bool { return len(d.FloatingIPs) == 2 }},
		{"add dnat", gatewayChange(func(s *v1.VpcNatGatewaySpec) {
			s.DnatRules = append(s.DnatRules, v1.DnatRule{Eip: "192.168.0.112", ExternalPort: intstr.FromString("9999"), Protocol: "udp",
				InternalIP: "10.0.1.11", InternalPort: intstr.FromInt32(53)})
		}), func(d *annotations.Desired) bool { return len(d.DNATs) == 2 && d.DNATs[1].ExternalPort == 9999 }},
		{"change dnat port", gatewayChange(func(s *v1.VpcNatGatewaySpec) { s.DnatRules[0].ExternalPort = intstr.FromInt32(8080) }),
			func(d *annotations.Desired) bool { return d.DNATs[0].ExternalPort == 8080 }},
		{"add snat", gatewayChange(func(s *v1.VpcNatGatewaySpec) {
			s.SnatRules = append(s.SnatRules, v1.SnatRule{Eip: "192.168.0.113", InternalCIDR: "10.0.1.128/25"})
		}), func(d *annotations.Desired) bool { return len(d.SNATs) == 2 }},
		{"change snat eip", gatewayChange(func(s *v1.VpcNatGatewaySpec) { s.SnatRules[0].Eip = "192.168.0.113" }),
			func(d *annotations.Desired) bool { return d.SNATs[0].EIP == "192.168.0.113" }},
		{"remove fip", gatewayChange(func(s *v1.VpcNatGatewaySpec) { s.FloatingIPRules = s.FloatingIPRules[1:] }),
			func(d *annotations.Desired) bool {
				return len(d.FloatingIPs) == 1 && d.FloatingIPs[0].EIP == "192.168.0.113"
			}},
		{"remove dnat", gatewayChange(func(s *v1.VpcNatGatewaySpec) { s.DnatRules = s.DnatRules[:1] }),
			func(d *annotations.Desired) bool { return len(d.DNATs) == 1 }},
		{"vpc route added", func() {
			eventually(t, 10*time.Second, "update vpc", func() error {
				vpc, err := admin.ovn.Vpcs.Get(context.Background(), "test-vpc-1", metav1.GetOptions{})
				if err != nil {
					return err
				}
				vpc.Spec.StaticRoutes = append(vpc.Spec.StaticRoutes, v1.StaticRoute{CIDR: "198.51.100.0/24", NextHopIP: "10.0.1.100", Policy: v1.PolicyDst})
				_, err = admin.ovn.Vpcs.Update(context.Background(), vpc, metav1.UpdateOptions{})
				return err
			})
		}, func(d *annotations.Desired) bool { return len(d.Routes) == 2 }},
		{"remove all rules", gatewayChange(func(s *v1.VpcNatGatewaySpec) {
			s.FloatingIPRules, s.DnatRules, s.SnatRules = nil, nil, nil
		}), func(d *annotations.Desired) bool {
			return len(d.FloatingIPs)+len(d.DNATs)+len(d.SNATs) == 0 && len(d.EIPs) == 3
		}},
	}
	for _, s := range steps {
		start := time.Now()
		s.change()
		p := waitDesired(t, "ngw")
		t.Logf("%-18s projected in %v", s.name, time.Since(start).Round(time.Millisecond))
		d, err := annotations.ParseDesired(p.Annotations[annotations.DesiredKey])
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if !s.check(d) {
			t.Fatalf("%s: desired state %+v", s.name, d)
		}
		if d.Generation != getGateway(t, "ngw").Generation {
			t.Fatalf("%s: desired generation %d, gateway generation %d", s.name, d.Generation, getGateway(t, "ngw").Generation)
		}
		if p.UID != pod.UID {
			t.Fatalf("%s restarted the gateway pod: %s -> %s", s.name, pod.UID, p.UID)
		}
		if d := getDeployment(t, "ngw"); d.Generation != deploy.Generation {
			t.Fatalf("%s changed the Deployment (generation %d -> %d)", s.name, deploy.Generation, d.Generation)
		}
	}
}

// TestIdentityChanges: what makes up the pod's identity does restart it, through the
// Deployment: a new image in the ConfigMap, a new nic, a new subnet of the Vpc. The new pod gets
// the desired state, the old one is gone.
func TestIdentityChanges(t *testing.T) {
	pod := runningSeed(t)
	ctx := context.Background()
	configure := func(key, value string) {
		eventually(t, 10*time.Second, "update ConfigMap", func() error {
			cm, err := admin.kube.CoreV1().ConfigMaps(plan.ConfigMapNamespace).Get(ctx, plan.ConfigMapName, metav1.GetOptions{})
			if err != nil {
				return err
			}
			cm.Data[key] = value
			_, err = admin.kube.CoreV1().ConfigMaps(plan.ConfigMapNamespace).Update(ctx, cm, metav1.UpdateOptions{})
			return err
		})
	}
	rolled := func(what string, check func(p *corev1.Pod, d *annotations.Desired) bool) {
		t.Helper()
		start := time.Now()
		var p *corev1.Pod
		eventually(t, waitLong, what, func() error {
			p = waitDesired(t, "ngw")
			if p.UID == pod.UID {
				return errorf("still the old pod")
			}
			return nil
		})
		d, err := annotations.ParseDesired(p.Annotations[annotations.DesiredKey])
		if err != nil || !check(p, d) {
			t.Fatalf("%s: pod %s, desired %+v (%v)", what, p.Spec.Containers[0].Image, d, err)
		}
		if _, err := admin.kube.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{}); !notFound(err) {
			t.Fatalf("%s: the old pod %s is still there (%v)", what, pod.Name, err)
		}
		t.Logf("%s: new pod %s with its desired state in %v", what, p.Name, time.Since(start).Round(time.Millisecond))
		pod = p
	}

	configure(plan.KeyImage, image2)
	rolled("image change", func(p *corev1.Pod, _ *annotations.Desired) bool { return p.Spec.Containers[0].Image == image2 })
	if d := getDeployment(t, "ngw"); d.Spec.Template.Spec.Containers[0].Image != image2 {
		t.Fatalf("Deployment image %s", d.Spec.Template.Spec.Containers[0].Image)
	}
	wantEvent(t, "ngw", "DeploymentUpdated", image1+" -> "+image2)

	configure(plan.KeyNIC, "eth2")
	rolled("nic change", func(p *corev1.Pod, d *annotations.Desired) bool {
		return d.External.Master == "eth2" && strings.Contains(p.Annotations[annotations.NICsKey], `"master":"eth2"`)
	})

	sn2 := &v1.Subnet{ObjectMeta: metav1.ObjectMeta{Name: "sn2"}, Spec: v1.SubnetSpec{Vpc: "test-vpc-1", CIDRBlock: "10.0.2.0/24",
		Gateway: "10.0.2.1", NatGatewayAttachment: &v1.SubnetAttachment{Master: "eth3"}}}
	createObjects(t, nil, []*v1.Subnet{sn2})
	rolled("subnet added", func(p *corev1.Pod, d *annotations.Desired) bool {
		return len(d.Subnets) == 2 && p.Annotations[annotations.LogicalSwitchKey] == "sn,sn2" && p.Annotations[annotations.IPAddressKey] == "10.0.1.254,10.0.2.1"
	})
}

// wantEvent waits for an Event about gateway name with reason and a message containing fragment.
func wantEvent(t *testing.T, name, reason, fragment string) {
	t.Helper()
	eventually(t, waitLong, "event "+reason, func() error {
		evs, err := admin.kube.CoreV1().Events("default").List(context.Background(), metav1.ListOptions{FieldSelector: "involvedObject.name=" + name})
		if err != nil {
			return err
		}
		var seen []string
		for _, e := range evs.Items {
			if e.Reason == reason && strings.Contains(e.Message, fragment) && e.InvolvedObject.Kind == "VpcNatGateway" {
				return nil
			}
			seen = append(seen, e.Reason+": "+e.Message)
		}
		return errorf("no %s event with %q among %q", reason, fragment, seen)
	})
}
