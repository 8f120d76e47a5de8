// Package planted is a fixture of test/lint: shell command lines the no-shell check must find
// (each line marked with a want comment) next to argv uses it must leave alone. It is never built.
package planted

import (
	"context"
	"os"
	osexec "os/exec"
	"syscall"
)

const shell = "/bin/sh" // want
const bash = "bash"

func planted(ctx context.Context, userNIC, prog string) {
	_ = osexec.Command("sh", "-c", "ip link del "+userNIC)                          // want
	_ = osexec.CommandContext(ctx, "/usr/bin/bash", "-c", "iptables -F "+userNIC)   // want
	_ = osexec.Command(shell, "-c", userNIC)                                        // want
	_ = osexec.Command(bash, "-lc", userNIC)                                        // want
	_ = osexec.Command("env", "PATH=/usr/bin", "dash", "-c", userNIC)               // want
	_ = osexec.Command("ip", "netns", "exec", "gw", "busybox", "sh", "-c", userNIC) // want
	_ = osexec.Command(prog, "-c", userNIC)                                         // want
	_ = &osexec.Cmd{Path: "/bin/" + "zsh", Args: []string{"zsh", "-c", userNIC}}    // want
	_, _ = os.StartProcess("ksh", []string{"ksh", "-c", userNIC}, nil)              // want
	_ = syscall.Exec(prog, []string{prog, "-c", userNIC}, nil)                      // want
	_ = osexec.Command(os.Getenv("SHELL"), "-i")                                    // want

	// Not shells: an argv, whatever the values.
	_ = osexec.Command("ip", "link", "show", "dev", userNIC)
	_ = osexec.CommandContext(ctx, "iptables-restore", "--noflush")
	_ = osexec.Command(prog, "--show", userNIC)
	_ = osexec.Command("python3", "-c", "print(1)") // a constant non-shell program
	ssh := "shell words in a string are fine: sh -c is only text here"
	_ = ssh
}
