package ctsync

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
)

// The stream between an active replica and a standby is a sequence of messages, each a 4-byte
// big-endian length, then that many bytes: a type byte and its payload. The standby opens it with
// Hello; the active replica answers with a full dump (DumpBegin, one Upsert per entry, DumpEnd),
// then its kernel's events as Upsert and Destroy, and another full dump every resync interval.

// MsgType is a message's type.
type MsgType uint8

const (
	// MsgHello opens a stream (standby -> active): the protocol version, gateway and replica.
	MsgHello MsgType = 1 + iota
	// MsgUpsert carries an entry, new or changed (a dump's entry, a NEW or UPDATE event).
	MsgUpsert
	// MsgDestroy names an entry the kernel removed (by its key).
	MsgDestroy
	// MsgDumpBegin and MsgDumpEnd frame a full dump: after DumpEnd the standby drops every entry
	// that the dump did not carry.
	MsgDumpBegin
	MsgDumpEnd
)

// protocolVersion is in Hello; an active replica refuses a stream of another version (a rolling
// update that changes the format bumps it, and the standby keeps retrying until both agree).
const protocolVersion = 1

// maxMessage bounds a message's length (a Hello with two 255-byte names is the longest).
const maxMessage = 1024

var helloMagic = [4]byte{'V', 'N', 'C', 'T'}

// Message is one message of the stream.
type Message struct {
	Type MsgType
	// Entry: MsgUpsert; MsgDestroy uses only its key (Proto, Zone, Orig).
	Entry Entry
	// Gateway, Replica: MsgHello.
	Gateway, Replica string
}

// AppendMessage appends m, framed, to b.
func AppendMessage(b []byte, m Message) ([]byte, error) {
	start := len(b)
	b = append(b, 0, 0, 0, 0, byte(m.Type))
	switch m.Type {
	case MsgHello:
		if len(m.Gateway) == 0 || len(m.Gateway) > 255 || len(m.Replica) == 0 || len(m.Replica) > 255 {
			return b[:start], fmt.Errorf("hello: gateway %q and replica %q must be 1-255 bytes", m.Gateway, m.Replica)
		}
		b = append(b, helloMagic[:]...)
		b = append(b, protocolVersion, byte(len(m.Gateway)))
		b = append(b, m.Gateway...)
		b = append(b, byte(len(m.Replica)))
		b = append(b, m.Replica...)
	case MsgUpsert, MsgDestroy:
		var err error
		if b, err = appendEntry(b, m.Entry, m.Type == MsgUpsert); err != nil {
			return b[:start], err
		}
	case MsgDumpBegin, MsgDumpEnd:
	default:
		return b[:start], fmt.Errorf("message type %d: unknown", m.Type)
	}
	binary.BigEndian.PutUint32(b[start:], uint32(len(b)-start-4))
	return b, nil
}

func appendEntry(b []byte, e Entry, full bool) ([]byte, error) {
	fam := family(e.Orig.Src)
	for _, a := range []netip.Addr{e.Orig.Src, e.Orig.Dst, e.Reply.Src, e.Reply.Dst} {
		if full || a == e.Orig.Src || a == e.Orig.Dst {
			if family(a) != fam || fam == 0 {
				return b, fmt.Errorf("entry %v: the tuples' addresses must all be IPv4 or all IPv6", e.Key())
			}
		}
	}
	if !replicated(e.Proto) {
		return b, fmt.Errorf("entry %v: protocol %d is not replicated", e.Key(), e.Proto)
	}
	b = append(b, fam, e.Proto)
	b = binary.BigEndian.AppendUint16(b, e.Zone)
	b = appendTuple(b, e.Orig)
	if !full {
		return b, nil
	}
	b = appendTuple(b, e.Reply)
	b = binary.BigEndian.AppendUint32(b, e.Status)
	b = binary.BigEndian.AppendUint32(b, e.Timeout)
	b = binary.BigEndian.AppendUint32(b, e.Mark)
	return append(b, e.TCP.State, e.TCP.WScaleOrig, e.TCP.WScaleRepl, e.TCP.FlagsOrig, e.TCP.FlagsRepl), nil
}

func family(a netip.Addr) byte {
	switch {
	case a.Is4():
		return 4
	case a.Is6():
		return 6
	}
	return 0
}

