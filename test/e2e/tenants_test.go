package e2e

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	v1 "github.com/vpcnat/vpcnat/pkg/apis/kubeovn/v1"
	"github.com/vpcnat/vpcnat/pkg/plan"
	"github.com/vpcnat/vpcnat/test/topo"
)

// A second tenant beside the seed's: Vpc tenant-b whose Subnet sn-b is the seed's CIDR again
// (10.0.1.0/24, gateway 10.0.1.1) on a bridge of its own, vne2e-brb, with its host b1 10.0.1.5
// (the seed's pod1 address) and gateway ngw-b: EIP 192.168.0.131, a UDP port forward to b1 and
// SNAT. 192.168.0.132 is held by a foreign host (squat) on the external network; intr is a
// foreign host that comes up on vne2e-brb with B's subnet gateway address; tenant-c is a third
// tenant that tries to use B's bridge.
const (
	tenantBBridge = "vne2e-brb"
	tenantB       = "tenant-b"
	subnetB       = "sn-b"
	gwB           = "ngw-b"
	eipB          = "192.168.0.131"
	eipSquatted   = "192.168.0.132"
	eipC          = "192.168.0.133"
	roleB1        = "b1"
	roleSquat     = "squat"
	roleIntruder  = "intr"
	b1UDP         = topo.Pod1IP + ":9999"
	// probeEvery is the loss probes' interval.
	probeEvery = 10 * time.Millisecond
)

// tenantBYAML is tenant B: its Vpc, Subnet and gateway.
var tenantBYAML = fmt.Sprintf(`apiVersion: kubeovn.io/v1
kind: Vpc
metadata: {name: %[1]s}
---
apiVersion: kubeovn.io/v1
kind: Subnet
metadata: {name: %[2]s}
spec: {vpc: %[1]s, cidrBlock: 10.0.1.0/24, gateway: 10.0.1.1, natGatewayAttachment: {bridge: %[3]s}}
---
apiVersion: kubeovn.io/v1
kind: VpcNatGateway
metadata: {name: %[4]s}
spec:
  vpc: %[1]s
  subnet: %[2]s
  lanIp: 10.0.1.254
  eips: [{eipCIDR: %[5]s/24, gateway: 192.168.0.254}]
  dnatRules: [{eip: %[5]s, externalPort: "9999", protocol: udp, internalIp: 10.0.1.5, internalPort: "9999"}]
  snatRules: [{eip: %[5]s, internalCIDR: 10.0.1.0/24}]
`, tenantB, subnetB, tenantBBridge, gwB, eipB)

// tenantCYAML is a third tenant whose Subnet names tenant B's bridge.
var tenantCYAML = fmt.Sprintf(`apiVersion: kubeovn.io/v1
kind: Vpc
metadata: {name: tenant-c}
---
apiVersion: kubeovn.io/v1
kind: Subnet
metadata: {name: sn-c}
spec: {vpc: tenant-c, cidrBlock: 10.0.1.0/24, gateway: 10.0.1.1, natGatewayAttachment: {bridge: %[1]s}}
---
apiVersion: kubeovn.io/v1
kind: VpcNatGateway
metadata: {name: ngw-c}
spec:
  vpc: tenant-c
  subnet: sn-c
  lanIp: 10.0.1.254
  eips: [{eipCIDR: %[2]s/24, gateway: 192.168.0.254}]
`, tenantBBridge, eipC)

// tenantCSubnetYAML is tenant C's Vpc and Subnet alone (the admission check: a gateway whose
// Subnet does not exist yet would be admitted, and refused in status only).
var tenantCSubnetYAML = tenantCYAML[:strings.Index(tenantCYAML, "---\napiVersion: kubeovn.io/v1\nkind: VpcNatGateway")]

