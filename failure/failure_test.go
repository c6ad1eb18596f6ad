package failure

import (
	"errors"
	"fmt"
	"testing"
)

func TestClassOf(t *testing.T) {
	gone := New(DomainGone, "no such domain")
	wrapped := fmt.Errorf("attach ua-usbctl-001-002 to win11: %w", fmt.Errorf("lookup: %w", gone))
	if got := ClassOf(wrapped); got != DomainGone {
		t.Errorf("ClassOf(wrapped sentinel) = %v, want domain-gone", got)
	}
	if !errors.Is(wrapped, gone) {
		t.Error("errors.Is lost the sentinel through the wrapping")
	}
	if got := ClassOf(errors.New("plain")); got != Transient {
		t.Errorf("ClassOf(unclassified) = %v, want transient", got)
	}
	if got := ClassOf(nil); got != Transient {
		t.Errorf("ClassOf(nil) = %v, want transient", got)
	}
	// The first class in the chain decides: an adapter may reclassify
	// what it wraps.
	outer := &sentinel{class: Permanent, text: "outer"}
	if got := ClassOf(fmt.Errorf("%w: %w", outer, gone)); got != Permanent {
		t.Errorf("ClassOf(two classes) = %v, want the first, permanent", got)
	}
	for c, want := range map[Class]string{Transient: "transient", Permanent: "permanent", DomainGone: "domain-gone", Disconnected: "disconnected", Class(99): "unknown"} {
		if c.String() != want {
			t.Errorf("Class(%d).String() = %q, want %q", int(c), c.String(), want)
		}
	}
}

func TestFixOf(t *testing.T) {
	full := New(Transient, "no free usb port", WithFix("give it more ports"), WakeOn(WakeDomainDevices))
	wrapped := fmt.Errorf("attach ua-usbctl-001-002 to win11: internal error: No free USB ports: %w", full)
	if got := FixOf(wrapped); got != "give it more ports" {
		t.Errorf("FixOf = %q", got)
	}
	if full.Error() != "no free usb port: give it more ports" || ClassOf(wrapped) != Transient || !errors.Is(wrapped, full) {
		t.Errorf("a sentinel with a fix: %q, class %v", full.Error(), ClassOf(wrapped))
	}
	if got := FixOf(New(Permanent, "busy")); got != "" {
		t.Errorf("FixOf(no fix) = %q", got)
	}
	if WakeOf(wrapped) != WakeDomainDevices || WakeOf(New(Transient, "flaky")) != WakeNone || WakeOf(errors.New("plain")) != WakeNone {
		t.Error("WakeOf does not find the wake through the wrapping")
	}
	// The fix of a second wrapped error is found too.
	if got := FixOf(fmt.Errorf("%w; then %w", New(Transient, "first"), full)); got != "give it more ports" {
		t.Errorf("FixOf(two wrapped) = %q", got)
	}
}
