//go:build umockdev

package umockdev

import (
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
)

// USBDevice is a fake USB device; Record renders it as a umockdev record
// with descriptors consistent with its fields, so libudev, libvirt and QEMU
// all see the same device.
type USBDevice struct {
	Bus, Dev int
	// Port is the kernel port path ("1-1", "1-4.2"); "" for a root hub.
	Port                              string
	Vendor, Product                   string // 4 hex digits
	Serial, Manufacturer, ProductName string
	// Class is bDeviceClass, two hex digits ("09" hub, "00" per interface).
	Class string
	// Interfaces are class/subclass/protocol, six hex digits each ("030101").
	Interfaces []string
	Speed      string // Mbit/s as sysfs says it; "480" if empty
}

// RootHub is the root hub of bus: usbN, 1d6b:0002, device 1.
func RootHub(bus int) USBDevice {
	return USBDevice{Bus: bus, Dev: 1, Vendor: "1d6b", Product: "0002", Class: "09",
		Manufacturer: "Linux usbctl-test xhci-hcd", ProductName: "xHCI Host Controller", Interfaces: []string{"090000"}}
}

// SysName is "usbN" for a root hub, else the port path.
func (d USBDevice) SysName() string {
	if d.Port == "" {
		return fmt.Sprintf("usb%d", d.Bus)
	}
	return d.Port
}

// DevPath is the kernel devpath: /devices/pci0000:00/0000:00:14.0/usb1/1-4/1-4.2.
func (d USBDevice) DevPath() string {
	p := fmt.Sprintf("/devices/pci0000:00/0000:00:14.0/usb%d", d.Bus)
	if d.Port == "" {
		return p
	}
	bus, ports, _ := strings.Cut(d.Port, "-")
	parts := strings.Split(ports, ".")
	for i := range parts {
		p += "/" + bus + "-" + strings.Join(parts[:i+1], ".")
	}
	return p
}

// DevNode is /dev/bus/usb/BBB/DDD.
func (d USBDevice) DevNode() string { return fmt.Sprintf("/dev/bus/usb/%03d/%03d", d.Bus, d.Dev) }

func le16(s string) []byte {
	v, _ := strconv.ParseUint(s, 16, 16)
	return []byte{byte(v), byte(v >> 8)}
}

func hexByte(s string) byte {
	v, _ := strconv.ParseUint(s, 16, 8)
	return byte(v)
}

// Descriptors are the device descriptor and one configuration with an
// interface per Interfaces entry, as usbdevfs returns them.
func (d USBDevice) Descriptors() []byte {
	class := d.Class
	if class == "" {
		class = "00"
	}
	str := func(s string, i byte) byte {
		if s == "" {
			return 0
		}
		return i
	}
	b := []byte{18, 1, bcdUSB & 0xff, bcdUSB >> 8, hexByte(class), 0, 0, maxPacketSize0}
	b = append(b, le16(d.Vendor)...)
	b = append(b, le16(d.Product)...)
	b = append(b, bcdDevice&0xff, bcdDevice>>8, str(d.Manufacturer, 1), str(d.ProductName, 2), str(d.Serial, 3), 1)
	total := 9 + 9*len(d.Interfaces)
	b = append(b, 9, 2, byte(total), byte(total>>8), byte(len(d.Interfaces)), 1, 0, configAttributes, maxPower)
	for i, ifc := range d.Interfaces {
		b = append(b, 9, 4, byte(i), 0, 0, hexByte(ifc[0:2]), hexByte(ifc[2:4]), hexByte(ifc[4:6]), 0)
	}
	return b
}