// tenants runs the tenant-isolation checks against a second tenant next to the seed's: every
// cross-object conflict refused by kubectl apply; a third Vpc's Subnet on tenant B's bridge
// refused at admission and, past admission, in status, with tenant B untouched; an EIP a
// foreign host already holds left unclaimed; a foreign host taking B's subnet gateway address
// defended against and, once it leaves, B's hosts back on the gateway by its announcement.
// UDP probes every 10 ms through the seed gateway and through B's count every lost datagram.
func (e *vpcEnv) tenants(now flows) {
	t := e.t
	e.buildTenantB()
	e.waitWebhookCABundle()
	e.applyFile("tenant-b.yaml", tenantBYAML)
	// Whatever happens below, the later steps find the seed's gateway alone.
	defer e.deleteTenants()
	e.waitGatewayApplied(gwB)
	e.gatewayOf(gwB) // its MACs, for the IPv6 capture
	checkFlows(t, e.net, "with tenant B", now)

	seedSNAT := e.startProbe("seed snat", topo.Pod2, topo.InetIP+":8081", eipShared)
	bDNAT := e.startProbe("tenant B dnat", topo.Client, eipB+":9999", topo.ClientIP)
	bSNAT := e.startProbe("tenant B snat", roleB1, topo.InetIP+":8081", eipB)

	bDeploy, bDesired := e.gatewayFootprint(gwB)
	e.admissionRefusals()
	e.segmentTakenPastAdmission()
	e.expectUntouched(gwB, bDeploy, bDesired)
	for _, p := range []*topo.LossProbe{seedSNAT, bDNAT, bSNAT} {
		e.expectNoLoss(p)
	}

	// From here on, B's own addresses are contested: only the seed's probe must lose nothing.
	e.eipHeldByForeignHost()
	e.subnetGatewayTaken()
	bDNAT.Stop(0)
	bSNAT.Stop(0)
	e.expectNoLoss(seedSNAT)

	e.deleteTenants()
	pollWithin(e.ctx, t, waitLimit, "tenant B's gateway pod gone", func() (bool, error) {
		p, err := e.gatewayPodNamed(gwB)
		return p == nil && err == nil, err
	})
	checkFlows(t, e.net, "after tenant B was deleted", now)
}

// deleteTenants deletes every object the tenant checks create (those that exist) and waits for
// them to be gone.
func (e *vpcEnv) deleteTenants() {
	for _, args := range [][]string{
		{"vpc-nat-gw", gwB, "ngw-b2", "ngw-c", "ngw-x"},
		{"subnet", subnetB, "sn-c", "sn-x"},
		{"vpc", tenantB, "tenant-c", "tenant-x"},
	} {
		if out, err := e.c.Kubectl(e.ctx, append([]string{"delete", "--ignore-not-found", "--wait=true"}, args...)...); err != nil {
			e.t.Errorf("deleting the tenants' %ss: %v %s", args[0], err, out)
		}
	}
}

// waitWebhookCABundle waits until the controller has written its CA bundle into every webhook
// of the vpcnat ValidatingWebhookConfiguration: until then the API server cannot call it, and
// failurePolicy Ignore admits everything.
func (e *vpcEnv) waitWebhookCABundle() {
	pollWithin(e.ctx, e.t, waitLimit, "the webhook's CA bundle", func() (bool, error) {
		c, err := e.client.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(e.ctx, "vpcnat", metav1.GetOptions{})
		if err != nil || len(c.Webhooks) == 0 {
			return false, err
		}
		for _, w := range c.Webhooks {
			if len(w.ClientConfig.CABundle) == 0 {
				return false, nil
			}
		}
		return true, nil
	})
}

// buildTenantB attaches tenant B's bridge to the node with its host b1 (a UDP server), and
// the two foreign hosts: squat on the external network holding 192.168.0.122, and intr on
// B's bridge, still without an address.
func (e *vpcEnv) buildTenantB() {
	t := e.t
	for _, step := range []func() error{
		func() error { return e.net.HostBridge(tenantBBridge) },
		func() error { return e.net.HostPort(roleB1, tenantBBridge, topo.Pod1IP+"/24", "10.0.1.1") },
		func() error { return e.net.HostPort(roleSquat, extBridge, eipSquatted+"/24", "") },
		func() error { return e.net.HostPort(roleIntruder, tenantBBridge, "10.0.1.250/24", "") },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	s, err := e.net.Listen(roleB1, "udp", b1UDP)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
}

func (e *vpcEnv) applyFile(name, yaml string) string {
	e.t.Helper()
	path := filepath.Join(e.dir, name)
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		e.t.Fatal(err)
	}
	return e.kubectl("apply", "-f", path)
}

