package ctsync

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	"k8s.io/klog/v2"
)

// Config configures one replica's conntrack replication.
type Config struct {
	// Gateway and Replica name the VpcNatGateway and this replica (its pod), as in heartbeats.
	Gateway, Replica string
	// Interface is the NIC whose address the replicas talk over: the primary CNI's eth0, the
	// only address the replicas do not share.
	Interface string
	// Port is the TCP port the active replica serves the stream on (on Interface's address).
	Port uint16
	// Resync: the active replica sends a full dump this often, so a standby's cache drops
	// what it missed and refreshes the timeouts of entries that see no events (an established
	// UDP flow's packets extend its timeout without an event).
	Resync time.Duration
	// Liberal marks committed TCP entries IP_CT_TCP_FLAG_BE_LIBERAL (Entry.Flow).
	Liberal bool
}

// Validate checks c, naming the flag of each field.
func (c Config) Validate() error {
	switch {
	case c.Gateway == "" || c.Replica == "":
		return fmt.Errorf("conntrack sync: gateway %q and replica %q must be set", c.Gateway, c.Replica)
	case c.Interface == "":
		return errors.New("conntrack sync: --conntrack-sync-interface is empty")
	case c.Port == 0:
		return errors.New("conntrack sync: --conntrack-sync-port 0: must be 1-65535")
	case c.Resync < time.Second:
		return fmt.Errorf("conntrack sync: --conntrack-resync %v: must be at least 1s", c.Resync)
	}
	return nil
}

// Replicator is one replica's side of the replication: it follows the active replica's stream
// while standby, serves its own while active, and commits its cache when it takes over. Its
// methods are called from the agent's loop; they do not block on the network.
type Replicator struct {
	cfg   Config
	cache *Cache
	stop  chan struct{}
	wg    sync.WaitGroup

	mu        sync.Mutex
	own       netip.Addr
	following netip.AddrPort
	cancel    context.CancelFunc
	clientWG  sync.WaitGroup
	srv       *server
	allowed   map[netip.Addr]bool
	// serveAgain: after a failed listen (the port taken), Serve tries again from then on, not
	// on every step of the agent.
	serveAgain time.Time
}

// New returns a Replicator; nothing runs until Follow or Serve.
func New(cfg Config) (*Replicator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r := &Replicator{cfg: cfg, cache: NewCache(), stop: make(chan struct{}), allowed: map[netip.Addr]bool{}}
	r.wg.Add(1)
	go r.expire()
	return r, nil
}

// Addr is the address a standby reaches this replica's stream at when it is active: the first
// global IPv4 address of the sync interface (else its first global IPv6 one) and the port. It
// is invalid while the interface has no such address.
func (r *Replicator) Addr() netip.AddrPort {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.own.IsValid() {
		r.own = interfaceAddr(r.cfg.Interface)
	}
	if !r.own.IsValid() {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(r.own, r.cfg.Port)
}

func interfaceAddr(name string) netip.Addr {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return netip.Addr{}
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return netip.Addr{}
	}
	var v6 netip.Addr
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(ipn.IP)
		if !ok || !ip.IsGlobalUnicast() {
			continue
		}
		if ip = ip.Unmap(); ip.Is4() {
			return ip
		}
		if !v6.IsValid() {
			v6 = ip
		}
	}
	return v6
}

// Follow makes this replica a standby that streams from the active replica at active (invalid:
// no active replica is known; the cache is kept). It stops serving if it was.
func (r *Replicator) Follow(active netip.AddrPort) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stopServingLocked()
	if active == r.following && r.cancel != nil {
		return
	}
	r.stopFollowingLocked()
	r.following = active
	if !active.IsValid() {
		return
	}
	if !r.own.IsValid() {
		r.own = interfaceAddr(r.cfg.Interface)
	}
	// The client goroutine gets what it needs now and never takes r.mu: stopFollowingLocked
	// waits for it while holding r.mu.
	own := r.own
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	r.clientWG.Add(1)
	go func() {
		defer r.clientWG.Done()
		r.follow(ctx, active, own)
	}()
}

