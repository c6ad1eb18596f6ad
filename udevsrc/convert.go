package udevsrc

import (
	"fmt"
	"path"
	"strconv"
	"strings"

	"github.com/usbctl/usbctl/reconcile"
)

// DeviceFromUdev converts a udev device into a reconcile.Device. props are
// the udev properties; attr reads a sysattr and returns "" when there is
// none (always the case for remove events: sysfs is gone by then), so every
// field that identifies a device comes from properties first. Bus and device
// numbers are required and never guessed: an event without them is refused.
// This file has no cgo, so it can be fuzzed on its own.
func DeviceFromUdev(props map[string]string, attr func(name string) string) (reconcile.Device, error) {
	if attr == nil {
		attr = func(string) string { return "" }
	}
	devpath := props["DEVPATH"]
	var d reconcile.Device
	d.DevPath = devpath
	var err error
	if d.Bus, err = number(props["BUSNUM"], attr, "busnum", 1, reconcile.MaxBus); err != nil {
		return reconcile.Device{}, fmt.Errorf("usb device %q: bus number: %w", devpath, err)
	}
	if d.Dev, err = number(props["DEVNUM"], attr, "devnum", 1, reconcile.MaxDev); err != nil {
		return reconcile.Device{}, fmt.Errorf("usb device %q: device number: %w", devpath, err)
	}

	vendor, product := props["ID_VENDOR_ID"], props["ID_MODEL_ID"]
	if vendor == "" || product == "" {
		// PRODUCT=46d/c52b/1201 is set by the kernel on every uevent.
		if v, p, ok := productProp(props["PRODUCT"]); ok {
			vendor, product = v, p
		}
	}
	if vendor == "" || product == "" {
		vendor, product = attr("idVendor"), attr("idProduct")
	}
	if d.Vendor, err = reconcile.ParseHexID(vendor); err != nil {
		return reconcile.Device{}, fmt.Errorf("usb device %q: vendor id: %w", devpath, err)
	}
	if d.Product, err = reconcile.ParseHexID(product); err != nil {
		return reconcile.Device{}, fmt.Errorf("usb device %q: product id: %w", devpath, err)
	}

	// The raw sysattr keeps the serial byte for byte; udev's
	// ID_SERIAL_SHORT replaces unusual characters.
	d.Serial = firstNonEmpty(attr("serial"), props["ID_SERIAL_SHORT"])
	d.Port = portFromDevpath(devpath)
	d.Speed = attr("speed")
	d.Class = classOf(attr("bDeviceClass"), props["TYPE"])
	d.InterfaceClasses = interfaceClasses(props["ID_USB_INTERFACES"])
	d.Manufacturer = firstNonEmpty(attr("manufacturer"), props["ID_VENDOR_FROM_DATABASE"], props["ID_VENDOR"])
	d.ProductName = firstNonEmpty(attr("product"), props["ID_MODEL_FROM_DATABASE"], props["ID_MODEL"])
	return d, nil
}

// number parses a decimal bus or device number (udev pads it: "001").
// number parses a bus or device number from its property, reading the
// sysattr only when the property is missing: each sysattr read is a file
// read on the path of every plug.
func number(prop string, attr func(string) string, name string, lo, hi int) (int, error) {
	s := prop
	if s == "" {
		s = attr(name)
	}
	if s == "" {
		return 0, fmt.Errorf("missing")
	}
	if len(s) > 3 {
		return 0, fmt.Errorf("%q is not a number from %d to %d", s, lo, hi)
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi {
		return 0, fmt.Errorf("%q is not a number from %d to %d", s, lo, hi)
	}
	return n, nil
}

func productProp(s string) (vendor, product string, ok bool) {
	parts := strings.Split(s, "/")
	if len(parts) != 3 || len(parts[0]) > 4 || len(parts[1]) > 4 || parts[0] == "" || parts[1] == "" {
		return "", "", false
	}
	pad := func(x string) string { return strings.Repeat("0", 4-len(x)) + x }
	return pad(parts[0]), pad(parts[1]), true
}

// portFromDevpath returns the last element of the devpath when it names a
// USB device ("1-4.2", or "usb1" for a root hub).
func portFromDevpath(devpath string) string {
	base := path.Base(devpath)
	if strings.HasPrefix(base, "usb") {
		if _, err := strconv.Atoi(base[3:]); err == nil {
			return base
		}
	}
	if _, err := reconcile.ParsePortPattern(base); err == nil && !strings.HasSuffix(base, ".*") {
		return base
	}
	return ""
}

// classOf reads bDeviceClass ("09") or the kernel's TYPE=9/0/1 (decimal).
func classOf(attr, typ string) string {
	if len(attr) == 2 {
		if _, err := strconv.ParseUint(attr, 16, 8); err == nil {
			return strings.ToLower(attr)
		}
	}
	if c, _, ok := strings.Cut(typ, "/"); ok {
		if n, err := strconv.ParseUint(c, 10, 8); err == nil {
			return fmt.Sprintf("%02x", n)
		}
	}
	return ""
}

// interfaceClasses turns ":030101:080650:" into ["03", "08"].
func interfaceClasses(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ":") {
		if len(f) != 6 {
			continue
		}
		c := strings.ToLower(f[:2])
		if _, err := strconv.ParseUint(c, 16, 8); err != nil {
			continue
		}
		dup := false
		for _, o := range out {
			dup = dup || o == c
		}
		if !dup {
			out = append(out, c)
		}
	}
	return out
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}
