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
