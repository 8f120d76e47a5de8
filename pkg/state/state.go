// Package state holds the node-local attachment records: one JSON file per gateway pod, written
// by the CNI plugin when it plumbs the pod's sandbox and read by the daemon to find the pod's
// network namespace. A new container ID for the same pod means a new sandbox (and netns): the
// daemon must initialise it again.
package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
)

// DefaultDir is where records live; /run is a tmpfs, so records vanish with a reboot exactly as
// the network namespaces they point at do.
const DefaultDir = "/run/vpcnat"

// Version of the record format; a reader refuses others.
const Version = "v1"

// Record is one gateway pod's attachment.
type Record struct {
	Version     string `json:"version"`
	PodUID      string `json:"podUID"`
	Namespace   string `json:"namespace"`
	Name        string `json:"name"`
	Gateway     string `json:"gateway"`
	ContainerID string `json:"containerID"`
	Netns       string `json:"netns"`
	// IfNames are the interfaces the plugin created inside the pod (net1 first).
	IfNames []string `json:"ifnames"`
	// HostIfNames are node-side interfaces the plugin created (veth peers), for GC.
	HostIfNames []string `json:"hostIfnames,omitempty"`
	// HostLinks identify the same node-side interfaces by name and ifindex. Every sandbox of a
	// gateway uses the same node-side names, so a name alone does not say whose link it is: a
	// DEL or GC removes a node-side link only if it is the one this attachment made. Records
	// written before this field existed have none (see HostLinkOf).
	HostLinks []HostLink `json:"hostLinks,omitempty"`
}

// HostLink is one node-side veth end an attachment made.
type HostLink struct {
	Name string `json:"name"`
	// Index is its ifindex in the node netns (the kernel does not reuse one soon: it counts up).
	Index int `json:"ifindex"`
	// PeerIndex is the ifindex of its peer in the pod netns.
	PeerIndex int `json:"peerIfindex"`
}

// HostLinkOf returns what the record knows of the node-side link called name: ok is false for a
// record written before HostLinks existed (or one that lacks the name).
func (r *Record) HostLinkOf(name string) (HostLink, bool) {
	for _, l := range r.HostLinks {
		if l.Name == name && l.Index > 0 {
			return l, true
		}
	}
	return HostLink{}, false
}

// Store reads and writes records in one directory.
type Store struct{ Dir string }

// safeName accepts only a safe file name (a pod UID is a UUID in practice), so a hostile CNI_ARGS
// value can never write outside the directory. Written out rather than as a regexp: the CNI
// plugin runs for every pod, and compiling a regexp at start-up costs a third of a millisecond.
func safeName(s string) bool {
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

func nameChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-'
}

// ErrInvalidName is returned for a pod UID that cannot name a record: Write refuses it, so no
// record of that name exists (DEL has nothing to remove).
var ErrInvalidName = errors.New("is not a valid record name")

func (s Store) path(podUID string) (string, error) {
	if !safeName(podUID) {
		return "", fmt.Errorf("pod UID %q %w", podUID, ErrInvalidName)
	}
	return filepath.Join(s.Dir, podUID+".json"), nil
}

// Write stores a record atomically (temp file + rename): a reader sees the old record or the new
// one, never a torn one, even if the writer is killed.
func (s Store) Write(r Record) error {
	r.Version = Version
	p, err := s.path(r.PodUID)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return fmt.Errorf("creating state directory %s: %w", s.Dir, err)
	}
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encoding record of pod %s: %w", r.PodUID, err)
	}
	tmp, err := os.CreateTemp(s.Dir, ".tmp-*")
	if err != nil {
		return fmt.Errorf("writing record of pod %s: %w", r.PodUID, err)
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("writing record of pod %s: %w", r.PodUID, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing record of pod %s: %w", r.PodUID, err)
	}
	if err := os.Rename(tmp.Name(), p); err != nil {
		return fmt.Errorf("writing record of pod %s: %w", r.PodUID, err)
	}
	return nil
}

// Read returns the record of a pod; fs.ErrNotExist (wrapped) when there is none.
func (s Store) Read(podUID string) (*Record, error) {
	p, err := s.path(podUID)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("reading record of pod %s: %w", podUID, err)
	}
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("record %s: invalid JSON: %w", p, err)
	}
	if r.Version != Version {
		return nil, fmt.Errorf("record %s: version %q is not supported (want %q)", p, r.Version, Version)
	}
	return &r, nil
}

// Delete removes a pod's record if it belongs to containerID ("" = whatever it holds). A record
// of a newer sandbox of the same pod is kept: a late DEL of the old sandbox must not orphan it.
// A missing record is not an error (DEL must be idempotent).
func (s Store) Delete(podUID, containerID string) error {
	r, err := s.Read(podUID)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err == nil && containerID != "" && r.ContainerID != containerID {
		return nil
	}
	p, perr := s.path(podUID)
	if perr != nil {
		return perr
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing record of pod %s: %w", podUID, err)
	}
	return nil
}

// List returns every readable record, sorted by pod UID, and the errors of unreadable ones.
func (s Store) List() ([]Record, []error) {
	entries, err := os.ReadDir(s.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, []error{fmt.Errorf("listing %s: %w", s.Dir, err)}
	}
	var out []Record
	var errs []error
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || filepath.Ext(name) != ".json" {
			continue
		}
		r, err := s.Read(name[:len(name)-len(".json")])
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, *r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].PodUID < out[j].PodUID })
	return out, errs
}

// Writable checks the directory can take a record (the plugin's STATUS).
func (s Store) Writable() error {
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return fmt.Errorf("state directory %s: %w", s.Dir, err)
	}
	f, err := os.CreateTemp(s.Dir, ".probe-*")
	if err != nil {
		return fmt.Errorf("state directory %s is not writable: %w", s.Dir, err)
	}
	f.Close()
	return os.Remove(f.Name())
}
