// Package failure names what a failed call means for the reconcile loop.
// The adapter that sees an error classifies it once, where it arises (virt
// reads libvirt's error code first and the narrowest message second); the
// controller reads only the class. It is the one home of that meaning, as
// controller-runtime's TerminalError is: nobody maps the same error again
// further up.
package failure

import "errors"

// Class tells the controller what a failed call means for the action.
type Class int

const (
	// Transient failures are retried with capped exponential backoff. An
	// error that says nothing of its class is transient.
	Transient Class = iota
	// Permanent failures are not retried until something relevant
	// changes: the device is replugged, the domain changes state, the
	// config is reloaded or libvirt reconnects; and, in case the event
	// that said so was lost, once per periodic resync.
	Permanent
	// DomainGone means the domain vanished or stopped: re-read it, and
	// wait for it to change like a permanent failure.
	DomainGone
	// Disconnected means the connection is down: nothing is wrong with
	// the action itself; it runs again after the reconnect.
	Disconnected
)

// Classes lists every class, for metric labels.
func Classes() []Class { return []Class{Transient, Permanent, DomainGone, Disconnected} }

// String names a class for logs and metric labels.
func (c Class) String() string {
	switch c {
	case Transient:
		return "transient"
	case Permanent:
		return "permanent"
	case DomainGone:
		return "domain-gone"
	case Disconnected:
		return "disconnected"
	}
	return "unknown"
}

// Classified is an error that knows its class. Errors anywhere in a chain
// may implement it; the first one found decides.
type Classified interface {
	error
	FailureClass() Class
}

// New returns a sentinel error of class c: compare it with errors.Is, wrap
// it with %w, and ClassOf finds the class through the wrapping.
func New(c Class, text string) error { return &sentinel{class: c, text: text} }

type sentinel struct {
	class Class
	text  string
}

func (s *sentinel) Error() string       { return s.text }
func (s *sentinel) FailureClass() Class { return s.class }

// Fixer is an error that says what a person can do about it. Its fix
// ends its message ("no free usb port in the guest: give ..."), so a log
// line carries both; status shows the fix on a line of its own.
type Fixer interface {
	error
	Fix() string
}

// NewWithFix returns a sentinel of class c whose message is text, then
// ": " and fix, and whose Fix is fix.
func NewWithFix(c Class, text, fix string) error {
	return &fixable{sentinel: sentinel{class: c, text: text + ": " + fix}, fix: fix}
}

type fixable struct {
	sentinel
	fix string
}

func (f *fixable) Fix() string { return f.fix }

// FixOf returns the fix of the first Fixer in err's chain, "" if none.
func FixOf(err error) string {
	var f Fixer
	if errors.As(err, &f) {
		return f.Fix()
	}
	return ""
}

// ClassOf returns the class of the first Classified error in err's chain,
// and Transient if there is none.
func ClassOf(err error) Class {
	var c Classified
	if errors.As(err, &c) {
		return c.FailureClass()
	}
	return Transient
}