// applyRefused applies yaml and fails the test unless kubectl refuses it with a message that
// holds every one of want (the field and the other object).
func (e *vpcEnv) applyRefused(what, yaml string, want ...string) {
	e.t.Helper()
	path := filepath.Join(e.dir, strings.ReplaceAll(what, " ", "-")+".yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		e.t.Fatal(err)
	}
	out, err := e.c.Kubectl(e.ctx, "apply", "-f", path)
	if err == nil {
		e.t.Errorf("%s: kubectl apply succeeded, want it refused:\n%s", what, out)
		return
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			e.t.Errorf("%s: kubectl apply refused it, but its message does not say %q:\n%v", what, w, err)
		}
	}
	e.t.Logf("%s: refused: %v", what, strings.TrimSpace(err.Error()))
}

// gatewayObject is a VpcNatGateway manifest.
func gatewayObject(name, vpc, subnet, lanIP, eipCIDR, rules string) string {
	return fmt.Sprintf(`apiVersion: kubeovn.io/v1
kind: VpcNatGateway
metadata: {name: %s}
spec:
  vpc: %s
  subnet: %s
  lanIp: %s
  eips: [{eipCIDR: %s, gateway: 192.168.0.254}]
%s`, name, vpc, subnet, lanIP, eipCIDR, rules)
}

// admissionRefusals: each cross-object conflict is refused by kubectl apply itself.
func (e *vpcEnv) admissionRefusals() {
	e.applyFile("tenant-x.yaml", `apiVersion: kubeovn.io/v1
kind: Vpc
metadata: {name: tenant-x}
---
apiVersion: kubeovn.io/v1
kind: Subnet
metadata: {name: sn-x}
spec: {vpc: tenant-x, cidrBlock: 10.0.9.0/24, gateway: 10.0.9.1}
`)
	e.applyRefused("eip of another gateway", gatewayObject("ngw-x", "tenant-x", "sn-x", "10.0.9.254", eipB+"/24", ""),
		"spec.eips[0].eipCIDR", gwB)
	e.applyRefused("second gateway of a vpc", gatewayObject("ngw-b2", tenantB, subnetB, "10.0.1.253", "192.168.0.134/24", ""),
		"spec.vpc", gwB)
	e.applyRefused("subnet of another vpc", gatewayObject("ngw-x", "tenant-x", subnetB, "10.0.1.253", "192.168.0.134/24", ""),
		"spec.subnet", tenantB)
	e.applyRefused("dnat on an eip not held", gatewayObject(gwB, tenantB, subnetB, "10.0.1.254", eipB+"/24",
		`  dnatRules: [{eip: 192.168.0.199, externalPort: "80", protocol: tcp, internalIp: 10.0.1.5, internalPort: "80"}]
`), "spec.dnatRules[0].eip", "192.168.0.199")
	e.applyRefused("subnet on another vpc's segment", tenantCSubnetYAML, "natGatewayAttachment.bridge", tenantBBridge, subnetB)
	e.kubectl("delete", "subnet", "sn-x")
	e.kubectl("delete", "vpc", "tenant-x", "tenant-c")
}

