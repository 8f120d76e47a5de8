package arp

import (
	"net"
	"net/netip"
	"slices"
	"testing"
)

func TestRequest(t *testing.T) {
	mac := net.HardwareAddr{0x06, 0x5e, 0xed, 0, 0, 1}
	got := Request(mac, netip.MustParseAddr("192.168.0.111"), netip.MustParseAddr("192.168.0.111"))
	want := []byte{
		0, 1, 8, 0, 6, 4, 0, 1, // Ethernet, IPv4, request
		0x06, 0x5e, 0xed, 0, 0, 1, 192, 168, 0, 111, // sender
		0, 0, 0, 0, 0, 0, 192, 168, 0, 111, // target: the same address
	}
	if !slices.Equal(got, want) {
		t.Fatalf("gratuitous ARP\n got % x\nwant % x", got, want)
	}
	if s, ok := Sender(got); !ok || s != netip.MustParseAddr("192.168.0.111") {
		t.Fatalf("Sender = %v, %v", s, ok)
	}
	if _, ok := Sender(got[:27]); ok {
		t.Fatal("a truncated payload has a sender")
	}
	probe := Request(mac, netip.IPv4Unspecified(), netip.MustParseAddr("198.51.100.1"))
	if s, _ := Sender(probe); !s.IsUnspecified() {
		t.Fatalf("probe sender %v, want 0.0.0.0", s)
	}
}
