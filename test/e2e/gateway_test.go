package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	v1 "github.com/vpcnat/vpcnat/pkg/apis/kubeovn/v1"
	"github.com/vpcnat/vpcnat/pkg/plan"
	"github.com/vpcnat/vpcnat/pkg/state"
)

// gatewayPod is the seed gateway's running pod (not terminating), or nil.
func (e *vpcEnv) gatewayPod() (*corev1.Pod, error) { return e.gatewayPodNamed(gwName) }

// gatewayPodNamed is a gateway's running pod (not terminating), or nil.
func (e *vpcEnv) gatewayPodNamed(gwName string) (*corev1.Pod, error) {
	pods, err := e.client.CoreV1().Pods(plan.GatewayNamespace).List(e.ctx, metav1.ListOptions{
		LabelSelector: plan.LabelGateway + "=" + gwName})
	if err != nil {
		return nil, err
	}
	var running []corev1.Pod
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning {
			running = append(running, p)
		}
	}
	switch len(running) {
	case 0:
		return nil, nil
	case 1:
		return &running[0], nil
	}
	return nil, fmt.Errorf("%d running pods of gateway %s (Recreate allows one)", len(running), gwName)
}

// gatewayState is what identifies one incarnation of the gateway pod: a restart of its
// container, a new pod or a new sandbox changes it.
type gatewayState struct {
	uid, name, containerID, netns string
	hostLinks                     string // the plugin's node-side links, comma-separated
	macs                          string // "ifname=MAC ..." of the plugin's interfaces in the pod
	restarts                      int32
	image                         string
}

func (g gatewayState) String() string {
	return fmt.Sprintf("pod %s (uid %s, sandbox %.12s, netns %s, %d restarts, image %s)",
		g.name, g.uid, g.containerID, g.netns, g.restarts, g.image)
}

// gateway reads the running seed gateway pod and its attachment record; it fails when either
// is missing.
func (e *vpcEnv) gateway() gatewayState { return e.gatewayOf(gwName) }

// gatewayOf reads a gateway's running pod and attachment record; it fails when either is
// missing. The MACs of its links, on both sides, join those the IPv6 capture judges.
func (e *vpcEnv) gatewayOf(gwName string) gatewayState {
	e.t.Helper()
	pod, err := e.gatewayPodNamed(gwName)
	if err != nil || pod == nil {
		e.t.Fatalf("gateway %s pod: %v (found: %v)", gwName, err, pod != nil)
	}
	rec, err := state.Store{Dir: state.DefaultDir}.Read(string(pod.UID))
	if err != nil {
		e.t.Fatalf("attachment record of gateway pod %s: %v", pod.Name, err)
	}
	g := gatewayState{uid: string(pod.UID), name: pod.Name, containerID: rec.ContainerID, netns: rec.Netns,
		hostLinks: strings.Join(rec.HostIfNames, ","), macs: interfaceMACs(e.ctx, rec.Netns, rec.IfNames)}
	e.noteGatewayMACs(gwName, g.macs, rec.HostIfNames)
	for _, cs := range pod.Status.ContainerStatuses {
		g.restarts += cs.RestartCount
	}
	if len(pod.Spec.Containers) == 1 {
		g.image = pod.Spec.Containers[0].Image
	}
	return g
}

// interfaceMACs reads the MACs of ifnames in the netns at path: "ifname=MAC ...".
func interfaceMACs(ctx context.Context, path string, ifnames []string) string {
	var out []string
	for _, ifn := range ifnames {
		b, err := exec.CommandContext(ctx, "ip", "-n", netnsName(path), "-o", "link", "show", "dev", ifn).Output()
		mac := "?"
		if fs := strings.Fields(string(b)); err == nil {
			if i := slices.Index(fs, "link/ether"); i >= 0 && i+1 < len(fs) {
				mac = fs[i+1]
			}
		}
		out = append(out, ifn+"="+mac)
	}
	return strings.Join(out, " ")
}

// neighbours is a test host's ARP cache (ip neigh), on one line.
func neighbours(ctx context.Context, ns string) string {
	b, err := exec.CommandContext(ctx, "ip", "-n", ns, "-4", "neigh", "show").Output()
	if err != nil {
		return err.Error()
	}
	return strings.Join(strings.Split(strings.TrimSpace(string(b)), "\n"), "; ")
}

// gatewayNoFail is gateway for clean-ups: nil when the record cannot be read.
func (e *vpcEnv) gatewayNoFail(pod *corev1.Pod) *gatewayState {
	rec, err := state.Store{Dir: state.DefaultDir}.Read(string(pod.UID))
	if err != nil {
		return nil
	}
	return &gatewayState{uid: string(pod.UID), name: pod.Name, containerID: rec.ContainerID, netns: rec.Netns,
		hostLinks: strings.Join(rec.HostIfNames, ",")}
}

// sameGateway fails the test unless the gateway is still the incarnation was.
func (e *vpcEnv) sameGateway(was gatewayState, after string) {
	e.t.Helper()
	if now := e.gateway(); now != was {
		e.t.Errorf("after %s the gateway is %v, was %v: it was restarted or recreated", after, now, was)
	}
}

// gatewayCR reads the VpcNatGateway.
func (e *vpcEnv) gatewayCR() (*v1.VpcNatGateway, error) {
	return e.kovn.VpcNatGateways.Get(e.ctx, gwName, metav1.GetOptions{})
}

