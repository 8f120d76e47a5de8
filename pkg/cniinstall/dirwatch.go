package cniinstall

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"

	"github.com/fsnotify/fsnotify"
	"k8s.io/klog/v2"
)

// dirWatcher reports changes of the installation's files (fsnotify, inotify on Linux): the two
// binaries in the bin directory, the files libcni reads in the configuration directory. It only
// says what to look at; the check itself reads everything again (Install is level-based).
//
// inotify watches inodes, so on a node a hostPath mount sees the primary CNI's writes made
// outside the container. Writers of configurations write in place (Write), rename a temp file
// over the target (Create), rename other configurations away (Rename: Cilium does) or delete
// (Remove); a mode change is a Chmod. The check's own reads and the exec of VERSION cause no
// event.
type dirWatcher struct {
	fw *fsnotify.Watcher
	// relevant says whether a change to name in dir can concern the installation.
	relevant func(dir, name string) bool
	// C has a value (at most one pending) when take has something to return.
	C chan struct{}

	mu   sync.Mutex
	dirs []string
	// changed: paths that changed since the last take; lost: events may have been lost (queue
	// overflow, a directory that went away), so everything must be looked at.
	changed []string
	lost    bool
}

// newDirWatcher watches dirs. It returns a watcher when inotify works, with the error of a
// directory it could not watch yet (ensure tries again).
func newDirWatcher(dirs []string, relevant func(dir, name string) bool) (*dirWatcher, error) {
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("starting a file watch: %w", err)
	}
	w := &dirWatcher{fw: fw, relevant: relevant, C: make(chan struct{}, 1),
		dirs: slices.Compact(slices.Sorted(slices.Values(dirs)))}
	go w.read()
	return w, w.ensure()
}

// ensure adds the watches that are missing (all at first; later those whose directory went
// away and may be back). It returns the first failure and tries every directory.
func (w *dirWatcher) ensure() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	var first error
	watched := w.fw.WatchList()
	for _, dir := range w.dirs {
		if slices.Contains(watched, dir) {
			continue
		}
		if err := w.fw.Add(dir); err != nil && first == nil {
			first = fmt.Errorf("watching %s: %w", dir, err)
		}
	}
	return first
}

// take returns the changed paths since the last call, and whether events may have been lost.
func (w *dirWatcher) take() ([]string, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	changed, lost := w.changed, w.lost
	w.changed, w.lost = nil, false
	return changed, lost
}

func (w *dirWatcher) close() { w.fw.Close() }

func (w *dirWatcher) read() {
	for {
		select {
		case ev, ok := <-w.fw.Events:
			if !ok {
				return
			}
			if w.record(ev) {
				w.notify()
			}
		case err, ok := <-w.fw.Errors:
			if !ok {
				return
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				w.mu.Lock()
				w.lost = true
				w.mu.Unlock()
				w.notify()
				continue
			}
			klog.ErrorS(err, "Watching the CNI directories; relying on the periodic re-check")
		}
	}
}

func (w *dirWatcher) notify() {
	select {
	case w.C <- struct{}{}:
	default:
	}
}

// record records ev and says whether it mattered.
func (w *dirWatcher) record(ev fsnotify.Event) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if slices.Contains(w.dirs, ev.Name) {
		// A watched directory was deleted or moved (or unmounted): its watch is gone; ensure
		// adds it again if the directory comes back, and the check says what is missing.
		if ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) {
			w.lost = true
			return true
		}
		return false
	}
	dir, name := filepath.Dir(ev.Name), filepath.Base(ev.Name)
	if !slices.Contains(w.dirs, dir) || !w.relevant(dir, name) {
		return false
	}
	if !slices.Contains(w.changed, ev.Name) {
		w.changed = append(w.changed, ev.Name)
	}
	return true
}
