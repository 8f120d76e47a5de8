// Command vpcnat-pause does nothing until it is told to stop. It is two images' process:
//
//   - the gateway pod's container (vpcnat-gateway image): all privileged work on a gateway is
//     done from the host side by the CNI plugin and the daemon, so the pod itself only has to
//     exist, unprivileged, for as long as its Deployment wants it;
//   - the pod sandbox ("pause") process of the test cluster, which has no registry to pull
//     registry.k8s.io/pause from.
//
// As PID 1 of a pod sandbox it must reap orphaned children (a container sharing the sandbox's
// PID namespace re-parents its zombies to it), so it does, like the upstream pause.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if len(os.Args) > 1 {
		// Nothing to configure; a stray argument means someone expects another program.
		fmt.Fprintf(os.Stderr, "vpcnat-pause: takes no arguments, got %q\n", os.Args[1:])
		os.Exit(2)
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	children := make(chan os.Signal, 16)
	signal.Notify(children, syscall.SIGCHLD)
	for {
		select {
		case <-stop:
			os.Exit(0)
		case <-children:
			reap()
		}
	}
}

// reap collects every exited child; SIGCHLD coalesces, so one signal may stand for several.
func reap() {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}