func (r *Replicator) stopFollowingLocked() {
	if r.cancel != nil {
		r.cancel()
		r.cancel = nil
		r.clientWG.Wait()
	}
	r.following = netip.AddrPort{}
}

// Serve makes this replica the active one: it serves its conntrack table to the standbys
// whose eth0 addresses are peers (only those may connect), and stops following.
func (r *Replicator) Serve(peers []netip.Addr) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stopFollowingLocked()
	clear(r.allowed)
	for _, p := range peers {
		r.allowed[p.Unmap()] = true
	}
	if r.srv != nil || time.Now().Before(r.serveAgain) {
		return
	}
	if !r.own.IsValid() {
		if r.own = interfaceAddr(r.cfg.Interface); !r.own.IsValid() {
			return
		}
	}
	srv, err := newServer(r.cfg, netip.AddrPortFrom(r.own, r.cfg.Port), r.isAllowed)
	if err != nil {
		metrics.errors.WithLabelValues("stream").Inc()
		klog.ErrorS(err, "Serving conntrack to the standbys; trying again in 5s", "gateway", r.cfg.Gateway)
		r.serveAgain = time.Now().Add(5 * time.Second)
		return
	}
	r.srv = srv
}

func (r *Replicator) isAllowed(a netip.Addr) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.allowed[a.Unmap()]
}

func (r *Replicator) stopServingLocked() {
	if r.srv != nil {
		srv := r.srv
		r.srv = nil
		// close waits for the connections' goroutines, which call isAllowed: not under r.mu.
		r.mu.Unlock()
		srv.close()
		r.mu.Lock()
	}
}

// Commit writes the cached entries into the kernel (the replica is taking over; its NICs do not
// answer ARP yet). It stops following first, so the cache is final. The cache is kept: should
// the replica step down and take over again before the next active replica's stream has sent
// its full dump (roles that moved twice in a few seconds), it commits what it still holds
// instead of nothing; the first full dump it follows drops what that replica no longer has, and
// the rest expires with its timeout.
func (r *Replicator) Commit() (created int, err error) {
	r.mu.Lock()
	r.stopFollowingLocked()
	r.mu.Unlock()
	start := time.Now()
	entries := r.cache.Entries(start)
	res, err := commit(entries, r.cfg.Liberal)
	took := time.Since(start)
	metrics.commitSeconds.Observe(took.Seconds())
	metrics.committed.WithLabelValues("created").Add(float64(res.created))
	metrics.committed.WithLabelValues("replaced").Add(float64(res.replaced))
	metrics.committed.WithLabelValues("failed").Add(float64(len(res.errs)))
	if len(res.errs) > 0 {
		metrics.errors.WithLabelValues("commit").Add(float64(len(res.errs)))
	}
	klog.InfoS("Committed the replicated conntrack entries", "gateway", r.cfg.Gateway, "replica", r.cfg.Replica,
		"entries", len(entries), "created", res.created, "replaced", res.replaced, "failed", len(res.errs), "took", took)
	if err != nil {
		return 0, err
	}
	return res.created + res.replaced, errors.Join(res.errs...)
}

// CacheLen is the number of entries the standby holds.
func (r *Replicator) CacheLen() int { return r.cache.Len() }

// Close stops following and serving.
func (r *Replicator) Close() {
	r.mu.Lock()
	r.stopFollowingLocked()
	r.stopServingLocked()
	r.mu.Unlock()
	close(r.stop)
	r.wg.Wait()
}

func (r *Replicator) expire() {
	defer r.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case now := <-t.C:
			r.cache.Expire(now)
			metrics.cacheSize.Set(float64(r.cache.Len()))
		}
	}
}

// retryAfter: a standby dials the active replica again this long after a failed attempt.
const retryAfter = 500 * time.Millisecond

// follow streams from the active replica into the cache until ctx ends, reconnecting after
// errors. The cache survives a broken stream: the active replica's death is when it is needed.
func (r *Replicator) follow(ctx context.Context, active netip.AddrPort, own netip.Addr) {
	for ctx.Err() == nil {
		err := r.stream(ctx, active, own)
		if ctx.Err() != nil {
			return
		}
		metrics.errors.WithLabelValues("stream").Inc()
		klog.V(2).InfoS("Conntrack stream from the active replica ended", "gateway", r.cfg.Gateway, "active", active, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(retryAfter):
		}
	}
}

