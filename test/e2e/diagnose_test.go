package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	"github.com/vpcnat/vpcnat/pkg/plan"
	"github.com/vpcnat/vpcnat/pkg/state"
	"github.com/vpcnat/vpcnat/test/topo"
)

// diagnoseStep records what a failed step of TestVpcNat left, before the next step changes it:
// every pod of the gateway (phase, node, desired generation, applied annotation), the attachment
// records, each recorded netns' kernel state (iptables-save, addresses, rules, routes), the
// gateway's status, the test hosts' ARP caches and the daemon's log. It all goes to
// LOG_DIR/e2e-failed-<step>.txt (kept after stop.sh) with the Events; the test log gets all but
// the Events and the start of the daemon's log.
func (e *vpcEnv) diagnoseStep(t *testing.T, step string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var full, short strings.Builder
	both := func(format string, args ...any) {
		fmt.Fprintf(&full, format, args...)
		fmt.Fprintf(&short, format, args...)
	}
	both("=== step %s failed at %s (%.1fs into the test)\n", step, time.Now().UTC().Format(time.RFC3339Nano), time.Since(e.began).Seconds())

	pods, err := e.client.CoreV1().Pods(plan.GatewayNamespace).List(ctx, metav1.ListOptions{LabelSelector: plan.LabelGateway + "=" + gwName})
	if err != nil {
		both("listing the gateway's pods: %v\n", err)
	} else {
		both("gateway pods: %d\n", len(pods.Items))
		for _, p := range pods.Items {
			gen := "none"
			if raw, ok := p.Annotations[annotations.DesiredKey]; ok {
				if d, err := annotations.ParseDesired(raw); err != nil {
					gen = "unparsable: " + err.Error()
				} else {
					gen = fmt.Sprint(d.Generation)
				}
			}
			applied, ok := p.Annotations[annotations.AppliedKey]
			if !ok {
				applied = "none"
			}
			both("  %s uid %s created %s node %q phase %s deleting %v: desired generation %s; applied %s\n",
				p.Name, p.UID, p.CreationTimestamp.UTC().Format(time.RFC3339), p.Spec.NodeName, p.Status.Phase,
				p.DeletionTimestamp != nil, gen, applied)
		}
	}
	if gw, err := e.gatewayCR(); err != nil {
		both("VpcNatGateway: %v\n", err)
	} else {
		_, why := appliedGeneration(gw)
		both("VpcNatGateway generation %d, status observes %d: %s\n", gw.Generation, gw.Status.ObservedGeneration, why)
	}

	recs, errs := state.Store{Dir: state.DefaultDir}.List()
	both("attachment records: %d (unreadable: %v)\n", len(recs), errs)
	for _, r := range recs {
		both("  pod %s/%s uid %s gateway %s sandbox %.12s netns %s\n", r.Namespace, r.Name, r.PodUID, r.Gateway, r.ContainerID, r.Netns)
		ks, err := kernelState(ctx, r.Netns)
		if err != nil {
			ks = err.Error()
		}
		both("--- kernel state of %s (iptables-save, addresses, rules, routes):\n%s\n", r.Netns, ks)
	}
	if e.net != nil {
		// Which MAC each test host would send to: a wrong or FAILED entry for an EIP, the
		// subnet gateway or a VPC host explains a flow that does not come back.
		for _, role := range []string{topo.Client, topo.Router, topo.Pod1, topo.Pod2, topo.Pod3} {
			both("ARP cache of %s: %s\n", role, neighbours(ctx, e.net.Name(role)))
		}
	}

	daemonLog, err := e.c.Kubectl(ctx, "-n", "kube-system", "logs", "-l", daemonLabel, "--timestamps", "--tail=-1")
	if err != nil {
		daemonLog += "\n" + err.Error()
	}
	fmt.Fprintf(&full, "--- daemon log:\n%s\n", daemonLog)
	lines := strings.Split(strings.TrimRight(daemonLog, "\n"), "\n")
	if len(lines) > 80 {
		lines = lines[len(lines)-80:]
	}
	fmt.Fprintf(&short, "--- daemon log (last %d lines):\n%s\n", len(lines), strings.Join(lines, "\n"))
	events, _ := e.c.Kubectl(ctx, "get", "events", "-A", "--sort-by=.lastTimestamp")
	fmt.Fprintf(&full, "--- events:\n%s\n", events)

	path := filepath.Join(e.c.Env["LOG_DIR"], "e2e-failed-"+step+".txt")
	if err := os.WriteFile(path, []byte(full.String()), 0o644); err != nil {
		t.Logf("writing %s: %v", path, err)
	}
	t.Logf("%s(everything, kernel states included: %s)", short.String(), path)
}
