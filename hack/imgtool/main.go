// Command imgtool builds container image tarballs without a container engine: each --layer
// directory becomes one layer, bottom first, and the result is a docker-archive (the format of
// `docker save`), which `ctr images import` and `docker load` both read.
//
//	imgtool --out vpcnat-daemon.tar --tag vpcnat.local/vpcnat-daemon:dev \
//	    --entrypoint /usr/local/bin/vpcnat-daemon --env PATH=/usr/local/bin:/usr/sbin:/usr/bin \
//	    --layer stage/iptables --layer stage/daemon
//
// Layers are deterministic (sorted, root-owned, fixed timestamps), so the same inputs give the
// same image ID; when --out already holds that image with the same tags it is left untouched.
// Only the standard library is used: writing this format is a few dozen lines, and the
// main module stays free of a registry client it would never use to talk to a registry.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
)

type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "imgtool:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fl := flag.NewFlagSet("imgtool", flag.ContinueOnError)
	out := fl.String("out", "", "docker-archive tarball to write")
	arch := fl.String("arch", runtime.GOARCH, "image architecture")
	entry := fl.String("entrypoint", "", "entrypoint (one path; arguments go in --cmd)")
	user := fl.String("user", "", "user (and group) the container runs as, numeric: uid[:gid]")
	workdir := fl.String("workdir", "/", "working directory")
	var tags, layers, env, cmd list
	fl.Var(&tags, "tag", "image reference host/name:tag (repeatable)")
	fl.Var(&layers, "layer", "directory to pack as the next layer (repeatable, bottom first)")
	fl.Var(&env, "env", "KEY=VALUE in the image's environment (repeatable)")
	fl.Var(&cmd, "cmd", "default argument (repeatable)")
	if err := fl.Parse(args); err != nil {
		return err
	}
	if *out == "" || *entry == "" || len(layers) == 0 || fl.NArg() != 0 {
		return fmt.Errorf("need --out, --entrypoint, --tag and --layer, and no other arguments (got %q)", fl.Args())
	}
	var packed []*Layer
	for _, dir := range layers {
		l, err := PackDir(dir)
		if err != nil {
			return err
		}
		packed = append(packed, l)
	}
	img, err := NewImage(tags, *arch, ImageConfig{
		Entrypoint: []string{*entry}, Cmd: cmd, Env: env, User: *user, WorkingDir: *workdir,
	}, packed)
	if err != nil {
		return err
	}
	size := 0
	for _, l := range packed {
		size += len(l.Data)
	}
	if same(*out, img) {
		fmt.Printf("%s %s unchanged (%s, %.1f MiB)\n", *out, img.ID[:19], strings.Join(tags, " "), mib(size))
		return nil
	}
	if err := writeAtomic(*out, img); err != nil {
		return err
	}
	fmt.Printf("%s %s written (%s, %.1f MiB)\n", *out, img.ID[:19], strings.Join(tags, " "), mib(size))
	return nil
}

func mib(n int) float64 { return float64(n) / (1 << 20) }

// same reports whether path already holds img under the same tags (any read error: no).
func same(path string, img *Image) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	a, err := ReadArchive(f)
	return err == nil && a.ID == img.ID && slices.Equal(a.Tags, img.Tags)
}

// writeAtomic writes beside path and renames, so a reader (an import running in parallel, a
// half-finished earlier run) never sees a partial tarball.
func writeAtomic(path string, img *Image) error {
	var buf bytes.Buffer
	if err := WriteArchive(&buf, img); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after a successful rename there is nothing left to remove
	if _, err := tmp.Write(buf.Bytes()); err != nil {
		tmp.Close()
		return fmt.Errorf("%s: %w", tmp.Name(), err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
