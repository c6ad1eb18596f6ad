package virt

import (
	"errors"
	"strings"
	"testing"

	"libvirt.org/go/libvirt"

	"github.com/usbctl/usbctl/failure"
)

// The messages below are what the sandbox's libvirtd (Debian 12, libvirt
// 9.0) returned, code and error domain included, when each case was
// provoked; sandbox_test.go provokes them again against the real daemon.
// The VIR_FROM numbers: 0 none, 7 rpc, 10 qemu, 20 domain config.
func TestClassifyRealMessages(t *testing.T) {
	for _, c := range []struct {
		name  string
		err   libvirt.Error
		kind  error
		class failure.Class
	}{
		{"lookup of an unknown domain",
			libvirt.Error{Code: libvirt.ERR_NO_DOMAIN, Domain: libvirt.FROM_QEMU, Message: "Domain not found: no domain with matching name 'nope'"},
			ErrDomainNotFound, failure.DomainGone},
		{"attach to a shut-off domain",
			libvirt.Error{Code: libvirt.ERR_OPERATION_INVALID, Domain: libvirt.FROM_DOMAIN, Message: "Requested operation is not valid: domain is not running"},
			ErrDomainNotRunning, failure.DomainGone},
		{"attach of a device the host does not have",
			libvirt.Error{Code: libvirt.ERR_INTERNAL_ERROR, Domain: libvirt.FROM_NONE, Message: "internal error: Did not find USB device bus:1 device:99"},
			ErrDeviceMissing, failure.Transient},
		{"detach of an alias the domain does not have",
			libvirt.Error{Code: libvirt.ERR_INTERNAL_ERROR, Domain: libvirt.FROM_DOMAIN, Message: "internal error: no device found with alias ua-usbctl-001-077"},
			ErrDeviceMissing, failure.Transient},
		{"device in use by another domain",
			libvirt.Error{Code: libvirt.ERR_OPERATION_INVALID, Domain: libvirt.FROM_NONE, Message: "Requested operation is not valid: USB device 001:002 is in use by driver QEMU, domain g2"},
			ErrDeviceBusy, failure.Permanent},
		{"the alias is still on a hostdev of the domain",
			libvirt.Error{Code: libvirt.ERR_CONFIG_UNSUPPORTED, Domain: libvirt.FROM_DOMAIN, Message: "unsupported configuration: non unique alias detected: ua-usbctl-001-002"},
			ErrAliasInUse, failure.Transient},
		{"the guest's USB controller is full",
			libvirt.Error{Code: libvirt.ERR_INTERNAL_ERROR, Domain: libvirt.FROM_DOMAIN, Message: "internal error: No free USB ports"},
			ErrNoFreePort, failure.Transient},
		{"the domain has no USB controller",
			libvirt.Error{Code: libvirt.ERR_CONFIG_UNSUPPORTED, Domain: libvirt.FROM_DOMAIN, Message: "unsupported configuration: Device configuration is not compatible: Domain has no USB bus support"},
			ErrNoUSBBus, failure.Permanent},
		{"QEMU has a device with our id that libvirt lost",
			libvirt.Error{Code: libvirt.ERR_INTERNAL_ERROR, Domain: libvirt.FROM_QEMU, Message: "internal error: unable to execute QEMU command 'device_add': Duplicate device ID 'ua-usbctl-001-012'"},
			errQEMUHasID, failure.Transient},
		{"another job holds the domain for 30 s",
			libvirt.Error{Code: libvirt.ERR_OPERATION_TIMEOUT, Domain: libvirt.FROM_NONE, Message: "Timed out during operation: cannot acquire state change lock (held by monitor=qemuDispatchDomainMonitorCommand)"},
			ErrDomainBusy, failure.Transient},
		{"libvirtd died: the first call after",
			libvirt.Error{Code: libvirt.ERR_SYSTEM_ERROR, Domain: libvirt.FROM_RPC, Message: "Cannot write data: Broken pipe"},
			ErrConnection, failure.Disconnected},
		{"libvirtd died: later calls",
			libvirt.Error{Code: libvirt.ERR_INTERNAL_ERROR, Domain: libvirt.FROM_RPC, Message: "internal error: client socket is closed"},
			ErrConnection, failure.Disconnected},
		{"connect while libvirtd is down",
			libvirt.Error{Code: libvirt.ERR_SYSTEM_ERROR, Domain: libvirt.FROM_RPC, Message: "Failed to connect socket to '/run/libvirt/libvirt-sock': Connection refused"},
			ErrConnection, failure.Disconnected},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := classify(c.err, "attach ua-usbctl-001-002 to g1")
			if !errors.Is(err, c.kind) {
				t.Errorf("classify = %v, want it to wrap %v", err, c.kind)
			}
			if got := failure.ClassOf(err); got != c.class {
				t.Errorf("class = %v, want %v", got, c.class)
			}
			if !strings.HasPrefix(err.Error(), "attach ua-usbctl-001-002 to g1: "+c.err.Message) {
				t.Errorf("message %q does not name the object and keep libvirt's words", err)
			}
		})
	}
}

