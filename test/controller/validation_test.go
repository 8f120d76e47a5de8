package controller

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	v1 "github.com/vpcnat/vpcnat/pkg/apis/kubeovn/v1"
)

// remove, as a value in a badObject, deletes the field.
type removeField struct{}

var remove = removeField{}

// badObject is one of the seed's objects with one field changed, and what the API server must
// say: the field path and a fragment of the message.
type badObject struct {
	name     string
	kind     string // VpcNatGateway, Vpc, Subnet
	set      map[string]any
	wantPath string
	wantMsg  string
}

func many(n int, f func(i int) any) []any {
	out := make([]any, n)
	for i := range out {
		out[i] = f(i)
	}
	return out
}

var badObjects = []badObject{
	// VpcNatGateway: metadata and the references.
	{"name too long", "VpcNatGateway", map[string]any{"metadata.name": strings.Repeat("g", 53)}, "", "DNS label of at most 52 characters"},
	{"name with a dot", "VpcNatGateway", map[string]any{"metadata.name": "ngw.a"}, "", "DNS label of at most 52 characters"},
	{"vpc empty", "VpcNatGateway", map[string]any{"spec.vpc": ""}, "spec.vpc", "at least 1 chars long"},
	{"vpc upper case", "VpcNatGateway", map[string]any{"spec.vpc": "Test-Vpc"}, "spec.vpc", "should match"},
	{"subnet missing", "VpcNatGateway", map[string]any{"spec.subnet": remove}, "spec.subnet", "Required value"},
	// lanIp.
	{"lanIp out of range", "VpcNatGateway", map[string]any{"spec.lanIp": "10.0.1.256"}, "spec.lanIp", "must be an IPv4 address"},
	{"lanIp with prefix", "VpcNatGateway", map[string]any{"spec.lanIp": "10.0.1.254/24"}, "spec.lanIp", "without a prefix length"},
	{"lanIp IPv6", "VpcNatGateway", map[string]any{"spec.lanIp": "2001:db8::fe"}, "spec.lanIp", "must be an IPv4 address"},
	{"lanIp hostile", "VpcNatGateway", map[string]any{"spec.lanIp": "10.0.1.254; rm -rf /"}, "spec.lanIp", "must be an IPv4 address"},
	// EIPs.
	{"eipCIDR without prefix", "VpcNatGateway", map[string]any{"spec.eips[0].eipCIDR": "192.168.0.111"}, "spec.eips[0].eipCIDR", "with the external network's prefix length"},
	{"eipCIDR IPv6", "VpcNatGateway", map[string]any{"spec.eips[0].eipCIDR": "2001:db8::111/64"}, "spec.eips[0].eipCIDR", "IPv4 address with the external network's prefix"},
	{"eip gateway garbage", "VpcNatGateway", map[string]any{"spec.eips[0].gateway": "router"}, "spec.eips[0].gateway", "must be an IPv4 address"},
	{"eip gateway outside", "VpcNatGateway", map[string]any{"spec.eips[0].gateway": "192.168.1.254"}, "spec.eips[0]", "gateway must be inside the network of eipCIDR"},
	{"eip duplicate", "VpcNatGateway", map[string]any{"spec.eips[1].eipCIDR": "192.168.0.111/24"}, "spec.eips[1]", "Duplicate value"},
	{"too many eips", "VpcNatGateway", map[string]any{"spec.eips": many(1025, func(i int) any {
		return map[string]any{"eipCIDR": fmt.Sprintf("192.168.%d.%d/16", i/250, 1+i%250), "gateway": "192.168.255.254"}
	})}, "spec.eips", "must have at most 1024 items"},
	// Floating IPs.
	{"fip on the same eip twice", "VpcNatGateway", map[string]any{"spec.floatingIpRules[1]": map[string]any{"eip": "192.168.0.111", "internalIp": "10.0.1.6"}}, "spec.floatingIpRules[1]", "Duplicate value"},
	{"fip eip not one of eips", "VpcNatGateway", map[string]any{"spec.floatingIpRules[0].eip": "192.168.0.200"}, "spec", "every floatingIpRules eip must be the address of one of eips"},
	{"fip internalIp garbage", "VpcNatGateway", map[string]any{"spec.floatingIpRules[0].internalIp": "10.0.1.5 "}, "spec.floatingIpRules[0].internalIp", "must be an IPv4 address"},
	{"fip eip missing", "VpcNatGateway", map[string]any{"spec.floatingIpRules[0].eip": remove}, "spec.floatingIpRules[0].eip", "Required value"},
	// Port forwards.
	{"dnat port 0", "VpcNatGateway", map[string]any{"spec.dnatRules[0].externalPort": 0}, "spec.dnatRules[0].externalPort", "must be a port number 1-65535"},
	{"dnat port 65536", "VpcNatGateway", map[string]any{"spec.dnatRules[0].externalPort": 65536}, "spec.dnatRules[0].externalPort", "must be a port number 1-65535"},
	{"dnat port string 70000", "VpcNatGateway", map[string]any{"spec.dnatRules[0].internalPort": "70000"}, "spec.dnatRules[0].internalPort", "must be a port number 1-65535"},
	{"dnat port abc", "VpcNatGateway", map[string]any{"spec.dnatRules[0].externalPort": "abc"}, "spec.dnatRules[0].externalPort", "must be a port number 1-65535"},
	{"dnat port string too long", "VpcNatGateway", map[string]any{"spec.dnatRules[0].internalPort": "0000080"}, "spec.dnatRules[0].internalPort", "Too long"},
	{"dnat port bool", "VpcNatGateway", map[string]any{"spec.dnatRules[0].externalPort": true}, "spec.dnatRules[0].externalPort", "Invalid value"},
	{"dnat protocol sctp", "VpcNatGateway", map[string]any{"spec.dnatRules[0].protocol": "sctp"}, "spec.dnatRules[0].protocol", "Unsupported value"},
	{"dnat eip with prefix", "VpcNatGateway", map[string]any{"spec.dnatRules[0].eip": "192.168.0.112/24"}, "spec.dnatRules[0].eip", "without a prefix length"},
	{"dnat internalIp missing", "VpcNatGateway", map[string]any{"spec.dnatRules[0].internalIp": remove}, "spec.dnatRules[0].internalIp", "Required value"},
	{"too many dnats", "VpcNatGateway", map[string]any{"spec.dnatRules": many(20001, func(i int) any {
		return map[string]any{"eip": "192.168.0.112", "externalPort": 1 + i, "protocol": "udp", "internalIp": "10.0.1.10", "internalPort": 80}
	})}, "spec.dnatRules", "must have at most 20000 items"},
	// SNAT.
	{"snat host bits", "VpcNatGateway", map[string]any{"spec.snatRules[0].internalCIDR": "10.0.1.5/24"}, "spec.snatRules[0].internalCIDR", "no host bits"},
	{"snat eip not one of eips", "VpcNatGateway", map[string]any{"spec.snatRules[0].eip": "192.168.0.113"}, "spec", "every snatRules eip must be the address of one of eips"},
	// Scheduling.
	{"selector without colon", "VpcNatGateway", map[string]any{"spec.selector": []any{"kubernetes.io/os=linux"}}, "spec.selector[0]", "should match"},
	{"too many tolerations", "VpcNatGateway", map[string]any{"spec.tolerations": many(65, func(i int) any { return map[string]any{"key": fmt.Sprint("k", i), "operator": "Exists"} })}, "spec.tolerations", "must have at most 64 items"},
	// Vpc.
	{"route cidr host bits", "Vpc", map[string]any{"spec.staticRoutes[0].cidr": "10.0.0.1/8"}, "spec.staticRoutes[0].cidr", "without host bits"},
	{"route next hop garbage", "Vpc", map[string]any{"spec.staticRoutes[0].nextHopIP": "10.0.1"}, "spec.staticRoutes[0].nextHopIP", "must be an IPv4 address"},
	{"route policy unknown", "Vpc", map[string]any{"spec.staticRoutes[0].policy": "policyAny"}, "spec.staticRoutes[0].policy", "Unsupported value"},
	// Subnet.
	{"cidrBlock bad length", "Subnet", map[string]any{"spec.cidrBlock": "10.0.1.0/33"}, "spec.cidrBlock", "IPv4 network prefix"},
	{"cidrBlock host bits", "Subnet", map[string]any{"spec.cidrBlock": "10.0.1.1/24"}, "spec.cidrBlock", "without host bits"},
	{"subnet gateway outside", "Subnet", map[string]any{"spec.gateway": "10.0.2.1"}, "spec", "gateway must be inside cidrBlock"},
	{"subnet vpc missing", "Subnet", map[string]any{"spec.vpc": remove}, "spec.vpc", "Required value"},
	{"attachment bridge and master", "Subnet", map[string]any{"spec.natGatewayAttachment.master": "eth2"}, "spec.natGatewayAttachment", "exactly one of bridge or master"},
	{"attachment empty", "Subnet", map[string]any{"spec.natGatewayAttachment.bridge": remove}, "spec.natGatewayAttachment", "exactly one of bridge or master"},
	{"bridge name too long", "Subnet", map[string]any{"spec.natGatewayAttachment.bridge": "br-0123456789abc"}, "spec.natGatewayAttachment.bridge", "Too long"},
	{"bridge wildcard", "Subnet", map[string]any{"spec.natGatewayAttachment.bridge": "br+"}, "spec.natGatewayAttachment.bridge", "should match"},
	{"attachment mtu", "Subnet", map[string]any{"spec.natGatewayAttachment.mtu": 10}, "spec.natGatewayAttachment.mtu", "68-65535"},
}

