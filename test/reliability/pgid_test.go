package reliability

import "syscall"

// newPgid puts a child in a process group of its own, so the whole group can be killed.
func newPgid() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

// killGroup sends SIGKILL to the process group led by pid (the daemon and its children only).
func killGroup(pid int) error { return syscall.Kill(-pid, syscall.SIGKILL) }
