package cniinstall

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
)

// watched is a Watch running on a node's directories (real files, real inotify), and the checks
// it made.
type watched struct {
	n      node
	mu     sync.Mutex
	checks []Check
}

// startWatch runs Watch until the end of the test, which fails if Watch returns before that or
// does not return once told to stop.
func startWatch(t *testing.T, n node, recheck time.Duration) *watched {
	t.Helper()
	w := &watched{n: n}
	o := Options{PluginSource: plugin(t), BinDir: n.bin, ConfDir: n.conf, Entry: entry}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Watch(ctx, o, WatchOptions{Recheck: recheck, Checked: w.add}) }()
	t.Cleanup(func() {
		select {
		case err := <-done:
			t.Errorf("Watch returned before it was stopped: %v", err)
			cancel()
			return
		default:
		}
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Watch: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("Watch did not return within 30 s of being stopped")
		}
	})
	return w
}

func (w *watched) add(c Check) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.checks = append(w.checks, c)
}

// since returns the checks from the i-th on.
func (w *watched) since(i int) []Check {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.checks[min(i, len(w.checks)):])
}

func (w *watched) count() int { return len(w.since(0)) }

// until polls cond, generously: this machine is shared and often loaded.
func until(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("not within 30 s: %s", what)
		}
	}
}

// settle waits for the checks since mark to have changed something (the restoration) and then
// found everything in place (the check caused by the restoration's own writes), after which the
// watch must stay quiet for a second: with the re-check an hour away only a change can cause a
// check, and nothing changes (a watch re-triggered by its own writes would keep checking).
func (w *watched) settle(t *testing.T, mark int) {
	t.Helper()
	inPlace := func(c Check) bool { return c.Err == nil && !c.Result.BinaryChanged && !c.Result.ConfChanged }
	until(t, "a restoration, then a check that found everything in place", func() bool {
		s := w.since(mark)
		return len(s) > 1 && slices.ContainsFunc(s, func(c Check) bool { return c.Err == nil && !inPlace(c) }) && inPlace(s[len(s)-1])
	})
	n := w.count()
	time.Sleep(time.Second)
	if extra := w.since(n); len(extra) > 0 {
		t.Errorf("%d checks while nothing changed, the first triggered by %v: %+v, %v", len(extra), extra[0].Trigger, extra[0].Result, extra[0].Err)
	}
}

// chained says whether the runtime's configuration file ends with vpcnat.
func (n node) chained(file string) bool {
	list, err := libcni.ConfListFromFile(filepath.Join(n.conf, file))
	return err == nil && list.Plugins[len(list.Plugins)-1].Network.Type == PluginType
}

// installed says whether the node's binary name is the one the plugin image holds.
func (n node) installed(t *testing.T, name string) bool {
	want, err := os.ReadFile(filepath.Join(filepath.Dir(plugin(t)), name))
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(n.bin, name))
	return err == nil && bytes.Equal(got, want)
}

// restoredBy requires one of the checks to have been triggered by path (inotify, not the
// periodic re-check, which the tests set to an hour) and to have changed something.
func restoredBy(t *testing.T, checks []Check, path string) {
	t.Helper()
	for _, c := range checks {
		if slices.Contains(c.Trigger, path) && c.Err == nil && (c.Result.BinaryChanged || c.Result.ConfChanged) {
			return
		}
	}
	t.Errorf("no check triggered by %s restored anything; checks: %+v", path, checks)
}

