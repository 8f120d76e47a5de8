package cniinstall

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
)

var (
	pluginOnce sync.Once
	pluginPath string
	pluginErr  error
)

// plugin builds the real vpcnat binaries once, side by side as in the daemon image (the
// dispatcher and the full plugin it hands calls to): the installer asks the installed vpcnat
// which versions it speaks, which only the full plugin answers.
func plugin(t *testing.T) string {
	t.Helper()
	pluginOnce.Do(func() {
		dir, err := os.MkdirTemp("", "vpcnat-cniinstall-")
		if err != nil {
			pluginErr = err
			return
		}
		pluginPath = filepath.Join(dir, "vpcnat")
		for name, pkg := range map[string]string{PluginType: "./plugins/vpcnat", GatewayBinary: "./plugins/vpcnat-gateway"} {
			cmd := exec.Command("go", "build", "-o", filepath.Join(dir, name), pkg)
			cmd.Dir = filepath.Join("..", "..")
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				pluginErr = errors.New(string(out))
				return
			}
		}
	})
	if pluginErr != nil {
		t.Fatalf("building vpcnat: %v", pluginErr)
	}
	return pluginPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if pluginPath != "" {
		os.RemoveAll(filepath.Dir(pluginPath))
	}
	os.Exit(code)
}

type node struct{ bin, conf string }

// newNode is a node's /opt/cni/bin and /etc/cni/net.d holding the given sample files.
func newNode(t *testing.T, samples ...string) node {
	t.Helper()
	n := node{bin: filepath.Join(t.TempDir(), "bin"), conf: filepath.Join(t.TempDir(), "net.d")}
	for _, d := range []string{n.bin, n.conf} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range samples {
		b, err := os.ReadFile(filepath.Join("testdata", s))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(n.conf, s), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return n
}

func (n node) install(t *testing.T) (*Result, error) {
	t.Helper()
	return Install(context.Background(), Options{PluginSource: plugin(t), BinDir: n.bin, ConfDir: n.conf, Entry: entry})
}

// snapshot is every file of the node's two directories with its inode, modification time and
// content: a file rewritten with the same content still shows (a rename-over gets a new inode).
func (n node) snapshot(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, d := range []string{n.bin, n.conf} {
		entries, err := os.ReadDir(d)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			p := filepath.Join(d, e.Name())
			b, _ := os.ReadFile(p)
			st, _ := os.Stat(p)
			out[p] = fmt.Sprintf("inode %d, mtime %s\n%s", st.Sys().(*syscall.Stat_t).Ino, st.ModTime(), b)
		}
	}
	return out
}

// TestInstall: the plugin lands executable in the bin directory, the runtime's first
// configuration (Kube-OVN's 01- before Calico's 10-) gets vpcnat chained and still loads with
// libcni; the other file is untouched; a second run writes nothing at all.
func TestInstall(t *testing.T) {
	n := newNode(t, "01-kube-ovn.conflist", "10-calico.conflist")
	calico := n.snapshot(t)[filepath.Join(n.conf, "10-calico.conflist")]
	res, err := n.install(t)
	if err != nil {
		t.Fatal(err)
	}
	if !res.BinaryChanged || !res.ConfChanged || res.ConfFile != filepath.Join(n.conf, "01-kube-ovn.conflist") {
		t.Errorf("result %+v", res)
	}
	for _, name := range []string{PluginType, GatewayBinary} {
		st, err := os.Stat(filepath.Join(n.bin, name))
		if err != nil || st.Mode().Perm()&0o111 == 0 {
			t.Fatalf("%s not installed executable: %v %v", name, st, err)
		}
		want, _ := os.ReadFile(filepath.Join(filepath.Dir(plugin(t)), name))
		if got, _ := os.ReadFile(filepath.Join(n.bin, name)); !bytes.Equal(got, want) {
			t.Errorf("installed %s differs from its source", name)
		}
	}
	list, err := libcni.ConfListFromFile(res.ConfFile)
	if err != nil {
		t.Fatal(err)
	}
	if last := list.Plugins[len(list.Plugins)-1].Network.Type; last != PluginType || list.CNIVersion != "0.3.1" {
		t.Errorf("chain ends with %s at cniVersion %s, want vpcnat at Kube-OVN's 0.3.1 (kept)", last, list.CNIVersion)
	}
	// The runtime can really call the chain's vpcnat: it answers VERSION for the list's version.
	info, err := libcni.NewCNIConfig([]string{n.bin}, nil).GetVersionInfo(context.Background(), PluginType)
	if err != nil || !slices.Contains(info.SupportedVersions(), list.CNIVersion) {
		t.Errorf("installed plugin supports %v (err %v), list says %s", info, err, list.CNIVersion)
	}
	before := n.snapshot(t)
	if got := before[filepath.Join(n.conf, "10-calico.conflist")]; got != calico {
		t.Error("a configuration the runtime does not use was modified")
	}

	time.Sleep(10 * time.Millisecond) // a rewrite would show in the modification time
	res, err = n.install(t)
	if err != nil {
		t.Fatal(err)
	}
	if res.BinaryChanged || res.ConfChanged {
		t.Errorf("second run changed something: %+v", res)
	}
	after := n.snapshot(t)
	for p, v := range before {
		if after[p] != v {
			t.Errorf("second run rewrote %s", p)
		}
	}
	if len(after) != len(before) {
		t.Errorf("second run left files: %v", after)
	}
}

