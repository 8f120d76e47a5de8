package ctsync

import (
	"encoding/binary"
	"errors"
	"fmt"
	"syscall"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/netfilter"
	"golang.org/x/sys/unix"
)

// batchSize: create requests per sendmsg. Each request is ~200 bytes, so a batch stays far
// below the socket's send buffer, and the errors of a batch (one small message each, with
// NETLINK_CAP_ACK) below its receive buffer.
const batchSize = 256

// createBatched sends the create requests of entries batchSize at a time, without asking for an
// acknowledgement of each (the kernel then answers only failures), each batch closed by one
// request that is always answered (GET_STATS) so the reader knows the batch is done. It returns
// the index of every entry the kernel refused, with the error. One round trip per batch instead
// of one per entry: the per-entry round trip was most of a commit's time (docs/ha.md).
func createBatched(entries []Entry, liberal bool) (map[int]error, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
	if err != nil {
		return nil, fmt.Errorf("ctnetlink socket: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("binding the ctnetlink socket: %w", err)
	}
	// Errors carry the failed request's header only, not its whole payload.
	_ = unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_CAP_ACK, 1)
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 1<<20)

	failed := map[int]error{}
	buf := make([]byte, 0, batchSize*256)
	rbuf := make([]byte, 1<<16)
	for start := 0; start < len(entries); start += batchSize {
		end := min(start+batchSize, len(entries))
		buf = buf[:0]
		for i := start; i < end; i++ {
			buf = appendCreate(buf, entries[i], entries[i].Timeout, liberal, uint32(i+1), createFlags)
		}
		barrier := uint32(len(entries) + 1 + start)
		stats, err := netfilter.MarshalNetlink(netfilter.Header{SubsystemID: netfilter.NFSubsysCTNetlink, MessageType: ipctnlMsgCtGetStats,
			Family: netfilter.ProtoUnspec, Flags: netlink.Request}, nil)
		if err != nil {
			return nil, err
		}
		stats.Header.Sequence = barrier
		if buf, err = appendMessage(buf, stats); err != nil {
			return nil, err
		}
		if err := unix.Sendto(fd, buf, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
			return nil, fmt.Errorf("sending %d conntrack entries: %w", end-start, err)
		}
		if err := readUntil(fd, rbuf, barrier, func(seq uint32, errno syscall.Errno) {
			if i := int(seq) - 1; i >= start && i < end {
				failed[i] = fmt.Errorf("creating conntrack entry %v: %w", entries[i].Key(), errno)
			}
		}); err != nil {
			return nil, err
		}
	}
	return failed, nil
}

// createFlags: a batch's create requests ask for no acknowledgement; the kernel answers
// failures anyway.
const createFlags = unix.NLM_F_REQUEST | unix.NLM_F_CREATE | unix.NLM_F_EXCL

// ipctnlMsgCtGetStats is IPCTNL_MSG_CT_GET_STATS: one answer, whatever the table holds.
const ipctnlMsgCtGetStats = 5

func appendMessage(b []byte, m netlink.Message) ([]byte, error) {
	m.Header.Length = uint32(unix.NLMSG_HDRLEN + (len(m.Data)+unix.NLMSG_ALIGNTO-1)&^(unix.NLMSG_ALIGNTO-1))
	raw, err := m.MarshalBinary()
	if err != nil {
		return b, err
	}
	return append(b, raw...), nil
}

// readUntil reads the kernel's answers until the one with sequence number last, passing every
// error answer to fail.
func readUntil(fd int, buf []byte, last uint32, fail func(seq uint32, errno syscall.Errno)) error {
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return fmt.Errorf("reading the kernel's answers: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return fmt.Errorf("parsing the kernel's answers: %w", err)
		}
		for _, m := range msgs {
			if m.Header.Type == unix.NLMSG_ERROR && len(m.Data) >= 4 {
				if code := int32(binary.NativeEndian.Uint32(m.Data)); code != 0 {
					fail(m.Header.Seq, syscall.Errno(-code))
				}
			}
			if m.Header.Seq == last {
				return nil
			}
		}
	}
}
