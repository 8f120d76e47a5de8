package e2e

// Established TCP flows through a replicated gateway's failover: each flow is one long-lived
// connection through one kind of NAT, on which the client sends a numbered line every
// flowInterval and the server echoes every line back. A flow survives a failover when, after
// it, the connection still carries data both ways (every line sent is echoed, the last ones
// after the takeover), with no reset and no line lost, reordered or corrupted on the way.
//
// Address plan (beside failover_test.go's): a FIP host 10.0.1.5/24 (the seed's FIP
// 192.168.0.111 -> 10.0.1.5) on the tenant L2, default route via the lanIp; a TCP port forward
// 192.168.0.112:9100 -> 10.0.1.10:9100 added to the seed's gateway; TCP echo servers on the
// target 10.0.1.10:9100, the FIP host 10.0.1.5:9200 and the client 192.168.0.10:9201 (FIP
// outbound) and :9202 (SNAT).

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vpcnat/vpcnat/pkg/plan"
	"github.com/vpcnat/vpcnat/pkg/state"
	"github.com/vpcnat/vpcnat/test/topo"
)

const (
	flowInterval = 10 * time.Millisecond
	foFIPHostIP  = "10.0.1.5" // examples/seed.yaml's FIP target
	foFIP        = "192.168.0.111"
	foTCPPort    = "9100" // the TCP port forward on foEIP
)

// flowSpec is one flow: from a test host to an address, through one kind of NAT; wantSeen is
// the source address the server must see (the NAT's translation).
type flowSpec struct {
	name, from, to, server, listen, wantSeen string
}

// foFlows are the flows every failover case carries.
var foFlows = []flowSpec{
	{name: "DNAT", from: "cli", to: foEIP + ":" + foTCPPort, server: "srv", listen: blTarget + ":" + foTCPPort, wantSeen: "192.168.0.10"},
	{name: "FIP in", from: "cli", to: foFIP + ":9200", server: "fip", listen: foFIPHostIP + ":9200", wantSeen: "192.168.0.10"},
	{name: "FIP out", from: "fip", to: "192.168.0.10:9201", server: "cli", listen: "192.168.0.10:9201", wantSeen: foFIP},
	{name: "SNAT", from: "srv", to: "192.168.0.10:9202", server: "cli", listen: "192.168.0.10:9202", wantSeen: foEIP},
}

// buildFIPHost makes the seed's FIP target 10.0.1.5 on the tenant L2 (default via the lanIp),
// registered with the cluster so that its stop removes it.
func (f *failover) buildFIPHost() {
	t := f.t
	name, link := f.prefix+"-fip", f.prefix+"fip"
	if err := f.c.OwnNetns(name); err != nil {
		t.Fatal(err)
	}
	if err := f.c.OwnLink(link); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"netns", "add", name},
		{"link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", name},
		{"link", "set", link, "master", f.c.Env["TENANT_HOST_BRIDGE"], "up"},
		{"-n", name, "addr", "add", foFIPHostIP + "/24", "dev", "eth0"},
		{"-n", name, "link", "set", "eth0", "up"},
		{"-n", name, "link", "set", "lo", "up"},
		{"-n", name, "route", "add", "default", "via", "10.0.1.254"},
	} {
		if out, err := exec.CommandContext(f.ctx, "ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
}

// listenEcho serves TCP in a test host: every connection first gets a line "hello <remote
// ip:port>" that tells the client the source address the server saw, then every line it sends
// back.
func (f *failover) listenEcho(role, addr string) (*topo.TCPServer, error) {
	s, err := f.tp.ServeTCP(role, addr, func(c net.Conn) {
		w := bufio.NewWriter(c)
		if _, err := fmt.Fprintf(w, "hello %s\n", c.RemoteAddr()); err != nil || w.Flush() != nil {
			return
		}
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			if _, err := w.WriteString(line); err != nil {
				return
			}
			if r.Buffered() == 0 && w.Flush() != nil {
				return
			}
		}
	})
	if err != nil {
		return nil, fmt.Errorf("echo server: %w", err)
	}
	return s, nil
}

// tcpFlow is one running flow.
type tcpFlow struct {
	spec flowSpec
	conn net.Conn
	seen string // the source address the server saw

	stop     chan struct{}
	sendDone chan struct{}
	readDone chan struct{}
	stopOnce sync.Once

	mu        sync.Mutex
	sent      int
	echoed    int
	lastEcho  time.Time
	stall     time.Duration // the longest time without an echo
	stallFrom time.Time
	err       error // the first failure: reset, EOF, a wrong line
}