// TestInstallConvertsConf: a single-plugin .conf becomes a .conflist of the same stem (so it
// keeps its place in the runtime's order) and the .conf is set aside under a name libcni does
// not read; the result is idempotent.
func TestInstallConvertsConf(t *testing.T) {
	n := newNode(t, "10-bridge.conf")
	res, err := n.install(t)
	if err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(n.conf, "10-bridge.conflist")
	if res.ConfFile != want || res.Replaced != filepath.Join(n.conf, "10-bridge.conf") {
		t.Errorf("result %+v", res)
	}
	files, err := libcni.ConfFiles(n.conf, confExtensions)
	if err != nil || len(files) != 1 || files[0] != want {
		t.Fatalf("configurations the runtime sees: %v (err %v), want only %s", files, err, want)
	}
	if _, err := os.Stat(filepath.Join(n.conf, "10-bridge.conf.vpcnat-orig")); err != nil {
		t.Errorf("original not kept: %v", err)
	}
	list, err := libcni.ConfListFromFile(want)
	if err != nil || len(list.Plugins) != 2 || list.Plugins[0].Network.Type != "bridge" || list.Name != "mynet" {
		t.Fatalf("converted list %+v, err %v", list, err)
	}
	if res, err := n.install(t); err != nil || res.ConfChanged {
		t.Errorf("second run: %+v, %v", res, err)
	}
}