func appendTuple(b []byte, t Tuple) []byte {
	b = append(b, t.Src.AsSlice()...)
	b = append(b, t.Dst.AsSlice()...)
	b = binary.BigEndian.AppendUint16(b, t.SrcPort)
	b = binary.BigEndian.AppendUint16(b, t.DstPort)
	b = binary.BigEndian.AppendUint16(b, t.ID)
	return append(b, t.Type, t.Code)
}

// ReadMessage reads one framed message.
func ReadMessage(r io.Reader) (Message, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return Message{}, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n == 0 || n > maxMessage {
		return Message{}, fmt.Errorf("message of %d bytes: must be 1-%d", n, maxMessage)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return Message{}, fmt.Errorf("reading a %d-byte message: %w", n, err)
	}
	return ParseMessage(b)
}

var errShort = errors.New("truncated")

// reader consumes b front to back; the first short read sets err and every later read returns
// zeros.
type reader struct {
	b   []byte
	err error
}

func (r *reader) take(n int) []byte {
	if r.err != nil || len(r.b) < n {
		r.err = errShort
		return make([]byte, n)
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

func (r *reader) u8() uint8   { return r.take(1)[0] }
func (r *reader) u16() uint16 { return binary.BigEndian.Uint16(r.take(2)) }
func (r *reader) u32() uint32 { return binary.BigEndian.Uint32(r.take(4)) }

func (r *reader) addr(fam byte) netip.Addr {
	if fam == 4 {
		return netip.AddrFrom4([4]byte(r.take(4)))
	}
	return netip.AddrFrom16([16]byte(r.take(16)))
}

func (r *reader) tuple(fam byte) Tuple {
	t := Tuple{Src: r.addr(fam), Dst: r.addr(fam)}
	t.SrcPort, t.DstPort, t.ID = r.u16(), r.u16(), r.u16()
	t.Type, t.Code = r.u8(), r.u8()
	return t
}

// ParseMessage decodes a message without its length prefix. Every byte must be used.
func ParseMessage(b []byte) (Message, error) {
	if len(b) == 0 {
		return Message{}, errors.New("empty message")
	}
	m := Message{Type: MsgType(b[0])}
	r := &reader{b: b[1:]}
	switch m.Type {
	case MsgHello:
		if [4]byte(r.take(4)) != helloMagic {
			return Message{}, errors.New("hello: not a vpcnat conntrack stream")
		}
		if v := r.u8(); r.err == nil && v != protocolVersion {
			return Message{}, fmt.Errorf("hello: protocol version %d, this agent speaks %d", v, protocolVersion)
		}
		m.Gateway = string(r.take(int(r.u8())))
		m.Replica = string(r.take(int(r.u8())))
		if r.err == nil && (m.Gateway == "" || m.Replica == "") {
			return Message{}, errors.New("hello: empty gateway or replica name")
		}
	case MsgUpsert, MsgDestroy:
		fam := r.u8()
		if r.err == nil && fam != 4 && fam != 6 {
			return Message{}, fmt.Errorf("entry: address family %d", fam)
		}
		e := &m.Entry
		e.Proto, e.Zone = r.u8(), r.u16()
		if r.err == nil && !replicated(e.Proto) {
			return Message{}, fmt.Errorf("entry: protocol %d is not replicated", e.Proto)
		}
		e.Orig = r.tuple(fam)
		if m.Type == MsgUpsert {
			e.Reply = r.tuple(fam)
			e.Status, e.Timeout, e.Mark = r.u32(), r.u32(), r.u32()
			e.TCP = TCPInfo{State: r.u8(), WScaleOrig: r.u8(), WScaleRepl: r.u8(), FlagsOrig: r.u8(), FlagsRepl: r.u8()}
		}
	case MsgDumpBegin, MsgDumpEnd:
	default:
		return Message{}, fmt.Errorf("message type %d: unknown", b[0])
	}
	if r.err != nil {
		return Message{}, fmt.Errorf("message type %d: %w", m.Type, r.err)
	}
	if len(r.b) != 0 {
		return Message{}, fmt.Errorf("message type %d: %d bytes too many", m.Type, len(r.b))
	}
	return m, nil
}
