// Package agent shows usbctld's offers ("ask me" devices) as desktop
// notifications with actions, over the session D-Bus
// (org.freedesktop.Notifications), and sends the answer a person clicks back
// to usbctld. It keeps no state of its own: like the daemon it reconciles,
// here the daemon's list of pending offers against the notifications it
// shows, whenever the daemon's event stream says something happened.
//
// It is for the CLI (usbctl agent) only: usbctld never links D-Bus.
package agent

import (
	"context"
	"errors"
	"fmt"
	"html"
	"log/slog"
	"strings"
	"time"
	"unicode"

	"github.com/godbus/dbus/v5"
)

// D-Bus names of the freedesktop notification service.
const (
	busName   = "org.freedesktop.Notifications"
	objPath   = dbus.ObjectPath("/org/freedesktop/Notifications")
	iface     = "org.freedesktop.Notifications"
	sigAction = iface + ".ActionInvoked"
	sigClosed = iface + ".NotificationClosed"
)

// Answer is what a person chose for an offer.
type Answer int

const (
	// Attach gives the device to the domain it was offered to, until it
	// is unplugged.
	Attach Answer = iota + 1
	// AttachAlways also saves a device rule, so it is attached from then on.
	AttachAlways
	// Host keeps the device on the host until it is unplugged.
	Host
	// HostAlways also saves an exclude block: it never leaves the host.
	HostAlways
)

// action keys in the notification, and the buttons' words.
var actions = []struct {
	key    string
	answer Answer
	label  func(domain string) string
}{
	{"attach", Attach, func(d string) string { return "Attach to " + d }},
	{"host", Host, func(string) string { return "Keep on host" }},
	{"attach-always", AttachAlways, func(d string) string { return "Always attach to " + d }},
	{"host-always", HostAlways, func(string) string { return "Always keep on host" }},
}

func (a Answer) String() string {
	for _, x := range actions {
		if x.answer == a {
			return x.key
		}
	}
	return "unknown"
}

// Offer is a device usbctld holds on the host until someone answers.
type Offer struct {
	// Device names it in the answer (bus:dev).
	Device string
	Domain string
	// What describes it for people: maker, product, id, port. It comes
	// from the hardware and is escaped before it is shown.
	What string
	// Expires is when usbctld stops waiting and keeps it on the host;
	// zero if it does not say.
	Expires time.Time
}

func (o Offer) key() string { return o.Device + "\x00" + o.Domain }

// Daemon is what the agent needs from usbctld.
type Daemon interface {
	// Offers lists the offers pending now.
	Offers(ctx context.Context) ([]Offer, error)
	// Follow calls changed whenever something may have changed, until ctx
	// is done or the stream ends (the error says why).
	Follow(ctx context.Context, changed func()) error
	// Answer answers one offer.
	Answer(ctx context.Context, o Offer, a Answer) error
}

// Agent is one desktop session's agent.
type Agent struct {
	Bus    *dbus.Conn
	Daemon Daemon
	Log    *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Retry bounds the wait before following the daemon again after the
	// stream broke (default 1 s to 30 s).
	RetryMin, RetryMax time.Duration
}

type shown struct {
	offer  Offer
	id     uint32
	closed bool // dismissed by the person or the server: not shown again
}

// Run shows offers until ctx is done.
func (a *Agent) Run(ctx context.Context) error {
	if a.Log == nil {
		a.Log = slog.New(slog.DiscardHandler)
	}
	if a.Now == nil {
		a.Now = time.Now
	}
	if a.RetryMin <= 0 {
		a.RetryMin = time.Second
	}
	if a.RetryMax < a.RetryMin {
		a.RetryMax = max(30*time.Second, a.RetryMin)
	}
	notif := a.Bus.Object(busName, objPath)
	var caps []string
	if err := notif.CallWithContext(ctx, iface+".GetCapabilities", 0).Store(&caps); err != nil {
		return fmt.Errorf("desktop notifications (%s on the session bus): %w; is a notification daemon running in this session?", busName, err)
	}
	markup, hasActions := false, false
	for _, c := range caps {
		markup = markup || c == "body-markup"
		hasActions = hasActions || c == "actions"
	}
	if !hasActions {
		a.Log.Warn("the notification server shows no buttons: answer offers with usbctl attach or usbctl detach")
	}
	if err := a.Bus.AddMatchSignalContext(ctx, dbus.WithMatchObjectPath(objPath), dbus.WithMatchInterface(iface)); err != nil {
		return fmt.Errorf("listen for notification actions: %w", err)
	}
	sigs := make(chan *dbus.Signal, 32)
	a.Bus.Signal(sigs)
	defer a.Bus.RemoveSignal(sigs)

	kick := make(chan struct{}, 1)
	poke := func() {
		select {
		case kick <- struct{}{}:
		default:
		}
	}
	followErr := make(chan error, 1)
	go func() { followErr <- a.follow(ctx, poke) }()

	byKey := map[string]*shown{}
	byID := map[uint32]*shown{}
	// Offers outlive the agent (usbctld times them out); its
	// notifications should not.
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		for _, s := range byKey {
			if !s.closed {
				_ = notif.CallWithContext(cctx, iface+".CloseNotification", 0, s.id).Err
			}
		}
	}()
	poke()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-followErr:
			return err
		case <-kick:
			offers, err := a.Daemon.Offers(ctx)
			if err != nil {
				if ctx.Err() == nil {
					a.Log.Warn("list offers", "err", err)
				}
				continue
			}
			a.sync(ctx, notif, offers, byKey, byID, markup)
		case sig := <-sigs:
			if sig == nil {
				return errors.New("session bus connection closed")
			}
			a.signal(ctx, notif, sig, byKey, byID, poke)
		}
	}
}