var resources = map[string]string{"VpcNatGateway": "vpcnatgateways", "Vpc": "vpcs", "Subnet": "subnets"}

// TestCRDValidation: the API server itself refuses every object of the table, naming the field;
// the unchanged seed objects pass the same dry run, so no case passes by refusing everything.
func TestCRDValidation(t *testing.T) {
	if len(badObjects) < 30 {
		t.Fatalf("only %d bad objects", len(badObjects))
	}
	dyn, err := dynamic.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	in := seed(t)
	base := map[string]runtime.Object{"VpcNatGateway": in.Gateway, "Vpc": in.Vpc, "Subnet": in.Subnets[0]}
	create := func(kind string, obj map[string]any) error {
		gvr := schema.GroupVersionResource{Group: v1.GroupName, Version: "v1", Resource: resources[kind]}
		_, err := dyn.Resource(gvr).Create(context.Background(), &unstructured.Unstructured{Object: obj},
			metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}, FieldValidation: "Strict"})
		return err
	}
	toMap := func(kind string) map[string]any {
		m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(base[kind].DeepCopyObject())
		if err != nil {
			t.Fatal(err)
		}
		m["apiVersion"], m["kind"] = v1.SchemeGroupVersion.String(), kind
		delete(m, "status")
		return m
	}
	for kind := range base {
		if err := create(kind, toMap(kind)); err != nil {
			t.Fatalf("the seed's %s is refused: %v", kind, err)
		}
	}
	for _, c := range badObjects {
		t.Run(c.name, func(t *testing.T) {
			obj := toMap(c.kind)
			for path, v := range c.set {
				if err := setPath(obj, path, v); err != nil {
					t.Fatal(err)
				}
			}
			err := create(c.kind, obj)
			if err == nil {
				t.Fatalf("accepted")
			}
			if !apierrors.IsInvalid(err) {
				t.Fatalf("refused, but not as invalid: %v", err)
			}
			msg := err.Error()
			t.Logf("%.300s", msg)
			if (c.wantPath != "" && !strings.Contains(msg, c.wantPath+": ")) || !strings.Contains(msg, c.wantMsg) {
				t.Fatalf("error does not name %q with %q:\n%.600s", c.wantPath, c.wantMsg, msg)
			}
		})
	}
}

