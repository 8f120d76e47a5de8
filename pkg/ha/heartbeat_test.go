package ha

import (
	"net/netip"
	"strings"
	"testing"
)

func TestHeartbeatRoundTrip(t *testing.T) {
	for _, h := range []Heartbeat{
		{Gateway: "gw1", Replica: "vpc-nat-gw-gw1-5d8f-abcde", Priority: 100, Term: 7, Active: true, Healthy: true},
		{Gateway: "g", Replica: "r", Term: 1<<64 - 1},
		{Gateway: strings.Repeat("g", 255), Replica: strings.Repeat("r", 255), Healthy: true},
		{Gateway: "gw1", Replica: "r1", Active: true, Sync: netip.MustParseAddrPort("10.16.0.7:9540")},
		{Gateway: "gw1", Replica: "r2", Sync: netip.MustParseAddrPort("[2001:db8::7]:9540")},
		{Gateway: "gw1", Replica: "r2", Stamp: 12345678901},
		{Gateway: "gw1", Replica: "r1", Active: true, Sync: netip.MustParseAddrPort("10.16.0.7:9540"), Stamp: 1,
			Echo: Echo{Peer: EchoPeer("r2"), Stamp: 1 << 63, Held: 250_000}},
	} {
		b, err := h.Marshal()
		if err != nil {
			t.Fatalf("Marshal(%+v): %v", h, err)
		}
		// Ethernet pads short frames to 60 bytes: trailing zeros must not matter.
		got, err := ParseHeartbeat(append(b, make([]byte, 30)...))
		if err != nil || got != h {
			t.Fatalf("ParseHeartbeat(Marshal(%+v)) = %+v, %v", h, got, err)
		}
	}
}

func TestHeartbeatRefused(t *testing.T) {
	if _, err := (Heartbeat{Gateway: "", Replica: "r"}).Marshal(); err == nil {
		t.Fatal("empty gateway name accepted")
	}
	if _, err := (Heartbeat{Gateway: "g", Replica: strings.Repeat("r", 256)}).Marshal(); err == nil {
		t.Fatal("256-byte replica name accepted")
	}
	good, _ := Heartbeat{Gateway: "gw1", Replica: "r1"}.Marshal()
	for name, b := range map[string][]byte{
		"empty":          nil,
		"other protocol": append([]byte("XXXX"), good[4:]...),
		"version 2":      append(append(append([]byte{}, good[:4]...), 2), good[5:]...),
		"truncated name": good[:len(good)-1],
		"no replica":     good[:15+1+3],
		"truncated sync": append(append([]byte{}, good...), fieldSync, 6, 10, 0, 0),
		"short sync":     append(append([]byte{}, good...), fieldSync, 3, 10, 0, 0),
		"short stamp":    append(append([]byte{}, good...), fieldStamp, 4, 0, 0, 0, 1),
		"short echo":     append(append([]byte{}, good...), fieldEcho, 8, 0, 0, 0, 1, 0, 0, 0, 1),
	} {
		if h, err := ParseHeartbeat(b); err == nil {
			t.Errorf("%s: parsed as %+v", name, h)
		}
	}
}

func FuzzParseHeartbeat(f *testing.F) {
	good, _ := Heartbeat{Gateway: "gw1", Replica: "r1", Term: 3, Active: true}.Marshal()
	f.Add(good)
	f.Add([]byte("VNHA\x01"))
	withSync, _ := Heartbeat{Gateway: "gw1", Replica: "r1", Sync: netip.MustParseAddrPort("10.16.0.7:9540")}.Marshal()
	f.Add(withSync)
	withEcho, _ := Heartbeat{Gateway: "gw1", Replica: "r1", Stamp: 99, Echo: Echo{Peer: EchoPeer("r2"), Stamp: 7, Held: 3}}.Marshal()
	f.Add(withEcho)
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParseHeartbeat(b)
		if err != nil {
			return
		}
		again, err := h.Marshal()
		if err != nil {
			t.Fatalf("parsed %+v does not marshal: %v", h, err)
		}
		if back, err := ParseHeartbeat(again); err != nil || back != h {
			t.Fatalf("round trip of %+v: %+v, %v", h, back, err)
		}
	})
}

// TestHeartbeatFieldsForward: an agent skips an optional field it does not know (a later
// version's), and an agent that predates the sync field reads a frame with one as before: the
// field sits where it reads padding.
func TestHeartbeatFieldsForward(t *testing.T) {
	h := Heartbeat{Gateway: "gw1", Replica: "r1", Term: 2, Sync: netip.MustParseAddrPort("10.16.0.7:9540")}
	b, _ := h.Marshal()
	later := append(append([]byte{}, b...), 9, 2, 0xaa, 0xbb, 0, 0, 0)
	if got, err := ParseHeartbeat(later); err != nil || got != h {
		t.Fatalf("with an unknown field: %+v, %v; want %+v", got, err, h)
	}
	noSync := h
	noSync.Sync = netip.AddrPort{}
	old, _ := noSync.Marshal()
	if string(b[:len(old)]) != string(old) {
		t.Fatalf("the sync field changes the frame's version-1 part: %x vs %x", b[:len(old)], old)
	}
}
