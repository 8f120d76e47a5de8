package kubeenv

import (
	"context"
	"sync"
	"testing"
	"time"
)

// Shared is one Env for all the tests of a package that want it, started on first use (so that
// tests skipped or not selected cost nothing) and stopped by Stop, typically from TestMain after
// m.Run. The tests sharing it must keep to namespaces and objects of their own.
//
//	var apiServer = &kubeenv.Shared{RepoRoot: repoRoot}
//	...
//	env := apiServer.Get(t)
type Shared struct {
	// RepoRoot is the checkout's top directory, for BinDir.
	RepoRoot string

	once sync.Once
	env  *Env
	err  error
}

// Get returns the running Env, building the Kubernetes binaries and starting it (within two
// minutes) on the first call. If that failed, Get fails tb, on every call.
func (s *Shared) Get(tb testing.TB) *Env {
	tb.Helper()
	s.once.Do(func() {
		bin, err := BinDir(s.RepoRoot)
		if err != nil {
			s.err = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		s.env, s.err = Start(ctx, bin)
	})
	if s.err != nil {
		tb.Fatalf("starting the API server: %v", s.err)
	}
	return s.env
}

// Stop stops the Env if Get started one; otherwise it does nothing.
func (s *Shared) Stop() error {
	if s.env == nil {
		return nil
	}
	return s.env.Stop()
}
