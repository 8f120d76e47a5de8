package ha

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// EtherType of heartbeat frames: IEEE 802's "local experimental" EtherType 1, which no
// protocol owns, so nothing else on the segment consumes or forwards it as its own.
const EtherType = 0x88B5

// heartbeatMagic and heartbeatVersion open every frame; a frame of another version is ignored
// (a rolling upgrade that changes the format bumps the version and reads both for a release).
var heartbeatMagic = [4]byte{'V', 'N', 'H', 'A'}

const heartbeatVersion = 1

const (
	flagActive  = 1 << 0
	flagHealthy = 1 << 1
)

// maxName bounds the gateway and replica names in a frame (one length byte each).
const maxName = 255

// Heartbeat is what a replica says about itself every interval, on every gateway NIC.
type Heartbeat struct {
	// Gateway is the VpcNatGateway's name: replicas of other gateways on the segment are ignored.
	Gateway string
	// Replica names the sender (its pod name): unique among the gateway's replicas, and the last
	// tie-break of the election.
	Replica string
	// Priority: the higher wins an election between standbys (never preempts an active one).
	Priority uint8
	// Term counts takeovers: a replica that becomes active takes one more than any it has seen,
	// so of two active replicas (after a partition heals) the later one wins.
	Term uint64
	// Active: the sender answers ARP for the gateway's addresses now.
	Active bool
	// Healthy: the sender's NICs have carrier and it reaches the external network's gateway.
	Healthy bool
	// Sync is where the sender serves its conntrack table while it is active: its eth0 address
	// (the primary CNI's, the one address replicas do not share) and port. Invalid when the
	// sender does not replicate conntrack.
	Sync netip.AddrPort
	// Stamp is the sender's clock when it sent the frame (nanoseconds on a clock of its own:
	// only the sender reads its stamps back); 0 when absent.
	Stamp uint64
	// Echo returns one peer's last heartbeat heard on this NIC, for that peer's round-trip
	// time; the zero Echo is none.
	Echo Echo
}

// Echo is a heartbeat's answer to one peer's earlier heartbeat: the peer (EchoPeer of its
// replica name), the Stamp it sent, and how long the sender held it before this frame left.
// The peer's round trip is its clock now minus Stamp minus Held. A replica with several peers
// echoes them in turn, one per heartbeat.
type Echo struct {
	Peer  uint32
	Stamp uint64
	Held  uint64
}

// EchoPeer names a replica in an Echo: FNV-1a of its name (a frame stays short with long pod
// names; a collision only makes a peer read another's echo as its own, in a replica set of at
// most five).
func EchoPeer(replica string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(replica); i++ {
		h ^= uint32(replica[i])
		h *= 16777619
	}
	return h
}

// Optional fields follow the replica name as type, length, value; type 0 ends them (Ethernet
// pads short frames with zeros). A version-1 agent that predates a field ignores it, as it
// ignores padding, so fields are added without a version change.
const (
	fieldEnd   = 0
	fieldSync  = 1 // the Sync address: 4 or 16 address bytes, then the port
	fieldStamp = 2 // Stamp: 8 bytes
	fieldEcho  = 3 // Echo: peer (4 bytes), stamp (8), held (8)
)

