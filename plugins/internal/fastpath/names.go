package fastpath

import (
	"unicode"

	"github.com/vpcnat/vpcnat/pkg/cniconf"
)

// Keys of the annotation contract and defaults (pkg/annotations and pkg/state hold the same; a
// test keeps them equal: importing those packages here would link what this package avoids).
const (
	// GatewayKey marks a pod as a vpcnat gateway.
	GatewayKey = "ovn.kubernetes.io/vpc_nat_gw"
	// PodAnnotationsCapability is how containerd and CRI-O hand pod annotations to plugins.
	PodAnnotationsCapability = "io.kubernetes.cri.pod-annotations"
	// DefaultGatewayNamespace is the only namespace whose pods can be gateways unless configured.
	DefaultGatewayNamespace = "kube-system"
	// DefaultStateDir is where the attachment records live (pkg/state.DefaultDir).
	DefaultStateDir = "/run/vpcnat"
	// MaxIfNameLen is the kernel's limit (IFNAMSIZ - 1).
	MaxIfNameLen = cniconf.MaxIfNameLen
)

// SupportedVersions are the CNI versions vpcnat speaks. 0.3.0 and 0.3.1 are there because the
// conflists of flannel, Calico, Cilium, Kube-OVN and weave-net say so, and the installer keeps a
// list's version (weave-net's plugin speaks nothing newer): their result is 0.4.0's, and a
// runtime never sends CHECK below 0.4.0. Older versions (no interfaces in the result) are not
// spoken: the installer leaves such a list alone rather than chain into it.
var SupportedVersions = []string{"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"}

func supported(v string) bool {
	for _, s := range SupportedVersions {
		if s == v {
			return true
		}
	}
	return false
}

// recordName reports whether s can name an attachment record: pkg/state's rule (a test keeps
// them equal); state.Store refuses to write any other name, so no record of it exists.
func recordName(s string) bool {
	if len(s) == 0 || len(s) > 128 || !cniconf.NameChar(s[0]) || s[0] == '.' || s[0] == '-' || s[0] == '_' {
		return false
	}
	for i := 1; i < len(s); i++ {
		if !cniconf.NameChar(s[i]) {
			return false
		}
	}
	return true
}

// The checks of the CNI library's skel and utils packages (CNI_CONTAINERID, CNI_IFNAME, the
// network name), written out: their regexp costs start-up time.

func validName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
		if !alnum && (i == 0 || c != '_' && c != '.' && c != '-') {
			return false
		}
	}
	return true
}

func validIfName(s string) bool {
	if s == "" || len(s) > MaxIfNameLen || s == "." || s == ".." {
		return false
	}
	for _, r := range s {
		if r == '/' || r == ':' || unicode.IsSpace(r) {
			return false
		}
	}
	return true
}