// Record is the umockdev record of the device alone (its parent hub must be
// in the testbed already). Its sysfs attributes are the ones the kernel
// gives a USB device (drivers/usb/core/sysfs.c), written as the kernel
// writes them: text with a trailing newline, numbers in the kernel's own
// formats (bNumInterfaces "%2d", version "%2x.%02x"), and each consistent
// with the descriptors. Readers then meet here what they meet on a real
// host: one that forgets the newline, or strips one byte too many, fails
// in the tests and not only in the field.
func (d USBDevice) Record() string {
	desc := d.Descriptors()
	speed := d.Speed
	if speed == "" {
		speed = "480"
	}
	class := d.Class
	if class == "" {
		class = "00"
	}
	minor := (d.Bus-1)*128 + d.Dev - 1
	var b strings.Builder
	prop := func(k, v string) {
		// A property is one line of the uevent: it cannot hold a
		// newline, and the kernel never puts one there.
		fmt.Fprintf(&b, "E: %s=%s\n", k, v)
	}
	// attr writes a text attribute as the kernel's show functions do:
	// value and newline. The record escapes it (umockdev reads A: values
	// with g_strcompress), so a backslash, a newline or any byte a
	// hostile device reports reaches the sysfs file unchanged.
	attr := func(k, v string) { fmt.Fprintf(&b, "A: %s=%s\n", k, EscapeAttr(v+"\n")) }
	fmt.Fprintf(&b, "P: %s\n", d.DevPath())
	fmt.Fprintf(&b, "N: bus/usb/%03d/%03d=%s\n", d.Bus, d.Dev, strings.ToUpper(hex.EncodeToString(desc)))
	prop("DEVNAME", d.DevNode())
	prop("DEVTYPE", "usb_device")
	prop("DRIVER", "usb")
	prop("SUBSYSTEM", "usb")
	prop("PRODUCT", fmt.Sprintf("%x/%x/%x", hexVal(d.Vendor), hexVal(d.Product), bcdDevice))
	prop("TYPE", fmt.Sprintf("%d/0/0", hexByte(class)))
	prop("BUSNUM", fmt.Sprintf("%03d", d.Bus))
	prop("DEVNUM", fmt.Sprintf("%03d", d.Dev))
	prop("MAJOR", "189")
	prop("MINOR", strconv.Itoa(minor))
	prop("ID_VENDOR_ID", d.Vendor)
	prop("ID_MODEL_ID", d.Product)
	if d.Serial != "" {
		prop("ID_SERIAL_SHORT", d.Serial)
	}
	if len(d.Interfaces) > 0 {
		prop("ID_USB_INTERFACES", ":"+strings.Join(d.Interfaces, ":")+":")
	}
	attr("authorized", "1")
	if d.Port == "" {
		attr("authorized_default", "1")
		attr("interface_authorized_default", "1")
	}
	attr("avoid_reset_quirk", "0")
	attr("bConfigurationValue", "1")
	attr("bDeviceClass", class)
	attr("bDeviceProtocol", "00")
	attr("bDeviceSubClass", "00")
	attr("bMaxPacketSize0", strconv.Itoa(maxPacketSize0))
	attr("bMaxPower", fmt.Sprintf("%dmA", 2*maxPower))
	attr("bNumConfigurations", "1")
	attr("bNumInterfaces", fmt.Sprintf("%2d", len(d.Interfaces)))
	attr("bcdDevice", fmt.Sprintf("%04x", bcdDevice))
	attr("bmAttributes", fmt.Sprintf("%2x", configAttributes))
	attr("busnum", strconv.Itoa(d.Bus))
	// configuration is the iConfiguration string; these devices have
	// none, and the kernel then shows an empty file.
	fmt.Fprintf(&b, "A: configuration=\n")
	attr("dev", fmt.Sprintf("189:%d", minor))
	attr("devnum", strconv.Itoa(d.Dev))
	attr("devpath", d.kernelDevpath())
	attr("idProduct", d.Product)
	attr("idVendor", d.Vendor)
	attr("ltm_capable", "no")
	if d.Manufacturer != "" {
		attr("manufacturer", d.Manufacturer)
	}
	attr("maxchild", strconv.Itoa(d.maxChild()))
	if d.ProductName != "" {
		attr("product", d.ProductName)
	}
	attr("quirks", "0x0")
	attr("removable", d.removable())
	attr("rx_lanes", "1")
	if d.Serial != "" {
		attr("serial", d.Serial)
	}
	attr("speed", speed)
	attr("tx_lanes", "1")
	attr("urbnum", "0")
	attr("version", fmt.Sprintf("%2x.%02x", bcdUSB>>8, bcdUSB&0xff))
	fmt.Fprintf(&b, "H: descriptors=%s\n", strings.ToUpper(hex.EncodeToString(desc)))
	return b.String()
}