// flowLine is the line number seq of flow name: its number and a body derived from it, so a
// line that comes back changed is recognised.
func flowLine(name string, seq int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %08d ", strings.ReplaceAll(name, " ", "-"), seq)
	for i := range 24 {
		b.WriteByte("0123456789abcdefghijklmnopqrstuvwxyz"[(seq*7+i*13)%36])
	}
	b.WriteByte('\n')
	return b.String()
}

// startFlow opens the flow's connection, reads the server's hello, and starts sending.
func (f *failover) startFlow(spec flowSpec) (*tcpFlow, error) {
	fl := &tcpFlow{spec: spec, stop: make(chan struct{}), sendDone: make(chan struct{}), readDone: make(chan struct{})}
	if err := f.tp.Do(spec.from, func() error {
		d := net.Dialer{Timeout: 5 * time.Second}
		var err error
		fl.conn, err = d.DialContext(context.Background(), "tcp4", spec.to)
		return err
	}); err != nil {
		return nil, fmt.Errorf("flow %s: %s -> %s/tcp: %w", spec.name, spec.from, spec.to, err)
	}
	r := bufio.NewReader(fl.conn)
	_ = fl.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	hello, err := r.ReadString('\n')
	_ = fl.conn.SetReadDeadline(time.Time{})
	if err != nil {
		fl.conn.Close()
		return nil, fmt.Errorf("flow %s: %s -> %s/tcp: no hello: %w", spec.name, spec.from, spec.to, err)
	}
	fl.seen = strings.TrimSpace(strings.TrimPrefix(hello, "hello "))
	if host, _, err := net.SplitHostPort(fl.seen); err != nil || host != spec.wantSeen {
		fl.conn.Close()
		return nil, fmt.Errorf("flow %s: the server saw the source %q, want %s (the NAT's translation)", spec.name, fl.seen, spec.wantSeen)
	}
	fl.lastEcho = time.Now()
	go fl.send()
	go fl.read(r)
	return fl, nil
}

func (fl *tcpFlow) fail(err error) {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	if fl.err == nil {
		fl.err = err
	}
}

func (fl *tcpFlow) send() {
	defer close(fl.sendDone)
	tick := time.NewTicker(flowInterval)
	defer tick.Stop()
	for seq := 0; ; seq++ {
		select {
		case <-fl.stop:
			return
		case <-tick.C:
		}
		if _, err := fl.conn.Write([]byte(flowLine(fl.spec.name, seq))); err != nil {
			select {
			case <-fl.stop: // finish closed the connection under a blocked write
			default:
				fl.fail(fmt.Errorf("sending line %d: %w", seq, err))
			}
			return
		}
		fl.mu.Lock()
		fl.sent++
		fl.mu.Unlock()
	}
}

func (fl *tcpFlow) read(r *bufio.Reader) {
	defer close(fl.readDone)
	for seq := 0; ; seq++ {
		line, err := r.ReadString('\n')
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				fl.fail(fmt.Errorf("reading the echo of line %d: %w", seq, err))
			}
			return
		}
		if want := flowLine(fl.spec.name, seq); line != want {
			fl.fail(fmt.Errorf("echo %d is %q, want %q (lost, reordered or corrupted)", seq, line, want))
			return
		}
		now := time.Now()
		fl.mu.Lock()
		if d := now.Sub(fl.lastEcho); d > fl.stall {
			fl.stall, fl.stallFrom = d, fl.lastEcho
		}
		fl.echoed++
		fl.lastEcho = now
		fl.mu.Unlock()
	}
}

// flowResult is what a flow did in one case.
type flowResult struct {
	name         string
	sent, echoed int
	stall        time.Duration // the longest time without an echo
	lastEcho     time.Time
	err          error
}

// survived: no failure, and every line sent was echoed (after the case: the connection carried
// data both ways after the failover).
func (r flowResult) survived() bool { return r.err == nil && r.sent > 0 && r.echoed == r.sent }

func (r flowResult) String() string {
	s := fmt.Sprintf("TCP %s: %d sent, %d echoed, longest stall %d ms", r.name, r.sent, r.echoed, r.stall.Milliseconds())
	switch {
	case r.err != nil:
		s += ", broken: " + r.err.Error()
	case !r.survived():
		s += fmt.Sprintf(", stalled: no echo since %s", r.lastEcho.Format("15:04:05.000"))
	}
	return s
}

