// Command iptwrap wraps the real iptables-save and iptables-restore (installed under those names
// in a directory put first in vpcnat-daemon's PATH by test/reliability), so a crash test can
// stop the daemon at exact points of a converge and SIGKILL it there:
//
//	IPTWRAP_STOP=<name>:before  block before running the real <name>, after reading all of
//	                            stdin (iptables-restore: the transaction is fully written, not
//	                            committed)
//	IPTWRAP_STOP=<name>:after   run the real <name>, then block (iptables-restore: committed,
//	                            the daemon has not seen it finish)
//	IPTWRAP_STOP=<name>:note    run the real <name>, create the mark and exit normally (the
//	                            test kills the daemon a moment later, inside the netlink steps)
//
// When it blocks it first creates the mark IPTWRAP_DIR/<name>.<point>, which the test waits for. With
// IPTWRAP_STOP unset or naming another program it runs the real program transparently. The real
// program is the first one of that name on PATH that is not a link to iptwrap.
package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

func main() {
	name := filepath.Base(os.Args[0])
	self, err := os.Executable()
	if err != nil {
		fail(err)
	}
	if self, err = filepath.EvalSymlinks(self); err != nil {
		fail(err)
	}
	real := ""
	for _, dir := range filepath.SplitList(os.Getenv("PATH")) {
		if dir == "" {
			continue
		}
		p := filepath.Join(dir, name)
		if resolved, err := filepath.EvalSymlinks(p); err != nil || resolved == self {
			continue // not there, or iptwrap itself
		}
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			real = p
			break
		}
	}
	if real == "" {
		fail(fmt.Errorf("no %s on PATH besides iptwrap", name))
	}
	stopName, point, _ := strings.Cut(os.Getenv("IPTWRAP_STOP"), ":")
	stop := stopName == name
	input, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail(err)
	}
	if stop && point == "before" {
		block(name, point)
	}
	cmd := exec.Command(real, os.Args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = bytes.NewReader(input), os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			os.Exit(ee.ExitCode())
		}
		fail(err)
	}
	switch {
	case stop && point == "after":
		block(name, point)
	case stop && point == "note":
		mark(name, point)
	}
}

// block announces the stop and waits to be killed.
func block(name, point string) {
	mark(name, point)
	for {
		time.Sleep(time.Hour)
	}
}

// mark creates IPTWRAP_DIR/<name>.<point>.
func mark(name, point string) {
	if err := os.WriteFile(filepath.Join(os.Getenv("IPTWRAP_DIR"), name+"."+point), nil, 0o644); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "iptwrap: %v\n", err)
	os.Exit(125)
}
