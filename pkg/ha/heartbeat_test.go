package ha

import (
	"strings"
	"testing"
)

func TestHeartbeatRoundTrip(t *testing.T) {
	for _, h := range []Heartbeat{
		{Gateway: "gw1", Replica: "vpc-nat-gw-gw1-5d8f-abcde", Priority: 100, Term: 7, Active: true, Healthy: true},
		{Gateway: "g", Replica: "r", Term: 1<<64 - 1},
		{Gateway: strings.Repeat("g", 255), Replica: strings.Repeat("r", 255), Healthy: true},
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
