// Package cniconf holds the rules of the vpcnat CNI plugin's conflist entry that more than the
// plugin needs: which top-level members the plugin accepts (exact case) and what values of its
// own members (gatewayNamespaces, stateDir, master) it accepts. The plugin's parsers
// (plugins/internal/conf for the full plugin, plugins/internal/fastpath for the dispatcher) and
// the installer (pkg/cniinstall, which must never write an entry the plugin refuses) use these
// rules, so the three cannot disagree.
//
// It links nothing that starts slowly (no encoding/json, fmt, regexp): the dispatcher, which runs
// for every pod on the node, imports it.
package cniconf

import (
	"errors"
	"path/filepath"
	"strconv"
	"strings"
)

// ReservedPrefix is the CNI spec's namespace of member names ("cni.dev/..."): accepted and,
// except ValidAttachmentsKey, ignored (a newer libcni may add one, and it cannot be a typo of
// ours).
const ReservedPrefix = "cni.dev/"

// ValidAttachmentsKey is the member libcni adds for GC.
const ValidAttachmentsKey = "cni.dev/valid-attachments"

// Fields are the top-level members the plugin accepts besides ReservedPrefix ones, exact case:
// vpcnat's own (gatewayNamespaces, stateDir, master) and what the CNI spec defines for every
// plugin and a runtime or libcni puts there.
var Fields = []string{"cniVersion", "name", "type", "gatewayNamespaces", "stateDir", "master",
	"runtimeConfig", "prevResult", "capabilities", "ipam", "dns", "args", ValidAttachmentsKey}

// Known reports whether the plugin accepts a top-level member called key (exact case).
func Known(key string) bool {
	if strings.HasPrefix(key, ReservedPrefix) {
		return true
	}
	for _, f := range Fields {
		if f == key {
			return true
		}
	}
	return false
}

// Hint is what to tell about an unknown member key: the accepted name it differs from only in
// case, if any (" (did you mean "master"? names are case-sensitive)"), else "".
func Hint(key string) string {
	for _, f := range Fields {
		if strings.EqualFold(f, key) {
			return " (did you mean " + strconv.Quote(f) + "? names are case-sensitive)"
		}
	}
	return ""
}

// MaxIfNameLen is the kernel's limit on an interface name (IFNAMSIZ - 1).
const MaxIfNameLen = 15

// CheckNamespace checks a Kubernetes namespace name: an RFC 1123 label (at most 63 characters,
// lowercase letters, digits and '-', starting and ending with a letter or digit), the rule of
// k8s.io/apimachinery's IsDNS1123Label.
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
		if c := s[i]; !NameChar(c) {
			return errors.New("character " + strconv.QuoteRune(rune(c)) + " is not allowed in an interface name: use letters, digits, '.', '_' and '-'")
		}
	}
	return nil
}

// NameChar reports whether c may appear in an interface name (and in an attachment record's
// name): a letter, a digit, '.', '_' or '-'.
func NameChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-'
}

// CleanPath reports whether p is already clean (filepath.Clean(p) == p): no "..", ".",
// repeated or trailing slash.
func CleanPath(p string) bool { return filepath.Clean(p) == p }

// CheckStateDir accepts only an absolute, clean path (no "..", ".", repeated or trailing
// slash): the records must land exactly where the daemon looks for them.
func CheckStateDir(p string) error {
	if !filepath.IsAbs(p) {
		return errors.New(strconv.Quote(p) + " is not an absolute path")
	}
	if !CleanPath(p) {
		return errors.New(strconv.Quote(p) + " is not a clean path (it would be " + strconv.Quote(filepath.Clean(p)) +
			`: no "..", ".", repeated or trailing slash)`)
	}
	return nil
}

// Own are the values of vpcnat's own members. Empty means absent: the plugin's default (the
// gateway namespace kube-system, state directory /run/vpcnat, the NIC plan's master).
type Own struct {
	GatewayNamespaces []string
	StateDir          string
	Master            string
}

// Validate checks vpcnat's own members, each error naming the member and its value.
func (o Own) Validate() error {
	for i, ns := range o.GatewayNamespaces {
		if err := CheckNamespace(ns); err != nil {
			return &FieldError{Field: "gatewayNamespaces[" + strconv.Itoa(i) + "]", Msg: "invalid namespace " + strconv.Quote(ns), Err: err}
		}
	}
	if o.StateDir != "" {
		if err := CheckStateDir(o.StateDir); err != nil {
			return &FieldError{Field: "stateDir", Err: err}
		}
	}
	if o.Master != "" {
		if err := CheckIfName(o.Master); err != nil {
			return &FieldError{Field: "master", Msg: "invalid value " + strconv.Quote(o.Master), Err: err}
		}
	}
	return nil
}

// FieldError is a refused member: "<Field>: <Msg>: <Err>".
type FieldError struct {
	Field, Msg string
	Err        error
}

func (e *FieldError) Error() string {
	s := e.Field + ": "
	if e.Msg != "" {
		s += e.Msg + ": "
	}
	return s + e.Err.Error()
}

func (e *FieldError) Unwrap() error { return e.Err }

// Clip shortens a raw JSON value for a message (at most 256 bytes, then "...").
func Clip(raw []byte) string {
	const max = 256
	if len(raw) > max {
		return string(raw[:max]) + "..."
	}
	return string(raw)
}
