package controller

import (
	"time"

	"github.com/usbctl/usbctl/failure"
	"github.com/usbctl/usbctl/internal/backoff"
	"github.com/usbctl/usbctl/reconcile"
)

// actionID names an action across syncs, for backoff bookkeeping.
type actionID struct {
	kind   reconcile.ActionKind
	domain string
	key    reconcile.DeviceKey
}

func idOf(a reconcile.Action) actionID {
	return actionID{kind: a.Kind, domain: a.Domain, key: a.Key}
}

// failed is one action that failed, and when it may run again.
type failed struct {
	attempts int
	lastErr  string
	fix      string // what a person can do about lastErr, "" if nothing
	wake     failure.Wake
	next     time.Time // zero while it waits for a change
	class    failure.Class
}

// waitsForChange reports whether the failure is retried only once
// something relevant changes, not when a backoff runs out.
func (f *failed) waitsForChange() bool {
	return f.class != failure.Transient && f.class != failure.Disconnected
}

// failures are the actions that failed and have not succeeded since, with
// their backoff. The loop owns them.
type failures struct {
	byAction map[actionID]*failed
	retry    backoff.Policy
}

func newFailures(retry backoff.Policy) failures {
	return failures{byAction: map[actionID]*failed{}, retry: retry}
}

// due reports whether action id may run at now: it never failed, or its
// backoff is over and it does not wait for a change.
func (fs *failures) due(id actionID, now time.Time) bool {
	f := fs.byAction[id]
	return f == nil || !f.waitsForChange() && !now.Before(f.next)
}

func (fs *failures) succeeded(id actionID) { delete(fs.byAction, id) }

// failedNow records a failure of id at now and returns it, with the next
// retry set by its class: after the backoff (transient, disconnected), or
// none until a change (permanent, domain gone).
func (fs *failures) failedNow(id actionID, err error, now time.Time) *failed {
	f := fs.byAction[id]
	if f == nil {
		f = &failed{}
		fs.byAction[id] = f
	}
	f.attempts++
	f.lastErr = err.Error()
	f.fix = failure.FixOf(err)
	f.wake = failure.WakeOf(err)
	f.class = failure.ClassOf(err)
	f.next = time.Time{}
	if !f.waitsForChange() {
		f.next = now.Add(fs.retry.Delay(f.attempts))
	}
	return f
}

// changed gives every failure that is not transient another chance: all of
// them, or those of the devices in keys. A transient one keeps its backoff.
// It returns the actions it forgot, for the log.
func (fs *failures) changed(all bool, keys map[reconcile.DeviceKey]bool) []actionID {
	var forgot []actionID
	for id, f := range fs.byAction {
		if (all || keys[id.key]) && f.class != failure.Transient {
			delete(fs.byAction, id)
			forgot = append(forgot, id)
		}
	}
	return forgot
}

// woken makes due at now the failures that a change of devices in one of
// domains may cure (no free USB port: a device that left frees one), or
// all such failures: their retry waits for no backoff. The attempts stay,
// so a retry that fails again backs off further.
func (fs *failures) woken(all bool, domains map[string]bool, now time.Time) {
	for id, f := range fs.byAction {
		if f.wake == failure.WakeDomainDevices && (all || domains[id.domain]) && now.Before(f.next) {
			f.next = now
		}
	}
}

// keepOnly drops the failures of actions the plan no longer wants: they
// are no longer failing.
func (fs *failures) keepOnly(want map[actionID]bool) {
	for id := range fs.byAction {
		if !want[id] {
			delete(fs.byAction, id)
		}
	}
}

func (fs *failures) get(id actionID) (*failed, bool) {
	f, ok := fs.byAction[id]
	return f, ok
}

// speedError is a refused attach that the device's speed explains: the
// guest's USB controllers cannot take it (reconcile.SpeedMismatch). It
// is permanent: retrying changes nothing until the domain changes (a new
// controller needs its restart) or the device does.
type speedError struct {
	err error
	why string
}

func (e *speedError) Error() string { return e.err.Error() + ": likely because " + e.why }
func (e *speedError) Unwrap() error { return e.err }
func (e *speedError) Fix() string {
	return "give the domain a controller that takes every speed, <controller type='usb' model='qemu-xhci' ports='15'/> (virsh edit; applies at its next start), or plug the device into a port of a speed the domain takes; usbctl tries again when the domain or the device changes"
}
func (e *speedError) FailureClass() failure.Class { return failure.Permanent }

// explainSpeed turns an attach failure with no meaning of its own (a
// transient one that waits for nothing, as libvirt's "failed to open
// host usb device" or QEMU's speed mismatch are) into a speedError when
// the device's speed is above every USB controller of the domain.
func explainSpeed(err error, dev *reconcile.Device, dom reconcile.Domain) error {
	if dev == nil || failure.ClassOf(err) != failure.Transient || failure.WakeOf(err) != failure.WakeNone {
		return err
	}
	why, ok := reconcile.SpeedMismatch(dev.Speed, dom.USBControllers)
	if !ok {
		return err
	}
	return &speedError{err: err, why: why}
}
