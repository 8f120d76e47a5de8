package cniinstall

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"time"

	"k8s.io/klog/v2"
)

// WatchOptions of Watch.
type WatchOptions struct {
	// Recheck is the period of a check without any event: the safety net for what the file
	// watch does not report (an overflowed queue, a directory that could not be watched).
	Recheck time.Duration
	// Debounce is how long the directories must stay quiet after an event before the check (a
	// primary CNI's agent writes its files in bursts); 0 means DefaultDebounce.
	Debounce time.Duration
	// Checked, when not nil, is called after every check with what triggered it and its outcome.
	Checked func(Check)
}

// Check is one run of Install by Watch.
type Check struct {
	// Trigger: the paths whose change caused the check, or why else it ran ("start",
	// "periodic re-check", "retry", lost events).
	Trigger []string
	Result  *Result
	Err     error
}

// DefaultDebounce is WatchOptions.Debounce's default.
const DefaultDebounce = 200 * time.Millisecond

const (
	// maxBurst bounds the debounce: directories written to without a pause are still checked.
	maxBurst = 2 * time.Second
	// maxBackoff bounds the delay of retries after errors, and of checks while something keeps
	// undoing the installation (never beyond the re-check period either).
	maxBackoff = 5 * time.Minute
)

// Watch installs like Install, then keeps the installation in place until ctx is done: a
// primary CNI that rewrites its configuration (Calico, Flannel and Cilium agents do, on start
// and on upgrades) drops the vpcnat entry, and gateway pods created afterwards would get no
// net1. Changes are seen with fsnotify (inotify) and a periodic re-check. Install is idempotent, so the
// check that follows Watch's own writes changes nothing and causes no event: the watch settles.
//
// Errors never end the watch: they are logged and retried with backoff (and at the next event).
// Another writer that undoes each restoration (two installers fighting over one file) is not
// answered at inotify speed either: consecutive checks that each had to change something space
// the next check out with backoff. Watch returns nil when ctx is done, an error only for bad
// options.
func Watch(ctx context.Context, o Options, wo WatchOptions) error {
	if wo.Recheck <= 0 {
		return fmt.Errorf("re-check period %v is not positive", wo.Recheck)
	}
	if wo.Debounce < 0 {
		return fmt.Errorf("debounce %v is negative", wo.Debounce)
	}
	if wo.Debounce == 0 {
		wo.Debounce = DefaultDebounce
	}
	capDelay := min(wo.Recheck, maxBackoff)
	l := &watchLoop{o: o, wo: wo, timer: time.NewTimer(0), triggers: []string{"start"},
		errDelay: newBackoff(capDelay), fightDelay: newBackoff(capDelay)}
	defer l.timer.Stop()
	ticker := time.NewTicker(wo.Recheck)
	defer ticker.Stop()

	var events chan struct{}
	var watchErr string
	w, err := newDirWatcher([]string{o.BinDir, o.ConfDir}, o.relevant)
	if w != nil {
		defer w.close()
		events = w.C
	}
	if err != nil {
		klog.ErrorS(err, "Cannot watch the CNI directories; relying on the periodic re-check", "recheck", wo.Recheck)
		watchErr = err.Error()
	}
	for first := true; ; {
		select {
		case <-ctx.Done():
			return nil
		case <-events:
			changed, lost := w.take()
			if len(changed) == 0 && !lost {
				continue // taken with an earlier notification
			}
			if lost {
				changed = append(changed, "(events lost: file watch queue overflow, or a watched directory went away)")
			}
			l.event(changed)
		case <-ticker.C:
			if l.due.IsZero() {
				l.triggers = append(l.triggers, "periodic re-check")
				l.schedule(time.Now())
			}
		case <-l.timer.C:
			// First, a watched directory that went away and came back is watched again: the
			// check's writes and everything after them are then seen.
			if w != nil {
				if err := w.ensure(); err != nil && err.Error() != watchErr {
					klog.ErrorS(err, "Cannot watch a CNI directory; relying on the periodic re-check", "recheck", wo.Recheck)
					watchErr = err.Error()
				} else if err == nil && watchErr != "" {
					klog.InfoS("Watching the CNI directories again", "binDir", o.BinDir, "confDir", o.ConfDir)
					watchErr = ""
				}
			}
			l.check(ctx, first)
			first = false
			if ctx.Err() != nil {
				return nil
			}
		}
	}
}

// relevant says whether a change of name in dir can concern the installation: the two binaries,
// and every file libcni reads (a new file that sorts first becomes the runtime's configuration).
// Install's temp files (.vpcnat-*.tmp) and set-aside originals (*.vpcnat-orig) are not.
func (o Options) relevant(dir, name string) bool {
	if dir == o.BinDir && (name == PluginType || name == GatewayBinary) {
		return true
	}
	return dir == o.ConfDir && slices.Contains(confExtensions, filepath.Ext(name))
}

