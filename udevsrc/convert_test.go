package udevsrc

import (
	"regexp"
	"strings"
	"testing"
)

var hex4 = regexp.MustCompile(`^[0-9a-f]{4}$`)

func TestDeviceFromUdevRefusesBadNumbers(t *testing.T) {
	base := map[string]string{"DEVPATH": "/devices/pci0000:00/usb1/1-1", "PRODUCT": "46d/c52b/1201"}
	for _, tc := range []struct{ bus, dev string }{
		{"", "2"}, {"1", ""}, {"x", "2"}, {"1", "0x2"}, {"0", "2"}, {"1", "128"}, {"-1", "2"}, {"1000", "2"}, {"1", "2\x00"}, {" 1", "2"},
	} {
		props := map[string]string{"BUSNUM": tc.bus, "DEVNUM": tc.dev}
		for k, v := range base {
			props[k] = v
		}
		if d, err := DeviceFromUdev(props, nil); err == nil {
			t.Errorf("BUSNUM=%q DEVNUM=%q accepted as %v; must be refused, not guessed", tc.bus, tc.dev, d.Key())
		} else if !strings.Contains(err.Error(), "1-1") {
			t.Errorf("error does not name the device: %v", err)
		}
	}
}

// FuzzDeviceFromUdev feeds arbitrary udev properties (as a remove event
// carries them, with no sysattrs) and checks that whatever is accepted is
// well-formed: numbers in range, ids four lower-case hex digits, so the
// alias and the XML built from it can only name a real bus/device.
func FuzzDeviceFromUdev(f *testing.F) {
	f.Add("/devices/pci0000:00/0000:00:14.0/usb1/1-4/1-4.2", "001", "005", "46d/c52b/1201", "046d", "c52b", ":030101:030102:", "ABC123")
	f.Add("/devices/x/usb2", "2", "1", "1d6b/2/600", "", "", ":090000:", "")
	f.Add("", "", "", "", "", "", "", "")
	f.Add("/devices/x/usb1/1-1", "1", "127", "ffff/ffff/0", "FFFF", "ffff", "::::", "<'\">&\x1b[2J")
	f.Fuzz(func(t *testing.T, devpath, bus, dev, product, vid, pid, ifaces, serial string) {
		props := map[string]string{"DEVPATH": devpath, "BUSNUM": bus, "DEVNUM": dev, "PRODUCT": product,
			"ID_VENDOR_ID": vid, "ID_MODEL_ID": pid, "ID_USB_INTERFACES": ifaces, "ID_SERIAL_SHORT": serial}
		d, err := DeviceFromUdev(props, nil)
		if err != nil {
			return
		}
		if d.Bus < 1 || d.Bus > 999 || d.Dev < 1 || d.Dev > 127 {
			t.Fatalf("accepted out-of-range key %d:%d from BUSNUM=%q DEVNUM=%q", d.Bus, d.Dev, bus, dev)
		}
		if !hex4.MatchString(d.Vendor) || !hex4.MatchString(d.Product) {
			t.Fatalf("accepted ids %q:%q", d.Vendor, d.Product)
		}
		if a := d.Key().Alias(); !regexp.MustCompile(`^ua-usbctl-\d{3}-\d{3}$`).MatchString(a) {
			t.Fatalf("alias %q", a)
		}
		for _, c := range d.InterfaceClasses {
			if len(c) != 2 || strings.Trim(c, "0123456789abcdef") != "" {
				t.Fatalf("interface class %q from %q", c, ifaces)
			}
		}
	})
}