// Narrow: the same words under another code, or a near phrase under the
// same code, mean nothing special. A bare "not found" once made an
// unrelated internal error "device missing", and Detach reported success.
func TestClassifyNarrowly(t *testing.T) {
	for _, le := range []libvirt.Error{
		{Code: libvirt.ERR_INTERNAL_ERROR, Domain: libvirt.FROM_QEMU, Message: "internal error: qemu unexpectedly closed the monitor: device not found"},
		{Code: libvirt.ERR_INTERNAL_ERROR, Domain: libvirt.FROM_QEMU, Message: "internal error: unable to execute QEMU command 'device_del': Device 'x' not found"},
		{Code: libvirt.ERR_OPERATION_FAILED, Domain: libvirt.FROM_QEMU, Message: "operation failed: USB device 001:002 is in use by driver QEMU, domain g2"},
		{Code: libvirt.ERR_OPERATION_INVALID, Domain: libvirt.FROM_DOMAIN, Message: "Requested operation is not valid: domain is not running, yet"},
		{Code: libvirt.ERR_SYSTEM_ERROR, Domain: libvirt.FROM_QEMU, Message: "cannot open /dev/bus/usb/001/002: Permission denied"},
		{Code: libvirt.ERR_OPERATION_TIMEOUT, Domain: libvirt.FROM_QEMU, Message: "Timed out during operation: cannot set time"},
	} {
		err := classify(le, "detach ua-usbctl-001-002 from g1")
		for _, kind := range []error{ErrDeviceMissing, ErrDeviceBusy, ErrDomainNotRunning, ErrConnection, ErrDomainBusy} {
			if errors.Is(err, kind) {
				t.Errorf("code %d %q classified as %v; want no special meaning", le.Code, le.Message, kind)
			}
		}
		if got := failure.ClassOf(err); got != failure.Transient {
			t.Errorf("code %d %q: class %v, want transient", le.Code, le.Message, got)
		}
	}
}

// Errors a person must act on carry the fix, which ends the message.
func TestFixes(t *testing.T) {
	for _, c := range []struct {
		le   libvirt.Error
		want string
	}{
		{libvirt.Error{Code: libvirt.ERR_INTERNAL_ERROR, Domain: libvirt.FROM_DOMAIN, Message: "internal error: No free USB ports"}, "ports='15'"},
		{libvirt.Error{Code: libvirt.ERR_CONFIG_UNSUPPORTED, Domain: libvirt.FROM_DOMAIN, Message: "unsupported configuration: Device configuration is not compatible: Domain has no USB bus support"}, "<controller type='usb'"},
		{libvirt.Error{Code: libvirt.ERR_OPERATION_INVALID, Message: "Requested operation is not valid: USB device 001:002 is in use by driver QEMU, domain g2"}, "detached by hand"},
	} {
		err := classify(c.le, "attach ua-usbctl-001-002 to g1")
		fix := failure.FixOf(err)
		if !strings.Contains(fix, c.want) || !strings.HasSuffix(err.Error(), ": "+fix) {
			t.Errorf("%q: fix %q, message %q; want a fix with %q that ends the message", c.le.Message, fix, err, c.want)
		}
	}
}

func TestInUseSaysWhere(t *testing.T) {
	err := classify(libvirt.Error{Code: libvirt.ERR_OPERATION_INVALID, Message: "Requested operation is not valid: USB device 001:002 is in use by driver QEMU, domain win 11"}, "attach ua-usbctl-001-002 to g1")
	var iu *InUseError
	if !errors.As(err, &iu) || iu.Domain != "win 11" {
		t.Fatalf("got %v (%#v), want an InUseError naming domain \"win 11\"", err, iu)
	}
	if !strings.Contains(err.Error(), `in use by domain "win 11"`) {
		t.Errorf("message %q does not say where", err)
	}
}
