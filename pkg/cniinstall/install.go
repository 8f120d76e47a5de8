package cniinstall

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/containernetworking/cni/libcni"
	"k8s.io/klog/v2"
)

// Options of one installation.
type Options struct {
	// PluginSource is the vpcnat binary to install (in the installer's image): the dispatcher
	// the runtime executes.
	PluginSource string
	// GatewaySource is the full plugin the dispatcher hands calls to, installed next to it
	// (default: vpcnat-gateway in PluginSource's directory).
	GatewaySource string
	// BinDir is the node's CNI bin directory (/opt/cni/bin, mounted).
	BinDir string
	// ConfDir is the node's CNI configuration directory (/etc/cni/net.d, mounted).
	ConfDir string
	// Entry is what vpcnat's conflist entry must say.
	Entry Entry
	// Wait is how long to wait for the primary CNI to write its configuration.
	Wait time.Duration
}

// Result says what an installation changed.
type Result struct {
	// BinaryChanged: either binary was written.
	BinaryChanged bool
	// ConfFile is the configuration vpcnat is chained in; ConfChanged whether it was written.
	ConfFile    string
	ConfChanged bool
	// Replaced is the single-plugin file the conflist replaced, renamed to Replaced+".vpcnat-orig".
	Replaced string
	// Dropped are the members of an existing vpcnat entry left out because the plugin does not
	// accept them (each logged as a warning too), each naming the member, its value and why.
	Dropped []string
}

// confExtensions are the files libcni (and so containerd and CRI-O) read, in its order.
var confExtensions = []string{".conf", ".conflist", ".json"}

// Install installs the binary, asks it which CNI versions it speaks, and chains it into the
// node's network configuration.
func Install(ctx context.Context, o Options) (*Result, error) {
	res := &Result{}
	var err error
	if res.BinaryChanged, err = installBinaries(o.PluginSource, o.GatewaySource, o.BinDir); err != nil {
		return res, err
	}
	info, err := libcni.NewCNIConfig([]string{o.BinDir}, nil).GetVersionInfo(ctx, PluginType)
	if err != nil {
		return res, fmt.Errorf("asking the installed %s which CNI versions it supports: %w", PluginType, err)
	}
	file, err := waitForConf(ctx, o.ConfDir, o.Wait)
	if err != nil {
		return res, err
	}
	res.ConfFile = file
	conf, err := os.ReadFile(file)
	if err != nil {
		return res, fmt.Errorf("reading %s: %w", file, err)
	}
	perm, err := ownership(file)
	if err != nil {
		return res, err
	}
	chained, err := ChainReport(conf, o.Entry, info.SupportedVersions())
	if err != nil {
		return res, fmt.Errorf("%s: %w", file, err)
	}
	out, changed := chained.Conf, chained.Changed
	res.Dropped = chained.Dropped
	for _, d := range chained.Dropped {
		klog.Warningf("%s: dropped from the %s entry: %s", file, PluginType, d)
	}
	if !changed {
		return res, nil
	}
	target := file
	if !strings.HasSuffix(file, ".conflist") && !isList(conf) {
		target = strings.TrimSuffix(file, filepath.Ext(file)) + ".conflist"
		if _, err := os.Stat(target); err == nil {
			return res, fmt.Errorf("%s: cannot convert it to %s: that file exists", file, target)
		}
	}
	if err := writeAtomic(target, out, perm); err != nil {
		return res, err
	}
	res.ConfFile, res.ConfChanged = target, true
	if target != file {
		// Renamed, not deleted: an administrator can see what it was; the new name has an
		// extension libcni does not read, so the runtime sees only the conflist.
		if err := os.Rename(file, file+".vpcnat-orig"); err != nil {
			return res, fmt.Errorf("setting aside %s after converting it to %s: %w", file, target, err)
		}
		res.Replaced = file
	}
	return res, nil
}

// fileMode is a file's permission bits and owner, which a rewrite keeps: a primary CNI (or an
// administrator following the CIS benchmark) may have made its configuration 0600, and the
// installer must not widen that.
type fileMode struct {
	perm     os.FileMode
	uid, gid int
}

