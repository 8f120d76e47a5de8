// Command vpcnat is the chained CNI meta plugin (type "vpcnat", always last in the chain) that
// the runtime executes for every pod of the node. It is a small dispatcher: ADD and DEL of a
// normal pod — the pod network's common case — are answered here (prevResult printed byte for
// byte as it came; DEL of a pod without an attachment record does nothing), with the standard
// library only, because the start-up of a larger Go binary is most of what a chained plugin
// costs. Everything else — gateway pods, a DEL of a pod with a record, CHECK, GC, STATUS,
// VERSION, and any call it is not sure of — is handed unchanged (arguments, environment,
// stdin) to the full plugin, vpcnat-gateway, installed next to this binary, by exec: the full
// plugin's answer (result, error, exit status) is the answer.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/vpcnat/vpcnat/pkg/state"
	"github.com/vpcnat/vpcnat/plugins/internal/conf"
)

// FullPlugin is the full implementation's file name, in the same directory as this binary.
const FullPlugin = "vpcnat-gateway"

func main() {
	stdin, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail(fmt.Errorf("vpcnat: reading stdin: %w", err))
	}
	env := conf.EnvFrom(os.Getenv)
	if out, ok := conf.FastPath(env, stdin, hasRecord); ok && !(env.CheckNetns() && ownNetns(env.Netns)) {
		if _, err := os.Stdout.Write(out); err != nil {
			fail(fmt.Errorf("vpcnat: writing the result: %w", err))
		}
		return
	}
	fail(handOff(stdin))
}

// hasRecord looks the pod's attachment record up where the full plugin keeps it.
func hasRecord(dir, key string) (bool, error) {
	_, err := state.Store{Dir: dir}.Read(key)
	if errors.Is(err, state.ErrInvalidName) {
		return false, conf.ErrNoSuchRecord
	}
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
// and stdin restored from a memory file (this process has read the original).
func handOff(stdin []byte) error {
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("vpcnat: finding %s: cannot resolve this binary's path: %w", FullPlugin, err)
	}
	full := filepath.Join(filepath.Dir(self), FullPlugin)
	f, err := memFile(stdin)
	if err != nil {
		return fmt.Errorf("vpcnat: handing the call to %s: %w", full, err)
	}
	defer f.Close()
	// fd 0 becomes the memory file; dup3 without O_CLOEXEC keeps it open across exec.
	if err := unix.Dup3(int(f.Fd()), 0, 0); err != nil {
		return fmt.Errorf("vpcnat: handing the call to %s: stdin: %w", full, err)
	}
	err = syscall.Exec(full, append([]string{full}, os.Args[1:]...), os.Environ())
	return fmt.Errorf("vpcnat: executing the full plugin %s (it must be installed next to vpcnat): %w", full, err)
}

// memFile returns an anonymous memory file (close-on-exec) holding data, at offset 0.
func memFile(data []byte) (*os.File, error) {
	fd, err := unix.MemfdCreate("vpcnat-stdin", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("memfd_create: %w", err)
	}
	f := os.NewFile(uintptr(fd), "vpcnat-stdin")
	if _, err := f.Write(data); err != nil {
		f.Close()
		return nil, fmt.Errorf("writing stdin to a memory file: %w", err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		f.Close()
		return nil, fmt.Errorf("rewinding the memory file: %w", err)
	}
	return f, nil
}

// fail prints a CNI error as skel does (code 999, internal error) and exits 1.
func fail(err error) {
	b, _ := json.MarshalIndent(struct {
		Code int    `json:"code"`
		Msg  string `json:"msg"`
	}{999, err.Error()}, "", "    ")
	_, _ = os.Stdout.Write(b)
	os.Exit(1)
}