// finish stops sending, gives the last lines settle to come back, closes the connection and
// returns the result. A write blocked on a stalled connection (its send buffer full) ends with
// the close.
func (fl *tcpFlow) finish(settle time.Duration) flowResult {
	fl.stopOnce.Do(func() {
		close(fl.stop)
		select {
		case <-fl.sendDone:
		case <-time.After(settle): // a write blocked on a stalled connection
		}
		deadline := time.Now().Add(settle)
		for time.Now().Before(deadline) {
			fl.mu.Lock()
			done := fl.err != nil || fl.echoed >= fl.sent
			fl.mu.Unlock()
			if done {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		_ = fl.conn.Close()
		<-fl.sendDone
		<-fl.readDone
	})
	fl.mu.Lock()
	defer fl.mu.Unlock()
	return flowResult{name: fl.spec.name, sent: fl.sent, echoed: fl.echoed, stall: fl.stall, lastEcho: fl.lastEcho, err: fl.err}
}

// flowsMoving waits (up to limit) until every flow has echoed a line after since, or one
// failed; it returns why not.
func flowsMoving(flows []*tcpFlow, since time.Time, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		var why []string
		for _, fl := range flows {
			fl.mu.Lock()
			switch {
			case fl.err != nil:
				why = append(why, fl.spec.name+": "+fl.err.Error())
			case !fl.lastEcho.After(since):
				why = append(why, fl.spec.name+": no echo since "+since.Format("15:04:05.000"))
			}
			failed := fl.err != nil
			fl.mu.Unlock()
			if failed {
				return errors.New(strings.Join(why, "; "))
			}
		}
		if len(why) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New(strings.Join(why, "; "))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// tcpFlowCheck is how the TCP flows are checked, from VPCNAT_HA_TCP_FLOWS:
//
//   - "strict" (the default): a broken flow fails the test, and mid-stream conntrack pickup is
//     off on the replicas (net.netfilter.nf_conntrack_tcp_loose=0), so only the conntrack state
//     the old active replica handed over (pkg/ctsync) can carry a flow: the check of conntrack
//     replication.
//   - "pickup": a broken flow fails the test, with the kernel's default pickup (loose=1), as on
//     a node nobody tuned. A replica that takes over would then create an entry for a packet
//     of a flow it has never seen and translate it by the gateway's rules again: that carries
//     a DNAT or FIP flow even without replication, and an SNAT flow only when its first packet
//     after the takeover comes from inside.
//   - "report": the flows run and every broken one is logged, marked NOT ASSERTED; the test
//     does not fail for it (for a gateway image without conntrack replication).
func tcpFlowCheck() string {
	if v := os.Getenv("VPCNAT_HA_TCP_FLOWS"); v != "" {
		return v
	}
	return "strict"
}

// noPickup turns mid-stream conntrack pickup off in the network namespace of every live
// replica of the gateway (see tcpFlowCheck).
func (f *failover) noPickup() {
	replicas, err := f.replicas()
	if err != nil {
		f.t.Fatal(err)
	}
	for _, r := range replicas {
		if r.err != nil {
			f.t.Logf("replica %s: no attachment record (%v): pickup left on", r.pod.Name, r.err)
			continue
		}
		if out, err := exec.CommandContext(f.ctx, "nsenter", "--net="+r.netns, "sysctl", "-q", "-w",
			"net.netfilter.nf_conntrack_tcp_loose=0").CombinedOutput(); err != nil {
			f.t.Fatalf("replica %s: turning conntrack pickup off in %s: %v: %s", r.pod.Name, r.netns, err, out)
		}
	}
}

// replica is a running gateway replica and its network namespace, from the attachment record its
// node's CNI plugin wrote (err when there is none yet).
type replica struct {
	pod   corev1.Pod
	netns string
	err   error
}

// replicas are the gateway's pods bound to a node and not being deleted.
func (f *failover) replicas() ([]replica, error) {
	pods, err := f.client.CoreV1().Pods("kube-system").List(f.ctx, metav1.ListOptions{LabelSelector: plan.LabelGateway + "=" + blGateway})
	if err != nil {
		return nil, err
	}
	var out []replica
	for _, p := range pods.Items {
		if p.DeletionTimestamp != nil || p.Spec.NodeName == "" {
			continue
		}
		n := f.nodeIndex(p.Spec.NodeName)
		store := state.Store{Dir: filepath.Join(f.c.Env["STATE_DIR"], fmt.Sprintf("node%d", n), "vpcnat")}
		r := replica{pod: p}
		if rec, err := store.Read(string(p.UID)); err != nil {
			r.err = err
		} else {
			r.netns = rec.Netns
		}
		out = append(out, r)
	}
	return out, nil
}
