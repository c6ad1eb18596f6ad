package reconcile

import (
	"fmt"
	"strconv"
	"strings"
)

// controllerSpeed is the fastest a guest USB controller model takes, in
// Mb/s, as QEMU emulates it (false: a model it does not know). UHCI and
// OHCI are USB 1.1 (full speed), EHCI is USB 2.0 (QEMU's EHCI without
// companions takes high speed only, but its fastest is what matters
// here), xHCI takes everything.
func controllerSpeed(model string) (float64, bool) {
	switch model {
	case "piix3-uhci", "piix4-uhci", "vt82c686b-uhci", "pci-ohci",
		"ich9-uhci1", "ich9-uhci2", "ich9-uhci3", "ich9-uhci4", "ich9-uhci5", "ich9-uhci6":
		return 12, true
	case "ehci", "ich9-ehci1":
		return 480, true
	case "nec-xhci", "qemu-xhci":
		return 20000, true
	}
	return 0, false
}

// speedName names a sysfs speed (Mb/s) as USB does.
func speedName(mbps float64) string {
	switch {
	case mbps <= 1.5:
		return "low speed (1.5 Mb/s)"
	case mbps <= 12:
		return "full speed (12 Mb/s)"
	case mbps <= 480:
		return "high speed (480 Mb/s)"
	default:
		return fmt.Sprintf("super speed (%g Mb/s)", mbps)
	}
}

// SpeedMismatch explains why a guest may refuse a device: the device's
// speed (its sysfs "speed", Mb/s: "1.5", "12", "480", "5000"...) is above
// what every one of the guest's USB controller models takes. It answers
// false when it cannot tell: an unknown speed, no controllers, or a model
// it does not know (libvirt's default, say). QEMU still passes some such
// devices (a high-speed device whose endpoints fit full speed), so this
// explains a failed attach; it is no reason not to try.
func SpeedMismatch(speed string, models []string) (why string, mismatch bool) {
	dev, err := strconv.ParseFloat(strings.TrimSpace(speed), 64)
	if err != nil || dev <= 0 || len(models) == 0 {
		return "", false
	}
	top := 0.0
	for _, m := range models {
		s, ok := controllerSpeed(m)
		if !ok {
			return "", false
		}
		top = max(top, s)
	}
	if dev <= top {
		return "", false
	}
	return fmt.Sprintf("the device runs at %s and the domain's USB controllers (%s) take at most %s",
		speedName(dev), strings.Join(models, ", "), speedName(top)), true
}