var segment = regexp.MustCompile(`^([A-Za-z]+)(?:\[(\d+)\])?$`)

// setPath sets (or, with remove, deletes) a dotted path like spec.dnatRules[0].eip in an
// unstructured object; an index one past the end appends.
func setPath(obj map[string]any, path string, v any) error {
	parts := strings.Split(path, ".")
	cur := obj
	for i, p := range parts {
		m := segment.FindStringSubmatch(p)
		if m == nil {
			return fmt.Errorf("bad path segment %q", p)
		}
		last := i == len(parts)-1
		if m[2] == "" {
			if last {
				if v == remove {
					delete(cur, m[1])
				} else {
					cur[m[1]] = v
				}
				return nil
			}
			next, ok := cur[m[1]].(map[string]any)
			if !ok {
				return fmt.Errorf("%s: not an object", p)
			}
			cur = next
			continue
		}
		list, _ := cur[m[1]].([]any)
		idx, _ := strconv.Atoi(m[2])
		if idx == len(list) {
			list = append(list, map[string]any{})
			cur[m[1]] = list
		}
		if idx > len(list) {
			return fmt.Errorf("%s: index out of range", p)
		}
		if last {
			list[idx] = v
			return nil
		}
		next, ok := list[idx].(map[string]any)
		if !ok {
			return fmt.Errorf("%s: not an object", p)
		}
		cur = next
	}
	return nil
}
