package netconf

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vpcnat/vpcnat/pkg/annotations"
)

// pinger sends ICMP echo requests from a role's netns and waits for the reply: the "first
// packet" of a new address.
type pinger struct {
	fd  int
	seq uint16
}

func (tp *topo) pinger(role string) *pinger {
	tp.t.Helper()
	p := &pinger{fd: -1}
	if err := tp.do(role, func() error {
		var err error
		p.fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMP)
		if err != nil {
			return err
		}
		tv := unix.NsecToTimeval((50 * time.Millisecond).Nanoseconds())
		return unix.SetsockoptTimeval(p.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	}); err != nil {
		tp.t.Fatalf("ICMP socket in %s: %v", role, err)
	}
	tp.t.Cleanup(func() { unix.Close(p.fd) })
	return p
}

// ping sends an echo request to dst until a reply from dst arrives (every 50 ms without one);
// false after the guard.
func (p *pinger) ping(dst netip.Addr, guard time.Duration) bool {
	p.seq++
	req := make([]byte, 8)
	req[0] = 8 // echo request
	binary.BigEndian.PutUint16(req[4:], 0x5ac0)
	binary.BigEndian.PutUint16(req[6:], p.seq)
	binary.BigEndian.PutUint16(req[2:], icmpChecksum(req))
	to := &unix.SockaddrInet4{Addr: dst.As4()}
	buf := make([]byte, 1500)
	for deadline := time.Now().Add(guard); time.Now().Before(deadline); {
		if err := unix.Sendto(p.fd, req, 0, to); err != nil {
			return false
		}
		for {
			n, from, err := unix.Recvfrom(p.fd, buf, 0)
			if err != nil {
				break // timeout: send again
			}
			src, ok := from.(*unix.SockaddrInet4)
			if !ok || netip.AddrFrom4(src.Addr) != dst || n < 28 {
				continue
			}
			ihl := int(buf[0]&0x0f) * 4
			if n >= ihl+8 && buf[ihl] == 0 && binary.BigEndian.Uint16(buf[ihl+6:]) == p.seq {
				return true
			}
		}
	}
	return false
}

func icmpChecksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// BenchmarkApplyToFirstPacket measures what probing costs a new EIP: from the start of the
// converge that adds it to the router's first echo reply from it (ARP resolution included), with
// the default claim (probe first) and with ClaimTakeover (no probe), in the same run and
// topology. Reproduce with
//
//	go test -run '^$' -bench ApplyToFirstPacket -benchtime 20x ./pkg/netconf/
func BenchmarkApplyToFirstPacket(b *testing.B) {
	for _, mode := range []struct {
		name string
		mode ClaimMode
	}{{"probe", ClaimProbe}, {"takeover", ClaimTakeover}} {
		b.Run(mode.name, func(b *testing.B) {
			tp := newTopo(b)
			g := tp.gateway()
			g.SetClaimPolicy(ClaimPolicy{Mode: mode.mode})
			d := seedDesired()
			tp.mustConverge(g, d, true)
			p := tp.pinger(roleExt)
			base := len(d.EIPs)
			var total time.Duration
			b.ResetTimer()
			for i := range b.N {
				b.StopTimer()
				eip := netip.AddrFrom4([4]byte{192, 168, 0, byte(10 + i%200)})
				d.EIPs = append(d.EIPs[:base], annotations.EIP{EipCIDR: eip.String() + "/24", Gateway: "192.168.0.254"})
				d.Generation++
				tp.ip(roleExt, "neigh", "flush", "dev", "ext0")
				b.StartTimer()
				start := time.Now()
				tp.mustConverge(g, d, false)
				if !p.ping(eip, 5*time.Second) {
					b.Fatalf("no echo reply from the new EIP %s", eip)
				}
				total += time.Since(start)
				b.StopTimer()
				d.EIPs = d.EIPs[:base]
				d.Generation++
				tp.mustConverge(g, d, false)
				b.StartTimer()
			}
			b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms/first-packet")
		})
	}
}
