// Command vpcnat is the chained CNI meta plugin (type "vpcnat", always last in the chain) that
// the runtime executes for every pod of the node. It is a small dispatcher: ADD and DEL of a
// normal pod — the pod network's common case — are answered here (prevResult printed byte for
// byte as it came; DEL of a pod without an attachment record does nothing). Everything else —
// gateway pods, a DEL of a pod with a record, CHECK, GC, STATUS, VERSION, and any call it is not
// sure of — is handed unchanged (arguments, environment, stdin) to the full plugin,
// vpcnat-gateway, installed next to this binary, by exec: the full plugin's answer (result,
// error, exit status) is the answer.
//
// Why two binaries: starting a Go binary is most of what a chained plugin costs, and the full
// plugin's imports (netlink, the CNI library, Kubernetes validation, klog) and cgo made each
// start about twice as slow as the least a Go plugin can do. This one links only a few
// standard packages and golang.org/x/sys/unix — no encoding/json, fmt, net, regexp or cgo (see
// plugins/internal/fastpath) — and starts about as fast as a Go binary can here.
package main

import (
	"io"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"github.com/vpcnat/vpcnat/plugins/internal/fastpath"
)

// FullPlugin is the full implementation's file name, in the same directory as this binary.
const FullPlugin = "vpcnat-gateway"

func main() {
	stdin, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail("vpcnat: reading stdin", err)
	}
	env := fastpath.EnvFrom(os.Getenv)
	if out, ok := fastpath.Answer(env, stdin, exists); ok && !(env.CheckNetns() && ownNetns(env.Netns)) {
		if _, err := os.Stdout.Write(out); err != nil {
			fail("vpcnat: writing the result", err)
		}
		return
	}
	handOff(stdin)
}

// exists is the attachment record look-up: the full plugin (pkg/state) keeps one file per pod.
func exists(path string) (bool, error) {
	_, err := os.Stat(path)
	return err == nil, err
}

// ownNetns reports whether path is this process's own network namespace: skel refuses such a
// CNI_NETNS after ADD and DEL (with an error the full plugin gives). A path that cannot be
// opened is not (skel's rule too: DEL of an already deleted netns is fine).
func ownNetns(path string) bool {
	if path == "" {
		return false
	}
	theirs, err := os.Stat(path)
	if err != nil {
		return false
	}
	ours, err := os.Stat("/proc/thread-self/ns/net")
	if err != nil {
		return true // cannot tell: let the full plugin decide
	}
	return os.SameFile(theirs, ours)
}

// handOff executes the full plugin in this process, with the same arguments and environment,
// and stdin restored from a memory file (this process has read the original). It returns only
// by exiting with a CNI error.
func handOff(stdin []byte) {
	self, err := os.Executable()
	if err != nil {
		fail("vpcnat: finding "+FullPlugin+": cannot resolve this binary's path", err)
	}
	full := filepath.Join(filepath.Dir(self), FullPlugin)
	f, err := memFile(stdin)
	if err != nil {
		fail("vpcnat: handing the call to "+full, err)
	}
	defer f.Close()
	// fd 0 becomes the memory file; dup3 without O_CLOEXEC keeps it open across exec.
	if err := unix.Dup3(int(f.Fd()), 0, 0); err != nil {
		fail("vpcnat: handing the call to "+full+": stdin", err)
	}
	err = syscall.Exec(full, append([]string{full}, os.Args[1:]...), os.Environ())
	fail("vpcnat: executing the full plugin "+full+" (it must be installed next to vpcnat)", err)
}

// memFile returns an anonymous memory file (close-on-exec) holding data, at offset 0.
func memFile(data []byte) (*os.File, error) {
	fd, err := unix.MemfdCreate("vpcnat-stdin", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, wrap("memfd_create", err)
	}
	f := os.NewFile(uintptr(fd), "vpcnat-stdin")
	if _, err := f.Write(data); err != nil {
		f.Close()
		return nil, wrap("writing stdin to a memory file", err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		f.Close()
		return nil, wrap("rewinding the memory file", err)
	}
	return f, nil
}

// wrapped is an error with context (fmt.Errorf's %w, without linking fmt).
type wrapped struct {
	msg string
	err error
}

func wrap(msg string, err error) error { return &wrapped{msg, err} }
func (w *wrapped) Error() string       { return w.msg + ": " + w.err.Error() }
func (w *wrapped) Unwrap() error       { return w.err }

// fail prints a CNI error as skel does (code 999, internal error; "msg: cause") and exits 1.
func fail(msg string, err error) {
	_, _ = os.Stdout.WriteString("{\n    \"code\": 999,\n    \"msg\": " + jsonString(msg+": "+err.Error()) + "\n}")
	os.Exit(1)
}

// jsonString quotes s as a JSON string (encoding/json is not linked here).
func jsonString(s string) string {
	b := []byte{'"'}
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b = append(b, '\\', byte(r))
		case r < 0x20 || r == utf8.RuneError:
			b = append(b, `\u`...)
			b = append(b, []byte(strconv.FormatInt(int64(r)+0x10000, 16))[1:]...)
		default:
			b = utf8.AppendRune(b, r)
		}
	}
	return string(append(b, '"'))
}
