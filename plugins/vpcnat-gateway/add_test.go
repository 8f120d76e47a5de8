package main

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"

	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/vpcnat/vpcnat/pkg/annotations"
)

// TestNormalPod: a pod without the gateway annotation gets exactly what the primary chain gave
// it: the same result, no extra interface, no macvlan, no record.
func TestNormalPod(t *testing.T) {
	for _, v := range versions {
		t.Run(v, func(t *testing.T) {
			h := newHarness(t)
			p := h.pod("default", map[string]string{"kubernetes.io/config.seen": "x"})
			res, err := h.chain.Add(h.list(v), p)
			if err != nil {
				t.Fatal(err)
			}
			if got := interfaceNames(t, res); slices.Contains(got, "net1") || len(got) != 3 {
				t.Errorf("interfaces %v, want only the bridge plugin's cni0, veth and eth0", got)
			}
			if got := h.links(p.Role); got != "lo eth0" {
				t.Errorf("pod links %q, want \"lo eth0\"", got)
			}
			if n := h.macvlansOnNode(); n != 0 || len(h.chain.Records()) != 0 {
				t.Errorf("normal pod left %d macvlans and records %v", n, h.chain.Records())
			}
			if err := h.chain.Check(h.list(v), p); hasCheck(v) && err != nil {
				t.Errorf("CHECK: %v", err)
			}
			if err := h.chain.Del(h.list(v), p); err != nil {
				t.Errorf("DEL: %v", err)
			}
		})
	}
}

// TestPassThroughIsExact: for a normal pod the plugin prints prevResult as it came, field for
// field, in every version.
func TestPassThroughIsExact(t *testing.T) {
	if len(pluginPaths) == 0 {
		t.Skip("needs root (plugin binary built in TestMain)")
	}
	prev := map[string]string{
		"0.3.1": `{"cniVersion":"0.3.1","interfaces":[{"name":"eth0","mac":"0a:58:0a:f4:00:05","sandbox":"/var/run/netns/x"}],"ips":[{"version":"4","interface":0,"address":"203.0.113.133/25","gateway":"203.0.113.129"}],"routes":[{"dst":"0.0.0.0/0","gw":"203.0.113.129"}],"dns":{"nameservers":["203.0.113.200"]}}`,
		"0.4.0": `{"cniVersion":"0.4.0","interfaces":[{"name":"eth0","mac":"0a:58:0a:f4:00:05","sandbox":"/var/run/netns/x"}],"ips":[{"version":"4","interface":0,"address":"203.0.113.133/25","gateway":"203.0.113.129"}],"routes":[{"dst":"0.0.0.0/0","gw":"203.0.113.129"}],"dns":{"nameservers":["203.0.113.200"]}}`,
		"1.0.0": `{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","mac":"0a:58:0a:f4:00:05","sandbox":"/var/run/netns/x"}],"ips":[{"interface":0,"address":"203.0.113.133/25","gateway":"203.0.113.129"}],"routes":[{"dst":"0.0.0.0/0","gw":"203.0.113.129"}],"dns":{"nameservers":["203.0.113.200"]}}`,
		"1.1.0": `{"cniVersion":"1.1.0","interfaces":[{"name":"eth0","mac":"0a:58:0a:f4:00:05","mtu":1400,"sandbox":"/var/run/netns/x","socketPath":"/run/x.sock"}],"ips":[{"interface":0,"address":"203.0.113.133/25","gateway":"203.0.113.129"}],"routes":[{"dst":"0.0.0.0/0","gw":"203.0.113.129","mtu":1400,"table":5}],"dns":{"nameservers":["203.0.113.200"]}}`,
	}
	for v, prevJSON := range prev {
		conf := `{"cniVersion":"` + v + `","name":"n","type":"vpcnat","stateDir":"` + t.TempDir() + `","prevResult":` + prevJSON +
			`,"runtimeConfig":{"io.kubernetes.cri.pod-annotations":{}}}`
		out, err := run(t, "ADD", conf, "CNI_ARGS=K8S_POD_NAMESPACE=default;K8S_POD_NAME=p")
		if err != nil {
			t.Fatalf("%s: %v\n%s", v, err, out)
		}
		if got, want := canon(t, out), canon(t, prevJSON); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: printed\n%v\nwant prevResult\n%v", v, got, want)
		}
	}
}