// Marshal encodes h (without the Ethernet header, which the packet socket adds).
func (h Heartbeat) Marshal() ([]byte, error) {
	if len(h.Gateway) == 0 || len(h.Gateway) > maxName || len(h.Replica) == 0 || len(h.Replica) > maxName {
		return nil, fmt.Errorf("heartbeat: gateway %q and replica %q must be 1-%d bytes", h.Gateway, h.Replica, maxName)
	}
	b := make([]byte, 0, 18+len(h.Gateway)+len(h.Replica))
	b = append(b, heartbeatMagic[:]...)
	var flags byte
	if h.Active {
		flags |= flagActive
	}
	if h.Healthy {
		flags |= flagHealthy
	}
	b = append(b, heartbeatVersion, flags, h.Priority)
	b = binary.BigEndian.AppendUint64(b, h.Term)
	b = append(b, byte(len(h.Gateway)))
	b = append(b, h.Gateway...)
	b = append(b, byte(len(h.Replica)))
	b = append(b, h.Replica...)
	if h.Sync.IsValid() {
		a := h.Sync.Addr().AsSlice()
		b = append(b, fieldSync, byte(len(a)+2))
		b = append(b, a...)
		b = binary.BigEndian.AppendUint16(b, h.Sync.Port())
	}
	if h.Stamp != 0 {
		b = append(b, fieldStamp, 8)
		b = binary.BigEndian.AppendUint64(b, h.Stamp)
	}
	if h.Echo != (Echo{}) {
		b = append(b, fieldEcho, 20)
		b = binary.BigEndian.AppendUint32(b, h.Echo.Peer)
		b = binary.BigEndian.AppendUint64(b, h.Echo.Stamp)
		b = binary.BigEndian.AppendUint64(b, h.Echo.Held)
	}
	return b, nil
}

var errNotHeartbeat = errors.New("not a vpcnat heartbeat")

// ParseHeartbeat decodes a frame's payload. Trailing bytes (Ethernet padding to 60 bytes) are
// ignored; anything else that does not fit is an error.
func ParseHeartbeat(b []byte) (Heartbeat, error) {
	if len(b) < 17 || [4]byte(b[:4]) != heartbeatMagic {
		return Heartbeat{}, errNotHeartbeat
	}
	if b[4] != heartbeatVersion {
		return Heartbeat{}, fmt.Errorf("heartbeat version %d: this agent reads version %d", b[4], heartbeatVersion)
	}
	h := Heartbeat{Active: b[5]&flagActive != 0, Healthy: b[5]&flagHealthy != 0, Priority: b[6],
		Term: binary.BigEndian.Uint64(b[7:15])}
	rest := b[15:]
	var ok bool
	if h.Gateway, rest, ok = lenString(rest); !ok {
		return Heartbeat{}, errors.New("heartbeat: truncated gateway name")
	}
	if h.Replica, rest, ok = lenString(rest); !ok {
		return Heartbeat{}, errors.New("heartbeat: truncated replica name")
	}
	if h.Gateway == "" || h.Replica == "" {
		return Heartbeat{}, errors.New("heartbeat: empty gateway or replica name")
	}
	for len(rest) > 0 && rest[0] != fieldEnd {
		if len(rest) < 2 || len(rest) < 2+int(rest[1]) {
			return Heartbeat{}, fmt.Errorf("heartbeat: truncated field %d", rest[0])
		}
		typ, val := rest[0], rest[2:2+int(rest[1])]
		rest = rest[2+len(val):]
		switch typ {
		case fieldStamp:
			if len(val) != 8 {
				return Heartbeat{}, fmt.Errorf("heartbeat: stamp of %d bytes", len(val))
			}
			h.Stamp = binary.BigEndian.Uint64(val)
			continue
		case fieldEcho:
			if len(val) != 20 {
				return Heartbeat{}, fmt.Errorf("heartbeat: echo of %d bytes", len(val))
			}
			h.Echo = Echo{Peer: binary.BigEndian.Uint32(val), Stamp: binary.BigEndian.Uint64(val[4:]), Held: binary.BigEndian.Uint64(val[12:])}
			continue
		case fieldSync:
		default:
			continue // a later version's field
		}
		if len(val) != 6 && len(val) != 18 {
			return Heartbeat{}, fmt.Errorf("heartbeat: sync address of %d bytes", len(val))
		}
		a, _ := netip.AddrFromSlice(val[:len(val)-2])
		h.Sync = netip.AddrPortFrom(a, binary.BigEndian.Uint16(val[len(val)-2:]))
	}
	return h, nil
}

func lenString(b []byte) (string, []byte, bool) {
	if len(b) < 1 || len(b) < 1+int(b[0]) {
		return "", nil, false
	}
	n := int(b[0])
	return string(b[1 : 1+n]), b[1+n:], true
}
