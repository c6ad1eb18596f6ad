package api

import (
	"fmt"
	"net"
	"slices"
	"unsafe"

	"golang.org/x/sys/unix"
)

// peer is the credentials of the process at the other end of the socket,
// as the kernel recorded them when it connected.
type peer struct {
	uid, gid uint32
	pid      int32
	// groups are its supplementary groups (SO_PEERGROUPS).
	groups []uint32
	known  bool
}

// inGroup reports whether gid is the peer's primary or one of its
// supplementary groups.
func (p peer) inGroup(gid uint32) bool {
	return p.gid == gid || slices.Contains(p.groups, gid)
}

// peerOf reads the peer's credentials: uid, gid and pid with SO_PEERCRED,
// the supplementary groups with SO_PEERGROUPS. Both are what the peer had
// at connect(2), taken by the kernel at the same moment, which is also
// when the socket file's permissions admitted it.
//
// Why not the alternatives: /proc/PID/status is read later, by a pid that
// the peer may have handed its connection on from, and that another
// process may hold by then; getgrouplist(3) is the user database's idea of
// membership, not the process's (a user just added to a group has it
// there before logging in again, a process that dropped its groups with
// setgroups(2) still has them there). A peer whose groups cannot be read
// counts as having none.
func peerOf(c net.Conn) peer {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return peer{}
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return peer{}
	}
	var p peer
	_ = raw.Control(func(fd uintptr) {
		cred, err := unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
		if err != nil {
			return
		}
		p = peer{uid: cred.Uid, gid: cred.Gid, pid: cred.Pid, known: true}
		p.groups, _ = peerGroups(int(fd))
	})
	return p
}

// peerGroups is getsockopt(SO_PEERGROUPS), which x/sys/unix does not wrap:
// the kernel fills an array of gid_t and answers ERANGE, with the size it
// needs, when the array is too small.
func peerGroups(fd int) ([]uint32, error) {
	buf := make([]uint32, 32)
	for range 3 {
		n := uint32(len(buf) * 4)
		_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_PEERGROUPS,
			uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&n)), 0)
		switch errno {
		case 0:
			return buf[:n/4], nil
		case unix.ERANGE:
			buf = make([]uint32, n/4+1)
		default:
			return nil, fmt.Errorf("SO_PEERGROUPS: %w", errno)
		}
	}
	return nil, fmt.Errorf("SO_PEERGROUPS: %w", unix.ERANGE)
}