// TestGatewayPod: a gateway pod in kube-system gets net1 (a macvlan on the node's eth1, created
// in place) and its subnet NIC with the subnet's gateway IP and lanIp, a result that lists them,
// and an attachment record; CHECK passes, and fails naming a NIC deleted by hand; DEL removes all.
func TestGatewayPod(t *testing.T) {
	for _, v := range versions {
		t.Run(v, func(t *testing.T) {
			h := newHarness(t)
			annots := gatewayAnnotations(t)
			nic, err := annotations.ParseNICPlan(annots[annotations.NICsKey])
			if err != nil {
				t.Fatal(err)
			}
			sub := nic.Subnets[0].IfName
			p := h.pod("kube-system", annots)
			list := h.list(v)
			res, err := h.chain.Add(list, p)
			if err != nil {
				t.Fatal(err)
			}
			if got := interfaceNames(t, res); !slices.Contains(got, "net1") || !slices.Contains(got, sub) || !slices.Contains(got, "eth0") {
				t.Errorf("result interfaces %v, want eth0, net1 and %s", got, sub)
			}
			r, _ := current.NewResultFromResult(res)
			var ips []string
			for _, ip := range r.IPs {
				ips = append(ips, ip.Address.String())
			}
			for _, want := range []string{"10.0.1.1/24", "10.0.1.254/24"} {
				if !slices.Contains(ips, want) {
					t.Errorf("result IPs %v lack %s", ips, want)
				}
			}
			// The daemon claims them after a probe; the plugin only creates the NIC.
			if got := h.addrs(p.Role, sub); strings.Contains(got, "10.0.1.") {
				t.Errorf("ADD added addresses to %s (the daemon claims them after probing):\n%s", sub, got)
			}
			link, _ := h.topo.Exec(p.Role, "ip", "-d", "link", "show", "net1")
			if !strings.Contains(link, "macvlan mode bridge") || !strings.Contains(link, nic.External.MAC) {
				t.Errorf("net1 is not a bridge-mode macvlan with MAC %s:\n%s", nic.External.MAC, link)
			}
			if sl, _ := h.topo.Exec(p.Role, "ip", "link", "show", sub); !strings.Contains(sl, nic.Subnets[0].MAC) {
				t.Errorf("%s does not have its name-derived MAC %s:\n%s", sub, nic.Subnets[0].MAC, sl)
			}
			if h.macvlansOnNode() != 0 {
				t.Error("a macvlan was left in the node namespace")
			}
			if recs := h.chain.Records(); len(recs) != 1 || recs[0] != p.UID+".json" {
				t.Errorf("records %v, want %s.json", recs, p.UID)
			}
			// CHECK of vpcnat through libcni, with ADD's cached result as prevResult.
			checkList, err := h.chain.VpcnatOnly(v)
			if err != nil {
				t.Fatal(err)
			}
			if err := h.chain.Check(checkList, p); hasCheck(v) && err != nil {
				t.Errorf("CHECK of a healthy gateway: %v", err)
			}
			if _, err := h.topo.Exec(p.Role, "ip", "link", "del", sub); err != nil {
				t.Fatal(err)
			}
			if err := h.chain.Check(checkList, p); hasCheck(v) && (err == nil || !strings.Contains(err.Error(), sub)) {
				t.Errorf("CHECK after deleting %s by hand: %v, want an error naming it", sub, err)
			}
			if err := h.chain.Del(list, p); err != nil {
				t.Fatal(err)
			}
			if got := h.links(p.Role); got != "lo" {
				t.Errorf("after DEL pod links %q, want \"lo\"", got)
			}
			if recs := h.chain.Records(); len(recs) != 0 {
				t.Errorf("records after DEL: %v", recs)
			}
			if err := h.chain.Del(list, p); err != nil {
				t.Errorf("second DEL: %v", err)
			}
		})
	}
}

// TestImpostor: a pod outside the gateway namespaces that carries the gateway annotations gets
// nothing: no macvlan on the node NIC, no record, the plain result.
func TestImpostor(t *testing.T) {
	h := newHarness(t)
	p := h.pod("default", gatewayAnnotations(t))
	res, err := h.chain.Add(h.list("1.1.0"), p)
	if err != nil {
		t.Fatal(err)
	}
	if got := interfaceNames(t, res); slices.Contains(got, "net1") {
		t.Errorf("impostor got interfaces %v", got)
	}
	if got := h.links(p.Role); got != "lo eth0" {
		t.Errorf("impostor pod links %q", got)
	}
	if len(h.chain.Records()) != 0 {
		t.Errorf("impostor got a record: %v", h.chain.Records())
	}
}

func canon(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, s)
	}
	return m
}
