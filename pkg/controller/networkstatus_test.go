package controller

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	"github.com/vpcnat/vpcnat/pkg/plan"
)

// Address plan: the seed's (192.168.0.0/24, 10.0.1.0/24) and 198.51.100.0/24 for the pod IP;
// values only, nothing is configured.

func seedPod(name string, ips ...string) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: plan.GatewayNamespace,
		Annotations: map[string]string{annotations.NetworksKey: "kube-system/" + DefaultExternalNetwork}}}
	for _, ip := range ips {
		p.Status.PodIPs = append(p.Status.PodIPs, corev1.PodIP{IP: ip})
	}
	if len(ips) > 0 {
		p.Status.PodIP = ips[0]
	}
	return p
}

func decodeNetworkStatus(t *testing.T, s string) []networkStatus {
	t.Helper()
	var out []networkStatus
	if err := json.Unmarshal([]byte(s), &out); err != nil {
		t.Fatalf("network status %s: %v", s, err)
	}
	return out
}

// TestNetworkStatusSeed: the seed's pod lists eth0 (its IPs, default), net1 (the attachment its
// networks annotation names, the EIPs, the gateway's MAC) and the bridge NIC in sn (subnet
// gateway and lanIp, the subnet MAC), in Multus's field names.
func TestNetworkStatusSeed(t *testing.T) {
	_, d, errs := plan.Build(seedInputs(t))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	got, err := buildNetworkStatus(seedPod("vpc-nat-gw-ngw-0", "198.51.100.7"), d)
	if err != nil {
		t.Fatal(err)
	}
	want := `[{"name":"primary","interface":"eth0","ips":["198.51.100.7"],"default":true,"dns":{}},` +
		`{"name":"kube-system/ovn-vpc-external-network","interface":"net1","ips":["192.168.0.111","192.168.0.112"],"mac":"` + plan.ExternalMAC("ngw") + `","dns":{}},` +
		`{"name":"vpcnat.kubeovn.io/sn","interface":"` + plan.SubnetIfName("sn") + `","ips":["10.0.1.1","10.0.1.254"],"mac":"` + plan.SubnetMAC("ngw", "sn") + `","dns":{}}]`
	if got != want {
		t.Fatalf("network status:\n got %s\nwant %s", got, want)
	}
	// The same inputs give the same bytes: the controller compares them to skip the patch.
	again, err := buildNetworkStatus(seedPod("vpc-nat-gw-ngw-0", "198.51.100.7"), d)
	if err != nil || again != got {
		t.Fatalf("second build: %q, %v; first %q", again, err, got)
	}
	// A pod without an IP yet still lists its NICs; eth0 gets its IPs once it has them.
	early, err := buildNetworkStatus(seedPod("vpc-nat-gw-ngw-0"), d)
	if err != nil {
		t.Fatal(err)
	}
	if e := decodeNetworkStatus(t, early); len(e) != 3 || e[0].IPs != nil || !e[0].Default || e[1].Interface != "net1" {
		t.Fatalf("before the pod's IP: %s", early)
	}
	// Dual stack: every pod IP, in the status's order.
	dual, err := buildNetworkStatus(seedPod("vpc-nat-gw-ngw-0", "198.51.100.7", "2001:db8::7"), d)
	if err != nil {
		t.Fatal(err)
	}
	if e := decodeNetworkStatus(t, dual); !reflect.DeepEqual(e[0].IPs, []string{"198.51.100.7", "2001:db8::7"}) {
		t.Fatalf("dual stack eth0: %s", dual)
	}
}

// TestNetworkStatusReplicaAndPrimary: a replica lists its own MACs (the daemon's, by
// plan.ReplicaMAC of the pod's name); a subnet the primary network attaches is eth0, not a
// second entry; an MTU is reported; a bare networks name is in kube-system.
func TestNetworkStatusReplicaAndPrimary(t *testing.T) {
	_, d, errs := plan.Build(seedInputs(t))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	d.Replicas = 2
	d.External.MTU = 1400
	d.Subnets = append(d.Subnets, annotations.SubnetNIC{Subnet: "other", IfName: "eth0", CIDR: "198.51.100.0/24",
		IP: "198.51.100.9", Attachment: annotations.Attachment{Type: annotations.AttachPrimary}})
	pod := seedPod("vpc-nat-gw-ngw-1", "198.51.100.9")
	pod.Annotations[annotations.NetworksKey] = "ext"
	s, err := buildNetworkStatus(pod, d)
	if err != nil {
		t.Fatal(err)
	}
	e := decodeNetworkStatus(t, s)
	if len(e) != 3 {
		t.Fatalf("want eth0, net1 and sn's NIC, got %s", s)
	}
	if want := plan.ReplicaMAC(plan.ExternalMAC("ngw"), pod.Name); e[1].Mac != want || e[1].Mtu != 1400 || e[1].Name != "kube-system/ext" {
		t.Errorf("net1: %+v, want mac %s, mtu 1400, name kube-system/ext", e[1], want)
	}
	if want := plan.ReplicaMAC(plan.SubnetMAC("ngw", "sn"), pod.Name); e[2].Mac != want {
		t.Errorf("sn's NIC: mac %s, want %s", e[2].Mac, want)
	}
	other, err := buildNetworkStatus(seedPod("vpc-nat-gw-ngw-2"), d)
	if err != nil {
		t.Fatal(err)
	}
	if o := decodeNetworkStatus(t, other); o[1].Mac == e[1].Mac || o[2].Mac == e[2].Mac {
		t.Errorf("two replicas list the same MACs: %s and %s", s, other)
	}
}

// TestNetworkStatusBadAddress: an address that is not address/prefix is an error naming it.
func TestNetworkStatusBadAddress(t *testing.T) {
	d := &annotations.Desired{External: annotations.ExternalNIC{IfName: "net1"}, EIPs: []annotations.EIP{{EipCIDR: "192.168.0.111"}}}
	_, err := buildNetworkStatus(seedPod("p"), d)
	if err == nil || !strings.Contains(err.Error(), `"192.168.0.111"`) {
		t.Fatalf("want an error naming the eip, got %v", err)
	}
}
