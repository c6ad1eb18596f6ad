package reconcile

import (
	"fmt"
	"strconv"
	"strings"
)

// speeds is a set of USB signalling speeds, as QEMU's speedmask.
type speeds uint8

const (
	low speeds = 1 << iota
	full
	high
	super
)

// controllerSpeeds is the set of speeds a guest USB controller model's
// ports take, as QEMU emulates it (false: a model it does not know). UHCI
// and OHCI are USB 1.1. QEMU's EHCI takes high speed only: low- and
// full-speed devices go to its UHCI companions (ich9-uhci1..3, separate
// controllers in libvirt's XML, so the union below counts them), and an
// EHCI without companions refuses them ("speed mismatch" in the domain's
// QEMU log, measured on the test host with a full-speed gadget). xHCI takes
// everything.
func controllerSpeeds(model string) (speeds, bool) {
	switch model {
	case "piix3-uhci", "piix4-uhci", "vt82c686b-uhci", "pci-ohci",
		"ich9-uhci1", "ich9-uhci2", "ich9-uhci3", "ich9-uhci4", "ich9-uhci5", "ich9-uhci6":
		return low | full, true
	case "ehci", "ich9-ehci1":
		return high, true
	case "nec-xhci", "qemu-xhci":
		return low | full | high | super, true
	}
	return 0, false
}

// speedOf is the speed a sysfs speed (Mb/s) signals at.
func speedOf(mbps float64) speeds {
	switch {
	case mbps <= 1.5:
		return low
	case mbps <= 12:
		return full
	case mbps <= 480:
		return high
	default:
		return super
	}
}

// names lists the speeds of set, slowest first.
func (set speeds) names() string {
	var n []string
	for _, s := range []struct {
		bit  speeds
		name string
	}{{low, "low"}, {full, "full"}, {high, "high"}, {super, "super"}} {
		if set&s.bit != 0 {
			n = append(n, s.name)
		}
	}
	if len(n) > 1 {
		return strings.Join(n[:len(n)-1], ", ") + " and " + n[len(n)-1] + " speed"
	}
	return strings.Join(n, "") + " speed"
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

// SpeedMismatch explains why a guest may refuse a device: no USB
// controller of the guest takes the device's speed (its sysfs "speed",
// Mb/s: "1.5", "12", "480", "5000"...). That is a device faster than every
// controller (a high-speed device and only UHCI), or one slower than the
// ports there (a full-speed device and an EHCI without companions). It
// answers false when it cannot tell: an unknown speed, no controllers, or a
// model it does not know (libvirt's default, say). QEMU still passes some
// faster devices (a high-speed device whose endpoints fit full speed:
// neither isochronous nor interrupt endpoints over 64 bytes), so this
// explains a failed attach; it is no reason not to try.
func SpeedMismatch(speed string, models []string) (why string, mismatch bool) {
	mbps, err := strconv.ParseFloat(strings.TrimSpace(speed), 64)
	if err != nil || mbps <= 0 || len(models) == 0 {
		return "", false
	}
	var takes speeds
	for _, m := range models {
		s, ok := controllerSpeeds(m)
		if !ok {
			return "", false
		}
		takes |= s
	}
	dev := speedOf(mbps)
	if takes&dev != 0 {
		return "", false
	}
	return fmt.Sprintf("the device runs at %s and the domain's USB controllers (%s) take %s only",
		speedName(mbps), strings.Join(models, ", "), takes.names()), true
}
