package topo

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// LossProbe sends one UDP datagram every interval from a test host to a Server (which answers
// each one) over one socket, so every datagram belongs to one conntrack flow, and counts the
// answers: a lost datagram is one without an answer.
type LossProbe struct {
	Name string

	conn     net.Conn
	interval time.Duration
	cancel   context.CancelFunc
	done     chan struct{} // the sender has stopped
	read     chan struct{} // the receiver has stopped
	stopOnce sync.Once

	mu       sync.Mutex
	sent     int
	received int
	lastSeen string // the last answer's "seen" source, as the server saw it
}

// LossCount is what a LossProbe counted.
type LossCount struct {
	Name           string
	Sent, Received int
	LastSeen       string
}

// Lost is the number of datagrams without an answer.
func (c LossCount) Lost() int { return c.Sent - c.Received }

func (c LossCount) String() string {
	return fmt.Sprintf("%s: %d sent, %d answered, %d lost (last answer saw source %s)", c.Name, c.Sent, c.Received, c.Lost(), c.LastSeen)
}

// StartLossProbe starts probing addr (ip:port, a UDP Server) from a role's namespace every
// interval until Stop.
func (t *Topology) StartLossProbe(name, role, addr string, interval time.Duration) (*LossProbe, error) {
	p := &LossProbe{Name: name, interval: interval, done: make(chan struct{}), read: make(chan struct{})}
	err := t.Do(role, func() error {
		var err error
		p.conn, err = net.Dial("udp4", addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("loss probe %s: %s -> %s/udp: %w", name, role, addr, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	go p.receive()
	go func() {
		defer close(p.done)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for seq := 0; ; seq++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			if _, err := fmt.Fprintf(p.conn, "probe %s %d\n", name, seq); err == nil {
				p.mu.Lock()
				p.sent++
				p.mu.Unlock()
			}
		}
	}()
	return p, nil
}

// receive counts answers until the socket is closed.
func (p *LossProbe) receive() {
	defer close(p.read)
	buf := make([]byte, 512)
	for {
		n, err := p.conn.Read(buf)
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			continue // an ICMP error (port unreachable) comes back as a read error: a loss
		}
		r, perr := parseReply(string(buf[:n]))
		p.mu.Lock()
		p.received++
		if perr == nil {
			p.lastSeen = r.SeenIP()
		}
		p.mu.Unlock()
	}
}

// Count is what the probe counted so far (the answers of the last datagrams may still be on
// their way).
func (p *LossProbe) Count() LossCount {
	p.mu.Lock()
	defer p.mu.Unlock()
	return LossCount{Name: p.Name, Sent: p.sent, Received: p.received, LastSeen: p.lastSeen}
}

// Stop stops sending, waits settle for the answers still on their way, and returns the count.
// Calling it again returns the same count.
func (p *LossProbe) Stop(settle time.Duration) LossCount {
	p.stopOnce.Do(func() {
		p.cancel()
		<-p.done
		time.Sleep(settle)
		_ = p.conn.Close()
		<-p.read
	})
	return p.Count()
}