func (r *Replicator) stream(ctx context.Context, active netip.AddrPort, own netip.Addr) error {
	metrics.reconnects.Inc()
	d := net.Dialer{Timeout: 2 * time.Second, KeepAlive: 5 * time.Second}
	if own.IsValid() {
		// From the eth0 address, which the active replica checks against the heartbeats.
		d.LocalAddr = &net.TCPAddr{IP: own.AsSlice()}
	}
	c, err := d.DialContext(ctx, "tcp", active.String())
	if err != nil {
		return err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	hello, err := AppendMessage(nil, Message{Type: MsgHello, Gateway: r.cfg.Gateway, Replica: r.cfg.Replica})
	if err != nil {
		return err
	}
	if _, err := c.Write(hello); err != nil {
		return fmt.Errorf("sending hello: %w", err)
	}
	klog.V(2).InfoS("Following the active replica's conntrack", "gateway", r.cfg.Gateway, "active", active)
	br := bufio.NewReaderSize(c, 64<<10)
	for {
		m, err := ReadMessage(br)
		if err != nil {
			return err
		}
		if r.cache.Apply(m, time.Now()) {
			kind := "upsert"
			if m.Type == MsgDestroy {
				kind = "destroy"
			}
			metrics.received.WithLabelValues(kind).Inc()
		}
		metrics.cacheSize.Set(float64(r.cache.Len()))
	}
}

// server is the active replica's side: one listener, one event subscription fanned out to every
// standby's stream.
type server struct {
	cfg     Config
	ln      net.Listener
	allowed func(netip.Addr) bool
	sk      skip
	done    chan struct{}
	wg      sync.WaitGroup

	mu   sync.Mutex
	subs map[*subscriber]struct{}
	// conns: every accepted connection, closed by close, so no handler waits out its hello's
	// read deadline or a write's while the replica steps down.
	conns map[net.Conn]struct{}
}

type subscriber struct {
	ch   chan Message
	conn net.Conn
}

// subscriberQueue: events queued for one standby; a standby that falls this far behind is cut
// off and reconnects, and its full dump replaces what it missed.
const subscriberQueue = 16384

func newServer(cfg Config, addr netip.AddrPort, allowed func(netip.Addr) bool) (*server, error) {
	ln, err := net.Listen("tcp", addr.String())
	if err != nil {
		return nil, fmt.Errorf("listening on %s (--conntrack-sync-port): %w", addr, err)
	}
	s := &server{cfg: cfg, ln: ln, allowed: allowed, sk: ownTraffic(addr.Addr()), done: make(chan struct{}),
		subs: map[*subscriber]struct{}{}, conns: map[net.Conn]struct{}{}}
	s.wg.Add(2)
	go s.accept()
	go s.fanOut()
	klog.InfoS("Serving conntrack to the standbys", "gateway", cfg.Gateway, "address", addr)
	return s, nil
}

func (s *server) close() {
	close(s.done)
	s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *server) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		select {
		case <-s.done: // closing: close has closed the others already
			s.mu.Unlock()
			c.Close()
			return
		default:
		}
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() {
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
			}()
			err := s.handle(c)
			klog.V(2).InfoS("Conntrack stream to a standby ended", "gateway", s.cfg.Gateway, "standby", c.RemoteAddr(), "err", err)
		}()
	}
}

// fanOut subscribes to the kernel's events and passes each to every standby's queue. When the
// subscription fails (events lost), every stream is cut: the standbys reconnect and get a full
// dump.
func (s *server) fanOut() {
	defer s.wg.Done()
	for {
		out := make(chan Message, 1024)
		errs, closeEvents, err := events(out, s.sk)
		if err == nil {
			err = s.pass(out, errs)
			closeEvents()
		}
		select {
		case <-s.done:
			return
		default:
		}
		metrics.errors.WithLabelValues("events").Inc()
		klog.ErrorS(err, "Conntrack events: cutting the standbys' streams for a full resync", "gateway", s.cfg.Gateway)
		s.mu.Lock()
		for sub := range s.subs {
			sub.conn.Close()
		}
		s.mu.Unlock()
		select {
		case <-s.done:
			return
		case <-time.After(retryAfter):
		}
	}
}

