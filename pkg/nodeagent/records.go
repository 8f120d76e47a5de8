package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/vpcnat/vpcnat/pkg/state"
)

// recordWatcher turns changes of the attachment records into work: a record that appears,
// changes (a new sandbox: new container ID and netns) or goes away enqueues its pod. The sync
// itself reads the record again (level-based); the watcher only says when to look. inotify
// makes a new sandbox converge within milliseconds; a slow rescan covers events inotify can
// lose (queue overflow) and a state directory it could not watch.
//
// A record that goes away also concerns the other pods of the same gateway (removed): the
// plugin removes a record last, after its DEL (or GC) deleted the node-side links the record
// names, and those names are the gateway's, not the sandbox's (derived from the gateway's and
// the subnet's names): when the gateway pod is recreated, the new sandbox is usually plumbed
// before the old one is torn down, under the same names.
type recordWatcher struct {
	store   state.Store
	enqueue func(key string)
	removed func(podUID, gateway string)
	// poll is the rescan period with inotify working; without it, fallbackPoll.
	poll, fallbackPoll time.Duration
	seen               map[string]recordID
}

// recordID is what of a record matters to the daemon.
type recordID struct{ key, gateway, containerID, netns string }

func newRecordWatcher(store state.Store, enqueue func(string), removed func(podUID, gateway string)) *recordWatcher {
	return &recordWatcher{store: store, enqueue: enqueue, removed: removed, poll: 30 * time.Second,
		fallbackPoll: time.Second, seen: map[string]recordID{}}
}

// run watches until ctx is done.
func (w *recordWatcher) run(ctx context.Context) {
	poll := w.poll
	events, err := watchDir(ctx, w.store.Dir)
	if err != nil {
		klog.ErrorS(err, "Cannot watch the attachment records; rescanning them periodically instead",
			"dir", w.store.Dir, "period", w.fallbackPoll)
		poll = w.fallbackPoll
	}
	w.scan()
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-events:
		case <-t.C:
		}
		w.scan()
	}
}

// scan reads every record and enqueues the pods whose record is new, changed or gone.
func (w *recordWatcher) scan() {
	recs, errs := w.store.List()
	for _, err := range errs {
		klog.V(2).InfoS("Skipping unreadable attachment record", "err", err)
	}
	now := make(map[string]recordID, len(recs))
	for _, r := range recs {
		id := recordID{key: r.Namespace + "/" + r.Name, gateway: r.Gateway, containerID: r.ContainerID, netns: r.Netns}
		now[r.PodUID] = id
		if w.seen[r.PodUID] != id {
			klog.V(2).InfoS("Attachment record changed", "pod", id.key, "podUID", r.PodUID, "containerID", r.ContainerID, "netns", r.Netns)
			w.enqueue(id.key)
		}
	}
	for uid, id := range w.seen {
		if _, ok := now[uid]; !ok {
			klog.V(2).InfoS("Attachment record removed", "pod", id.key, "podUID", uid, "gateway", id.gateway)
			w.enqueue(id.key)
			w.removed(uid, id.gateway)
		}
	}
	w.seen = now
}

// watchDir sends on the returned channel (coalesced: at most one pending) whenever a file of
// dir is written, renamed in or out, or deleted. It creates dir if needed: the plugin creates it
// only with the first gateway, and a directory that does not exist cannot be watched.
func watchDir(ctx context.Context, dir string) (<-chan struct{}, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating %s: %w", dir, err)
	}
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("inotify: %w", err)
	}
	// The plugin writes a record to a temp file and renames it in (IN_MOVED_TO); DEL removes it.
	const mask = unix.IN_MOVED_TO | unix.IN_MOVED_FROM | unix.IN_CLOSE_WRITE | unix.IN_DELETE
	if _, err := unix.InotifyAddWatch(fd, dir, mask); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("inotify watch on %s: %w", dir, err)
	}
	// A non-blocking fd in an os.File goes through the runtime poller, so Close wakes the read.
	f := os.NewFile(uintptr(fd), "inotify:"+dir)
	ch := make(chan struct{}, 1)
	go func() {
		<-ctx.Done()
		f.Close()
	}()
	go func() {
		buf := make([]byte, 64*(unix.SizeofInotifyEvent+unix.NAME_MAX+1))
		for {
			if _, err := f.Read(buf); err != nil {
				if !errors.Is(err, os.ErrClosed) {
					klog.ErrorS(err, "Reading inotify events", "dir", dir)
				}
				return
			}
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}()
	return ch, nil
}
