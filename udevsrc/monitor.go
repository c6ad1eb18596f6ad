package udevsrc

/*
#cgo LDFLAGS: -ludev
#include <libudev.h>
#include <stdlib.h>
*/
import "C"

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// monitor is a libudev netlink monitor read from the goroutine that calls
// run, parked in Go's netpoller between events.
//
// Why not go-udev's Monitor.DeviceChan (go-udev is still what lists the
// devices): its reader goroutine sleeps in EpollWait with a 1 s timeout,
// which woke the whole process every second while idle (71 % of idle
// wakeups in make bench), and hands each device over a channel to another
// goroutine before the controller sees it: one more cross-thread wake-up on
// the plug-to-attach path. It also drops the receive error, so a socket
// overrun (ENOBUFS: events lost) went unnoticed; here it turns into a
// resync. Receiving still goes through libudev, so umockdev's preload sees
// the same calls as before.
type monitor struct {
	udev *C.struct_udev
	mon  *C.struct_udev_monitor
	file *os.File // a dup of the monitor's socket, for the netpoller only
}

func newMonitor(bufSize int) (*monitor, error) {
	u := C.udev_new()
	if u == nil {
		return nil, errors.New("udev monitor: udev_new failed")
	}
	m := &monitor{udev: u}
	name := C.CString("udev")
	defer C.free(unsafe.Pointer(name))
	mon, err := C.udev_monitor_new_from_netlink(u, name)
	if mon == nil {
		m.close()
		return nil, fmt.Errorf("udev monitor: cannot open netlink socket: %w", errnoOr(err))
	}
	m.mon = mon
	sub, typ := C.CString("usb"), C.CString("usb_device")
	defer C.free(unsafe.Pointer(sub))
	defer C.free(unsafe.Pointer(typ))
	if r := C.udev_monitor_filter_add_match_subsystem_devtype(mon, sub, typ); r < 0 {
		m.close()
		return nil, fmt.Errorf("udev monitor filter: %w", syscall.Errno(-r))
	}
	// A large receive buffer absorbs bursts (a hub with many devices
	// plugged at once) while the loop is busy; failing to grow it is not
	// fatal (it needs CAP_NET_ADMIN beyond rmem_max).
	_ = C.udev_monitor_set_receive_buffer_size(mon, C.int(bufSize))
	if r := C.udev_monitor_enable_receiving(mon); r < 0 {
		m.close()
		return nil, fmt.Errorf("udev monitor: enable receiving: %w", syscall.Errno(-r))
	}
	fd := int(C.udev_monitor_get_fd(mon))
	// libudev opens the socket non-blocking already; the netpoller needs
	// it, so make sure. The flag is shared with the dup below.
	if err := unix.SetNonblock(fd, true); err != nil {
		m.close()
		return nil, fmt.Errorf("udev monitor: set non-blocking: %w", err)
	}
	dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		m.close()
		return nil, fmt.Errorf("udev monitor: dup socket: %w", err)
	}
	m.file = os.NewFile(uintptr(dup), "udev-monitor")
	return m, nil
}

// recvBuf is the socket's SO_RCVBUF, read on libudev's descriptor (Fd on
// the dup would take it out of the netpoller).
func (m *monitor) recvBuf() (int, error) {
	return unix.GetsockoptInt(int(C.udev_monitor_get_fd(m.mon)), unix.SOL_SOCKET, unix.SO_RCVBUF)
}

func errnoOr(err error) error {
	if err == nil {
		return errors.New("unknown error")
	}
	return err
}

func (m *monitor) close() {
	if m.file != nil {
		m.file.Close()
	}
	if m.mon != nil {
		C.udev_monitor_unref(m.mon)
	}
	if m.udev != nil {
		C.udev_unref(m.udev)
	}
}

// recvResult says what one receive gave.
type recvResult int

const (
	recvDevice  recvResult = iota // a device came (or was filtered out)
	recvEmpty                     // nothing queued: wait for the socket
	recvRetry                     // interrupted: try again
	recvOverrun                   // the socket overflowed: events were lost
	recvBroken                    // anything else: re-create the monitor
)

// classifyRecv maps udev_monitor_receive_device's errno (with a NULL
// device) to what the reader does next.
func classifyRecv(errno syscall.Errno) recvResult {
	switch errno {
	case 0:
		// NULL without an errno: a message libudev dropped (wrong
		// sender, bad magic). Nothing to deliver; keep reading.
		return recvRetry
	case unix.EAGAIN:
		return recvEmpty
	case unix.EINTR:
		return recvRetry
	case unix.ENOBUFS:
		return recvOverrun
	default:
		return recvBroken
	}
}

// run delivers events to handle until ctx is done (returns ctx.Err()) or
// the monitor breaks (returns why). It blocks in the netpoller, not in a
// timed poll: an idle monitor costs no wake-ups.
func (m *monitor) run(ctx context.Context, s *Source, handle func(Event)) error {
	rc, err := m.file.SyscallConn()
	if err != nil {
		return fmt.Errorf("udev monitor: %w", err)
	}
	// Waking the reader through its deadline is how a netpolled read is
	// cancelled; a file the netpoller refused has no deadlines, and
	// would block forever: say so instead.
	if err := m.file.SetReadDeadline(time.Time{}); err != nil {
		return fmt.Errorf("udev monitor: socket cannot be polled: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { _ = m.file.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	var broken error
	err = rc.Read(func(uintptr) bool {
		dropped := 0
		for {
			dev, err := C.udev_monitor_receive_device(m.mon)
			if dev != nil {
				dropped = 0
				s.deliverC(dev, handle)
				C.udev_device_unref(dev)
				continue
			}
			var errno syscall.Errno
			errors.As(err, &errno) // stays 0 if libudev set none
			switch classifyRecv(errno) {
			case recvEmpty:
				return false // park in the netpoller until readable
			case recvRetry:
				// Each dropped message was consumed, so this ends
				// at EAGAIN; the bound only guards against a
				// libudev that fails without reading.
				if dropped++; dropped > 10000 {
					broken = errors.New("udev monitor: receive keeps failing without an error")
					return true
				}
			case recvOverrun:
				s.log.Warn("udev monitor overrun: events lost; listing devices again")
				handle(Event{Action: ActionResync})
			case recvBroken:
				broken = fmt.Errorf("udev monitor: receive: %w", errno)
				return true
			}
		}
	})
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if broken != nil {
		return broken
	}
	if err != nil {
		return fmt.Errorf("udev monitor: wait: %w", err)
	}
	return errors.New("udev monitor: reader stopped")
}

// deliverC converts a received device and hands it to handle.
func (s *Source) deliverC(dev *C.struct_udev_device, handle func(Event)) {
	action := C.GoString(C.udev_device_get_action(dev))
	props := map[string]string{}
	for e := C.udev_device_get_properties_list_entry(dev); e != nil; e = C.udev_list_entry_get_next(e) {
		props[C.GoString(C.udev_list_entry_get_name(e))] = C.GoString(C.udev_list_entry_get_value(e))
	}
	attr := func(name string) string {
		cn := C.CString(name)
		defer C.free(unsafe.Pointer(cn))
		return C.GoString(C.udev_device_get_sysattr_value(dev, cn))
	}
	s.deliver(action, props, attr, handle)
}
