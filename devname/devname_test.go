package devname

import (
	"errors"
	"testing"

	"github.com/usbctl/usbctl/reconcile"
)

var desk = []reconcile.Device{
	{Bus: 1, Dev: 1, Vendor: "1d6b", Product: "0002", Port: "usb1", Class: "09", Manufacturer: "Linux Foundation", ProductName: "xHCI Host Controller"},
	{Bus: 1, Dev: 5, Vendor: "046d", Product: "c52b", Port: "1-4.2", Manufacturer: "Logitech", ProductName: "USB Receiver"},
	{Bus: 1, Dev: 7, Vendor: "1050", Product: "0407", Port: "1-1", Serial: "12345678", Manufacturer: "Yubico", ProductName: "YubiKey OTP+FIDO+CCID"},
	{Bus: 1, Dev: 8, Vendor: "1050", Product: "0407", Port: "1-2", Serial: "7654321", Manufacturer: "Yubico", ProductName: "YubiKey OTP+FIDO+CCID"},
	{Bus: 2, Dev: 3, Vendor: "0781", Product: "5583", Port: "2-1", Serial: "logitech", Manufacturer: "SanDisk", ProductName: "Ultra Fit"},
	{Bus: 2, Dev: 12, Vendor: "0483", Product: "df11", Port: "2-3.1.4", Manufacturer: "STMicroelectronics", ProductName: "STM32  BOOTLOADER"},
}

func TestResolve(t *testing.T) {
	for _, tc := range []struct {
		name string
		want reconcile.DeviceKey // zero: an error is expected
		as   Kind
		// candidates of an ambiguous name; none for not found.
		candidates []reconcile.DeviceKey
	}{
		{name: "1:5", want: reconcile.DeviceKey{Bus: 1, Dev: 5}, as: BusDev},
		{name: "001:005", want: reconcile.DeviceKey{Bus: 1, Dev: 5}, as: BusDev},
		{name: " 2:12 ", want: reconcile.DeviceKey{Bus: 2, Dev: 12}, as: BusDev},
		{name: "1:9", as: BusDev},
		{name: "1-4.2", want: reconcile.DeviceKey{Bus: 1, Dev: 5}, as: Port},
		{name: "2-3.1.4", want: reconcile.DeviceKey{Bus: 2, Dev: 12}, as: Port},
		{name: "usb1", want: reconcile.DeviceKey{Bus: 1, Dev: 1}, as: Port},
		{name: "1-4", as: Port}, // the hub's port, not a device behind it
		{name: "046d:c52b", want: reconcile.DeviceKey{Bus: 1, Dev: 5}, as: ID},
		{name: "046D:C52B", want: reconcile.DeviceKey{Bus: 1, Dev: 5}, as: ID},
		{name: "1050:0407", as: ID, candidates: []reconcile.DeviceKey{{Bus: 1, Dev: 7}, {Bus: 1, Dev: 8}}},
		{name: "12345678", want: reconcile.DeviceKey{Bus: 1, Dev: 7}, as: Serial},
		{name: "7654321", want: reconcile.DeviceKey{Bus: 1, Dev: 8}, as: Serial},
		// A serial names one device and wins over the words of another.
		{name: "logitech", want: reconcile.DeviceKey{Bus: 2, Dev: 3}, as: Serial},
		{name: "Logitech", want: reconcile.DeviceKey{Bus: 1, Dev: 5}, as: Words},
		{name: "receiver", want: reconcile.DeviceKey{Bus: 1, Dev: 5}, as: Words},
		{name: "usb receiver", want: reconcile.DeviceKey{Bus: 1, Dev: 5}, as: Words},
		{name: "receiver usb", as: Words}, // words in their order
		{name: "sandisk", want: reconcile.DeviceKey{Bus: 2, Dev: 3}, as: Words},
		{name: "fido", as: Words, candidates: []reconcile.DeviceKey{{Bus: 1, Dev: 7}, {Bus: 1, Dev: 8}}},
		{name: "YubiKey", as: Words, candidates: []reconcile.DeviceKey{{Bus: 1, Dev: 7}, {Bus: 1, Dev: 8}}},
		{name: "stm32 bootloader", want: reconcile.DeviceKey{Bus: 2, Dev: 12}, as: Words},
		{name: "boot", as: Words}, // a whole word, not a prefix
		{name: "ultra-fit", want: reconcile.DeviceKey{Bus: 2, Dev: 3}, as: Words},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := Resolve(tc.name, desk)
			if tc.want != (reconcile.DeviceKey{}) {
				if err != nil || d.Key() != tc.want {
					t.Fatalf("Resolve(%q) = %v, %v; want %v", tc.name, d.Key(), err, tc.want)
				}
				return
			}
			var amb *AmbiguousError
			var nf *NotFoundError
			switch {
			case len(tc.candidates) > 0:
				if !errors.As(err, &amb) {
					t.Fatalf("Resolve(%q) = %v, %v; want ambiguous", tc.name, d.Key(), err)
				}
				if amb.As != tc.as || len(amb.Candidates) != len(tc.candidates) {
					t.Fatalf("ambiguous as %v with %d candidates, want %v with %d: %v", amb.As, len(amb.Candidates), tc.as, len(tc.candidates), err)
				}
				for i, c := range amb.Candidates {
					if c.Key() != tc.candidates[i] {
						t.Errorf("candidate %d is %v, want %v", i, c.Key(), tc.candidates[i])
					}
				}
			default:
				if !errors.As(err, &nf) || nf.As != tc.as {
					t.Fatalf("Resolve(%q) = %v, %v; want not found as %v", tc.name, d.Key(), err, tc.as)
				}
			}
		})
	}
}

func TestResolveMessages(t *testing.T) {
	_, err := Resolve("yubikey", desk)
	if got, want := err.Error(), `2 devices have name "yubikey" (001:007, 001:008); name one by bus:device, port or serial`; got != want {
		t.Errorf("ambiguous: %s\nwant        %s", got, want)
	}
	_, err = Resolve("3:1", desk)
	if got, want := err.Error(), `no present device has bus:device "3:1"; usbctl devices lists them`; got != want {
		t.Errorf("not found: %s", got)
	}
	if _, err := Resolve("  ", desk); err == nil {
		t.Error("an empty name resolved")
	}
}

func TestClassify(t *testing.T) {
	for name, want := range map[string]Kind{
		"1:5": BusDev, "001:005": BusDev, "1234:5": Words, "0001:0005": ID, "abcd:ef01": ID,
		"1-4": Port, "1-4.2.3": Port, "usb2": Port, "1-": Words, "-4": Words, "1-4.": Words, "yubikey": Words,
	} {
		if got := Classify(name); got != want {
			t.Errorf("Classify(%q) = %v, want %v", name, got, want)
		}
	}
}
