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
	b := []byte{18, 1, 0x00, 0x02, hexByte(class), 0, 0, 64}
	b = append(b, le16(d.Vendor)...)
	b = append(b, le16(d.Product)...)
	b = append(b, 0x00, 0x01, str(d.Manufacturer, 1), str(d.ProductName, 2), str(d.Serial, 3), 1)
	total := 9 + 9*len(d.Interfaces)
	b = append(b, 9, 2, byte(total), byte(total>>8), byte(len(d.Interfaces)), 1, 0, 0x80, 50)
	for i, ifc := range d.Interfaces {
		b = append(b, 9, 4, byte(i), 0, 0, hexByte(ifc[0:2]), hexByte(ifc[2:4]), hexByte(ifc[4:6]), 0)
	}
	return b
}

// Record is the umockdev record of the device alone (its parent hub must be
// in the testbed already).
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
	line := func(kind, k, v string) {
		// A record line ends at the newline: values with newlines
		// cannot be represented, and hostile-string tests must not
		// need them.
		fmt.Fprintf(&b, "%s: %s=%s\n", kind, k, v)
	}
	fmt.Fprintf(&b, "P: %s\n", d.DevPath())
	fmt.Fprintf(&b, "N: bus/usb/%03d/%03d=%s\n", d.Bus, d.Dev, strings.ToUpper(hex.EncodeToString(desc)))
	line("E", "DEVNAME", d.DevNode())
	line("E", "DEVTYPE", "usb_device")
	line("E", "DRIVER", "usb")
	line("E", "SUBSYSTEM", "usb")
	line("E", "PRODUCT", fmt.Sprintf("%x/%x/100", hexVal(d.Vendor), hexVal(d.Product)))
	line("E", "TYPE", fmt.Sprintf("%d/0/0", hexByte(class)))
	line("E", "BUSNUM", fmt.Sprintf("%03d", d.Bus))
	line("E", "DEVNUM", fmt.Sprintf("%03d", d.Dev))
	line("E", "MAJOR", "189")
	line("E", "MINOR", strconv.Itoa(minor))
	line("E", "ID_VENDOR_ID", d.Vendor)
	line("E", "ID_MODEL_ID", d.Product)
	if d.Serial != "" {
		line("E", "ID_SERIAL_SHORT", d.Serial)
	}
	if len(d.Interfaces) > 0 {
		line("E", "ID_USB_INTERFACES", ":"+strings.Join(d.Interfaces, ":")+":")
	}
	line("A", "idVendor", d.Vendor)
	line("A", "idProduct", d.Product)
	line("A", "bDeviceClass", class)
	line("A", "busnum", strconv.Itoa(d.Bus))
	line("A", "devnum", strconv.Itoa(d.Dev))
	line("A", "speed", speed)
	line("A", "dev", fmt.Sprintf("189:%d", minor))
	if d.Serial != "" {
		line("A", "serial", d.Serial)
	}
	if d.Manufacturer != "" {
		line("A", "manufacturer", d.Manufacturer)
	}
	if d.ProductName != "" {
		line("A", "product", d.ProductName)
	}
	fmt.Fprintf(&b, "H: descriptors=%s\n", strings.ToUpper(hex.EncodeToString(desc)))
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