// watchLoop is Watch's state; only Watch's goroutine uses it.
type watchLoop struct {
	o     Options
	wo    WatchOptions
	timer *time.Timer
	// due: when the timer fires for the next check (zero: no check scheduled); burst: the first
	// event of the burst being debounced; notBefore: no check before, while something keeps
	// undoing the installation.
	due, burst, notBefore time.Time
	triggers              []string
	errDelay, fightDelay  backoff
	// changedInRow: consecutive checks that had to change something.
	changedInRow int
}

func (l *watchLoop) schedule(at time.Time) {
	l.due = at
	l.timer.Reset(time.Until(at)) // Go ≥ 1.23: no stale value is received after Reset
}

// event debounces: the check runs once the directories were quiet for Debounce, or maxBurst
// after the burst's first event. It supersedes a pending retry.
func (l *watchLoop) event(changed []string) {
	now := time.Now()
	for _, p := range changed {
		if !slices.Contains(l.triggers, p) {
			l.triggers = append(l.triggers, p)
		}
	}
	if l.burst.IsZero() {
		l.burst = now
	}
	at := now.Add(l.wo.Debounce)
	if limit := l.burst.Add(maxBurst); limit.Before(at) {
		at = limit
	}
	l.schedule(later(at, l.notBefore))
}

func (l *watchLoop) check(ctx context.Context, first bool) {
	trigger := l.triggers
	l.triggers, l.due, l.burst = nil, time.Time{}, time.Time{}
	o := l.o
	if !first {
		o.Wait = 0 // the watch itself waits for a configuration to appear
	}
	res, err := Install(ctx, o)
	if ctx.Err() != nil {
		return
	}
	switch {
	case err != nil:
		d := l.errDelay.step()
		if errors.Is(err, fs.ErrNotExist) {
			klog.InfoS("Nothing to chain vpcnat into yet; waiting for a network configuration",
				"err", err.Error(), "trigger", trigger, "retryIn", d)
		} else {
			klog.ErrorS(err, "Checking the CNI installation failed; retrying", "trigger", trigger, "retryIn", d)
		}
		l.triggers = []string{"retry"}
		l.schedule(later(time.Now().Add(d), l.notBefore))
	case res.BinaryChanged || res.ConfChanged:
		l.errDelay.reset()
		l.changedInRow++
		klog.InfoS("Changed the CNI installation", append([]any{"trigger", trigger}, resultKeys(res)...)...)
		if l.changedInRow > 1 {
			d := l.fightDelay.step()
			l.notBefore = time.Now().Add(d)
			klog.InfoS("Something keeps undoing the vpcnat installation; checking less often until it stops",
				"checksThatChangedSomething", l.changedInRow, "nextCheckIn", d)
		}
	default:
		l.errDelay.reset()
		l.fightDelay.reset()
		l.changedInRow, l.notBefore = 0, time.Time{}
		if first {
			klog.InfoS("The CNI installation is in place; watching it", "binDir", o.BinDir, "confFile", res.ConfFile,
				"recheck", l.wo.Recheck)
		} else {
			klog.V(2).InfoS("The CNI installation is in place", "trigger", trigger, "confFile", res.ConfFile)
		}
	}
	if l.wo.Checked != nil {
		l.wo.Checked(Check{Trigger: trigger, Result: res, Err: err})
	}
}

func later(a, b time.Time) time.Time {
	if a.Before(b) {
		return b
	}
	return a
}

// resultKeys are the structured log keys of what an installation changed.
func resultKeys(r *Result) []any {
	kv := []any{"binariesWritten", r.BinaryChanged, "confFile", r.ConfFile, "confWritten", r.ConfChanged}
	if r.Replaced != "" {
		kv = append(kv, "convertedFrom", r.Replaced, "originalKeptAs", r.Replaced+".vpcnat-orig")
	}
	if len(r.Dropped) > 0 {
		kv = append(kv, "droppedFromEntry", r.Dropped)
	}
	return kv
}

// backoff doubles from a second (or less, if its cap is less) up to its cap.
type backoff struct{ next, first, ceiling time.Duration }

func newBackoff(ceiling time.Duration) backoff {
	first := min(time.Second, ceiling)
	return backoff{next: first, first: first, ceiling: ceiling}
}

func (b *backoff) step() time.Duration {
	d := b.next
	b.next = min(2*b.next, b.ceiling)
	return d
}

func (b *backoff) reset() { b.next = b.first }
