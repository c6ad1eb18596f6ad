// Command usbfshold claims one interface of a USB device through usbfs and
// holds it until SIGTERM or SIGINT, as a host program that uses a device
// through libusb does (a smartcard daemon, a flashing tool): the kernel
// shows the interface's driver as "usbfs". The kernel tier's
// TestUsbfsHolder runs it inside the test host.
//
//	usbfshold /dev/bus/usb/BBB/DDD INTERFACE
//
// It disconnects whatever kernel driver has the interface and claims it in
// one call (USBDEVFS_DISCONNECT_CLAIM), prints "claimed" and waits; closing
// the file at exit releases the claim.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// disconnectClaim is struct usbdevfs_disconnect_claim (linux/usbdevice_fs.h).
type disconnectClaim struct {
	Interface uint32
	Flags     uint32
	Driver    [256]byte
}

// usbdevfsDisconnectClaim is _IOR('U', 27, struct usbdevfs_disconnect_claim).
var usbdevfsDisconnectClaim = uintptr(2<<30 | uint32(unsafe.Sizeof(disconnectClaim{}))<<16 | 'U'<<8 | 27)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: usbfshold /dev/bus/usb/BBB/DDD INTERFACE")
		os.Exit(2)
	}
	ifn, err := strconv.ParseUint(os.Args[2], 10, 8)
	if err != nil {
		fmt.Fprintf(os.Stderr, "usbfshold: interface %q: want a number from 0 to 255\n", os.Args[2])
		os.Exit(2)
	}
	// Ask for the signals before claiming, so one sent right after
	// "claimed" cannot kill the process before it is handled.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	f, err := os.OpenFile(os.Args[1], os.O_RDWR, 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, "usbfshold:", err)
		os.Exit(1)
	}
	dc := disconnectClaim{Interface: uint32(ifn)}
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), usbdevfsDisconnectClaim, uintptr(unsafe.Pointer(&dc))); errno != 0 {
		fmt.Fprintf(os.Stderr, "usbfshold: claim interface %d of %s: %v\n", ifn, os.Args[1], errno)
		os.Exit(1)
	}
	fmt.Println("claimed")
	<-sig
	f.Close()
}
