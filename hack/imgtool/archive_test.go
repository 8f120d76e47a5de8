package main

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// tree makes a small root: an executable, a nested file, a symlink and an empty directory.
func tree(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(d, "usr/sbin"), 0o755))
	must(t, os.MkdirAll(filepath.Join(d, "empty"), 0o700))
	must(t, os.WriteFile(filepath.Join(d, "usr/sbin/tool"), []byte("#!binary"), 0o755))
	must(t, os.WriteFile(filepath.Join(d, "etc-protocols"), []byte("tcp 6 TCP\n"), 0o644))
	must(t, os.Symlink("tool", filepath.Join(d, "usr/sbin/tool-save")))
	return d
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestPackDirEntries(t *testing.T) {
	d := tree(t)
	// Timestamps and ownership of the source must not leak into the layer.
	must(t, os.Chtimes(filepath.Join(d, "usr/sbin/tool"), time.Now(), time.Now()))
	l, err := PackDir(d)
	must(t, err)
	type entry struct {
		typ  byte
		mode int64
		link string
		body string
	}
	got := map[string]entry{}
	var order []string
	tr := tar.NewReader(bytes.NewReader(l.Data))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		must(t, err)
		if h.Uid != 0 || h.Gid != 0 || !h.ModTime.Equal(epoch) {
			t.Errorf("%s: uid %d gid %d mtime %v, want 0 0 %v", h.Name, h.Uid, h.Gid, h.ModTime, epoch)
		}
		b, err := io.ReadAll(tr)
		must(t, err)
		got[h.Name] = entry{h.Typeflag, h.Mode, h.Linkname, string(b)}
		order = append(order, h.Name)
	}
	want := map[string]entry{
		"empty/":             {tar.TypeDir, 0o700, "", ""},
		"etc-protocols":      {tar.TypeReg, 0o644, "", "tcp 6 TCP\n"},
		"usr/":               {tar.TypeDir, 0o755, "", ""},
		"usr/sbin/":          {tar.TypeDir, 0o755, "", ""},
		"usr/sbin/tool":      {tar.TypeReg, 0o755, "", "#!binary"},
		"usr/sbin/tool-save": {tar.TypeSymlink, 0o777, "tool", ""},
	}
	if len(got) != len(want) {
		t.Errorf("layer has %v, want %d entries", order, len(want))
	}
	for name, w := range want {
		if g, ok := got[name]; !ok || g != w {
			t.Errorf("%s: got %+v (present %v), want %+v", name, g, ok, w)
		}
	}
	// Parents before children, or an extracting runtime creates directories with default modes.
	if strings.Join(order, " ") != "empty/ etc-protocols usr/ usr/sbin/ usr/sbin/tool usr/sbin/tool-save" {
		t.Errorf("entry order %v is not lexical with parents first", order)
	}
}

func TestPackDirDeterministic(t *testing.T) {
	d := tree(t)
	a, err := PackDir(d)
	must(t, err)
	must(t, os.Chtimes(filepath.Join(d, "etc-protocols"), time.Now().Add(time.Hour), time.Now().Add(time.Hour)))
	b, err := PackDir(d)
	must(t, err)
	if a.Digest != b.Digest {
		t.Fatalf("same content packed twice: %s then %s", a.Digest, b.Digest)
	}
	must(t, os.WriteFile(filepath.Join(d, "etc-protocols"), []byte("udp 17 UDP\n"), 0o644))
	c, err := PackDir(d)
	must(t, err)
	if c.Digest == a.Digest {
		t.Fatal("changed content kept the digest")
	}
}

func TestPackDirRefusesSpecialFiles(t *testing.T) {
	d := tree(t)
	must(t, syscall.Mkfifo(filepath.Join(d, "fifo"), 0o600))
	if _, err := PackDir(d); err == nil || !strings.Contains(err.Error(), "fifo") {
		t.Fatalf("a fifo was packed (err %v)", err)
	}
}