func (s *server) pass(out <-chan Message, errs <-chan error) error {
	for {
		select {
		case <-s.done:
			return nil
		case err := <-errs:
			return err
		case m := <-out:
			s.mu.Lock()
			for sub := range s.subs {
				select {
				case sub.ch <- m:
				default:
					metrics.errors.WithLabelValues("stream").Inc()
					klog.InfoS("A standby fell behind the conntrack events: cutting its stream for a full resync", "gateway", s.cfg.Gateway, "standby", sub.conn.RemoteAddr())
					sub.conn.Close()
				}
			}
			s.mu.Unlock()
		}
	}
}

func (s *server) handle(c net.Conn) error {
	defer c.Close()
	remote, _ := netip.ParseAddrPort(c.RemoteAddr().String())
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	hello, err := ReadMessage(c)
	if err != nil || hello.Type != MsgHello || hello.Gateway != s.cfg.Gateway {
		metrics.errors.WithLabelValues("refused").Inc()
		return fmt.Errorf("refused %s: hello %+v: %w", remote, hello, err)
	}
	if !s.allowed(remote.Addr()) {
		metrics.errors.WithLabelValues("refused").Inc()
		return fmt.Errorf("refused %s (replica %q): not the eth0 address of a live replica of gateway %s", remote, hello.Replica, s.cfg.Gateway)
	}
	_ = c.SetReadDeadline(time.Time{})
	klog.InfoS("Streaming conntrack to a standby", "gateway", s.cfg.Gateway, "standby", hello.Replica, "address", remote)
	// The standby sends nothing after its hello: reading tells when it is gone.
	go func() { _, _ = io.Copy(io.Discard, c); c.Close() }()

	sub := &subscriber{ch: make(chan Message, subscriberQueue), conn: c}
	s.mu.Lock()
	s.subs[sub] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.subs, sub)
		s.mu.Unlock()
	}()
	w := &writer{c: c, bw: bufio.NewWriterSize(c, 64<<10)}
	if err := w.dump(s.sk); err != nil {
		return err
	}
	resync := time.NewTicker(s.cfg.Resync)
	defer resync.Stop()
	for {
		select {
		case <-s.done:
			return nil
		case <-resync.C:
			if err := w.dump(s.sk); err != nil {
				return err
			}
		case m := <-sub.ch:
			if err := w.send(m); err != nil {
				return err
			}
			if len(sub.ch) == 0 {
				if err := w.flush(); err != nil {
					return err
				}
			}
		}
	}
}

// writeTimeout: a standby that takes no data for this long is cut off.
const writeTimeout = 10 * time.Second

type writer struct {
	c   net.Conn
	bw  *bufio.Writer
	buf []byte
}

func (w *writer) send(m Message) error {
	var err error
	if w.buf, err = AppendMessage(w.buf[:0], m); err != nil {
		return err
	}
	_ = w.c.SetWriteDeadline(time.Now().Add(writeTimeout))
	if _, err := w.bw.Write(w.buf); err != nil {
		return err
	}
	switch m.Type {
	case MsgUpsert:
		metrics.sent.WithLabelValues("upsert").Inc()
	case MsgDestroy:
		metrics.sent.WithLabelValues("destroy").Inc()
	}
	return nil
}

func (w *writer) flush() error {
	_ = w.c.SetWriteDeadline(time.Now().Add(writeTimeout))
	return w.bw.Flush()
}

func (w *writer) dump(sk skip) error {
	entries, err := dump(sk)
	if err != nil {
		metrics.errors.WithLabelValues("dump").Inc()
		return err
	}
	metrics.dumps.Inc()
	if err := w.send(Message{Type: MsgDumpBegin}); err != nil {
		return err
	}
	for _, e := range entries {
		if err := w.send(Message{Type: MsgUpsert, Entry: e}); err != nil {
			return err
		}
	}
	if err := w.send(Message{Type: MsgDumpEnd}); err != nil {
		return err
	}
	return w.flush()
}
