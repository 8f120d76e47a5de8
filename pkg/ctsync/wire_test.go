package ctsync

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// Entries as the active replica's kernel reports them (the test addresses of docs/design.md).
var (
	snatEntry = Entry{Proto: unix.IPPROTO_TCP,
		Orig:   Tuple{Src: netip.MustParseAddr("203.0.113.12"), Dst: netip.MustParseAddr("198.51.100.1"), SrcPort: 41000, DstPort: 8001},
		Reply:  Tuple{Src: netip.MustParseAddr("198.51.100.1"), Dst: netip.MustParseAddr("198.51.100.10"), SrcPort: 8001, DstPort: 6573},
		Status: 0x19e, Timeout: 431999, TCP: TCPInfo{State: 3, WScaleOrig: 7, WScaleRepl: 7, FlagsOrig: 0x23, FlagsRepl: 0x23}}
	dnatEntry = Entry{Proto: unix.IPPROTO_UDP, Zone: 3, Mark: 0x40,
		Orig:   Tuple{Src: netip.MustParseAddr("198.51.100.1"), Dst: netip.MustParseAddr("198.51.100.10"), SrcPort: 5353, DstPort: 5000},
		Reply:  Tuple{Src: netip.MustParseAddr("203.0.113.10"), Dst: netip.MustParseAddr("198.51.100.1"), SrcPort: 5000, DstPort: 5353},
		Status: 0x1ae, Timeout: 117}
	icmp6Entry = Entry{Proto: unix.IPPROTO_ICMPV6,
		Orig:  Tuple{Src: netip.MustParseAddr("2001:db8:1::10"), Dst: netip.MustParseAddr("2001:db8:2::1"), ID: 77, Type: 128},
		Reply: Tuple{Src: netip.MustParseAddr("2001:db8:2::1"), Dst: netip.MustParseAddr("2001:db8:1::10"), ID: 77, Type: 129}, Timeout: 29}
)

func TestMessageRoundTrip(t *testing.T) {
	for _, m := range []Message{
		{Type: MsgHello, Gateway: "gw1", Replica: "vpc-nat-gw-gw1-5d8f-abcde"},
		{Type: MsgHello, Gateway: strings.Repeat("g", 255), Replica: strings.Repeat("r", 255)},
		{Type: MsgUpsert, Entry: snatEntry},
		{Type: MsgUpsert, Entry: dnatEntry},
		{Type: MsgUpsert, Entry: icmp6Entry},
		{Type: MsgDestroy, Entry: Entry{Proto: snatEntry.Proto, Zone: snatEntry.Zone, Orig: snatEntry.Orig}},
		{Type: MsgDumpBegin},
		{Type: MsgDumpEnd},
	} {
		b, err := AppendMessage(nil, m)
		if err != nil {
			t.Fatalf("AppendMessage(%+v): %v", m, err)
		}
		got, err := ReadMessage(bytes.NewReader(b))
		if err != nil || got != m {
			t.Fatalf("ReadMessage(AppendMessage(%+v)) = %+v, %v", m, got, err)
		}
	}
}

// TestDestroyCarriesTheKey: a Destroy message carries the key only; the rest of the entry does
// not travel.
func TestDestroyCarriesTheKey(t *testing.T) {
	b, err := AppendMessage(nil, Message{Type: MsgDestroy, Entry: snatEntry})
	if err != nil {
		t.Fatal(err)
	}
	got, err := ReadMessage(bytes.NewReader(b))
	if err != nil || got.Entry.Key() != snatEntry.Key() || got.Entry.Reply.Src.IsValid() || got.Entry.Timeout != 0 {
		t.Fatalf("destroy: %+v, %v; want only the key %+v", got.Entry, err, snatEntry.Key())
	}
}

func TestMessageRefused(t *testing.T) {
	mixed := snatEntry
	mixed.Reply.Src = netip.MustParseAddr("2001:db8::1")
	sctp := snatEntry
	sctp.Proto = unix.IPPROTO_SCTP
	for name, m := range map[string]Message{
		"empty gateway":      {Type: MsgHello, Replica: "r"},
		"long replica":       {Type: MsgHello, Gateway: "g", Replica: strings.Repeat("r", 256)},
		"mixed families":     {Type: MsgUpsert, Entry: mixed},
		"not replicated":     {Type: MsgUpsert, Entry: sctp},
		"no addresses":       {Type: MsgUpsert, Entry: Entry{Proto: unix.IPPROTO_TCP}},
		"unknown type (200)": {Type: 200},
	} {
		if b, err := AppendMessage([]byte("keep"), m); err == nil || string(b) != "keep" {
			t.Errorf("%s: encoded (%q, %v)", name, b, err)
		}
	}
	good, _ := AppendMessage(nil, Message{Type: MsgUpsert, Entry: snatEntry})
	hello, _ := AppendMessage(nil, Message{Type: MsgHello, Gateway: "g", Replica: "r"})
	for name, b := range map[string][]byte{
		"empty":           {},
		"truncated entry": good[4 : len(good)-1],
		"trailing byte":   append(append([]byte{}, good[4:]...), 0),
		"family 5":        append([]byte{byte(MsgUpsert), 5}, good[6:]...),
		"protocol 132":    append([]byte{byte(MsgUpsert), 4, unix.IPPROTO_SCTP}, good[7:]...),
		"other protocol":  append([]byte{byte(MsgHello), 'X', 'X', 'X', 'X'}, hello[9:]...),
		"version 2":       append(append([]byte{}, hello[4:9]...), append([]byte{2}, hello[10:]...)...),
		"empty replica":   append(append([]byte{}, hello[4:len(hello)-2]...), 0),
		"unknown type":    {99},
	} {
		if m, err := ParseMessage(b); err == nil {
			t.Errorf("%s: parsed as %+v", name, m)
		}
	}
	for name, b := range map[string][]byte{
		"zero length": {0, 0, 0, 0},
		"too long":    {0, 0, 0x10, 0},
		"cut short":   good[:len(good)-3],
	} {
		if m, err := ReadMessage(bytes.NewReader(b)); err == nil {
			t.Errorf("%s: read %+v", name, m)
		}
	}
}

func FuzzParseMessage(f *testing.F) {
	for _, m := range []Message{{Type: MsgHello, Gateway: "gw1", Replica: "r1"}, {Type: MsgUpsert, Entry: snatEntry},
		{Type: MsgUpsert, Entry: icmp6Entry}, {Type: MsgDestroy, Entry: dnatEntry}, {Type: MsgDumpEnd}} {
		b, _ := AppendMessage(nil, m)
		f.Add(b[4:])
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseMessage(b)
		if err != nil {
			return
		}
		again, err := AppendMessage(nil, m)
		if err != nil {
			t.Fatalf("parsed %+v does not encode: %v", m, err)
		}
		if !bytes.Equal(again[4:], b) {
			t.Fatalf("parsed %+v encodes as %x, not %x", m, again[4:], b)
		}
	})
}