// follow keeps the daemon's stream followed, again after each break.
func (a *Agent) follow(ctx context.Context, changed func()) error {
	wait := a.RetryMin
	for {
		start := a.Now()
		err := a.Daemon.Follow(ctx, changed)
		if ctx.Err() != nil {
			return nil
		}
		if a.Now().Sub(start) > a.RetryMax {
			wait = a.RetryMin // it ran fine for a while
		}
		a.Log.Warn("usbctld event stream ended; following again", "err", err, "in", wait)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		wait = min(2*wait, a.RetryMax)
		changed() // whatever happened meanwhile
	}
}

// sync shows the offers not shown yet and closes the notifications of
// offers that are gone (answered elsewhere, timed out, unplugged).
func (a *Agent) sync(ctx context.Context, notif dbus.BusObject, offers []Offer, byKey map[string]*shown, byID map[uint32]*shown, markup bool) {
	now := map[string]bool{}
	for _, o := range offers {
		now[o.key()] = true
		if _, ok := byKey[o.key()]; ok {
			continue
		}
		id, err := a.notify(ctx, notif, o, markup)
		if err != nil {
			a.Log.Warn("show offer", "device", o.Device, "domain", o.Domain, "err", err)
			continue
		}
		s := &shown{offer: o, id: id}
		byKey[o.key()], byID[id] = s, s
		a.Log.Info("offer shown", "device", o.Device, "domain", o.Domain, "notification", id)
	}
	for k, s := range byKey {
		if now[k] {
			continue
		}
		if !s.closed {
			if err := notif.CallWithContext(ctx, iface+".CloseNotification", 0, s.id).Err; err != nil {
				a.Log.Debug("close notification", "id", s.id, "err", err)
			}
		}
		delete(byKey, k)
		delete(byID, s.id)
	}
}

func (a *Agent) notify(ctx context.Context, notif dbus.BusObject, o Offer, markup bool) (uint32, error) {
	text := func(s string) string {
		s = printable(s)
		if markup {
			s = html.EscapeString(s)
		}
		return s
	}
	body := fmt.Sprintf("%s was plugged in. Attach it to %s?", text(o.What), text(o.Domain))
	timeout := int32(-1) // the server's default
	if !o.Expires.IsZero() {
		left := o.Expires.Sub(a.Now())
		body += fmt.Sprintf(" Unanswered, it stays on the host in %s.", left.Round(time.Second))
		timeout = int32(min(max(left, time.Second), time.Hour) / time.Millisecond)
	}
	var acts []string
	for _, x := range actions {
		acts = append(acts, x.key, printable(x.label(o.Domain)))
	}
	hints := map[string]dbus.Variant{
		"category": dbus.MakeVariant("device.added"),
		"urgency":  dbus.MakeVariant(byte(1)),
	}
	// Not cancelled with ctx: a notification the server got must be
	// known here, so that it is closed when the agent stops.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	var id uint32
	err := notif.CallWithContext(cctx, iface+".Notify", 0, "usbctl", uint32(0), "drive-removable-media",
		"USB device for "+printable(o.Domain), body, acts, hints, timeout).Store(&id)
	return id, err
}

func (a *Agent) signal(ctx context.Context, notif dbus.BusObject, sig *dbus.Signal, byKey map[string]*shown, byID map[uint32]*shown, poke func()) {
	switch sig.Name {
	case sigAction:
		var id uint32
		var key string
		if err := dbus.Store(sig.Body, &id, &key); err != nil {
			return
		}
		s, ok := byID[id]
		if !ok {
			return // another program's notification
		}
		var ans Answer
		for _, x := range actions {
			if x.key == key {
				ans = x.answer
			}
		}
		if ans == 0 {
			return // "default": a click on the body decides nothing
		}
		s.closed = true
		a.Log.Info("answer", "device", s.offer.Device, "domain", s.offer.Domain, "answer", ans.String())
		actx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := a.Daemon.Answer(actx, s.offer, ans)
		cancel()
		if err != nil {
			a.Log.Warn("answer failed", "device", s.offer.Device, "err", err)
			var id uint32
			_ = notif.CallWithContext(ctx, iface+".Notify", 0, "usbctl", uint32(0), "dialog-error",
				"usbctl could not answer", printable(err.Error()), []string{}, map[string]dbus.Variant{}, int32(-1)).Store(&id)
		}
		poke()
	case sigClosed:
		var id, reason uint32
		if err := dbus.Store(sig.Body, &id, &reason); err != nil {
			return
		}
		if s, ok := byID[id]; ok {
			// Dismissed or expired: the offer stays until usbctld times
			// it out to the host; it is not shown again.
			s.closed = true
		}
	}
}

// printable replaces what is not a printable character: a device's name
// must not start a new line or an escape sequence in a notification.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if !unicode.IsPrint(r) {
			return '?'
		}
		return r
	}, strings.ToValidUTF8(s, "?"))
}
