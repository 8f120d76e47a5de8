package controller

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vpcnat/vpcnat/pkg/annotations"
)

// TestValueForEncodings: the desired annotation is written in the parts encoding only to a pod
// whose daemon lists it in its applied report, in gzip to any other (an older daemon's, or one
// that has not reported yet), and both carry the same state.
func TestValueForEncodings(t *testing.T) {
	d := &annotations.Desired{Version: annotations.Version, Gateway: "ngw", Generation: 3,
		External: annotations.ExternalNIC{IfName: "net1", Master: "eth1", Mode: "bridge", MAC: "02:c8:ca:97:ff:41"},
		Subnets: []annotations.SubnetNIC{{Subnet: "sn", IfName: "vpc-2010c9e0d4e", CIDR: "10.0.0.0/16", IP: "10.0.0.1",
			Addresses: []string{"10.0.0.1/16"}, Attachment: annotations.Attachment{Type: annotations.AttachBridge, Bridge: "br-sn", HostIfName: "vnat994b11266d6"}}},
		EIPs: []annotations.EIP{{EipCIDR: "192.168.0.2/24", Gateway: "192.168.0.1"}}}
	for i := range 2000 {
		d.DNATs = append(d.DNATs, annotations.DNAT{EIP: "192.168.0.2", Protocol: "tcp", ExternalPort: 1000 + i,
			InternalIP: fmt.Sprintf("10.0.%d.%d", 1+i/200, 2+i%200), InternalPort: 80})
	}
	gz, err := annotations.EncodeDesired(d)
	if err != nil {
		t.Fatal(err)
	}
	hash, _ := annotations.DesiredHash(d)
	proj := &projection{desired: d, value: gz, hash: hash}
	var cache partsCache
	pod := func(applied string) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Annotations: map[string]string{}}}
		if applied != "" {
			p.Annotations[annotations.AppliedKey] = applied
		}
		return p
	}
	for name, c := range map[string]struct {
		pod  *corev1.Pod
		want string
	}{
		"no report yet":         {pod(""), `"encoding":"gzip"`},
		"an older daemon":       {pod(`{"version":"v1","generation":2,"hash":"x","time":"2026-12-07T00:00:00Z"}`), `"encoding":"gzip"`},
		"an unreadable report":  {pod(`{"version":"v1","encodings":[1]}`), `"encoding":"gzip"`},
		"a daemon reading gzip": {pod(`{"version":"v1","generation":2,"hash":"x","time":"2026-12-07T00:00:00Z","encodings":["zstd"]}`), `"encoding":"gzip"`},
		"a daemon reading parts": {pod(`{"version":"v1","generation":2,"hash":"x","time":"2026-12-07T00:00:00Z","encodings":["deflate-parts"]}`),
			`"encoding":"deflate-parts"`},
	} {
		v, err := proj.valueFor(c.pod, &cache)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !strings.Contains(v, c.want) {
			t.Errorf("%s: the annotation is %.60s..., want %s", name, v, c.want)
		}
		got, err := annotations.ParseDesired(v)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !reflect.DeepEqual(got, d) {
			t.Errorf("%s: the annotation carries another state", name)
		}
	}
}

// TestPartsCache: a state's parts encoding is made once while it stays in the cache, small
// states (plain JSON) are not kept, and the cache stays bounded.
func TestPartsCache(t *testing.T) {
	var c partsCache
	calls := 0
	enc := func(v string) func() (string, error) {
		return func() (string, error) { calls++; return v, nil }
	}
	for range 3 {
		if v, err := c.get("h1", "gzip-1", enc("parts-1")); err != nil || v != "parts-1" {
			t.Fatalf("get: %q, %v", v, err)
		}
	}
	if calls != 1 {
		t.Errorf("encoded %d times, want once", calls)
	}
	for range 2 {
		if v, _ := c.get("small", "plain", enc("plain")); v != "plain" {
			t.Fatalf("small state: %q", v)
		}
	}
	if calls != 3 {
		t.Errorf("a small state was kept: %d encodings, want 3", calls)
	}
	for i := range 3 * partsCacheSize {
		c.get(fmt.Sprint(i), "gzip", enc("parts"))
	}
	if len(c.m) > partsCacheSize {
		t.Errorf("%d entries, want at most %d", len(c.m), partsCacheSize)
	}
}