func TestArchiveRoundTrip(t *testing.T) {
	base, err := PackDir(tree(t))
	must(t, err)
	top := t.TempDir()
	must(t, os.WriteFile(filepath.Join(top, "app"), []byte("app"), 0o755))
	app, err := PackDir(top)
	must(t, err)
	cfg := ImageConfig{Entrypoint: []string{"/app"}, Env: []string{"PATH=/usr/sbin"}, User: "65534:65534"}
	img, err := NewImage([]string{"vpcnat.local/x:dev", "vpcnat.local/x:v2"}, "amd64", cfg, []*Layer{base, app})
	must(t, err)
	var buf bytes.Buffer
	must(t, WriteArchive(&buf, img))
	got, err := ReadArchive(bytes.NewReader(buf.Bytes()))
	must(t, err)
	if got.ID != img.ID || strings.Join(got.Tags, " ") != "vpcnat.local/x:dev vpcnat.local/x:v2" {
		t.Errorf("read back %s %v, wrote %s %v", got.ID, got.Tags, img.ID, img.Tags)
	}
	if len(got.Layers) != 2 || got.Layers[0] != base.Digest || got.Layers[1] != app.Digest {
		t.Errorf("layers %v, want [%s %s] bottom first", got.Layers, base.Digest, app.Digest)
	}
	c := got.Config
	if c.OS != "linux" || c.Architecture != "amd64" || c.Config.User != "65534:65534" ||
		strings.Join(c.Config.Entrypoint, " ") != "/app" || len(c.History) != 2 {
		t.Errorf("config %+v", c)
	}

	// A blob whose content does not match its name must be caught, not imported.
	corrupt := bytes.Replace(buf.Bytes(), []byte("#!binary"), []byte("#!BINARY"), 1)
	if _, err := ReadArchive(bytes.NewReader(corrupt)); err == nil || !strings.Contains(err.Error(), "digest") {
		t.Errorf("corrupted layer read back without a digest error (err %v)", err)
	}
}

func TestTags(t *testing.T) {
	for tag, ok := range map[string]bool{
		"vpcnat.local/vpcnat-daemon:dev":    true,
		"localhost:5000/a/b:1":              true,
		"vpcnat-daemon:dev":                 false, // would mean docker.io/library/...
		"vpcnat.local/vpcnat-daemon":        false, // :latest implied
		"vpcnat.local/vpcnat-daemon:latest": false,
		"vpcnat.local/x:":                   false,
	} {
		if err := checkTag(tag); (err == nil) != ok {
			t.Errorf("checkTag(%q) = %v, want ok=%v", tag, err, ok)
		}
	}
}

func TestRunWritesOnceThenKeeps(t *testing.T) {
	d := tree(t)
	out := filepath.Join(t.TempDir(), "img.tar")
	args := []string{"--out", out, "--tag", "vpcnat.local/x:dev", "--entrypoint", "/usr/sbin/tool", "--layer", d}
	must(t, run(args))
	st1, err := os.Stat(out)
	must(t, err)
	past := time.Now().Add(-time.Hour)
	must(t, os.Chtimes(out, past, past))
	must(t, run(args))
	st2, err := os.Stat(out)
	must(t, err)
	if !st2.ModTime().Equal(past) || st1.Size() != st2.Size() {
		t.Errorf("unchanged image was rewritten (mtime %v, want %v)", st2.ModTime(), past)
	}
	must(t, os.WriteFile(filepath.Join(d, "etc-protocols"), []byte("changed"), 0o644))
	must(t, run(args))
	st3, err := os.Stat(out)
	must(t, err)
	if st3.ModTime().Equal(past) {
		t.Error("changed image was not rewritten")
	}
	if err := run([]string{"--out", out, "--tag", "x:dev", "--entrypoint", "/a", "--layer", d}); err == nil {
		t.Error("a tag without a host was accepted")
	}
}
