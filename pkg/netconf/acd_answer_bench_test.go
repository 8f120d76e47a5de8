package netconf

import (
	"errors"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// BenchmarkProbeAnswer measures what the probe timings must cover: how long a host that holds an
// address takes to answer a probe for it (RFC 5227 probe: sender 0.0.0.0, sent as the gateway
// sends it), from the send to the reply received, one probe at a time. The host is a plain
// Linux netns on the external network (a macvlan on the node's eth1, as net1 is), answering with
// its kernel's ARP; the prober sits beside it on the same network. The answer time is the
// kernel's receive time of the reply (SO_TIMESTAMPNS), so the prober's own wake-up does not count
// (conflict detection reads every frame queued before it decides, arpLink.drain); ms-max-seen is
// the slowest answer as the prober's thread saw it. It reports the median, the 99th percentile
// and the slowest answer. Reproduce with
//
//	go test -run '^$' -bench ProbeAnswer -benchtime 2000x ./pkg/netconf/
//
// and, for a loaded machine, the same with every core busy (docs/addresses.md).
func BenchmarkProbeAnswer(b *testing.B) {
	tp := newTopo(b)
	const holder, prober = "holder", "prober"
	tp.addExternalHost(holder, "192.168.0.111/24")
	tp.addExternalHost(prober, "192.168.0.201/24")
	mac, err := net.ParseMAC(tp.mac(prober, "eth0"))
	if err != nil {
		b.Fatal(err)
	}
	fd, idx := -1, 0
	if err := tp.do(prober, func() error {
		ifc, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		idx = ifc.Index
		if fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0); err != nil {
			return err
		}
		tv := unix.NsecToTimeval(time.Second.Nanoseconds())
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return err
		}
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1); err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ARP), Ifindex: idx})
	}); err != nil {
		b.Fatalf("packet socket in %s: %v", prober, err)
	}
	defer unix.Close(fd)
	target := netip.MustParseAddr("192.168.0.111")
	to := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ARP), Ifindex: idx, Halen: 6}
	copy(to.Addr[:], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	probe := arpPayload(mac, zeroIP, target)
	buf, oob := make([]byte, 1500), make([]byte, 128)
	var took, seen []time.Duration
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		if err := unix.Sendto(fd, probe, 0, to); err != nil {
			b.Fatalf("sending a probe: %v", err)
		}
		for {
			n, oobn, _, _, err := unix.Recvmsg(fd, buf, oob, 0)
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				b.Fatalf("no answer to a probe for %s within 1 s: %v", target, err)
			}
			if f, ok := parseARP(buf[:n]); !ok || f.op != 2 || f.spa != target {
				continue
			}
			seen = append(seen, time.Since(start))
			at, err := rxTime(oob[:oobn])
			if err != nil {
				b.Fatal(err)
			}
			took = append(took, at.Sub(start))
			break
		}
	}
	b.StopTimer()
	q := func(ds []time.Duration, p float64) float64 {
		slices.Sort(ds)
		return float64(ds[int(p*float64(len(ds)-1))].Microseconds()) / 1000
	}
	b.ReportMetric(q(took, 0.5), "ms-median")
	b.ReportMetric(q(took, 0.99), "ms-p99")
	b.ReportMetric(q(took, 1), "ms-max")
	b.ReportMetric(q(seen, 1), "ms-max-seen")
}

// rxTime is the kernel's receive time of a frame (SO_TIMESTAMPNS control message).
func rxTime(oob []byte) (time.Time, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return time.Time{}, err
	}
	for _, m := range msgs {
		if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SO_TIMESTAMPNS && len(m.Data) >= 16 {
			ts := (*unix.Timespec)(unsafe.Pointer(&m.Data[0]))
			return time.Unix(ts.Unix()), nil
		}
	}
	return time.Time{}, errors.New("no receive timestamp on the frame")
}