// TestInstallAfterPrimaryRewrite: the primary CNI's agent rewrote its file (dropping our entry),
// and the installer puts vpcnat back; a new plugin binary replaces the old one.
func TestInstallAfterPrimaryRewrite(t *testing.T) {
	n := newNode(t, "10-containerd-net.conflist")
	if _, err := n.install(t); err != nil {
		t.Fatal(err)
	}
	orig, _ := os.ReadFile(filepath.Join("testdata", "10-containerd-net.conflist"))
	conf := filepath.Join(n.conf, "10-containerd-net.conflist")
	if err := os.WriteFile(conf, orig, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(n.bin, GatewayBinary), []byte("#!/bin/sh\necho old\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	res, err := n.install(t)
	if err != nil {
		t.Fatal(err)
	}
	if !res.ConfChanged || !res.BinaryChanged {
		t.Errorf("result %+v, want both restored", res)
	}
	got, _ := os.ReadFile(conf)
	if !bytes.Contains(got, []byte(`"type": "vpcnat"`)) {
		t.Errorf("vpcnat not chained again:\n%s", got)
	}
	want, _ := os.ReadFile(filepath.Join(filepath.Dir(plugin(t)), GatewayBinary))
	if got, _ := os.ReadFile(filepath.Join(n.bin, GatewayBinary)); !bytes.Equal(got, want) {
		t.Error("an old vpcnat-gateway was not replaced")
	}
}

// TestInstallNeedsBothBinaries: the dispatcher alone cannot work (it hands gateway pods and
// VERSION to the full plugin), so an image without the full plugin beside it is refused before
// anything is written; and an installed dispatcher whose full plugin is gone fails VERSION,
// naming the missing file.
func TestInstallNeedsBothBinaries(t *testing.T) {
	src := filepath.Join(t.TempDir(), PluginType)
	b, err := os.ReadFile(plugin(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(src, b, 0o755); err != nil {
		t.Fatal(err)
	}
	n := newNode(t, "10-containerd-net.conflist")
	before := n.snapshot(t)
	_, err = Install(context.Background(), Options{PluginSource: src, BinDir: n.bin, ConfDir: n.conf, Entry: entry})
	if err == nil || !strings.Contains(err.Error(), GatewayBinary) {
		t.Errorf("install without %s: %v, want an error naming it", GatewayBinary, err)
	}
	if after := n.snapshot(t); len(after) != len(before) {
		t.Errorf("a refused install wrote files: %v", after)
	}

	if _, err := n.install(t); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(n.bin, GatewayBinary)); err != nil {
		t.Fatal(err)
	}
	_, err = libcni.NewCNIConfig([]string{n.bin}, nil).GetVersionInfo(context.Background(), PluginType)
	if err == nil || !strings.Contains(err.Error(), GatewayBinary) {
		t.Errorf("VERSION without %s: %v, want an error naming it", GatewayBinary, err)
	}
}

// TestInstallRefuses: no configuration at all (after the wait), or an unreadable one, is an
// error that names the directory or file, and the file is left as it was.
func TestInstallRefuses(t *testing.T) {
	n := newNode(t)
	_, err := n.install(t)
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), n.conf) {
		t.Errorf("empty directory: %v", err)
	}
	bad := filepath.Join(n.conf, "05-broken.conflist")
	if err := os.WriteFile(bad, []byte(`{"name": "x", "plugins": [`), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = n.install(t)
	if err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("broken file: %v", err)
	}
	if got, _ := os.ReadFile(bad); string(got) != `{"name": "x", "plugins": [` {
		t.Errorf("broken file modified: %s", got)
	}
}

// TestInstallDropsUnknownMembers: an existing vpcnat entry with members the (strict) plugin
// refuses is rewritten without them, each reported with its value; the installed plugin accepts
// the written conflist (STATUS through libcni parses every entry); an entry the plugin would
// refuse for a value of its own is not written at all.
func TestInstallDropsUnknownMembers(t *testing.T) {
	n := newNode(t)
	file := filepath.Join(n.conf, "10-net.conflist")
	in := `{"cniVersion":"1.1.0","name":"n","plugins":[{"type":"bridge"},
	  {"type":"vpcnat","custom":{"a":1},"Master":"eth1","stateDir":"/old"}]}`
	if err := os.WriteFile(file, []byte(in), 0o644); err != nil {
		t.Fatal(err)
	}
	stateDir := filepath.Join(t.TempDir(), "state")
	res, err := Install(context.Background(), Options{PluginSource: plugin(t), BinDir: n.bin, ConfDir: n.conf,
		Entry: Entry{StateDir: stateDir}})
	if err != nil {
		t.Fatal(err)
	}
	if !res.ConfChanged || len(res.Dropped) != 2 || !strings.Contains(res.Dropped[0], `"custom" with value {"a":1}`) ||
		!strings.Contains(res.Dropped[1], `"Master"`) || !strings.Contains(res.Dropped[1], `did you mean "master"`) {
		t.Errorf("result %+v, want custom and Master reported as dropped", res)
	}
	list, err := libcni.ConfListFromFile(file)
	if err != nil {
		t.Fatal(err)
	}
	// Only the vpcnat entry: the bridge plugin is not installed in this bin directory.
	list.Plugins = list.Plugins[len(list.Plugins)-1:]
	if err := libcni.NewCNIConfig([]string{n.bin}, nil).GetStatusNetworkList(context.Background(), list); err != nil {
		t.Errorf("the installed plugin refuses the written entry: %v\n%s", err, list.Bytes)
	}

	if err := os.WriteFile(file, []byte(`{"cniVersion":"1.1.0","name":"n","plugins":[{"type":"bridge"},{"type":"vpcnat","master":"eth0/../x"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	before := n.snapshot(t)
	if _, err := n.install(t); err == nil || !strings.Contains(err.Error(), `master: invalid value "eth0/../x"`) {
		t.Errorf("entry with an invalid master: %v", err)
	}
	if after := n.snapshot(t); !maps.Equal(before, after) {
		t.Error("files changed although the entry was refused")
	}
}

// TestInstallKeepsModeAndOwner: weave-net's 0.3.0 list made 0600 and owned by another user (as
// CIS-hardened nodes have Calico's and Kube-OVN's) is chained at 0.3.0, which the installed
// plugin speaks, and keeps its mode and owner.
func TestInstallKeepsModeAndOwner(t *testing.T) {
	n := newNode(t, "10-weave.conflist")
	file := filepath.Join(n.conf, "10-weave.conflist")
	if err := os.Chmod(file, 0o600); err != nil {
		t.Fatal(err)
	}
	uid, gid := os.Geteuid(), os.Getegid()
	if uid == 0 {
		uid, gid = 4242, 4243 // root can give the file away, as a primary's installer may have
		if err := os.Chown(file, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	res, err := n.install(t)
	if err != nil {
		t.Fatal(err)
	}
	if !res.ConfChanged || res.ConfFile != file {
		t.Fatalf("result %+v, want %s chained", res, file)
	}
	st, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	sys := st.Sys().(*syscall.Stat_t)
	if st.Mode().Perm() != 0o600 || int(sys.Uid) != uid || int(sys.Gid) != gid {
		t.Errorf("%s is %v %d:%d after chaining, want 0600 %d:%d as before", file, st.Mode().Perm(), sys.Uid, sys.Gid, uid, gid)
	}
	list, err := libcni.ConfListFromFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if list.CNIVersion != "0.3.0" || list.Plugins[len(list.Plugins)-1].Network.Type != PluginType {
		t.Errorf("chained list at %s ending with %s, want weave-net's 0.3.0 ending with vpcnat", list.CNIVersion, list.Plugins[len(list.Plugins)-1].Network.Type)
	}
	info, err := libcni.NewCNIConfig([]string{n.bin}, nil).GetVersionInfo(context.Background(), PluginType)
	if err != nil || !slices.Contains(info.SupportedVersions(), "0.3.0") {
		t.Errorf("installed plugin supports %v (err %v), the list says 0.3.0", info, err)
	}
}

// TestInstallLeavesUnspokenVersion: a list at a version the plugin does not speak is left
// byte for byte as it was (chaining into it would fail every pod's ADD on the node), and the
// error says which file, which version, and what the plugin speaks.
func TestInstallLeavesUnspokenVersion(t *testing.T) {
	n := newNode(t)
	file := filepath.Join(n.conf, "10-old.conflist")
	in := `{"cniVersion":"0.2.0","name":"old","plugins":[{"type":"bridge"}]}`
	if err := os.WriteFile(file, []byte(in), 0o644); err != nil {
		t.Fatal(err)
	}
	before := n.snapshot(t)[file]
	_, err := n.install(t)
	if !errors.Is(err, ErrVersion) || !strings.Contains(err.Error(), file) || !strings.Contains(err.Error(), `"0.2.0"`) ||
		!strings.Contains(err.Error(), "0.3.0") {
		t.Errorf("install on a 0.2.0 list: %v, want ErrVersion naming the file, the version and the versions spoken", err)
	}
	if after := n.snapshot(t)[file]; after != before {
		t.Errorf("%s was rewritten:\n%s", file, after)
	}
}
