//go:build linux && amd64

// Command nlstop runs a program under ptrace and stops it at an exact point of its nf_tables
// netlink traffic, so a crash test can SIGKILL vpcnat-daemon there: the nftables backend commits
// in-process (one sendmsg of one netlink batch, applied by the kernel inside that system call),
// so there is no child process to stop as iptwrap does for iptables-restore.
//
//	nlstop PROGRAM ARGS...        with NLSTOP=<point> and NLSTOP_DIR=<dir>
//
// Points:
//
//	nft-batch:before  the first nf_tables batch's sendmsg is entered, not yet run: the batch is
//	                  fully built, the kernel has not seen it
//	nft-batch:after   that sendmsg has returned: the kernel committed (or refused) the batch,
//	                  the program has not seen the answer
//	nft-batch:note    as after, but the program goes on (the test kills it a moment later)
//	nft-get:before    the first nf_tables request that is not a batch (the generation query or
//	                  the read-back) is entered, not yet run
//
// At the point nlstop creates the mark NLSTOP_DIR/<name>.<point> ("nft-batch.before"); except
// for note, the thread stays stopped there until the test kills the process group. Afterwards
// the program runs untraced at full speed. nlstop exits with the program's status.
package main

import (
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
)

// Netlink and nfnetlink constants (linux/netlink.h, linux/netfilter/nfnetlink.h).
const (
	nfnlMsgBatchBegin  = 0x10 // NFNL_MSG_BATCH_BEGIN
	nfnlSubsysNFTables = 10   // NFNL_SUBSYS_NFTABLES
	ptraceOExitKill    = 0x100000
	syscallStop        = int(syscall.SIGTRAP) | 0x80 // with PTRACE_O_TRACESYSGOOD
)

func main() {
	runtime.LockOSThread() // every ptrace request must come from the thread that traces
	if len(os.Args) < 2 {
		fail(fmt.Errorf("usage: nlstop PROGRAM ARGS..."))
	}
	name, point, _ := strings.Cut(os.Getenv("NLSTOP"), ":")
	cmd := exec.Command(os.Args[1], os.Args[2:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Ptrace: true}
	if err := cmd.Start(); err != nil {
		fail(err)
	}
	pid := cmd.Process.Pid
	var ws syscall.WaitStatus
	if _, err := syscall.Wait4(pid, &ws, syscall.WALL, nil); err != nil { // the exec stop
		fail(err)
	}
	if err := syscall.PtraceSetOptions(pid, syscall.PTRACE_O_TRACESYSGOOD|syscall.PTRACE_O_TRACECLONE|ptraceOExitKill); err != nil {
		fail(err)
	}
	resume, done := syscall.PtraceSyscall, false
	if err := resume(pid, 0); err != nil {
		fail(err)
	}
	code := 0
	for {
		wpid, err := syscall.Wait4(-1, &ws, syscall.WALL, nil)
		if err == syscall.ECHILD {
			break
		}
		if err != nil {
			if err == syscall.EINTR {
				continue
			}
			fail(err)
		}
		switch {
		case ws.Exited():
			if wpid == pid {
				code = ws.ExitStatus()
			}
			continue
		case ws.Signaled():
			if wpid == pid {
				code = 128 + int(ws.Signal())
			}
			continue
		case !ws.Stopped():
			continue
		}
		sig := int(ws.StopSignal())
		deliver := 0
		switch {
		case sig == syscallStop:
			if !done && stopHere(wpid, name, point) {
				mark(name, point)
				// From here on the program runs without syscall stops.
				resume, done = syscall.PtraceCont, true
				if point != "note" {
					continue // this thread stays stopped until the test kills the group
				}
			}
		case sig == int(syscall.SIGTRAP) && ws.TrapCause() > 0, sig == int(syscall.SIGSTOP):
			// A ptrace event (a new thread) or a new thread's first stop: not the program's.
		default:
			deliver = sig
		}
		_ = resume(wpid, deliver)
	}
	os.Exit(code)
}

// stopHere reports whether the thread tid, in a syscall stop, is at the requested point.
func stopHere(tid int, name, point string) bool {
	var regs syscall.PtraceRegs
	if err := syscall.PtraceGetRegs(tid, &regs); err != nil || regs.Orig_rax != syscall.SYS_SENDMSG {
		return false
	}
	// On x86-64 a syscall-enter stop shows -ENOSYS in rax; an exit stop the result.
	entry := int64(regs.Rax) == -int64(syscall.ENOSYS)
	msgType, subsys, ok := firstMessage(tid, uintptr(regs.Rsi))
	if !ok {
		return false
	}
	batch := msgType == nfnlMsgBatchBegin && subsys == nfnlSubsysNFTables
	nftRequest := msgType>>8 == nfnlSubsysNFTables
	switch name + ":" + point {
	case "nft-batch:before":
		return batch && entry
	case "nft-batch:after", "nft-batch:note":
		return batch && !entry
	case "nft-get:before":
		return nftRequest && entry
	}
	return false
}

// firstMessage reads the type of the first netlink message a sendmsg(fd, msg, flags) sends,
// and the nfnetlink subsystem (res_id) of its nfgenmsg, from the tracee's memory.
func firstMessage(tid int, msghdr uintptr) (msgType, subsys uint16, ok bool) {
	// struct msghdr: name, namelen(+pad), iov, iovlen, ...; struct iovec: base, len.
	var hdr [32]byte
	if n, err := syscall.PtracePeekData(tid, msghdr, hdr[:]); err != nil || n != len(hdr) {
		return 0, 0, false
	}
	iov := uintptr(binary.LittleEndian.Uint64(hdr[16:]))
	if binary.LittleEndian.Uint64(hdr[24:]) == 0 {
		return 0, 0, false
	}
	var vec [16]byte
	if n, err := syscall.PtracePeekData(tid, iov, vec[:]); err != nil || n != len(vec) {
		return 0, 0, false
	}
	base, length := uintptr(binary.LittleEndian.Uint64(vec[0:])), binary.LittleEndian.Uint64(vec[8:])
	if length < 20 {
		return 0, 0, false
	}
	// struct nlmsghdr (len, type, flags, seq, pid), then struct nfgenmsg (family, version,
	// res_id in network order).
	var msg [20]byte
	if n, err := syscall.PtracePeekData(tid, base, msg[:]); err != nil || n != len(msg) {
		return 0, 0, false
	}
	return binary.LittleEndian.Uint16(msg[4:]), binary.BigEndian.Uint16(msg[18:]), true
}

// mark creates NLSTOP_DIR/<name>.<point>.
func mark(name, point string) {
	if err := os.WriteFile(filepath.Join(os.Getenv("NLSTOP_DIR"), name+"."+point), nil, 0o644); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "nlstop: %v\n", err)
	os.Exit(125)
}