// segmentTakenPastAdmission: with the webhook gone (a cluster where it is off, or a race
// between two writers), a third tenant's Subnet on B's bridge is refused in status, and its
// gateway is never started.
func (e *vpcEnv) segmentTakenPastAdmission() {
	t := e.t
	hooks := e.kubectl("get", "validatingwebhookconfigurations", "-l", "app.kubernetes.io/part-of=vpcnat", "-o", "name")
	if strings.TrimSpace(hooks) == "" {
		t.Fatalf("no ValidatingWebhookConfiguration labelled app.kubernetes.io/part-of=vpcnat is installed")
	}
	e.kubectl(append([]string{"delete"}, strings.Fields(hooks)...)...)
	e.applyFile("tenant-c.yaml", tenantCYAML)
	pollWithin(e.ctx, t, waitLimit, "gateway ngw-c refused in status", func() (bool, error) {
		gw, err := e.kovn.VpcNatGateways.Get(e.ctx, "ngw-c", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		c := findCondition(gw.Status.Conditions, "Ready")
		return c != nil && c.Status == metav1.ConditionFalse && strings.Contains(c.Message, subnetB), nil
	})
	gw, _ := e.kovn.VpcNatGateways.Get(e.ctx, "ngw-c", metav1.GetOptions{})
	t.Logf("ngw-c past admission: Ready %+v", findCondition(gw.Status.Conditions, "Ready"))
	if c := findCondition(gw.Status.Conditions, "Ready"); !strings.Contains(c.Message, "natGatewayAttachment.bridge") || !strings.Contains(c.Message, tenantB) {
		t.Errorf("ngw-c's Ready message does not name the field and tenant B: %s", c.Message)
	}
	pollWithin(e.ctx, t, waitLimit, "Subnet sn-c's status names sn-b", func() (bool, error) {
		s, err := e.kovn.Subnets.Get(e.ctx, "sn-c", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		for _, c := range s.Status.Conditions {
			if c.Status == metav1.ConditionFalse && strings.Contains(c.Message, subnetB) {
				return true, nil
			}
		}
		return false, nil
	})
	if _, err := e.client.AppsV1().Deployments(plan.GatewayNamespace).Get(e.ctx, plan.DeploymentName("ngw-c"), metav1.GetOptions{}); !isNotFound(err) {
		t.Errorf("gateway ngw-c has a Deployment (err %v): it would join tenant B's segment", err)
	}
	e.kubectl("delete", "vpc-nat-gw", "ngw-c", "--wait=true")
	e.kubectl("delete", "subnet", "sn-c")
	e.kubectl("delete", "vpc", "tenant-c")
	// The webhook back as installed (deploy/, without a CA bundle); the controller puts its CA
	// bundle in again.
	docs, err := loadManifests(filepath.Join(e.c.Repo, "deploy", "controller"))
	if err != nil {
		t.Fatal(err)
	}
	var hookDocs []*unstructured.Unstructured
	for _, d := range docs {
		if d.GetKind() == "ValidatingWebhookConfiguration" {
			hookDocs = append(hookDocs, d)
		}
	}
	if len(hookDocs) == 0 {
		t.Fatal("deploy/controller has no ValidatingWebhookConfiguration")
	}
	e.kubectlApply("webhooks.yaml", hookDocs)
	e.waitWebhookCABundle()
	pollWithin(e.ctx, t, waitLimit, "the webhook refuses again", func() (bool, error) {
		path := filepath.Join(e.dir, "tenant-c-again.yaml")
		if err := os.WriteFile(path, []byte(tenantCSubnetYAML), 0o644); err != nil {
			return false, err
		}
		out, err := e.c.Kubectl(e.ctx, "apply", "--dry-run=server", "-f", path)
		if err == nil {
			t.Logf("admitted while the webhook comes back: %s", strings.TrimSpace(out))
		}
		return err != nil && strings.Contains(err.Error(), "natGatewayAttachment.bridge"), nil
	})
}

// eipHeldByForeignHost: an EIP that a foreign host on the external network already holds is
// not claimed (not on net1, never announced or answered for), and the gateway says so; once
// the foreign host is gone, the gateway takes it.
func (e *vpcEnv) eipHeldByForeignHost() {
	t := e.t
	squatMAC, err := e.net.MAC(roleSquat, "eth0")
	if err != nil {
		t.Fatal(err)
	}
	g := e.gatewayOf(gwB)
	net1MAC := macOf(g.macs, "net1")
	heard := e.captureARP(topo.Client)
	answered := e.captureARP(roleSquat)
	e.kubectl("patch", "vpc-nat-gw", gwB, "--type=json", "-p",
		`[{"op":"add","path":"/spec/eips/-","value":{"eipCIDR":"`+eipSquatted+`/24","gateway":"192.168.0.254"}}]`)
	cond := e.waitCondition(gwB, "AddressConflict", metav1.ConditionTrue, eipSquatted)
	t.Logf("EIP held by a foreign host: %s", cond.Message)
	for _, w := range []string{"net1", squatMAC} {
		if !strings.Contains(cond.Message, w) {
			t.Errorf("AddressConflict does not name %q: %s", w, cond.Message)
		}
	}
	if gw, err := e.kovn.VpcNatGateways.Get(e.ctx, gwB, metav1.GetOptions{}); err == nil {
		if c := findCondition(gw.Status.Conditions, "Ready"); c == nil || c.Status != metav1.ConditionFalse {
			t.Errorf("Ready of %s is %+v while an EIP is held by another host", gwB, c)
		}
	}
	if addrs := e.netnsAddrs(g.netns, "net1"); strings.Contains(addrs, eipSquatted+"/") {
		t.Errorf("net1 of %s holds %s, which a foreign host has: %s", gwB, eipSquatted, addrs)
	}
	time.Sleep(time.Second) // what an announcement's repeats would send
	for _, c := range []*topo.Capture{heard, answered} {
		for _, a := range c.ARPs() {
			if a.SenderMAC == net1MAC && a.SenderIP == netip.MustParseAddr(eipSquatted) {
				t.Errorf("%s's net1 (%s) claimed %s on the wire: %v", gwB, net1MAC, eipSquatted, a)
			}
		}
	}

	// The foreign host leaves: the gateway claims the EIP.
	if _, err := e.net.Exec(roleSquat, "ip", "link", "set", "eth0", "down"); err != nil {
		t.Fatal(err)
	}
	e.waitCondition(gwB, "AddressConflict", metav1.ConditionFalse, "")
	pollWithin(e.ctx, t, waitLimit, "net1 holds "+eipSquatted, func() (bool, error) {
		return strings.Contains(e.netnsAddrs(g.netns, "net1"), eipSquatted+"/"), nil
	})
	e.kubectl("patch", "vpc-nat-gw", gwB, "--type=json", "-p", `[{"op":"remove","path":"/spec/eips/1"}]`)
	e.waitGatewayApplied(gwB)
}

// subnetGatewayTaken: a foreign host comes up on B's segment with B's subnet gateway address
// and announces it a few times, a second apart, then leaves. The gateway defends its address
// and reports the conflict; after the host has left, B's host follows the gateway's
// announcement, without asking (its ARP entry would otherwise point at the gone host until it
// went stale).
func (e *vpcEnv) subnetGatewayTaken() {
	t := e.t
	g := e.gatewayOf(gwB)
	subnetIf := plan.SubnetIfName(subnetB)
	gwMAC := macOf(g.macs, subnetIf)
	intrMAC, err := e.net.MAC(roleIntruder, "eth0")
	if err != nil {
		t.Fatal(err)
	}
	b1 := e.captureARP(roleB1)
	if _, err := e.net.Exec(roleIntruder, "ip", "addr", "add", "10.0.1.1/24", "dev", "eth0"); err != nil {
		t.Fatal(err)
	}
	gatewayIP := netip.MustParseAddr("10.0.1.1")
	// Before the first announcement is sent: the gateway may answer it before Send returns.
	firstClaim := time.Now()
	for i := 0; i < 4; i++ {
		if err := e.net.SendGratuitousARP(roleIntruder, "eth0", "10.0.1.1"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
	}
	cond := e.waitCondition(gwB, "AddressConflict", metav1.ConditionTrue, "10.0.1.1")
	t.Logf("subnet gateway address taken: %s", cond.Message)
	for _, w := range []string{subnetIf, intrMAC} {
		if !strings.Contains(cond.Message, w) {
			t.Errorf("AddressConflict does not name %q: %s", w, cond.Message)
		}
	}
	defended := false
	for _, a := range b1.ARPs() {
		defended = defended || (a.At.After(firstClaim) && a.SenderMAC == gwMAC && a.SenderIP == gatewayIP && a.Gratuitous())
	}
	if !defended {
		t.Errorf("%s did not defend 10.0.1.1: no announcement from %s after the foreign host's (from %s); b1 saw:\n%s",
			gwB, gwMAC, firstClaim.Format("15:04:05.000"), arpLines(b1.ARPs()))
	}

	// The foreign host leaves.
	if _, err := e.net.Exec(roleIntruder, "ip", "link", "set", "eth0", "down"); err != nil {
		t.Fatal(err)
	}
	left := time.Now()
	b1ns := e.net.Name(roleB1)
	back := pollWithin(e.ctx, t, waitLimit, "b1's ARP entry for 10.0.1.1 back on the gateway", func() (bool, error) {
		return neighbourMAC(e, b1ns, "10.0.1.1") == gwMAC, nil
	})
	e.times.add("foreign host left -> tenant host back on the gateway", back.Sub(left))
	t.Logf("the foreign host left; b1 back on the gateway's MAC after %v", back.Sub(left))
	b1MAC, _ := e.net.MAC(roleB1, "eth0")
	for _, a := range b1.ARPs() {
		if a.At.After(left) && a.At.Before(back) && a.SenderMAC == b1MAC && a.TargetIP == gatewayIP {
			t.Errorf("b1 had to ask for 10.0.1.1 (%v): the gateway did not announce itself when the conflict ended", a)
		}
	}
	e.waitCondition(gwB, "AddressConflict", metav1.ConditionFalse, "")
	if probe := e.probeOnce("tenant B snat", roleB1, topo.InetIP+":8081", eipB); probe != "" {
		t.Errorf("tenant B's SNAT after the foreign host left: %s", probe)
	}
}

func arpLines(arps []topo.ARP) string {
	var b strings.Builder
	for _, a := range arps {
		b.WriteString("  " + a.String() + "\n")
	}
	return b.String()
}

// startProbe starts a loss probe whose answers must see source seen, and waits for its first
// answer.
func (e *vpcEnv) startProbe(name, from, to, seen string) *topo.LossProbe {
	t := e.t
	p, err := e.net.StartLossProbe(name, from, to, probeEvery)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop(0) })
	pollWithin(e.ctx, t, waitLimit, name+": first answer", func() (bool, error) { return p.Count().Received > 0, nil })
	if c := p.Count(); c.LastSeen != seen {
		t.Errorf("%v: want the server to see %s", c, seen)
	}
	return p
}

// expectNoLoss stops a probe and fails the test for any datagram lost.
func (e *vpcEnv) expectNoLoss(p *topo.LossProbe) {
	c := p.Stop(500 * time.Millisecond)
	e.t.Logf("%v", c)
	if c.Lost() != 0 || c.Sent == 0 {
		e.t.Errorf("%v: want every datagram answered", c)
	}
}

func (e *vpcEnv) probeOnce(name, from, to, seen string) string {
	return probe(e.net, flow{name: name, from: from, proto: "udp", to: to, wantAt: to, wantSeen: seen}, 2*time.Second)
}

// captureARP captures the ARP frames a test host sees on its eth0 until the test ends.
func (e *vpcEnv) captureARP(role string) *topo.Capture {
	c, err := e.net.StartCapture(role, "eth0", unix.ETH_P_ARP)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(c.Close)
	return c
}

// gatewayFootprint is what a gateway's objects look like to the API: its Deployment's
// resourceVersion and its pod's desired annotation.
func (e *vpcEnv) gatewayFootprint(name string) (deployRV, desired string) {
	d, err := e.client.AppsV1().Deployments(plan.GatewayNamespace).Get(e.ctx, plan.DeploymentName(name), metav1.GetOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	pod, err := e.gatewayPodNamed(name)
	if err != nil || pod == nil {
		e.t.Fatalf("gateway %s pod: %v", name, err)
	}
	return d.ResourceVersion, pod.Annotations["vpcnat.kubeovn.io/desired"]
}

func (e *vpcEnv) expectUntouched(name, deployRV, desired string) {
	rv, d := e.gatewayFootprint(name)
	if rv != deployRV {
		e.t.Errorf("gateway %s's Deployment changed (resourceVersion %s -> %s)", name, deployRV, rv)
	}
	if d != desired {
		e.t.Errorf("gateway %s's desired annotation changed", name)
	}
}

// waitGatewayApplied waits until a gateway's status reports its generation applied.
func (e *vpcEnv) waitGatewayApplied(name string) *v1.VpcNatGateway {
	var gw *v1.VpcNatGateway
	pollWithin(e.ctx, e.t, waitLimit, name+" applied", func() (bool, error) {
		var err error
		if gw, err = e.kovn.VpcNatGateways.Get(e.ctx, name, metav1.GetOptions{}); err != nil {
			return false, err
		}
		ok, _ := appliedGeneration(gw)
		return ok, nil
	})
	return gw
}

// waitCondition waits for a gateway condition of status whose message holds with.
func (e *vpcEnv) waitCondition(name, typ string, status metav1.ConditionStatus, with string) metav1.Condition {
	var got metav1.Condition
	pollWithin(e.ctx, e.t, waitLimit, fmt.Sprintf("%s: %s=%s %q", name, typ, status, with), func() (bool, error) {
		gw, err := e.kovn.VpcNatGateways.Get(e.ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		c := findCondition(gw.Status.Conditions, typ)
		if c == nil {
			return status == metav1.ConditionFalse && with == "", nil
		}
		got = *c
		return c.Status == status && strings.Contains(c.Message, with), nil
	})
	return got
}

// netnsAddrs lists the IPv4 addresses of a link in a gateway netns.
func (e *vpcEnv) netnsAddrs(netnsPath, dev string) string {
	out, err := exec.CommandContext(e.ctx, "ip", "-n", netnsName(netnsPath), "-4", "-o", "addr", "show", "dev", dev).Output()
	if err != nil {
		return err.Error()
	}
	return string(out)
}
