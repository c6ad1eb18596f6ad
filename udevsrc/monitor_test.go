package udevsrc

import (
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// What the reader does after udev_monitor_receive_device returned no
// device: an overrun must become a resync (events were lost), and an
// unknown error must end the monitor (Watch re-creates it with backoff)
// instead of spinning on it.
func TestClassifyRecv(t *testing.T) {
	for _, tc := range []struct {
		errno syscall.Errno
		want  recvResult
	}{
		{0, recvRetry},
		{unix.EAGAIN, recvEmpty},
		{unix.EINTR, recvRetry},
		{unix.ENOBUFS, recvOverrun},
		{unix.EBADF, recvBroken},
		{unix.ENOMEM, recvBroken},
	} {
		if got := classifyRecv(tc.errno); got != tc.want {
			t.Errorf("classifyRecv(%v) = %d, want %d", tc.errno, got, tc.want)
		}
	}
}
