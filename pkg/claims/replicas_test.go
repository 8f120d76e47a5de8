package claims

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/vpcnat/vpcnat/pkg/apis/kubeovn/v1"
)

func replicated(name, vpc string, replicas int32) *v1.VpcNatGateway {
	return &v1.VpcNatGateway{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1.VpcNatGatewaySpec{Vpc: vpc, Subnet: "sn-a", Replicas: replicas}}
}

func TestReplicatedSubnets(t *testing.T) {
	bridged := sub("sn-a", "vpc-a", "203.0.113.0/25", &v1.SubnetAttachment{Bridge: "br-a"}, 0)
	primary := sub("sn-p", "vpc-a", "203.0.113.128/25", nil, 1)
	other := sub("sn-x", "vpc-x", "203.0.113.0/24", nil, 2)

	v := newView(t, bridged, other)
	for _, r := range []int32{0, 1, 2, 3} {
		if fe := ReplicatedSubnets(v, replicated("gw", "vpc-a", r)); fe != nil {
			t.Errorf("replicas %d, every subnet bridged: %v", r, fe)
		}
	}
	v = newView(t, bridged, primary, other)
	for _, r := range []int32{0, 1} {
		if fe := ReplicatedSubnets(v, replicated("gw", "vpc-a", r)); fe != nil {
			t.Errorf("replicas %d with a primary-attached subnet: refused: %v", r, fe)
		}
	}
	fe := ReplicatedSubnets(v, replicated("gw", "vpc-a", 2))
	if fe == nil {
		t.Fatal("replicas 2 with Subnet sn-p on the primary network: accepted")
	}
	if got := fe.Error(); !strings.Contains(got, `spec.replicas: Invalid value: 2`) || !strings.Contains(got, "Subnet sn-p has no natGatewayAttachment") ||
		strings.Contains(got, "sn-x") {
		t.Errorf("error: %s", got)
	}
}

func TestPrimarySubnetOfReplicated(t *testing.T) {
	v := newView(t, replicated("gw-one", "vpc-a", 1), replicated("gw-ha", "vpc-b", 2))
	cases := []struct {
		s      *v1.Subnet
		refuse bool
	}{
		{sub("sn-1", "vpc-a", "203.0.113.0/24", nil, 0), false},                                  // the Vpc's gateway runs one replica
		{sub("sn-2", "vpc-b", "203.0.113.0/24", &v1.SubnetAttachment{Master: "eth9"}, 0), false}, // attached by master
		{sub("sn-3", "vpc-c", "203.0.113.0/24", nil, 0), false},                                  // no gateway in that Vpc
		{sub("sn-4", "vpc-b", "203.0.113.0/24", nil, 0), true},
	}
	for _, c := range cases {
		fe := PrimarySubnetOfReplicated(v, c.s)
		if (fe != nil) != c.refuse {
			t.Errorf("%s: refused=%v, want %v (%v)", c.s.Name, fe != nil, c.refuse, fe)
			continue
		}
		if fe != nil && (!strings.Contains(fe.Error(), "spec.natGatewayAttachment: Required value") || !strings.Contains(fe.Error(), "gw-ha (replicas: 2)")) {
			t.Errorf("%s: error %s", c.s.Name, fe.Error())
		}
	}
}
