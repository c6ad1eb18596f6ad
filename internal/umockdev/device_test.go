//go:build umockdev

package umockdev

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/jochenvg/go-udev"
)

// kernelAttrs are the readable sysfs attributes the kernel gives every USB
// device (drivers/usb/core/sysfs.c, Documentation/ABI/*/sysfs-bus-usb),
// without the ones that exist only when the device reports the string.
// Root hubs have two more. uevent is the properties, subsystem a link.
var kernelAttrs = []string{
	"authorized", "avoid_reset_quirk", "bConfigurationValue", "bDeviceClass",
	"bDeviceProtocol", "bDeviceSubClass", "bMaxPacketSize0", "bMaxPower",
	"bNumConfigurations", "bNumInterfaces", "bcdDevice", "bmAttributes", "busnum",
	"configuration", "descriptors", "dev", "devnum", "devpath", "idProduct",
	"idVendor", "ltm_capable", "maxchild", "quirks", "removable", "rx_lanes",
	"speed", "tx_lanes", "uevent", "urbnum", "version",
}

func newTestbed(t *testing.T) *Testbed {
	t.Helper()
	if os.Getenv("LD_PRELOAD") == "" {
		t.Fatal("not under the umockdev preload: run through scripts/umockdev-exec (make test-udev)")
	}
	tb, err := New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tb.Close)
	if err := tb.AddFromString(RootHub(1).Record()); err != nil {
		t.Fatal(err)
	}
	return tb
}

// attrFiles lists a device directory's attribute files, as a reader of
// sysfs finds them.
func attrFiles(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if e.Type().IsRegular() {
			out = append(out, e.Name())
		}
	}
	slices.Sort(out)
	return out
}

// TestSysfsAsTheKernelWritesIt reads the testbed's sysfs files directly,
// as libvirt, libusb and usbctl hook do on a real host, and checks that
// they hold what the kernel would write there.
func TestSysfsAsTheKernelWritesIt(t *testing.T) {
	tb := newTestbed(t)
	d := USBDevice{Bus: 1, Dev: 7, Port: "1-4.2", Vendor: "046d", Product: "c52b", Serial: `back\slash` + "\x1b[2J",
		Manufacturer: "Logitech", ProductName: "USB Receiver", Interfaces: []string{"030101", "030102"}, Speed: "12"}
	if err := tb.AddFromString(USBDevice{Bus: 1, Dev: 6, Port: "1-4", Vendor: "05e3", Product: "0610", Class: "09", Interfaces: []string{"090000"}}.Record()); err != nil {
		t.Fatal(err)
	}
	if err := tb.AddFromString(d.Record()); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(tb.SysDir(), d.DevPath())
	want := append(slices.Clone(kernelAttrs), "manufacturer", "product", "serial")
	slices.Sort(want)
	if got := attrFiles(t, dir); !slices.Equal(got, want) {
		t.Errorf("attributes of %s:\n got  %v\n want %v", d.Port, got, want)
	}
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	for name, want := range map[string]string{
		"busnum": "1\n", "devnum": "7\n", "bConfigurationValue": "1\n", "bNumConfigurations": "1\n",
		"bNumInterfaces": " 2\n", "idVendor": "046d\n", "idProduct": "c52b\n", "bDeviceClass": "00\n",
		"bcdDevice": "0100\n", "bmAttributes": "80\n", "bMaxPower": "100mA\n", "bMaxPacketSize0": "64\n",
		"version": " 2.00\n", "speed": "12\n", "devpath": "4.2\n", "maxchild": "0\n", "dev": "189:6\n",
		"manufacturer": "Logitech\n", "product": "USB Receiver\n", "serial": `back\slash` + "\x1b[2J\n",
		"configuration": "", "authorized": "1\n", "removable": "removable\n",
	} {
		if got := read(name); got != want {
			t.Errorf("%s = %q, want %q (as the kernel writes it)", name, got, want)
		}
	}
	// Every text attribute ends in exactly one newline, except the
	// empty string the kernel shows for a missing iConfiguration.
	for _, name := range attrFiles(t, dir) {
		v := read(name)
		if name == "descriptors" || name == "uevent" || name == "configuration" {
			continue
		}
		if !strings.HasSuffix(v, "\n") || strings.HasSuffix(v, "\n\n") {
			t.Errorf("%s = %q: the kernel ends it with one newline", name, v)
		}
	}
	// The attributes agree with the descriptors libusb and QEMU read.
	desc := []byte(read("descriptors"))
	if n, _ := strconv.Atoi(strings.TrimSpace(read("bNumInterfaces"))); int(desc[18+4]) != n || n != len(d.Interfaces) {
		t.Errorf("bNumInterfaces %q, configuration descriptor says %d", read("bNumInterfaces"), desc[18+4])
	}
	if v, _ := strconv.Atoi(strings.TrimSpace(read("bConfigurationValue"))); int(desc[18+5]) != v {
		t.Errorf("bConfigurationValue %q, configuration descriptor says %d", read("bConfigurationValue"), desc[18+5])
	}

	hub := filepath.Join(tb.SysDir(), RootHub(1).DevPath())
	wantHub := append(slices.Clone(kernelAttrs), "authorized_default", "interface_authorized_default", "manufacturer", "product")
	slices.Sort(wantHub)
	if got := attrFiles(t, hub); !slices.Equal(got, wantHub) {
		t.Errorf("attributes of the root hub:\n got  %v\n want %v", got, wantHub)
	}
	if b, _ := os.ReadFile(filepath.Join(hub, "devpath")); string(b) != "0\n" {
		t.Errorf("root hub devpath %q, want \"0\\n\"", b)
	}

	// libudev strips the newline, as on a real host: what udevsrc sees
	// is unchanged.
	var u udev.Udev
	ud := u.NewDeviceFromSyspath("/sys" + d.DevPath())
	if ud == nil {
		t.Fatal("libudev does not see the device")
	}
	for name, want := range map[string]string{"busnum": "1", "bConfigurationValue": "1", "serial": `back\slash` + "\x1b[2J", "bNumInterfaces": " 2"} {
		if got := ud.SysattrValue(name); got != want {
			t.Errorf("libudev reads %s = %q, want %q", name, got, want)
		}
	}
}

