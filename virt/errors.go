package virt

import (
	"errors"
	"fmt"
	"strings"

	"libvirt.org/go/libvirt"

	"github.com/usbctl/usbctl/failure"
)

// What a libvirt failure means, decided here once (classify) and nowhere
// else: returned errors wrap one of these and name the object; each carries
// its failure.Class, which is all the controller reads.
var (
	// ErrDomainNotFound: no domain of that name (undefined).
	ErrDomainNotFound = failure.New(failure.DomainGone, "no such domain")
	// ErrDomainNotRunning: a live change to a domain that is not running.
	ErrDomainNotRunning = failure.New(failure.DomainGone, "domain is not running")
	// ErrDomainBusy: another operation holds the domain's job (libvirt's
	// "state change lock") past libvirt's own wait of 30 s: try again later.
	ErrDomainBusy = failure.New(failure.Transient, "domain is busy with another operation; retrying")
	// ErrDeviceMissing: libvirt finds no such USB device on the host
	// (attach), or no hostdev of that alias in the domain (detach, where
	// it means done). Transient: the device may be half-enumerated; if it
	// went, its remove event makes the plan drop the action.
	ErrDeviceMissing = failure.New(failure.Transient, "usb device not found by libvirt")
	// ErrDeviceBusy: another running domain holds the device: a hostdev
	// that is not ours (a person's), or ours still being detached there.
	// Permanent: wait for a domain to change. Errors that wrap it are
	// *InUseError, naming that domain.
	ErrDeviceBusy = failure.New(failure.Permanent, "usb device in use by another domain")
	// ErrNoFreePort: the guest's USB controller has no free port. A
	// device that leaves the domain frees one: retried with backoff, and
	// at once when the domain's devices change.
	ErrNoFreePort = failure.New(failure.Transient, "no free usb port in the guest",
		failure.WithFix("give the domain's USB controller more ports: <controller type='usb' model='qemu-xhci' ports='15'/> (virsh edit; applies at its next start), or add a usb-hub; usbctl attaches once a port is free"),
		failure.WakeOn(failure.WakeDomainDevices))
	// ErrNoUSBBus: the domain has no USB controller to plug into. Only a
	// change of its definition and a restart help: wait for the domain to
	// change.
	ErrNoUSBBus = failure.New(failure.Permanent, "the domain has no USB controller",
		failure.WithFix("add one to its definition, <controller type='usb' model='qemu-xhci' ports='15'/> (virsh edit), and restart it; usbctl attaches when it runs again"))
	// ErrAliasInUse: the domain still has a hostdev with this alias (an
	// earlier one not yet removed). Its removal is a device-removed event:
	// retried then, or after the backoff.
	ErrAliasInUse = failure.New(failure.Transient, "the domain still has a hostdev with this alias", failure.WakeOn(failure.WakeDomainDevices))
	// ErrOrphanRemoved: QEMU had a device with our alias that libvirt did
	// not know (libvirtd died between QEMU's device_add and its record
	// of it); it is removed now, and the attach is retried with backoff.
	ErrOrphanRemoved = failure.New(failure.Transient, "QEMU held this device under usbctl's alias without libvirt knowing (libvirtd restarted during an attach?); removed it through the QEMU monitor, attaching again")
	// ErrConnection: the libvirt connection is down.
	ErrConnection = failure.New(failure.Disconnected, "libvirt connection lost")

	// errQEMUHasID: QEMU already has a device with the id we asked for,
	// which libvirt does not know (see Attach).
	errQEMUHasID = failure.New(failure.Transient, "QEMU already has a device with this id")
)

// InUseError is ErrDeviceBusy with the domain that holds the device, as
// libvirt names it: the hostdev to look at is there.
type InUseError struct {
	Domain string
}

func (e *InUseError) Error() string {
	return fmt.Sprintf("usb device in use by domain %q: %s", e.Domain, e.Fix())
}

// Fix says what to do; it ends the message.
func (e *InUseError) Fix() string {
	return fmt.Sprintf("usbctl tries again when %s changes; a hostdev there that usbctl does not own must be detached by hand", e.Domain)
}

// Is makes errors.Is(err, ErrDeviceBusy) hold.
func (e *InUseError) Is(target error) bool { return target == ErrDeviceBusy }

