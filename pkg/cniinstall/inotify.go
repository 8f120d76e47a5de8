package cniinstall

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"
)

// dirWatcher reports changes of the installation's files through inotify: the two binaries in
// the bin directory, the files libcni reads in the configuration directory. It only says what
// to look at; the check itself reads everything again (Install is level-based).
//
// inotify watches inodes, so on a node a hostPath mount sees the primary CNI's writes made
// outside the container.
type dirWatcher struct {
	f *os.File
	// relevant says whether a change to name in dir can concern the installation.
	relevant func(dir, name string) bool
	// C has a value (at most one pending) when take has something to return.
	C chan struct{}

	mu sync.Mutex
	// wds: the watched directories by watch descriptor; dirs the directories to watch.
	wds  map[int32]string
	dirs []string
	// changed: paths that changed since the last take; lost: events may have been lost (queue
	// overflow, a directory that went away), so everything must be looked at.
	changed []string
	lost    bool
}

// Events that can change what Install would find. Writers of configurations write in place
// (IN_CLOSE_WRITE) or rename a temp file over the target (IN_MOVED_TO); Cilium renames other
// configurations away (IN_MOVED_FROM); an administrator or an uninstaller deletes (IN_DELETE).
// Reads and the exec of VERSION (IN_ACCESS, IN_OPEN, IN_CLOSE_NOWRITE) are not watched: the
// check's own reads cause no event. IN_DELETE_SELF/IN_MOVE_SELF end a watch (IN_IGNORED).
const watchMask = unix.IN_CLOSE_WRITE | unix.IN_MOVED_TO | unix.IN_MOVED_FROM | unix.IN_DELETE |
	unix.IN_DELETE_SELF | unix.IN_MOVE_SELF

// newDirWatcher watches dirs. It returns a watcher when inotify works, with the error of a
// directory it could not watch yet (ensure tries again).
func newDirWatcher(dirs []string, relevant func(dir, name string) bool) (*dirWatcher, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("inotify_init1: %w", err)
	}
	// A non-blocking fd in an os.File goes through the runtime poller, so Close wakes the read.
	w := &dirWatcher{f: os.NewFile(uintptr(fd), "inotify"), relevant: relevant, C: make(chan struct{}, 1),
		wds: map[int32]string{}, dirs: slices.Compact(slices.Sorted(slices.Values(dirs)))}
	go w.read()
	return w, w.ensure()
}

// ensure adds the watches that are missing (all at first; later those whose directory went
// away and may be back). It returns the first failure and tries every directory.
func (w *dirWatcher) ensure() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	var first error
	for _, dir := range w.dirs {
		if slices.Contains(slices.Collect(maps.Values(w.wds)), dir) {
			continue
		}
		var wd int
		err := w.control(func(fd int) (err error) { wd, err = unix.InotifyAddWatch(fd, dir, watchMask); return err })
		if err != nil {
			if first == nil {
				first = fmt.Errorf("inotify watch on %s: %w", dir, err)
			}
			continue
		}
		w.wds[int32(wd)] = dir
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

func (w *dirWatcher) close() { w.f.Close() }

// control runs f with the inotify fd, which the runtime poller owns.
func (w *dirWatcher) control(f func(fd int) error) error {
	rc, err := w.f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = f(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

func (w *dirWatcher) read() {
	buf := make([]byte, 64*(unix.SizeofInotifyEvent+unix.NAME_MAX+1))
	for {
		n, err := w.f.Read(buf)
		if err != nil {
			if !errors.Is(err, os.ErrClosed) {
				klog.ErrorS(err, "Reading inotify events; relying on the periodic re-check")
			}
			return
		}
		if w.parse(buf[:n]) {
			select {
			case w.C <- struct{}{}:
			default:
			}
		}
	}
}

// parse records the events of buf and says whether any mattered.
func (w *dirWatcher) parse(buf []byte) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	mattered := false
	for off := 0; off+unix.SizeofInotifyEvent <= len(buf); {
		ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
		raw := buf[off+unix.SizeofInotifyEvent : off+unix.SizeofInotifyEvent+int(ev.Len)]
		off += unix.SizeofInotifyEvent + int(ev.Len)
		name := string(bytes.TrimRight(raw, "\x00"))
		dir, known := w.wds[ev.Wd]
		switch {
		case ev.Mask&unix.IN_Q_OVERFLOW != 0:
			w.lost, mattered = true, true
		case ev.Mask&unix.IN_IGNORED != 0:
			// The directory was deleted or moved (or unmounted): the watch is gone; ensure adds
			// it again if the directory comes back, and the check says what is missing.
			delete(w.wds, ev.Wd)
			w.lost, mattered = true, true
		case ev.Mask&(unix.IN_DELETE_SELF|unix.IN_MOVE_SELF) != 0:
			w.lost, mattered = true, true
		case known && name != "" && w.relevant(dir, name):
			p := filepath.Join(dir, name)
			if !slices.Contains(w.changed, p) {
				w.changed = append(w.changed, p)
			}
			mattered = true
		}
	}
	return mattered
}
