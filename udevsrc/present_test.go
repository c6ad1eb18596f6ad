package udevsrc

import (
	"testing"

	"github.com/jochenvg/go-udev"
)

// TestPresentDropsVanished: an enumeration entry for a device that went
// mid-listing is nil in go-udev's answer, and must not be read.
func TestPresentDropsVanished(t *testing.T) {
	var u udev.Udev
	a := u.NewDeviceFromSyspath("/sys/devices/virtual/mem/null")
	if a == nil {
		t.Fatal("libudev cannot read /sys/devices/virtual/mem/null")
	}
	got := present([]*udev.Device{nil, a, nil})
	if len(got) != 1 || got[0] != a {
		t.Fatalf("present = %v, want only the device that is there", got)
	}
}
