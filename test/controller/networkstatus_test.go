package controller

import (
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	v1 "github.com/vpcnat/vpcnat/pkg/apis/kubeovn/v1"
	"github.com/vpcnat/vpcnat/pkg/controller"
	"github.com/vpcnat/vpcnat/pkg/plan"
)

// seedNetworkStatus is the network status the seed's gateway pod should carry, in Multus's
// format: eth0 with the pod's IP (the pod runner's 127.0.0.1), net1 with the EIPs and the
// gateway's MAC, the bridge NIC in sn with the subnet gateway and lanIp and its MAC.
func seedNetworkStatus(eips ...string) string {
	return `[{"name":"` + controller.PrimaryNetworkName + `","interface":"eth0","ips":["127.0.0.1"],"default":true,"dns":{}},` +
		`{"name":"kube-system/ovn-vpc-external-network","interface":"net1","ips":["` + strings.Join(eips, `","`) + `"],"mac":"` + plan.ExternalMAC("ngw") + `","dns":{}},` +
		`{"name":"vpcnat.kubeovn.io/sn","interface":"` + plan.SubnetIfName("sn") + `","ips":["10.0.1.1","10.0.1.254"],"mac":"` + plan.SubnetMAC("ngw", "sn") + `","dns":{}}]`
}

// waitNetworkStatus waits until the gateway's live pod carries want as its network status.
func waitNetworkStatus(t *testing.T, name, want string) *corev1.Pod {
	t.Helper()
	var pod *corev1.Pod
	eventually(t, waitLong, "network status of "+name, func() error {
		p, err := livePod(name)
		if err != nil {
			return err
		}
		if got := p.Annotations[annotations.NetworkStatusKey]; got != want {
			return fmt.Errorf("pod %s: network status\n got %s\nwant %s", p.Name, got, want)
		}
		pod = p
		return nil
	})
	return pod
}

// TestNetworkStatus: the controller writes Multus's network status on the gateway pod (eth0
// once the pod has its IP, net1, the subnet NIC, with their addresses and MACs), follows an EIP
// edit without restarting the pod, and does not rewrite the pod when a sync finds it current.
func TestNetworkStatus(t *testing.T) {
	fresh(t)
	createSeed(t)
	ctrl := startController(t)
	runPods(t)
	waitDesired(t, "ngw")
	pod := waitNetworkStatus(t, "ngw", seedNetworkStatus("192.168.0.111", "192.168.0.112"))

	updateGateway(t, "ngw", func(g *v1.VpcNatGateway) {
		g.Spec.Eips = append(g.Spec.Eips, v1.Eip{EipCIDR: "192.168.0.113/24", Gateway: "192.168.0.254"})
	})
	p := waitNetworkStatus(t, "ngw", seedNetworkStatus("192.168.0.111", "192.168.0.112", "192.168.0.113"))
	if p.UID != pod.UID {
		t.Fatalf("the EIP edit restarted the gateway pod: %s -> %s", pod.UID, p.UID)
	}
	waitDesired(t, "ngw") // both keys come in one patch; the desired state is current too
	p, err := livePod("ngw")
	if err != nil {
		t.Fatal(err)
	}

	// A sync that finds the pod current writes nothing: a label on the gateway brings one. A
	// no-op patch would leave the resource version as it is, so the patches are counted too.
	before, patches := ctrl.syncs(), podPatches(t, ctrl)
	updateGateway(t, "ngw", func(g *v1.VpcNatGateway) {
		if g.Labels == nil {
			g.Labels = map[string]string{}
		}
		g.Labels["vpcnat-test/touch"] = "1"
	})
	eventually(t, waitLong, "a sync after the label", func() error {
		if n := ctrl.syncs(); n <= before {
			return fmt.Errorf("%v syncs, %v before", n, before)
		}
		return nil
	})
	time.Sleep(time.Second) // anything the sync would write, it writes in this time
	after, err := livePod("ngw")
	if err != nil {
		t.Fatal(err)
	}
	if n := podPatches(t, ctrl); n != patches {
		t.Errorf("a sync patched the current pod: %v patches, %v before", n, patches)
	}
	if after.ResourceVersion != p.ResourceVersion {
		t.Errorf("a sync rewrote the current pod: resource version %s -> %s, network status %s",
			p.ResourceVersion, after.ResourceVersion, after.Annotations[annotations.NetworkStatusKey])
	}
}

// podPatches is how many patches of gateway pods the controller has made.
func podPatches(t *testing.T, r *running) float64 {
	t.Helper()
	mfs, err := r.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "vpcnat_controller_desired_patches_total" {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatal("no vpcnat_controller_desired_patches_total")
	return 0
}