// Descriptor fields Record and Descriptors agree on.
const (
	bcdUSB           = 0x0200
	bcdDevice        = 0x0100
	maxPacketSize0   = 64
	configAttributes = 0x80 // bus-powered, no remote wakeup
	maxPower         = 50   // in units of 2 mA
)

// kernelDevpath is the devpath attribute: the port path without the bus
// ("4.2" for 1-4.2), "0" for a root hub.
func (d USBDevice) kernelDevpath() string {
	if d.Port == "" {
		return "0"
	}
	_, ports, _ := strings.Cut(d.Port, "-")
	return ports
}

// maxChild is the number of downstream ports: a hub's, 0 for others.
func (d USBDevice) maxChild() int {
	if d.Class == "09" {
		return 4
	}
	return 0
}

// removable is what the kernel reports: a root hub does not know, a device
// on a port reads the hub's description of it.
func (d USBDevice) removable() string {
	if d.Port == "" {
		return "unknown"
	}
	return "removable"
}

// EscapeAttr escapes s for a umockdev record's A: value, the inverse of
// the g_strcompress umockdev applies: a backslash doubled, newline and tab
// by name, every other byte outside printable ASCII in octal. umockdev
// then writes exactly s to the sysfs file.
func EscapeAttr(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\':
			b.WriteString(`\\`)
		case c == '\n':
			b.WriteString(`\n`)
		case c == '\t':
			b.WriteString(`\t`)
		case c < 0x20 || c >= 0x7f:
			fmt.Fprintf(&b, "\\%03o", c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

func hexVal(s string) uint64 {
	v, _ := strconv.ParseUint(s, 16, 16)
	return v
}

// IoctlScript answers the two usbdevfs ioctls QEMU's usb-host needs to
// realize the device: CONNECTINFO (devnum, not slow) and GET_CAPABILITIES.
func (d USBDevice) IoctlScript() string {
	return fmt.Sprintf("@DEV %s (usbdevfs)\nUSBDEVFS_CONNECTINFO 0 %02X00000000000000\nUSBDEVFS_GET_CAPABILITIES 0 0F000000\n", d.DevNode(), d.Dev)
}

// InterfaceRecord is the umockdev record of interface n of d (in
// configuration 1), bound to driver ("" for none) as the kernel shows it:
// a "driver" link to the driver's directory, and DRIVER in the uevent. It
// must be added after d's own record. A driver of "usbfs" is an interface
// a program claimed through /dev/bus/usb (libusb).
func (d USBDevice) InterfaceRecord(n int, driver string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "P: %s/%s:1.%d\n", d.DevPath(), d.SysName(), n)
	fmt.Fprintf(&b, "E: DEVTYPE=usb_interface\n")
	if driver != "" {
		fmt.Fprintf(&b, "E: DRIVER=%s\n", driver)
	}
	fmt.Fprintf(&b, "E: SUBSYSTEM=usb\n")
	fmt.Fprintf(&b, "E: PRODUCT=%x/%x/%x\n", hexVal(d.Vendor), hexVal(d.Product), bcdDevice)
	if n < len(d.Interfaces) {
		c := d.Interfaces[n]
		fmt.Fprintf(&b, "E: INTERFACE=%d/%d/%d\n", hexByte(c[0:2]), hexByte(c[2:4]), hexByte(c[4:6]))
	}
	fmt.Fprintf(&b, "A: bInterfaceNumber=%02x\n", n)
	if driver != "" {
		// Interfaces sit four levels below /sys/devices here
		// (pci0000:00/0000:00:14.0/usbN/PORT...), one more per hub.
		up := strings.Repeat("../", strings.Count(d.DevPath(), "/")+1)
		fmt.Fprintf(&b, "L: driver=%sbus/usb/drivers/%s\n", up, driver)
	}
	return b.String()
}
