package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestBenchSmoke runs every benchmark (`make bench`, test/bench/dataplane, `make bench-daemon`,
// `make bench-controller`) at a small size, as `make test` does, so that none of them rots: each must build, run to the
// end against the real parts it measures, exit 0 and print its markdown table. The figures are
// not judged here: a timing is a benchmark's output, never a test's verdict.
func TestBenchSmoke(t *testing.T) {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, pkg string
		root      bool // creates network namespaces
		args      []string
		tables    int // markdown tables it prints
	}{
		{"data-plane", "./test/bench", true,
			[]string{"--sizes=10", "--baseline-max=10", "--conn-time=200ms", "--changes=2", "--cni-rounds=2"}, 3},
		{"dataplane-backends", "./test/bench/dataplane", true,
			[]string{"--sizes=10", "--changes=2", "--conn-time=200ms"}, 2},
		{"daemon", "./test/bench/daemon", true,
			[]string{"--repo=" + root, "--rounds=2", "--sizes=1,10", "--gateways=2"}, 1},
		{"controller", "./test/bench/controller", false,
			[]string{"--gateways=3", "--samples=2", "--rules=10"}, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.root && os.Geteuid() != 0 {
				t.Skip("needs root (network namespaces)")
			}
			bin := filepath.Join(t.TempDir(), "bench")
			build := exec.Command("go", "build", "-o", bin, c.pkg)
			build.Dir = root
			if out, err := build.CombinedOutput(); err != nil {
				t.Fatalf("go build %s: %v\n%s", c.pkg, err, out)
			}
			// A hang guard only: each run takes seconds.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, c.args...)
			cmd.Dir = root
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("%s %s: %v\nstdout:\n%s\nstderr:\n%s", c.pkg, strings.Join(c.args, " "), err, stdout.String(), tail(stderr.String(), 4000))
			}
			if got := len(tableRule.FindAllString(stdout.String(), -1)); got < c.tables {
				t.Errorf("%s printed %d markdown tables, want %d:\n%s", c.pkg, got, c.tables, stdout.String())
			}
			t.Logf("%s:\n%s", c.pkg, stdout.String())
		})
	}
}

// tableRule is the line under a markdown table's header: | --- | ---: | :---: |
var tableRule = regexp.MustCompile(`(?m)^\|( *:?-{3,}:? *\|)+$`)

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}