// FailureClass is that of ErrDeviceBusy: wait for a domain to change.
func (e *InUseError) FailureClass() failure.Class { return failure.Permanent }

// Phrases libvirt 9.0 writes, each the narrowest part of its message that
// tells one meaning from the others under the same code. The messages are
// those the sandbox's libvirtd returns (errors_test.go quotes them, and
// sandbox_test.go provokes each).
const (
	msgNotRunning = "domain is not running"
	msgInUse      = " is in use by driver " // "USB device 001:002 is in use by driver QEMU, domain g2"
	msgJobLock    = "cannot acquire state change lock"
	msgNoUSBDev   = "Did not find USB device bus:"
	msgNoAlias    = "no device found with alias "
	msgNoPorts    = "No free USB ports"
	msgDupID      = "Duplicate device ID '"
	msgDupAlias   = "non unique alias detected: "
	msgNoUSBBus   = "Domain has no USB bus support"
)

// kindOf classifies a libvirt error: by its code (and the part of libvirt
// that raised it) first; a message is read only where one code carries
// several meanings, and then only for the phrase libvirt writes for that
// meaning. nil means no meaning of its own: a transient failure.
func kindOf(le libvirt.Error) error {
	msg := le.Message
	switch le.Code {
	case libvirt.ERR_NO_DOMAIN:
		return ErrDomainNotFound
	case libvirt.ERR_DEVICE_MISSING:
		return ErrDeviceMissing
	case libvirt.ERR_NO_CONNECT, libvirt.ERR_INVALID_CONN, libvirt.ERR_RPC, libvirt.ERR_AUTH_CANCELLED:
		return ErrConnection
	case libvirt.ERR_SYSTEM_ERROR, libvirt.ERR_INTERNAL_ERROR:
		// The RPC layer reports a dead socket as a system error ("Cannot
		// write data: Broken pipe", "Failed to connect socket") and then
		// as an internal one ("client socket is closed"). The same codes
		// from the QEMU driver are about the domain or the device.
		if le.Domain == libvirt.FROM_RPC || le.Domain == libvirt.FROM_REMOTE {
			return ErrConnection
		}
		if le.Code == libvirt.ERR_SYSTEM_ERROR {
			return nil
		}
		switch {
		case strings.Contains(msg, msgNoUSBDev):
			return ErrDeviceMissing
		case strings.Contains(msg, msgNoAlias):
			return ErrDeviceMissing
		case strings.Contains(msg, msgNoPorts):
			return ErrNoFreePort
		case strings.Contains(msg, msgDupID):
			return errQEMUHasID
		}
	case libvirt.ERR_OPERATION_INVALID:
		if strings.HasSuffix(msg, msgNotRunning) {
			return ErrDomainNotRunning
		}
		if dom, ok := inUseBy(msg); ok {
			return &InUseError{Domain: dom}
		}
	case libvirt.ERR_OPERATION_TIMEOUT, libvirt.ERR_OPERATION_FAILED:
		// Timed out waiting for the job (OPERATION_TIMEOUT), or too many
		// waiting already with max_queued set (OPERATION_FAILED).
		if strings.Contains(msg, msgJobLock) {
			return ErrDomainBusy
		}
	case libvirt.ERR_CONFIG_UNSUPPORTED:
		if strings.Contains(msg, msgDupAlias) {
			return ErrAliasInUse
		}
		if strings.Contains(msg, msgNoUSBBus) {
			return ErrNoUSBBus
		}
	}
	return nil
}

// inUseBy returns the domain in "USB device 001:002 is in use by driver
// QEMU, domain g2".
func inUseBy(msg string) (string, bool) {
	_, rest, ok := strings.Cut(msg, msgInUse)
	if !ok {
		return "", false
	}
	_, dom, ok := strings.Cut(rest, ", domain ")
	if !ok || dom == "" {
		return "", false
	}
	return dom, true
}

// classify wraps err for the object what (`attach ua-usbctl-001-002 to
// win11`) with what it means, keeping libvirt's own message.
func classify(err error, what string) error {
	var le libvirt.Error
	if !errors.As(err, &le) {
		return fmt.Errorf("%s: %w", what, err)
	}
	kind := kindOf(le)
	if kind == nil {
		return fmt.Errorf("%s: %s", what, le.Message)
	}
	return fmt.Errorf("%s: %s: %w", what, le.Message, kind)
}