// appliedGeneration says whether the gateway's status reports its current generation ready
// and every rule applied, and if not, why.
func appliedGeneration(gw *v1.VpcNatGateway) (bool, string) {
	if gw.Status.ObservedGeneration != gw.Generation {
		return false, fmt.Sprintf("status observes generation %d of %d", gw.Status.ObservedGeneration, gw.Generation)
	}
	for _, ct := range []string{"Ready", "Applied"} {
		c := findCondition(gw.Status.Conditions, ct)
		if c == nil || c.Status != metav1.ConditionTrue || c.ObservedGeneration != gw.Generation {
			return false, fmt.Sprintf("condition %s: %+v", ct, c)
		}
	}
	for _, r := range gw.Status.Rules {
		if r.State != "Applied" {
			return false, fmt.Sprintf("rule %s %s: %s %s", r.Kind, r.Key, r.State, r.Error)
		}
	}
	return true, ""
}

func findCondition(cs []metav1.Condition, t string) *metav1.Condition {
	for i := range cs {
		if cs[i].Type == t {
			return &cs[i]
		}
	}
	return nil
}

// ruleKeys lists the status's rules as "kind key", sorted.
func ruleKeys(gw *v1.VpcNatGateway) []string {
	var keys []string
	for _, r := range gw.Status.Rules {
		keys = append(keys, r.Kind+" "+r.Key)
	}
	slices.Sort(keys)
	return keys
}

// waitApplied waits until the status reports the current generation applied, and checks that
// the rules it lists are exactly want ("kind key").
func (e *vpcEnv) waitApplied(what string, want []string) *v1.VpcNatGateway {
	e.t.Helper()
	var gw *v1.VpcNatGateway
	var why string
	deadline := time.Now().Add(30 * time.Second)
	for {
		var err error
		gw, err = e.gatewayCR()
		var ok bool
		if err != nil {
			why = err.Error()
		} else if ok, why = appliedGeneration(gw); ok {
			break
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%s: the gateway's status does not report its generation applied: %s", what, why)
		}
		time.Sleep(50 * time.Millisecond)
	}
	slices.Sort(want)
	if got := ruleKeys(gw); !slices.Equal(got, want) {
		e.t.Errorf("%s: status lists rules %q, want %q", what, got, want)
	}
	return gw
}

// netnsName is the ip-netns name of a sandbox's netns path (/var/run/netns/cni-...).
func netnsName(path string) string { return filepath.Base(path) }

// nftCounters are an nft listing's packet counters (of iptables-nft's tables; vpcnat's table has
// none).
var nftCounters = regexp.MustCompile(`counter packets \d+ bytes \d+`)

// kernelState is what the daemon owns in a gateway's netns, as text: every table of
// iptables-save (without counters and the dated header), the nftables ruleset (the nftables
// backend's table; counters left out), addresses, ip rules and all routing tables. Two equal
// states mean no rule changed.
func kernelState(ctx context.Context, netnsPath string) (string, error) {
	ns := netnsName(netnsPath)
	var out strings.Builder
	for _, argv := range [][]string{
		{"ip", "netns", "exec", ns, "iptables-save"},
		{"ip", "netns", "exec", ns, "nft", "list", "ruleset"},
		{"ip", "-n", ns, "-o", "addr", "show"},
		{"ip", "-n", ns, "rule", "show"},
		{"ip", "-n", ns, "route", "show", "table", "all"},
	} {
		b, err := exec.CommandContext(ctx, argv[0], argv[1:]...).Output()
		if err != nil {
			return "", fmt.Errorf("%s: %w", strings.Join(argv, " "), err)
		}
		fmt.Fprintf(&out, "### %s\n", strings.Join(argv[3:], " "))
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "#") {
				continue
			}
			out.WriteString(nftCounters.ReplaceAllString(counters.ReplaceAllString(l, ""), "counter") + "\n")
		}
	}
	return out.String(), nil
}

// daemonMetrics reads the daemon's /metrics (host network, deploy/daemonset's --metrics-addr)
// and returns the sum of each metric family's samples, by name (and name{label="value"} for
// the labelled ones).
func daemonMetrics(ctx context.Context) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/metrics", daemonMetricsPort), nil)
	if err != nil {
		return nil, err
	}
	resp, err := (&http.Client{Timeout: 2 * time.Second}).Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return nil, fmt.Errorf("GET /metrics: %s: %s", resp.Status, b)
	}
	m := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, "#") || !strings.HasPrefix(l, "vpcnat_daemon_") {
			continue
		}
		i := strings.LastIndexByte(l, ' ')
		v, err := strconv.ParseFloat(l[i+1:], 64)
		if i < 0 || err != nil {
			continue
		}
		series := l[:i]
		name, _, _ := strings.Cut(series, "{")
		m[name] += v
		if name != series {
			m[series] += v
		}
	}
	return m, sc.Err()
}

// records lists the attachment records on the node (pod UIDs).
func records() ([]string, error) {
	files, err := filepath.Glob(filepath.Join(state.DefaultDir, "*.json"))
	if err != nil {
		return nil, err
	}
	var uids []string
	for _, f := range files {
		uids = append(uids, strings.TrimSuffix(filepath.Base(f), ".json"))
	}
	return uids, nil
}

// exists says whether a path exists.
func exists(p string) bool {
	_, err := os.Lstat(p)
	return !errors.Is(err, os.ErrNotExist)
}

// isNotFound for client-go errors.
func isNotFound(err error) bool { return apierrors.IsNotFound(err) }

// annotationsOfGateway are the annotations that make a pod a gateway for the plugin and the
// daemon (an impostor copies them).
var annotationsOfGateway = []string{annotations.GatewayKey, annotations.NetworksKey, annotations.LogicalSwitchKey,
	annotations.IPAddressKey, annotations.NICsKey, annotations.DesiredKey}