func ownership(file string) (fileMode, error) {
	st, err := os.Stat(file)
	if err != nil {
		return fileMode{}, fmt.Errorf("reading the mode of %s: %w", file, err)
	}
	m := fileMode{perm: st.Mode().Perm(), uid: -1, gid: -1}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		m.uid, m.gid = int(sys.Uid), int(sys.Gid)
	}
	return m, nil
}

func isList(conf []byte) bool {
	doc, err := parseObject(conf)
	if err != nil {
		return false
	}
	_, ok := doc.get("plugins")
	return ok
}

// FirstConf is the file the runtime uses: the first by name with a libcni extension.
func FirstConf(dir string) (string, error) {
	files, err := libcni.ConfFiles(dir, confExtensions)
	if err != nil {
		return "", fmt.Errorf("listing %s: %w", dir, err)
	}
	if len(files) == 0 {
		return "", fmt.Errorf("no network configuration in %s: %w", dir, fs.ErrNotExist)
	}
	return files[0], nil // ConfFiles sorts by name
}

// waitForConf waits up to wait for the primary CNI to write its configuration: on a new node
// the DaemonSet may start before the primary CNI's own agent has.
func waitForConf(ctx context.Context, dir string, wait time.Duration) (string, error) {
	deadline := time.Now().Add(wait)
	for logged := false; ; logged = true {
		file, err := FirstConf(dir)
		if err == nil || !errors.Is(err, fs.ErrNotExist) || time.Now().After(deadline) {
			return file, err
		}
		if !logged {
			klog.InfoS("Waiting for the primary CNI's network configuration", "dir", dir, "timeout", wait)
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("waiting for a network configuration in %s: %w", dir, ctx.Err())
		case <-time.After(time.Second):
		}
	}
}

// GatewayBinary is the full plugin's file name; the dispatcher (PluginType) executes it from its
// own directory.
const GatewayBinary = "vpcnat-gateway"

// installBinaries installs the plugin's two binaries. Both are read before either is written,
// and the full plugin goes first: the runtime may execute vpcnat at any moment, and every
// dispatcher it can find (the old one or the new one) then has a full plugin beside it at least
// as new as itself. (The hand-off between them is an exec with the runtime's own arguments,
// environment and stdin, the same in every version.)
func installBinaries(src, gatewaySrc, dir string) (bool, error) {
	if gatewaySrc == "" {
		gatewaySrc = filepath.Join(filepath.Dir(src), GatewayBinary)
	}
	gw, err := os.ReadFile(gatewaySrc)
	if err != nil {
		return false, fmt.Errorf("reading the full plugin binary: %w", err)
	}
	disp, err := os.ReadFile(src)
	if err != nil {
		return false, fmt.Errorf("reading the plugin binary: %w", err)
	}
	gwChanged, err := installBinary(gw, filepath.Join(dir, GatewayBinary))
	if err != nil {
		return false, err
	}
	dispChanged, err := installBinary(disp, filepath.Join(dir, PluginType))
	return gwChanged || dispChanged, err
}

// installBinary writes want to dst unless it is there already. The new file is renamed over
// the old one, so a runtime executing the plugin meanwhile runs either version, never a partly
// written file (and writing into a running binary would fail with ETXTBSY).
func installBinary(want []byte, dst string) (bool, error) {
	if have, err := os.ReadFile(dst); err == nil && bytes.Equal(have, want) {
		return false, nil
	}
	if err := writeAtomic(dst, want, fileMode{perm: 0o755, uid: -1, gid: -1}); err != nil {
		return false, err
	}
	return true, nil
}

// writeAtomic writes data to path through a temporary file in the same directory whose name
// libcni does not read (a runtime watching the directory must not load a half-written file).
// The file gets mode's permissions and, when mode names one, its owner (uid/gid -1: the writer's).
func writeAtomic(path string, data []byte, mode fileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".vpcnat-*.tmp")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := tmp.Chmod(mode.perm); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if mode.uid >= 0 && mode.uid != os.Geteuid() || mode.gid >= 0 && mode.gid != os.Getegid() {
		if err := tmp.Chown(mode.uid, mode.gid); err != nil {
			tmp.Close()
			return fmt.Errorf("writing %s: keeping owner %d:%d: %w", path, mode.uid, mode.gid, err)
		}
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
