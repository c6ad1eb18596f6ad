package udevsrc

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/usbctl/usbctl/reconcile"
)

// ListSysfs lists the USB devices under a sysfs root ("/sys") by plain
// reads of /sys/bus/usb/devices, as libvirt finds them, for readers that
// cannot use libudev: the libvirt hook runs as libvirtd's child, in its
// mount namespace, where libudev may see nothing useful. Each device goes
// through DeviceFromUdev, the same checks as udev's, with the kernel's
// uevent file as its properties. Devices that fail them are left out and
// counted in the error, which is returned with the devices that passed.
//
// The kernel ends every text attribute with a newline ("1\n"); it is
// stripped as libudev strips it, whole, never by cutting a last byte.
func ListSysfs(root string) ([]reconcile.Device, error) {
	dir := filepath.Join(root, "bus", "usb", "devices")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list usb devices: %w", err)
	}
	var out []reconcile.Device
	var errs []error
	for _, e := range ents {
		name := e.Name()
		if strings.Contains(name, ":") {
			continue // an interface (1-1:1.0), not a device
		}
		d, ok, err := sysfsDevice(filepath.Join(dir, name))
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("usb device %s: %w", name, err))
		case ok:
			out = append(out, d)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key().Less(out[j].Key()) })
	return out, errors.Join(errs...)
}

// sysfsDevice reads one entry of /sys/bus/usb/devices; ok is false for
// one that is not a USB device.
func sysfsDevice(link string) (reconcile.Device, bool, error) {
	path, err := filepath.EvalSymlinks(link)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return reconcile.Device{}, false, nil // unplugged while we looked
		}
		return reconcile.Device{}, false, err
	}
	uevent, err := os.ReadFile(filepath.Join(path, "uevent"))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return reconcile.Device{}, false, nil
		}
		return reconcile.Device{}, false, err
	}
	props := map[string]string{}
	for _, line := range strings.Split(string(uevent), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			props[k] = v
		}
	}
	if props["DEVTYPE"] != "usb_device" {
		return reconcile.Device{}, false, nil
	}
	// The devpath is the path below /sys: what udev calls DEVPATH.
	if i := strings.Index(path, "/devices/"); i >= 0 {
		props["DEVPATH"] = path[i:]
	}
	attr := func(name string) string {
		b, err := os.ReadFile(filepath.Join(path, name))
		if err != nil {
			return ""
		}
		return strings.TrimRight(string(b), "\r\n")
	}
	if props["ID_USB_INTERFACES"] == "" {
		// udev adds this property from the descriptors; the kernel's
		// uevent has none, so read the descriptors the same way.
		b, _ := os.ReadFile(filepath.Join(path, "descriptors"))
		props["ID_USB_INTERFACES"] = InterfacesFromDescriptors(b)
	}
	d, err := DeviceFromUdev(props, attr)
	if err != nil {
		return reconcile.Device{}, false, err
	}
	return d, true, nil
}

// InterfacesFromDescriptors renders the interface descriptors of raw USB
// descriptors (the device descriptor, then each configuration's) as udev's
// ID_USB_INTERFACES does: ":030101:080650:", each interface once.
func InterfacesFromDescriptors(b []byte) string {
	var seen []string
	for i := 0; i+2 <= len(b); {
		n := int(b[i])
		if n < 2 || i+n > len(b) {
			break
		}
		if b[i+1] == 4 && n >= 9 { // interface descriptor
			s := fmt.Sprintf("%02x%02x%02x", b[i+5], b[i+6], b[i+7])
			dup := false
			for _, x := range seen {
				dup = dup || x == s
			}
			if !dup {
				seen = append(seen, s)
			}
		}
		i += n
	}
	if len(seen) == 0 {
		return ""
	}
	return ":" + strings.Join(seen, ":") + ":"
}
