package state

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestWriteReadDelete(t *testing.T) {
	s := Store{Dir: filepath.Join(t.TempDir(), "vpcnat")}
	r := Record{PodUID: "0b5f-uid", Namespace: "kube-system", Name: "vpc-nat-gw-ngw-0", Gateway: "ngw",
		ContainerID: "c1", Netns: "/var/run/netns/cni-1", IfNames: []string{"net1", "vpc-1"}}
	if err := s.Write(r); err != nil {
		t.Fatal(err)
	}
	got, err := s.Read(r.PodUID)
	if err != nil {
		t.Fatal(err)
	}
	r.Version = Version
	if !reflect.DeepEqual(*got, r) {
		t.Errorf("read %+v, want %+v", *got, r)
	}
	// No temp files left behind by the atomic write.
	entries, _ := os.ReadDir(s.Dir)
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want just the record", len(entries))
	}

	// A late DEL of an older sandbox keeps the newer sandbox's record.
	if err := s.Delete(r.PodUID, "old-container"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Read(r.PodUID); err != nil {
		t.Errorf("record of the current sandbox removed by an old sandbox's DEL: %v", err)
	}
	if err := s.Delete(r.PodUID, "c1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Read(r.PodUID); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("after delete: %v, want not-exist", err)
	}
	if err := s.Delete(r.PodUID, "c1"); err != nil {
		t.Errorf("second delete: %v, want nil (idempotent)", err)
	}
}

func TestUnsafePodUIDRefused(t *testing.T) {
	s := Store{Dir: t.TempDir()}
	for _, uid := range []string{"", "..", "../etc/passwd", "a/b", "x\ny", ".hidden"} {
		if err := s.Write(Record{PodUID: uid}); err == nil {
			t.Errorf("pod UID %q accepted", uid)
		}
	}
}

func TestListSkipsBadRecords(t *testing.T) {
	s := Store{Dir: t.TempDir()}
	for _, uid := range []string{"b", "a"} {
		if err := s.Write(Record{PodUID: uid, ContainerID: "c-" + uid}); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(s.Dir, "bad.json"), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	recs, errs := s.List()
	if len(recs) != 2 || recs[0].PodUID != "a" || recs[1].PodUID != "b" {
		t.Errorf("List = %+v, want a and b in order", recs)
	}
	if len(errs) != 1 {
		t.Errorf("List errors = %v, want one for bad.json", errs)
	}
}

func TestWritable(t *testing.T) {
	if err := (Store{Dir: filepath.Join(t.TempDir(), "x")}).Writable(); err != nil {
		t.Errorf("fresh directory: %v", err)
	}
	f := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(f, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := (Store{Dir: filepath.Join(f, "sub")}).Writable(); err == nil {
		t.Error("a directory under a regular file reported writable")
	}
}

// TestOldRecordReadable: a record written before host links carried their ifindexes (names
// only) still reads, and says it knows no ifindex; a new one round-trips its host links.
func TestOldRecordReadable(t *testing.T) {
	s := Store{Dir: t.TempDir()}
	old := `{"version":"v1","podUID":"u1","namespace":"kube-system","name":"gw-0","gateway":"ngw",` +
		`"containerID":"c1","netns":"/var/run/netns/cni-1","ifnames":["net1","vpc-1"],"hostIfnames":["vnat1"]}`
	if err := os.WriteFile(filepath.Join(s.Dir, "u1.json"), []byte(old), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := s.Read("u1")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := r.HostLinkOf("vnat1"); ok || len(r.HostIfNames) != 1 {
		t.Errorf("old record: %+v; want host names and no ifindex", r)
	}
	r.PodUID = "u2"
	r.HostLinks = []HostLink{{Name: "vnat1", Index: 42, PeerIndex: 4}}
	if err := s.Write(*r); err != nil {
		t.Fatal(err)
	}
	r2, err := s.Read("u2")
	if err != nil {
		t.Fatal(err)
	}
	if hl, ok := r2.HostLinkOf("vnat1"); !ok || hl != (HostLink{Name: "vnat1", Index: 42, PeerIndex: 4}) {
		t.Errorf("HostLinkOf(vnat1) = %+v, %v after a round trip", hl, ok)
	}
	if _, ok := r2.HostLinkOf("vnat2"); ok {
		t.Error("HostLinkOf(vnat2): a name the record lacks is known")
	}
}
