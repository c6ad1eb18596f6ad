package reconcile

import (
	"strings"
	"testing"
)

func TestSpeedMismatch(t *testing.T) {
	for _, c := range []struct {
		speed  string
		models []string
		want   bool
	}{
		{"480", []string{"piix3-uhci"}, true},
		{"480", []string{"pci-ohci", "ich9-uhci1"}, true},
		{"12", []string{"piix3-uhci"}, false},
		{"1.5", []string{"piix3-uhci"}, false},
		{"480", []string{"ich9-ehci1", "ich9-uhci1"}, false},
		{"5000", []string{"ich9-ehci1"}, true},
		{"5000", []string{"qemu-xhci"}, false},
		{"480", []string{"piix3-uhci", "qemu-xhci"}, false},
		// QEMU's EHCI takes high speed only; its UHCI companions take the
		// slower devices.
		{"12", []string{"ehci"}, true},
		{"1.5", []string{"ich9-ehci1"}, true},
		{"12", []string{"ich9-ehci1", "ich9-uhci1", "ich9-uhci2", "ich9-uhci3"}, false},
		{"12", []string{"qemu-xhci"}, false},
		{"1.5", []string{"nec-xhci"}, false},
		// Cannot tell: no verdict.
		{"480", nil, false},
		{"", []string{"piix3-uhci"}, false},
		{"480", []string{"piix3-uhci", ""}, false},
		{"480", []string{"some-future-hci"}, false},
	} {
		why, got := SpeedMismatch(c.speed, c.models)
		if got != c.want {
			t.Errorf("SpeedMismatch(%q, %q) = %v (%q), want %v", c.speed, c.models, got, why, c.want)
		}
		if got && (!strings.Contains(why, c.models[0]) || !strings.Contains(why, "Mb/s")) {
			t.Errorf("SpeedMismatch(%q, %q): %q does not name the controllers and the speeds", c.speed, c.models, why)
		}
	}
}

func TestSpeedMismatchSaysWhatTheGuestTakes(t *testing.T) {
	for _, c := range []struct {
		speed  string
		models []string
		want   []string
	}{
		{"480", []string{"piix3-uhci"}, []string{"high speed (480 Mb/s)", "piix3-uhci", "take low and full speed only"}},
		{"12", []string{"ehci"}, []string{"full speed (12 Mb/s)", "(ehci)", "take high speed only"}},
		{"5000", []string{"ich9-ehci1", "ich9-uhci1"}, []string{"super speed (5000 Mb/s)", "take low, full and high speed only"}},
	} {
		why, ok := SpeedMismatch(c.speed, c.models)
		if !ok {
			t.Errorf("SpeedMismatch(%q, %q): no mismatch", c.speed, c.models)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(why, w) {
				t.Errorf("SpeedMismatch(%q, %q) = %q, want it to say %q", c.speed, c.models, why, w)
			}
		}
	}
}