// TestWatchRestores: the watch installs, then puts vpcnat back whenever the primary CNI's
// configuration loses it (rewritten in place, replaced by a rename, or a new configuration that
// sorts first) and whenever a binary is deleted or replaced; each time it settles (its own
// writes do not keep it checking). The re-check period is an hour: only inotify can do this.
func TestWatchRestores(t *testing.T) {
	const file = "10-containerd-net.conflist"
	n := newNode(t, file)
	w := startWatch(t, n, time.Hour)
	until(t, "installed and chained", func() bool {
		return n.chained(file) && n.installed(t, PluginType) && n.installed(t, GatewayBinary)
	})
	w.settle(t, 0)
	if first := w.since(0)[0]; !slices.Equal(first.Trigger, []string{"start"}) || first.Err != nil || !first.Result.ConfChanged {
		t.Errorf("first check %+v", first)
	}
	orig, err := os.ReadFile(filepath.Join("testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(n.conf, file)

	t.Run("conflist rewritten in place", func(t *testing.T) {
		mark := w.count()
		if err := os.WriteFile(conf, orig, 0o644); err != nil {
			t.Fatal(err)
		}
		until(t, "vpcnat chained again", func() bool { return n.chained(file) })
		w.settle(t, mark)
		restoredBy(t, w.since(mark), conf)
	})
	t.Run("conflist replaced by a rename", func(t *testing.T) {
		mark := w.count()
		tmp := filepath.Join(n.conf, "primary.tmp")
		if err := os.WriteFile(tmp, orig, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, conf); err != nil {
			t.Fatal(err)
		}
		until(t, "vpcnat chained again", func() bool { return n.chained(file) })
		w.settle(t, mark)
		restoredBy(t, w.since(mark), conf)
	})
	t.Run("a new configuration sorts first", func(t *testing.T) {
		mark := w.count()
		calico, err := os.ReadFile(filepath.Join("testdata", "10-calico.conflist"))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(n.conf, "05-calico.conflist"), calico, 0o644); err != nil {
			t.Fatal(err)
		}
		until(t, "vpcnat chained into 05-calico.conflist", func() bool { return n.chained("05-calico.conflist") })
		w.settle(t, mark)
		restoredBy(t, w.since(mark), filepath.Join(n.conf, "05-calico.conflist"))
	})
	t.Run("vpcnat deleted", func(t *testing.T) {
		mark := w.count()
		if err := os.Remove(filepath.Join(n.bin, PluginType)); err != nil {
			t.Fatal(err)
		}
		until(t, "vpcnat installed again", func() bool { return n.installed(t, PluginType) })
		w.settle(t, mark)
		restoredBy(t, w.since(mark), filepath.Join(n.bin, PluginType))
	})
	t.Run("vpcnat-gateway replaced", func(t *testing.T) {
		mark := w.count()
		if err := os.WriteFile(filepath.Join(n.bin, GatewayBinary), []byte("#!/bin/sh\necho old\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		until(t, "vpcnat-gateway installed again", func() bool { return n.installed(t, GatewayBinary) })
		w.settle(t, mark)
		restoredBy(t, w.since(mark), filepath.Join(n.bin, GatewayBinary))
	})
	// The directory itself goes away (its watch with it) and comes back with a configuration:
	// the watch is set up again and vpcnat chained.
	t.Run("configuration directory recreated", func(t *testing.T) {
		mark := w.count()
		if err := os.RemoveAll(n.conf); err != nil {
			t.Fatal(err)
		}
		until(t, "a check after the directory went away", func() bool {
			return slices.ContainsFunc(w.since(mark), func(c Check) bool {
				return slices.ContainsFunc(c.Trigger, func(s string) bool { return strings.HasPrefix(s, "(events lost") })
			})
		})
		if err := os.MkdirAll(n.conf, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(conf, orig, 0o644); err != nil {
			t.Fatal(err)
		}
		until(t, "vpcnat chained in the new directory", func() bool { return n.chained(file) })
		w.settle(t, mark)
	})
}

// TestWatchInSyncWritesNothing: with nothing changing, the periodic re-checks (every 50 ms
// here) find everything in place and write nothing: no file gets a new inode, modification
// time or content over a second and at least ten re-checks.
func TestWatchInSyncWritesNothing(t *testing.T) {
	n := newNode(t, "10-calico.conflist")
	w := startWatch(t, n, 50*time.Millisecond)
	until(t, "installed, then a check that found it in place", func() bool {
		for _, c := range w.since(1) {
			if c.Err == nil && !c.Result.BinaryChanged && !c.Result.ConfChanged {
				return true
			}
		}
		return false
	})
	before, mark, start := n.snapshot(t), w.count(), time.Now()
	until(t, "ten re-checks over at least a second", func() bool { return w.count()-mark >= 10 && time.Since(start) >= time.Second })
	if after := n.snapshot(t); !maps.Equal(before, after) {
		for p, v := range after {
			if before[p] != v {
				t.Errorf("%s was rewritten by an in-sync re-check", p)
			}
		}
		t.Errorf("files before %v, after %v", slices.Sorted(maps.Keys(before)), slices.Sorted(maps.Keys(after)))
	}
	for _, c := range w.since(mark) {
		if c.Err != nil || c.Result.BinaryChanged || c.Result.ConfChanged {
			t.Errorf("in-sync check (trigger %v): %+v, %v", c.Trigger, c.Result, c.Err)
		}
	}
}

// TestWatchWaitsForConfiguration: with no configuration yet, the watch neither exits nor
// gives up: it reports the missing configuration and chains vpcnat as soon as the primary CNI
// writes one (an event, not the hour-long re-check).
func TestWatchWaitsForConfiguration(t *testing.T) {
	n := newNode(t)
	w := startWatch(t, n, time.Hour)
	until(t, "a check that found no configuration", func() bool {
		for _, c := range w.since(0) {
			if errors.Is(c.Err, fs.ErrNotExist) && strings.Contains(c.Err.Error(), n.conf) {
				return true
			}
		}
		return false
	})
	b, err := os.ReadFile(filepath.Join("testdata", "10-containerd-net.conflist"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(n.conf, "10-containerd-net.conflist"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	until(t, "vpcnat chained into the new configuration", func() bool { return n.chained("10-containerd-net.conflist") })
	w.settle(t, 0)
}

// TestWatchOptionsRefused: options Watch cannot run with are errors naming the value.
func TestWatchOptionsRefused(t *testing.T) {
	for _, c := range []struct {
		wo   WatchOptions
		want string
	}{
		{WatchOptions{}, "re-check period 0s is not positive"},
		{WatchOptions{Recheck: -time.Second}, "re-check period -1s is not positive"},
		{WatchOptions{Recheck: time.Minute, Debounce: -time.Millisecond}, "debounce -1ms is negative"},
	} {
		err := Watch(context.Background(), Options{}, c.wo)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want an error containing %q", c.wo, err, c.want)
		}
	}
}