func TestEscapeAttr(t *testing.T) {
	for in, want := range map[string]string{
		"plain":           "plain",
		"1\n":             `1\n`,
		`a\b`:             `a\\b`,
		"tab\tesc\x1b":    `tab\tesc\033`,
		"\x7fü":           `\177\303\274`,
		`"<hostdev>'&`:    `"<hostdev>'&`,
		"two\nlines\n":    `two\nlines\n`,
		"\\n not newline": `\\n not newline`,
	} {
		if got := EscapeAttr(in); got != want {
			t.Errorf("EscapeAttr(%q) = %q, want %q", in, got, want)
		}
	}
}

// A device node plugged again keeps its first ioctl script: umockdev
// cannot replace it (the second load only warned that it could not listen
// on the node's socket, and returned success). The same script loads as a
// no-op; a different one is an error, not the old answers given silently.
func TestIoctlScriptOncePerNode(t *testing.T) {
	tb := newTestbed(t)
	d := USBDevice{Bus: 1, Dev: 3, Port: "1-1", Vendor: "046d", Product: "c52b", Interfaces: []string{"030101"}}
	for i := 0; i < 2; i++ {
		if err := tb.LoadIoctl(d.DevNode(), d.IoctlScript()); err != nil {
			t.Fatalf("plug %d: %v", i+1, err)
		}
		if err := tb.AddFromString(d.Record()); err != nil {
			t.Fatal(err)
		}
		tb.Remove(d.DevPath())
	}
	other := d
	other.Dev = 4
	script := strings.Replace(other.IoctlScript(), other.DevNode(), d.DevNode(), 1)
	if err := tb.LoadIoctl(d.DevNode(), script); err == nil || !strings.Contains(err.Error(), "different script") {
		t.Fatalf("a different script for %s: err = %v, want it refused", d.DevNode(), err)
	}
}
