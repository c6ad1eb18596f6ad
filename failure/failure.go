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
// it with %w, and ClassOf finds the class through the wrapping. Options add
// what a person can do about it (WithFix) and a change that is worth a try
// before the backoff runs out (WakeOn).
func New(c Class, text string, opts ...Option) error {
	s := &sentinel{class: c, text: text}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Option shapes a sentinel made by New.
type Option func(*sentinel)

// WithFix says what a person can do about the failure. The fix ends the
// message ("no free usb port in the guest: give ..."), so a log line
// carries both; status shows it on a line of its own (FixOf).
func WithFix(fix string) Option {
	return func(s *sentinel) { s.text += ": " + fix; s.fix = fix }
}

// Wake is a change after which a failed action is worth trying again at
// once, whatever its backoff says.
type Wake uint8

const (
	WakeNone Wake = iota
	// WakeDomainDevices: a device was added to or removed from the
	// action's domain (one may have freed a USB port).
	WakeDomainDevices
)

// WakeOn makes the failure worth a try again after change w.
func WakeOn(w Wake) Option { return func(s *sentinel) { s.wake = w } }

type sentinel struct {
	class Class
	text  string
	fix   string
	wake  Wake
}

func (s *sentinel) Error() string       { return s.text }
func (s *sentinel) FailureClass() Class { return s.class }
func (s *sentinel) Fix() string         { return s.fix }
func (s *sentinel) WakesOn() Wake       { return s.wake }

// Fixer is an error that says what a person can do about it.
type Fixer interface {
	error
	Fix() string
}

// FixOf returns the first non-empty fix in err's chain (depth first, as
// errors.As looks), "" if none.
func FixOf(err error) string {
	if err == nil {
		return ""
	}
	if f, ok := err.(Fixer); ok && f.Fix() != "" {
		return f.Fix()
	}
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		return FixOf(u.Unwrap())
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			if f := FixOf(e); f != "" {
				return f
			}
		}
	}
	return ""
}

// Waker is an error after which a change is worth a try (WakeOn).
type Waker interface {
	error
	WakesOn() Wake
}

// WakeOf returns the Wake of the first Waker in err's chain.
func WakeOf(err error) Wake {
	var w Waker
	if errors.As(err, &w) {
		return w.WakesOn()
	}
	return WakeNone
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
