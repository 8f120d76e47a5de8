package ha_test

// Established TCP flows through a takeover, with and without conntrack replication. Addresses
// (besides failover_test.go's plan):
//
//	ext: fip 198.51.100.11      a floating IP of pod2, held by both replicas
//	ten: pod2 203.0.113.11      the FIP's internal host
//	     pod3 203.0.113.12      a second SNAT host (same source port as pod's SNAT flow)
//	     pod4 203.0.113.13      opens a new SNAT connection after the takeover

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vpcnat/vpcnat/pkg/ha"
	"github.com/vpcnat/vpcnat/test/topo"
)

const (
	fip         = "198.51.100.11"
	pod2IP      = "203.0.113.11"
	pod3IP      = "203.0.113.12"
	pod4IP      = "203.0.113.13"
	metricsAddr = "127.0.0.1:9641"
	// snatSrcPort: the source port of both SNAT flows (pod's and pod3's), so the second got
	// another external port from the active replica's kernel, and of the new connection after
	// the takeover.
	snatSrcPort = 41000
	// smallChunk: the interactive flows' bytes per round trip; bulkChunk: the bulk flow's, many
	// segments in flight each way, with window scaling (what a committed entry's window tracking
	// must accept without having seen the handshake).
	smallChunk = 256
	bulkChunk  = 128 << 10
	// flowLimit: hang guard for a flow's progress after the takeover (TCP retransmits lost
	// segments with an exponential backoff from 200 ms: 0.2, 0.6, 1.4, 3 s, ...).
	flowLimit = 20 * time.Second
)

// TestEstablishedFlowsSurviveFailover: TCP connections through a DNAT (one interactive, one
// bulk), a FIP (inbound and outbound) and an SNAT (two hosts, one source port) exchange data
// continuously while the
// active replica is lost; with conntrack replication every one of them goes on exchanging data
// after the takeover, its byte stream intact, no RST seen by any host; a new SNAT connection
// from a third host with the same source port gets an external port no old flow uses. The
// standby's agent restarts before the takeover, so its cache comes from the full dump alone.
func TestEstablishedFlowsSurviveFailover(t *testing.T) {
	fs := newFlowSet(t, nil)
	before := fs.establish()
	fs.waitReplicated(6)
	// The standby's agent restarts (its cache is gone): the stream it opens again starts with a
	// full dump, so a late standby is complete too.
	standby := other(fs.old)
	fs.rs.kill(standby)
	fs.rs.start(standby)
	fs.rs.waitFor(standby, func(r string) bool { return r == "standby" })
	fs.waitReplicated(6)
	fs.failover()
	fs.allProgress(flowLimit)
	if n := fs.rs.metric(fs.newActive, "vpcnat_keepalive_conntrack_committed_total", `result="created"`); n < 6 {
		t.Errorf("the new active replica committed %v entries, want at least the 6 flows'", n)
	}
	fs.noBrokenFlow()
	fs.noRST()

	// A new SNAT connection with an old flow's source port, from another host: the old flows'
	// external ports are taken on the new active replica.
	s, ext := fs.openFlow("new", "pod4", snatSrcPort, routerIP+":8001", fs.srvSNAT, 9, smallChunk)
	t.Logf("new SNAT connection %s:%d -> external port %d; old SNAT flows' external ports %v", pod4IP, snatSrcPort, ext, before)
	for _, p := range before {
		if ext == p {
			t.Errorf("the new SNAT connection from %s:%d got external port %d, which an established flow holds", pod4IP, snatSrcPort, ext)
		}
	}
	fs.flows = append(fs.flows, s)
	fs.allProgress(flowLimit)
	fs.noBrokenFlow()
	fs.noRST()
}

