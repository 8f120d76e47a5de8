package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/version"
)

// timedExec is libcni's own plugin executor, timing each plugin execution (fork, exec, the
// plugin's run, its exit) by plugin file and command: vpcnat's share of a chain measured
// without the noise of the other plugins' kernel work.
type timedExec struct {
	invoke.DefaultExec
	mu    sync.Mutex
	times map[string][]time.Duration // "<file> <command>"
}

func newTimedExec() *timedExec {
	return &timedExec{
		DefaultExec: invoke.DefaultExec{RawExec: &invoke.RawExec{Stderr: os.Stderr}, PluginDecoder: version.PluginDecoder{}},
		times:       map[string][]time.Duration{},
	}
}

func (e *timedExec) ExecPlugin(ctx context.Context, pluginPath string, stdin []byte, environ []string) ([]byte, error) {
	start := time.Now()
	out, err := e.DefaultExec.ExecPlugin(ctx, pluginPath, stdin, environ)
	took := time.Since(start)
	cmd := ""
	for _, kv := range environ {
		if v, ok := strings.CutPrefix(kv, "CNI_COMMAND="); ok {
			cmd = v
		}
	}
	e.mu.Lock()
	k := filepath.Base(pluginPath) + " " + cmd
	e.times[k] = append(e.times[k], took)
	e.mu.Unlock()
	return out, err
}

// take returns and forgets what was recorded for a plugin file and command.
func (e *timedExec) take(file, cmd string) []time.Duration {
	e.mu.Lock()
	defer e.mu.Unlock()
	k := file + " " + cmd
	d := e.times[k]
	delete(e.times, k)
	return d
}
