package fastpath

import (
	"errors"
	"strconv"
	"unicode"
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
	MaxIfNameLen = 15
)

// SupportedVersions are the CNI versions vpcnat speaks.
var SupportedVersions = []string{"0.4.0", "1.0.0", "1.1.0"}

func supported(v string) bool {
	for _, s := range SupportedVersions {
		if s == v {
			return true
		}
	}
	return false
}

// CheckNamespace checks a Kubernetes namespace name: an RFC 1123 label (at most 63 characters,
// lowercase letters, digits and '-', starting and ending with a letter or digit), the rule of
// k8s.io/apimachinery's IsDNS1123Label (a test checks that the two agree).
func CheckNamespace(s string) error {
	if s == "" || len(s) > 63 {
		return errors.New("must be 1-63 characters long (RFC 1123 label), has " + strconv.Itoa(len(s)))
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := 'a' <= c && c <= 'z' || '0' <= c && c <= '9'
		if !alnum && (c != '-' || i == 0 || i == len(s)-1) {
			return errors.New("character " + strconv.QuoteRune(rune(c)) + " at " + strconv.Itoa(i) +
				": an RFC 1123 label is lowercase letters, digits and '-', starting and ending with a letter or digit")
		}
	}
	return nil
}

// CheckIfName checks a Linux interface name the way pkg/annotations does for the NIC plan: 1-15
// characters out of letters, digits, '.', '_' and '-', not "." or "..".
func CheckIfName(s string) error {
	switch {
	case s == "":
		return errors.New("an interface name is required")
	case len(s) > MaxIfNameLen:
		return errors.New("an interface name has at most " + strconv.Itoa(MaxIfNameLen) + " characters")
	case s == "." || s == "..":
		return errors.New("is not an interface name")
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !nameChar(c) {
			return errors.New("character " + strconv.QuoteRune(rune(c)) + " is not allowed in an interface name: use letters, digits, '.', '_' and '-'")
		}
	}
	return nil
}

func nameChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-'
}

// recordName reports whether s can name an attachment record: pkg/state's rule (a test keeps
// them equal); state.Store refuses to write any other name, so no record of it exists.
func recordName(s string) bool {
	if len(s) == 0 || len(s) > 128 || !nameChar(s[0]) || s[0] == '.' || s[0] == '-' || s[0] == '_' {
		return false
	}
	for i := 1; i < len(s); i++ {
		if !nameChar(s[i]) {
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