// TestEstablishedFlowsWithoutReplication: the same flows and takeover with the replication
// turned off (--conntrack-sync=false): the new active replica does not know the SNAT flows'
// mappings, and at least one of them breaks (reset, or no data within the hang guard). This is
// what the replication changes.
func TestEstablishedFlowsWithoutReplication(t *testing.T) {
	fs := newFlowSet(t, []string{"--conntrack-sync=false"})
	fs.establish()
	fs.failover()
	start := fs.progress()
	deadline := time.Now().Add(flowLimit)
	broken := map[string]string{}
	for time.Now().Before(deadline) && len(broken) < 2 {
		time.Sleep(200 * time.Millisecond)
		now := fs.progress()
		for _, f := range fs.flows {
			if !strings.HasPrefix(f.name, "snat") {
				continue
			}
			if err := f.error(); err != nil {
				broken[f.name] = err.Error()
			}
		}
		_ = now
	}
	end := fs.progress()
	for _, f := range fs.flows {
		if strings.HasPrefix(f.name, "snat") && end[f.name]-start[f.name] < 20 && broken[f.name] == "" {
			broken[f.name] = fmt.Sprintf("%d round trips in %v", end[f.name]-start[f.name], flowLimit)
		}
	}
	t.Logf("without replication: progress after the takeover %v (from %v); broken SNAT flows %v; RSTs %v", end, start, broken, fs.rsts())
	if len(broken) == 0 {
		t.Fatal("without conntrack replication both SNAT flows survived the takeover: the test does not show what replication changes")
	}
}

// flowSet is two replicas (failover_test.go), the extra hosts and rules, and the flows.
type flowSet struct {
	t         *testing.T
	rs        *replicaSet
	old       string
	newActive string
	flows     []*tcpFlow
	srvSNAT   *echoServer
	servers   []*echoServer
}

