package e2e

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/vpcnat/vpcnat/pkg/annotations"
)

// netStatus is one entry of Multus's k8s.v1.cni.cncf.io/network-status annotation.
type netStatus struct {
	Name      string   `json:"name"`
	Interface string   `json:"interface"`
	IPs       []string `json:"ips"`
	MAC       string   `json:"mac"`
	Default   bool     `json:"default"`
}

// checkNetworkStatus: the seed gateway pod's network-status lists what its netns really has:
// eth0 (default, the pod's IP), net1 and the subnet NIC with the MACs the kernel shows and the
// seed's addresses on them.
func (e *vpcEnv) checkNetworkStatus(g gatewayState) {
	t := e.t
	subnetIf := ""
	for _, f := range strings.Fields(g.macs) {
		if ifn, _, _ := strings.Cut(f, "="); ifn != "net1" {
			subnetIf = ifn
		}
	}
	want := map[string][]string{"net1": {eipFIP, eipShared}, subnetIf: {subnetGW, "10.0.1.254"}}
	var why string
	ok := func() bool {
		pod, err := e.gatewayPod()
		if err != nil || pod == nil {
			why = fmt.Sprintf("gateway pod: %v", err)
			return false
		}
		raw := pod.Annotations[annotations.NetworkStatusKey]
		var st []netStatus
		if err := json.Unmarshal([]byte(raw), &st); err != nil {
			why = fmt.Sprintf("%s %q: %v", annotations.NetworkStatusKey, raw, err)
			return false
		}
		seen := map[string]netStatus{}
		for _, s := range st {
			seen[s.Interface] = s
		}
		if eth0 := seen["eth0"]; !eth0.Default || pod.Status.PodIP == "" || !slices.Contains(eth0.IPs, pod.Status.PodIP) {
			why = fmt.Sprintf("eth0 entry %+v, want the default network with the pod IP %q", eth0, pod.Status.PodIP)
			return false
		}
		for ifn, ips := range want {
			s, found := seen[ifn]
			kernelMAC := macOf(g.macs, ifn)
			got := slices.Clone(s.IPs)
			slices.Sort(got)
			if !found || !strings.EqualFold(s.MAC, kernelMAC) || !slices.Equal(got, ips) {
				why = fmt.Sprintf("%s entry %+v, want MAC %s (the kernel's) and addresses %v", ifn, s, kernelMAC, ips)
				return false
			}
		}
		why = raw
		return true
	}
	deadline := time.Now().Add(30 * time.Second)
	for !ok() && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if !ok() {
		t.Errorf("network-status: %s", why)
		return
	}
	t.Logf("network-status: %s", why)
}
