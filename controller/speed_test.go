package controller

import (
	"errors"
	"strings"
	"testing"

	"github.com/usbctl/usbctl/failure"
	"github.com/usbctl/usbctl/reconcile"
)

// TestExplainSpeed: a refused attach of a high-speed device to a guest
// with only a UHCI is permanent, says why and gives the fix; anything else
// keeps its own meaning.
func TestExplainSpeed(t *testing.T) {
	refused := errors.New(`attach ua-usbctl-002-002 to l2s: internal error: unable to execute QEMU command 'device_add': failed to open host usb device 2:2`)
	fast := &reconcile.Device{Bus: 2, Dev: 2, Vendor: "1d6b", Product: "0121", Speed: "480"}
	uhci := reconcile.Domain{Name: "l2s", USBControllers: []string{"piix3-uhci"}}

	err := explainSpeed(refused, fast, uhci)
	if failure.ClassOf(err) != failure.Permanent {
		t.Errorf("class %v, want permanent: %v", failure.ClassOf(err), err)
	}
	if !errors.Is(err, refused) || !strings.Contains(err.Error(), "high speed (480 Mb/s)") || !strings.Contains(err.Error(), "piix3-uhci") {
		t.Errorf("error %q: want libvirt's message, the device's speed and the controller", err)
	}
	if fix := failure.FixOf(err); !strings.Contains(fix, "qemu-xhci") {
		t.Errorf("fix %q: want a controller that takes it", fix)
	}

	// The other way: a full-speed device and an EHCI without companions,
	// which QEMU refuses ("speed mismatch" in the domain's log).
	slow := &reconcile.Device{Bus: 4, Dev: 2, Vendor: "1d6b", Product: "0102", Speed: "12"}
	ehci := reconcile.Domain{Name: "ehci", USBControllers: []string{"ehci"}}
	err = explainSpeed(refused, slow, ehci)
	if failure.ClassOf(err) != failure.Permanent || !strings.Contains(err.Error(), "full speed (12 Mb/s)") || !strings.Contains(err.Error(), "take high speed only") {
		t.Errorf("full-speed device into EHCI only: %v (class %v), want permanent and why", err, failure.ClassOf(err))
	}

	for _, c := range []struct {
		name string
		err  error
		dev  *reconcile.Device
		dom  reconcile.Domain
	}{
		{"fits", refused, fast, reconcile.Domain{USBControllers: []string{"qemu-xhci"}}},
		{"companions take it", refused, slow, reconcile.Domain{USBControllers: []string{"ich9-ehci1", "ich9-uhci1"}}},
		{"speed unknown", refused, &reconcile.Device{Speed: ""}, uhci},
		{"no device", refused, nil, uhci},
		{"classified", failure.New(failure.Permanent, "usb device in use by another domain"), fast, uhci},
		{"waits for a change", failure.New(failure.Transient, "no free usb port in the guest", failure.WakeOn(failure.WakeDomainDevices)), fast, uhci},
	} {
		if got := explainSpeed(c.err, c.dev, c.dom); got != c.err {
			t.Errorf("%s: explainSpeed changed %q into %q", c.name, c.err, got)
		}
	}
}
