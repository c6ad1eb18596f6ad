package udevsrc

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/usbctl/usbctl/reconcile"
)

// kernelTree writes a sysfs tree as the kernel shows it: /sys/devices with
// the device directories, their uevent and attributes (each text one
// ending in a newline), an interface below the device, and the
// /sys/bus/usb/devices links.
func kernelTree(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	pci := "devices/pci0000:00/0000:00:14.0"
	write := func(rel string, files map[string]string) {
		dir := filepath.Join(root, rel)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, content := range files {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o444); err != nil {
				t.Fatal(err)
			}
		}
		link := filepath.Join(root, "bus/usb/devices", filepath.Base(rel))
		os.MkdirAll(filepath.Dir(link), 0o755)
		target, _ := filepath.Rel(filepath.Dir(link), dir)
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
	}
	write(pci+"/usb1", map[string]string{
		"uevent": "MAJOR=189\nMINOR=0\nDEVNAME=bus/usb/001/001\nDEVTYPE=usb_device\nDRIVER=usb\nPRODUCT=1d6b/2/606\nTYPE=9/0/1\nBUSNUM=001\nDEVNUM=001\n",
		"busnum": "1\n", "devnum": "1\n", "idVendor": "1d6b\n", "idProduct": "0002\n", "bDeviceClass": "09\n",
		"manufacturer": "Linux 6.1.0-13-amd64 xhci-hcd\n", "product": "xHCI Host Controller\n", "serial": "0000:00:14.0\n",
		"descriptors": "\x12\x01\x00\x02\x09\x00\x01\x40\x6b\x1d\x02\x00\x06\x06\x03\x02\x01\x01" + "\x09\x02\x19\x00\x01\x01\x00\xe0\x00" + "\x09\x04\x00\x00\x01\x09\x00\x00\x00",
	})
	write(pci+"/usb1/1-4", map[string]string{
		"uevent": "MAJOR=189\nMINOR=6\nDEVNAME=bus/usb/001/007\nDEVTYPE=usb_device\nDRIVER=usb\nPRODUCT=46d/c52b/1211\nTYPE=0/0/0\nBUSNUM=001\nDEVNUM=007\n",
		"busnum": "1\n", "devnum": "7\n", "idVendor": "046d\n", "idProduct": "c52b\n", "bDeviceClass": "00\n",
		"manufacturer": "Logitech\n", "product": "USB Receiver\n", "bConfigurationValue": "1\n", "bNumInterfaces": " 2\n",
		"descriptors": "\x12\x01\x00\x02\x00\x00\x00\x08\x6d\x04\x2b\xc5\x11\x12\x01\x02\x00\x01" + "\x09\x02\x3b\x00\x02\x01\x04\xa0\x31" +
			"\x09\x04\x00\x00\x01\x03\x01\x01\x00" + "\x09\x21\x11\x01\x00\x01\x22\x3b\x00" + "\x07\x05\x81\x03\x08\x00\x08" +
			"\x09\x04\x01\x00\x01\x03\x01\x02\x00",
	})
	// An interface: /sys/bus/usb/devices lists it too, and it is no device.
	write(pci+"/usb1/1-4/1-4:1.0", map[string]string{
		"uevent": "DEVTYPE=usb_interface\nDRIVER=usbhid\nPRODUCT=46d/c52b/1211\nTYPE=0/0/0\nINTERFACE=3/1/1\n", "bInterfaceClass": "03\n",
	})
	return root
}

// TestListSysfs reads a tree written as the kernel writes sysfs: numbers
// with their newline ("7\n" is device 7, not 0 or 70), the serial without
// it, interfaces from the descriptors, interfaces not taken for devices.
func TestListSysfs(t *testing.T) {
	root := kernelTree(t)
	got, err := ListSysfs(root)
	if err != nil {
		t.Fatal(err)
	}
	want := []reconcile.Device{
		{Bus: 1, Dev: 1, Vendor: "1d6b", Product: "0002", Serial: "0000:00:14.0", Port: "usb1", Class: "09", InterfaceClasses: []string{"09"},
			Manufacturer: "Linux 6.1.0-13-amd64 xhci-hcd", ProductName: "xHCI Host Controller", DevPath: "/devices/pci0000:00/0000:00:14.0/usb1"},
		{Bus: 1, Dev: 7, Vendor: "046d", Product: "c52b", Port: "1-4", Class: "00", InterfaceClasses: []string{"03"},
			Manufacturer: "Logitech", ProductName: "USB Receiver", DevPath: "/devices/pci0000:00/0000:00:14.0/usb1/1-4"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("ListSysfs:\n got  %+v\n want %+v", got, want)
	}
	// A device whose uevent lacks its numbers falls back to the
	// attributes, newline and all, as DeviceFromUdev does for udev.
	ue := filepath.Join(root, "devices/pci0000:00/0000:00:14.0/usb1/1-4/uevent")
	os.Chmod(ue, 0o644)
	os.WriteFile(ue, []byte("DEVTYPE=usb_device\nPRODUCT=46d/c52b/1211\n"), 0o644)
	got, err = ListSysfs(root)
	if err != nil || len(got) != 2 || got[1].Key() != (reconcile.DeviceKey{Bus: 1, Dev: 7}) {
		t.Fatalf("numbers from the attributes: %+v, %v", got, err)
	}
	// One bad device is reported and the others are kept.
	os.WriteFile(ue, []byte("DEVTYPE=usb_device\n"), 0o644)
	os.Chmod(filepath.Join(root, "devices/pci0000:00/0000:00:14.0/usb1/1-4/devnum"), 0o644)
	os.WriteFile(filepath.Join(root, "devices/pci0000:00/0000:00:14.0/usb1/1-4/devnum"), []byte("500\n"), 0o644)
	got, err = ListSysfs(root)
	if err == nil || !strings.Contains(err.Error(), "usb device 1-4") || len(got) != 1 {
		t.Fatalf("a bad device: %+v, %v", got, err)
	}
}

func TestInterfacesFromDescriptors(t *testing.T) {
	for in, want := range map[string]string{
		"": "", "\x12\x01": "",
		"\x12\x01\x00\x02\x00\x00\x00\x08\x6d\x04\x2b\xc5\x11\x12\x01\x02\x00\x01\x09\x02\x20\x00\x01\x01\x00\xa0\x31\x09\x04\x00\x00\x01\x08\x06\x50\x00": ":080650:",
		"\x09\x04\x00\x00\x01\x03\x01\x01\x00\x09\x04\x01\x00\x01\x03\x01\x01\x00\x00\xff":                                                                 ":030101:", // duplicate, then a zero length: stop
		"\x09\x04\x00\x00\x01\x03": "", // truncated
	} {
		if got := InterfacesFromDescriptors([]byte(in)); got != want {
			t.Errorf("InterfacesFromDescriptors(%q) = %q, want %q", in, got, want)
		}
	}
}
