package topo

import "testing"

// TestIgnoreIPv6DAD: exactly the DAD transition is ignored.
func TestIgnoreIPv6DAD(t *testing.T) {
	for in, want := range map[string]string{
		"5: net1    inet6 fe80::c8:caff:fe97:ff41/64 scope link tentative \\       valid_lft forever preferred_lft forever": "5: net1    inet6 fe80::c8:caff:fe97:ff41/64 scope link \\       valid_lft forever preferred_lft forever",
		"5: net1    inet6 fe80::c8:caff:fe97:ff41/64 scope link \\       valid_lft forever preferred_lft forever":           "5: net1    inet6 fe80::c8:caff:fe97:ff41/64 scope link \\       valid_lft forever preferred_lft forever",
		"5: net1    inet6 2001:db8::1/64 scope global tentative \\       valid_lft forever preferred_lft forever":           "5: net1    inet6 2001:db8::1/64 scope global tentative \\       valid_lft forever preferred_lft forever",
		"5: net1    inet 192.168.0.111/24 scope global net1\\       valid_lft forever preferred_lft forever":                "5: net1    inet 192.168.0.111/24 scope global net1\\       valid_lft forever preferred_lft forever",
		"local fe80::c8:caff:fe97:ff41 dev net1 table local proto kernel metric 0 pref medium":                              "",
		"anycast fe80:: dev net1 table local proto kernel metric 0 pref medium":                                             "",
		"fe80::/64 dev net1 proto kernel metric 256 pref medium":                                                            "fe80::/64 dev net1 proto kernel metric 256 pref medium",
		"local 192.168.0.111 dev net1 table local proto kernel scope host src 192.168.0.111":                                "local 192.168.0.111 dev net1 table local proto kernel scope host src 192.168.0.111",
		"local 2001:db8::1 dev net1 table local proto kernel metric 0 pref medium":                                          "local 2001:db8::1 dev net1 table local proto kernel metric 0 pref medium",
	} {
		got, keep := IgnoreIPv6DAD(in)
		if !keep {
			got = ""
		}
		if got != want {
			t.Errorf("%q: got %q, want %q", in, got, want)
		}
	}
}
