//go:build umockdev

// Package umockdev drives a umockdev testbed from Go, so tests can run real
// libudev (and QEMU, through the preload) against fake USB devices. It needs
// cgo, libumockdev, and a process started with
// LD_PRELOAD=libumockdev-preload.so.0 for anything that reads the devices
// (scripts/umockdev-exec does that for go test).
package umockdev

/*
#cgo pkg-config: umockdev-1.0
#include <stdlib.h>
#include <umockdev.h>

// add_from_string returns NULL or the error message (to be freed).
static char *usbctl_add_from_string(UMockdevTestbed *tb, const char *rec) {
	GError *err = NULL;
	if (umockdev_testbed_add_from_string(tb, rec, &err)) return NULL;
	char *msg = g_strdup(err ? err->message : "unknown error");
	if (err) g_error_free(err);
	return msg;
}

static char *usbctl_load_ioctl(UMockdevTestbed *tb, const char *dev, const char *file) {
	GError *err = NULL;
	if (umockdev_testbed_load_ioctl(tb, dev, file, &err)) return NULL;
	char *msg = g_strdup(err ? err->message : "unknown error");
	if (err) g_error_free(err);
	return msg;
}
*/
import "C"

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"unsafe"
)

// Testbed is a umockdev testbed: a directory tree (Root) that the preload
// library presents as /sys and /dev to processes with UMOCKDEV_DIR set to
// it. It must outlive every process that uses it (QEMU reads UMOCKDEV_DIR
// once, at start).
type Testbed struct {
	mu     sync.Mutex
	tb     *C.UMockdevTestbed
	root   string
	sys    string
	ioctls string
	// scripts are the ioctl scripts loaded, by device node. umockdev
	// keeps a node's first script for the testbed's life: its socket
	// outlives remove_device, and a second load fails to listen on it
	// (a glib warning, and the load still returns success).
	scripts map[string]string
}

// New creates a testbed. Create it before any udev monitor: the monitor's
// netlink socket is redirected only if the testbed exists when it is made.
func New() (*Testbed, error) {
	tb := C.umockdev_testbed_new()
	if tb == nil {
		return nil, errors.New("umockdev: cannot create testbed")
	}
	t := &Testbed{tb: tb, scripts: map[string]string{}}
	r := C.umockdev_testbed_get_root_dir(tb)
	t.root = C.GoString(r)
	C.g_free(C.gpointer(r))
	s := C.umockdev_testbed_get_sys_dir(tb)
	t.sys = C.GoString(s)
	C.g_free(C.gpointer(s))
	dir, err := os.MkdirTemp("", "usbctl-ioctl-")
	if err != nil {
		t.Close()
		return nil, fmt.Errorf("umockdev: ioctl dir: %w", err)
	}
	t.ioctls = dir
	return t, nil
}

// Root is the value of UMOCKDEV_DIR for processes that should see the
// testbed.
func (t *Testbed) Root() string { return t.root }

// SysDir is the testbed's /sys.
func (t *Testbed) SysDir() string { return t.sys }

// AddFromString adds the devices of a umockdev record and sends "add" for
// each. Parents must already exist or come earlier in the same record.
func (t *Testbed) AddFromString(record string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	cs := C.CString(record)
	defer C.free(unsafe.Pointer(cs))
	if msg := C.usbctl_add_from_string(t.tb, cs); msg != nil {
		defer C.g_free(C.gpointer(msg))
		return fmt.Errorf("umockdev: add record: %s", C.GoString(msg))
	}
	return nil
}

// Uevent sends a uevent (add, remove, change, ...) for the device at devpath
// ("/devices/...").
func (t *Testbed) Uevent(devpath, action string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	cp := C.CString("/sys" + devpath)
	defer C.free(unsafe.Pointer(cp))
	ca := C.CString(action)
	defer C.free(unsafe.Pointer(ca))
	C.umockdev_testbed_uevent(t.tb, cp, ca)
}

// Remove unplugs the device at devpath: the remove uevent first (the other
// order loses the event), then the sysfs tree.
func (t *Testbed) Remove(devpath string) {
	t.Uevent(devpath, "remove")
	t.mu.Lock()
	defer t.mu.Unlock()
	cp := C.CString("/sys" + devpath)
	defer C.free(unsafe.Pointer(cp))
	C.umockdev_testbed_remove_device(t.tb, cp)
}

// LoadIoctl makes ioctls on devnode (/dev/bus/usb/BBB/DDD) answer as the
// umockdev ioctl script says. A node plugged again (a replug that gets the
// same device number) keeps the script it has: loading the same one again
// does nothing, and a different one is an error, because umockdev would
// go on answering with the first.
func (t *Testbed) LoadIoctl(devnode, script string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if old, ok := t.scripts[devnode]; ok {
		if old != script {
			return fmt.Errorf("umockdev: load ioctl for %s: it has a different script already, which umockdev cannot replace", devnode)
		}
		return nil
	}
	f := filepath.Join(t.ioctls, filepath.Base(filepath.Dir(devnode))+"-"+filepath.Base(devnode)+".ioctl")
	if err := os.WriteFile(f, []byte(script), 0o644); err != nil {
		return fmt.Errorf("umockdev: ioctl script for %s: %w", devnode, err)
	}
	cd := C.CString(devnode)
	defer C.free(unsafe.Pointer(cd))
	cf := C.CString(f)
	defer C.free(unsafe.Pointer(cf))
	if msg := C.usbctl_load_ioctl(t.tb, cd, cf); msg != nil {
		defer C.g_free(C.gpointer(msg))
		return fmt.Errorf("umockdev: load ioctl for %s: %s", devnode, C.GoString(msg))
	}
	t.scripts[devnode] = script
	return nil
}

// Close removes the testbed.
func (t *Testbed) Close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.tb != nil {
		C.g_object_unref(C.gpointer(t.tb))
		t.tb = nil
	}
	if t.ioctls != "" {
		os.RemoveAll(t.ioctls)
	}
}
