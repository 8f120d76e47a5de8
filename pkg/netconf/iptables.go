package netconf

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"

	"github.com/containernetworking/plugins/pkg/ns"
)

// iptables is the seam between the NAT step and the iptables binaries, so the pure parts and
// failure paths are testable without them.
type iptables interface {
	// SaveNAT returns `iptables-save -t nat` of the gateway netns.
	SaveNAT(ctx context.Context) ([]byte, error)
	// Restore runs `iptables-restore --noflush` with input in the gateway netns: one atomic
	// transaction; on error nothing of it is applied.
	Restore(ctx context.Context, input []byte) error
}

// execIptables runs the binaries inside the gateway netns. Always argv, never a shell.
type execIptables struct {
	nsPath string
}

// restoreWait is how long iptables-restore waits for the xtables lock. The lock file is global
// (not per netns) with the legacy backend, so other gateways' and kube-proxy's syncs contend for
// it; the nf_tables backend ignores it.
const restoreWait = "5"

func (e execIptables) SaveNAT(ctx context.Context) ([]byte, error) {
	return e.run(ctx, nil, "iptables-save", "-t", "nat")
}

func (e execIptables) Restore(ctx context.Context, input []byte) error {
	_, err := e.run(ctx, input, "iptables-restore", "--noflush", "-w", restoreWait)
	return err
}

// run execs argv inside the gateway netns: ns.Do locks a fresh OS thread into the netns, and
// exec forks from that thread, so the child starts (and stays) in the gateway netns.
func (e execIptables) run(ctx context.Context, stdin []byte, argv ...string) ([]byte, error) {
	netNS, err := ns.GetNS(e.nsPath)
	if err != nil {
		return nil, fmt.Errorf("%s: opening gateway netns %s: %w", argv[0], e.nsPath, err)
	}
	defer netNS.Close()
	var stdout, stderr bytes.Buffer
	err = netNS.Do(func(ns.NetNS) error {
		cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
		if stdin != nil {
			cmd.Stdin = bytes.NewReader(stdin)
		}
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		return cmd.Run()
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}
