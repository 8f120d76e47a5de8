package kubeenv

import (
	"context"
	"sync"
	"testing"
	"time"
)

// RunInBackground runs run (a controller's Run, say) in a goroutine until stop is called or tb
// ends, whichever comes first: then it cancels run's context and waits up to 30 s for it to
// return, reporting an error it returns, or that it did not stop, as what's failure.
func RunInBackground(tb testing.TB, what string, run func(context.Context) error) (stop func()) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					tb.Errorf("%s: %v", what, err)
				}
			case <-time.After(30 * time.Second):
				tb.Errorf("%s did not stop in 30s", what)
			}
		})
	}
	tb.Cleanup(stop)
	return stop
}