func newFlowSet(t *testing.T, args []string) *flowSet {
	args = append([]string{"--metrics-address", metricsAddr}, args...)
	rs := newReplicaSetWith(t, ha.DefaultTiming, args, "r1", "r2")
	fs := &flowSet{t: t, rs: rs}
	tp := rs.tp
	must := func(_ string, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for host, ip := range map[string]string{"pod2": pod2IP, "pod3": pod3IP, "pod4": pod4IP} {
		must("", tp.Host(host, "ten", "brt", "p-"+host, ip+"/24", subnetGW))
	}
	for _, r := range []string{"r1", "r2"} {
		for _, argv := range [][]string{
			{"ip", "addr", "add", fip + "/24", "dev", "net1"},
			{"iptables", "-t", "nat", "-I", "PREROUTING", "-d", fip, "-j", "DNAT", "--to-destination", pod2IP},
			{"iptables", "-t", "nat", "-I", "POSTROUTING", "-s", pod2IP, "-o", "net1", "-j", "SNAT", "--to-source", fip},
			// A port forward that changes the port: a flow's first packet after a takeover
			// that comes from the inside would otherwise leave with the wrong source port.
			{"iptables", "-t", "nat", "-A", "PREROUTING", "-d", eip, "-p", "tcp", "--dport", "5001", "-j", "DNAT", "--to-destination", podIP + ":7001"},
		} {
			must(tp.Exec(r, argv...))
		}
	}
	// Every end host counts the TCP resets it sends and receives.
	for _, h := range []string{"rtr", "pod", "pod2", "pod3", "pod4"} {
		for _, chain := range []string{"INPUT", "OUTPUT"} {
			must(tp.Exec(h, "iptables", "-A", chain, "-p", "tcp", "--tcp-flags", "RST", "RST"))
		}
	}
	fs.old = rs.active("r1", "r2")
	return fs
}

// establish opens the five flows and waits until each exchanges data; it returns the external
// ports of the two SNAT flows, as the outside server saw them.
func (fs *flowSet) establish() []int {
	t := fs.t
	srv := func(role, addr string) *echoServer {
		s := listenEcho(t, fs.rs.tp, role, addr)
		fs.servers = append(fs.servers, s)
		return s
	}
	dnat, fipIn := srv("pod", podIP+":7001"), srv("pod2", pod2IP+":7002")
	fipOut, snat := srv("rtr", routerIP+":8002"), srv("rtr", routerIP+":8001")
	fs.srvSNAT = snat
	var ports []int
	for _, c := range []struct {
		name, role string
		port       int
		to         string
		srv        *echoServer
		size       int
	}{
		{"dnat", "rtr", 0, eip + ":5001", dnat, smallChunk},
		{"dnat-bulk", "rtr", 0, eip + ":5001", dnat, bulkChunk},
		{"fip-in", "rtr", 0, fip + ":7002", fipIn, smallChunk},
		{"fip-out", "pod2", 0, routerIP + ":8002", fipOut, smallChunk},
		{"snat-pod", "pod", snatSrcPort, routerIP + ":8001", snat, smallChunk},
		{"snat-pod3", "pod3", snatSrcPort, routerIP + ":8001", snat, smallChunk},
	} {
		f, ext := fs.openFlow(c.name, c.role, c.port, c.to, c.srv, byte(len(fs.flows)+1), c.size)
		fs.flows = append(fs.flows, f)
		if c.srv == snat {
			ports = append(ports, ext)
		}
	}
	if ports[0] == ports[1] {
		t.Fatalf("both SNAT flows have external port %d", ports[0])
	}
	if fipOut.lastRemoteIP() != fip {
		t.Fatalf("the FIP host's outbound flow arrives from %s, want the FIP %s", fipOut.lastRemoteIP(), fip)
	}
	fs.allProgress(waitLimit)
	return ports
}

// openFlow dials to from role (from port, 0: any), starts its exchange loop, waits for its first
// round trip and returns it with the source port the server saw.
func (fs *flowSet) openFlow(name, role string, port int, to string, srv *echoServer, id byte, size int) (*tcpFlow, int) {
	t := fs.t
	n := srv.count()
	var c net.Conn
	err := fs.rs.tp.Do(role, func() error {
		d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{Port: port}}
		var err error
		c, err = d.Dial("tcp4", to)
		return err
	})
	if err != nil {
		t.Fatalf("flow %s: %s -> %s: %v", name, role, to, err)
	}
	f := &tcpFlow{name: name, id: id, size: size, conn: c, stop: make(chan struct{})}
	t.Cleanup(f.close)
	f.done.Add(1)
	go f.run()
	deadline := time.Now().Add(waitLimit)
	for f.rounds() == 0 || srv.count() == n {
		if err := f.error(); err != nil || time.Now().After(deadline) {
			t.Fatalf("flow %s: no round trip: %v", name, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	_, p, _ := net.SplitHostPort(srv.lastRemote())
	ext, _ := strconv.Atoi(p)
	return f, ext
}

// waitReplicated waits until the standby holds at least n conntrack entries.
func (fs *flowSet) waitReplicated(n float64) {
	standby := other(fs.old)
	deadline := time.Now().Add(waitLimit)
	for {
		got := fs.rs.metric(standby, "vpcnat_keepalive_conntrack_cache_entries", "")
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			fs.t.Fatalf("the standby %s holds %v conntrack entries after %v, want at least %v", standby, got, waitLimit, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// failover loses the active replica (agent SIGKILLed, NICs cut from both segments) and waits
// for the standby to take over.
func (fs *flowSet) failover() {
	fs.rs.kill(fs.old)
	for _, p := range []struct{ ns, dev string }{{"ext", "x-" + fs.old}, {"ten", "t-" + fs.old}} {
		if _, err := fs.rs.tp.Exec(p.ns, "ip", "link", "set", p.dev, "down"); err != nil {
			fs.t.Fatal(err)
		}
	}
	fs.newActive = other(fs.old)
	fs.rs.waitFor(fs.newActive, func(r string) bool { return r == "active" })
}

func (fs *flowSet) progress() map[string]int {
	out := map[string]int{}
	for _, f := range fs.flows {
		out[f.name] = f.rounds()
	}
	return out
}

// allProgress waits until every flow made 20 more round trips, within limit.
func (fs *flowSet) allProgress(limit time.Duration) {
	fs.t.Helper()
	start := fs.progress()
	deadline := time.Now().Add(limit)
	for {
		now, behind := fs.progress(), []string{}
		for _, f := range fs.flows {
			if err := f.error(); err != nil {
				fs.t.Fatalf("flow %s broke: %v (progress %v)", f.name, err, now)
			}
			if now[f.name]-start[f.name] < 20 {
				behind = append(behind, f.name)
			}
		}
		if len(behind) == 0 {
			return
		}
		if time.Now().After(deadline) {
			fs.t.Fatalf("flows %v made fewer than 20 round trips in %v (from %v to %v)", behind, limit, start, now)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (fs *flowSet) noBrokenFlow() {
	fs.t.Helper()
	for _, s := range fs.servers {
		if err := s.error(); err != nil {
			fs.t.Errorf("server %s: %v", s.addr, err)
		}
	}
	for _, f := range fs.flows {
		if err := f.error(); err != nil {
			fs.t.Errorf("flow %s: %v", f.name, err)
		}
	}
}

// rsts counts the TCP resets each end host sent and received.
func (fs *flowSet) rsts() map[string]int {
	out := map[string]int{}
	for _, h := range []string{"rtr", "pod", "pod2", "pod3", "pod4"} {
		for _, chain := range []string{"INPUT", "OUTPUT"} {
			o, err := fs.rs.tp.Exec(h, "iptables", "-nvxL", chain)
			if err != nil {
				fs.t.Fatal(err)
			}
			for _, l := range strings.Split(o, "\n") {
				if fields := strings.Fields(l); len(fields) > 2 && strings.Contains(l, "flags:0x04/0x04") {
					n, _ := strconv.Atoi(fields[0])
					out[h+"/"+chain] += n
				}
			}
		}
	}
	return out
}

func (fs *flowSet) noRST() {
	fs.t.Helper()
	for k, n := range fs.rsts() {
		if n > 0 {
			fs.t.Errorf("%s: %d TCP resets", k, n)
		}
	}
}

// tcpFlow writes a byte pattern of its own (id) continuously and checks the echo.
type tcpFlow struct {
	name string
	id   byte
	size int // bytes per round trip
	conn net.Conn
	stop chan struct{}
	once sync.Once
	mu   sync.Mutex
	n    int
	err  error
	done sync.WaitGroup
}

// pattern fills b with the bytes at offset off of flow id's stream.
func pattern(b []byte, id byte, off int) {
	for i := range b {
		o := off + i
		b[i] = byte(o%251) ^ id ^ byte(o/251)
	}
}

func (f *tcpFlow) run() {
	defer f.done.Done()
	if _, err := f.conn.Write([]byte{f.id}); err != nil {
		f.fail(err)
		return
	}
	out, in := make([]byte, f.size), make([]byte, f.size)
	for off := 0; ; off += len(out) {
		select {
		case <-f.stop:
			return
		default:
		}
		pattern(out, f.id, off)
		_ = f.conn.SetDeadline(time.Now().Add(2 * flowLimit)) // hang guard
		if _, err := f.conn.Write(out); err != nil {
			f.fail(err)
			return
		}
		if _, err := io.ReadFull(f.conn, in); err != nil {
			f.fail(err)
			return
		}
		if !bytes.Equal(in, out) {
			f.fail(fmt.Errorf("echo at offset %d differs: the byte stream is not intact", off))
			return
		}
		f.mu.Lock()
		f.n++
		f.mu.Unlock()
		time.Sleep(5 * time.Millisecond)
	}
}

func (f *tcpFlow) fail(err error) {
	select {
	case <-f.stop:
		return
	default:
	}
	f.mu.Lock()
	f.err = err
	f.mu.Unlock()
}

func (f *tcpFlow) rounds() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n
}

func (f *tcpFlow) error() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

func (f *tcpFlow) close() {
	f.once.Do(func() { close(f.stop) })
	f.conn.Close()
	f.done.Wait()
}

// echoServer echoes every connection's bytes after checking them against the pattern of the
// flow id the connection opened with.
type echoServer struct {
	addr    string
	mu      sync.Mutex
	remotes []string
	err     error
}

func listenEcho(t *testing.T, tp *topo.Topology, role, addr string) *echoServer {
	s := &echoServer{addr: addr}
	srv, err := tp.ServeTCP(role, addr, func(c net.Conn) {
		s.mu.Lock()
		s.remotes = append(s.remotes, c.RemoteAddr().String())
		s.mu.Unlock()
		s.serve(c)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	return s
}

func (s *echoServer) serve(c net.Conn) {
	defer c.Close()
	id := []byte{0}
	if _, err := io.ReadFull(c, id); err != nil {
		return
	}
	buf, want := make([]byte, 4096), make([]byte, 4096)
	for off := 0; ; {
		n, err := c.Read(buf)
		if err != nil {
			return
		}
		pattern(want[:n], id[0], off)
		if !bytes.Equal(buf[:n], want[:n]) {
			s.mu.Lock()
			s.err = fmt.Errorf("connection from %s (flow %d): bytes at offset %d are not the flow's", c.RemoteAddr(), id[0], off)
			s.mu.Unlock()
			return
		}
		off += n
		if _, err := c.Write(buf[:n]); err != nil {
			return
		}
	}
}

func (s *echoServer) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.remotes)
}

func (s *echoServer) lastRemote() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.remotes) == 0 {
		return ""
	}
	return s.remotes[len(s.remotes)-1]
}

func (s *echoServer) lastRemoteIP() string {
	h, _, _ := net.SplitHostPort(s.lastRemote())
	return h
}

func (s *echoServer) error() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// metric reads a replica agent's metric (the sum of the samples whose labels contain labels)
// from its metrics endpoint inside the replica's netns; -1 when it cannot be read.
func (rs *replicaSet) metric(r, name, labels string) float64 {
	var body string
	err := rs.tp.Do(r, func() error {
		c, err := net.DialTimeout("tcp", metricsAddr, time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		req, _ := http.NewRequest(http.MethodGet, "http://"+metricsAddr+"/metrics", nil)
		if err := req.Write(c); err != nil {
			return err
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		body = string(b)
		return err
	})
	if err != nil {
		return -1
	}
	sum, found := 0.0, false
	for _, l := range strings.Split(body, "\n") {
		if !strings.HasPrefix(l, name) || strings.HasPrefix(l, "#") || !strings.Contains(l, labels) {
			continue
		}
		rest := strings.TrimPrefix(l, name)
		if rest != "" && rest[0] != ' ' && rest[0] != '{' {
			continue
		}
		fields := strings.Fields(l)
		v, err := strconv.ParseFloat(fields[len(fields)-1], 64)
		if err == nil {
			sum, found = sum+v, true
		}
	}
	if !found {
		return -1
	}
	return sum
}

// BenchmarkConntrackTakeover: a burst of n new SNAT entries (one UDP datagram, answered, from
// each of n source ports of the VPC host) reaches the standby as events; then the active
// replica is lost and the standby commits the entries before it answers ARP. Reported: the
// burst's own time (n datagrams, each answered, one after the other), the time from its end
// until the standby holds every entry (the replication's lag behind the kernel), and the
// commit's time at the takeover (the agent's vpcnat_keepalive_conntrack_commit_seconds).
//
//	sudo go test -run '^$' -bench ConntrackTakeover -benchtime 3x ./pkg/ha/
func BenchmarkConntrackTakeover(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("entries=%d", n), func(b *testing.B) {
			var burst, lag, commit time.Duration
			for range b.N {
				bu, l, c := conntrackTakeover(b, n)
				burst, lag, commit = burst+bu, lag+l, commit+c
			}
			b.ReportMetric(float64(burst.Milliseconds())/float64(b.N), "burst-ms")
			b.ReportMetric(float64(lag.Milliseconds())/float64(b.N), "lag-ms")
			b.ReportMetric(float64(commit.Microseconds())/1000/float64(b.N), "commit-ms")
			b.ReportMetric(0, "ns/op")
		})
	}
}

func conntrackTakeover(b *testing.B, n int) (burst, lag, commit time.Duration) {
	rs := newReplicaSetWith(b, ha.DefaultTiming, []string{"--metrics-address", metricsAddr}, "r1", "r2")
	defer rs.close()
	old := rs.active("r1", "r2")
	standby := other(old)
	srv, err := rs.tp.Listen("rtr", "udp", routerIP+":"+snatPort)
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	base := max(rs.metric(standby, "vpcnat_keepalive_conntrack_cache_entries", ""), 0)
	start := time.Now()
	if err := rs.tp.Do("pod", func() error {
		buf := make([]byte, 16)
		for i := range n {
			c, err := net.DialUDP("udp4", &net.UDPAddr{Port: 20000 + i}, &net.UDPAddr{IP: net.ParseIP(routerIP), Port: 6000})
			if err != nil {
				return err
			}
			_, err = c.Write([]byte("x"))
			if err == nil {
				_ = c.SetReadDeadline(time.Now().Add(time.Second))
				_, err = c.Read(buf)
			}
			c.Close()
			if err != nil {
				return fmt.Errorf("datagram %d: %w", i, err)
			}
		}
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	burst = time.Since(start)
	end := time.Now()
	deadline := time.Now().Add(2 * time.Minute) // hang guard
	for rs.metric(standby, "vpcnat_keepalive_conntrack_cache_entries", "") < base+float64(n) {
		if time.Now().After(deadline) {
			b.Fatalf("the standby holds %v of %v entries after 2 minutes", rs.metric(standby, "vpcnat_keepalive_conntrack_cache_entries", ""), base+float64(n))
		}
		time.Sleep(20 * time.Millisecond)
	}
	lag = time.Since(end)
	rs.kill(old)
	for _, p := range []struct{ ns, dev string }{{"ext", "x-" + old}, {"ten", "t-" + old}} {
		if _, err := rs.tp.Exec(p.ns, "ip", "link", "set", p.dev, "down"); err != nil {
			b.Fatal(err)
		}
	}
	rs.waitFor(standby, func(r string) bool { return r == "active" })
	if got := rs.metric(standby, "vpcnat_keepalive_conntrack_committed_total", `result="created"`); got < float64(n) {
		b.Fatalf("the new active replica committed %v entries, want at least %d", got, n)
	}
	sum := rs.metric(standby, "vpcnat_keepalive_conntrack_commit_seconds_sum", "")
	return burst, lag, time.Duration(sum * float64(time.Second))
}

// TestEstablishedFlowThroughTwoTakeovers: three replicas; an SNAT connection survives the loss
// of the active replica and then of the one that took over: the new active replica serves its
// table (the committed entries included) to the remaining standby.
func TestEstablishedFlowThroughTwoTakeovers(t *testing.T) {
	replicas := []string{"r1", "r2", "r3"}
	rs := newReplicaSetWith(t, ha.DefaultTiming, []string{"--metrics-address", metricsAddr}, replicas...)
	fs := &flowSet{t: t, rs: rs}
	srv := listenEcho(t, rs.tp, "rtr", routerIP+":8001")
	f, _ := fs.openFlow("snat", "pod", snatSrcPort, routerIP+":8001", srv, 1, smallChunk)
	fs.flows = append(fs.flows, f)
	fs.allProgress(waitLimit)
	live := slices.Clone(replicas)
	for round := 1; round <= 2; round++ {
		old := rs.active(live...)
		live = slices.DeleteFunc(live, func(r string) bool { return r == old })
		for _, r := range live {
			if round == 2 {
				// The standby's agent restarts, so what it holds comes from the replica that
				// took over, whose table has the entry only because it committed it.
				rs.kill(r)
				rs.start(r)
				rs.waitFor(r, func(role string) bool { return role == "standby" })
			}
			waitMetric(t, rs, r, "vpcnat_keepalive_conntrack_cache_entries", 1)
		}
		rs.kill(old)
		for _, p := range []struct{ ns, dev string }{{"ext", "x-" + old}, {"ten", "t-" + old}} {
			if _, err := rs.tp.Exec(p.ns, "ip", "link", "set", p.dev, "down"); err != nil {
				t.Fatal(err)
			}
		}
		now := rs.active(live...)
		if n := rs.metric(now, "vpcnat_keepalive_conntrack_committed_total", `result="created"`); n < 1 {
			t.Fatalf("takeover %d: %s committed %v entries, want the connection's", round, now, n)
		}
		fs.allProgress(flowLimit)
		t.Logf("takeover %d: %s -> %s, the connection goes on", round, old, now)
	}
	fs.noBrokenFlow()
}

// waitMetric waits until a replica's metric is at least min.
func waitMetric(t *testing.T, rs *replicaSet, r, name string, min float64) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for rs.metric(r, name, "") < min {
		if time.Now().After(deadline) {
			t.Fatalf("replica %s: %s is %v after %v, want at least %v", r, name, rs.metric(r, name, ""), waitLimit, min)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
