// Package events is usbctld's event stream: what happened, as it happened,
// for `usbctl events`, `usbctl status --watch` and the desktop agent. The
// controller publishes after each sync has published its status, so a
// reader that fetches the status on an event sees the world after it.
//
// Events are news, not state: a reader that needs the state asks for it
// (status) and uses events only to know when to ask again. So a reader too
// slow to keep up is cut off rather than slowing usbctld down; it
// reconnects and asks for the state afresh.
package events

import (
	"errors"
	"sync"
	"time"

	"github.com/usbctl/usbctl/reconcile"
)

// Type names an event; it is the "type" field of a JSON line.
type Type string

const (
	DevicePlugged   Type = "device-plugged"
	DeviceUnplugged Type = "device-unplugged"
	Attached        Type = "attached"
	Detached        Type = "detached"
	// Failed is an attach or detach that failed (Action says which); it
	// is retried with backoff, and usbctl status shows it.
	Failed        Type = "failed"
	OverrideSet   Type = "override-set"
	OverrideEnded Type = "override-ended"
	// Offered is a device held on the host for someone to answer (a
	// domain in mode "ask", or an ask device rule); OfferEnded says it
	// was answered, timed out to the host, or went away.
	Offered        Type = "offered"
	OfferEnded     Type = "offer-ended"
	ConfigReloaded Type = "config-reloaded"
	ConfigRejected Type = "config-rejected"
	// DomainStarted and DomainStopped: a domain became active (running,
	// paused, ...) or stopped (or was undefined).
	DomainStarted Type = "domain-started"
	DomainStopped Type = "domain-stopped"
	// HeldOnHost: a device was attached while a program on the host held
	// some of its interfaces through usbfs (Reason says which); the guest
	// may not be able to use it. ReleasedOnHost: that program let go.
	HeldOnHost     Type = "held-on-host"
	ReleasedOnHost Type = "released-on-host"
)

// Event is one line of the stream. Strings from the hardware (in Device)
// are carried as they are; JSON escapes them, and readers that print them
// must make them safe for a terminal.
type Event struct {
	// Seq counts events from 1 since usbctld started; a gap means the
	// reader missed some.
	Seq  uint64    `json:"seq"`
	Time time.Time `json:"time"`
	Type Type      `json:"type"`
	// Key is the device's bus:dev, when the event is about a device.
	Key    *reconcile.DeviceKey `json:"key,omitempty"`
	Device *reconcile.Device    `json:"device,omitempty"`
	Domain string               `json:"domain,omitempty"`
	// Action is "attach" or "detach" for Failed.
	Action reconcile.ActionKind `json:"action,omitempty"`
	// Reason says why, in words: the rule, "device unplugged", "time is
	// up", "answered by alice".
	Reason string `json:"reason,omitempty"`
	Error  string `json:"error,omitempty"`
	// By is who caused it, for overrides and config changes ("alice
	// (usbctl attach)").
	By string `json:"by,omitempty"`
	// Until is when an override or offer ends by the clock.
	Until       time.Time `json:"until,omitzero"`
	Diagnostics []string  `json:"diagnostics,omitempty"`
}

// ErrTooSlow ends a subscription whose reader fell behind by a whole
// buffer.
var ErrTooSlow = errors.New("event reader too slow: reconnect and read the status afresh")

// Hub fans events out to subscribers. Publish never blocks.
type Hub struct {
	now func() time.Time

	mu   sync.Mutex
	seq  uint64
	subs map[*Sub]struct{}
}

// NewHub returns a hub; now stamps events (nil: time.Now).
func NewHub(now func() time.Time) *Hub {
	if now == nil {
		now = time.Now
	}
	return &Hub{now: now, subs: map[*Sub]struct{}{}}
}

// Sub is one reader's subscription.
type Sub struct {
	h    *Hub
	c    chan Event
	done chan struct{}
	err  error // set before done is closed
	once sync.Once
}

// C delivers the events.
func (s *Sub) C() <-chan Event { return s.c }

// Done is closed when the subscription ends (Close, or the reader was too
// slow: Err says which).
func (s *Sub) Done() <-chan struct{} { return s.done }

// Err is why the subscription ended; nil while it runs or after Close.
func (s *Sub) Err() error {
	select {
	case <-s.done:
		return s.err
	default:
		return nil
	}
}

// Close ends the subscription.
func (s *Sub) Close() { s.h.drop(s, nil) }

// Subscribe starts a subscription that buffers up to buf events.
func (h *Hub) Subscribe(buf int) *Sub {
	s := &Sub{h: h, c: make(chan Event, max(buf, 1)), done: make(chan struct{})}
	h.mu.Lock()
	h.subs[s] = struct{}{}
	h.mu.Unlock()
	return s
}

func (h *Hub) drop(s *Sub, err error) {
	s.once.Do(func() {
		h.mu.Lock()
		delete(h.subs, s)
		h.mu.Unlock()
		s.err = err
		close(s.done)
	})
}

// Publish stamps the events with a sequence number and the time, and hands
// them to every subscriber.
func (h *Hub) Publish(evs ...Event) {
	if len(evs) == 0 {
		return
	}
	now := h.now()
	var slow []*Sub
	h.mu.Lock()
	for i := range evs {
		h.seq++
		evs[i].Seq = h.seq
		if evs[i].Time.IsZero() {
			evs[i].Time = now
		}
	}
	for s := range h.subs {
		for _, ev := range evs {
			select {
			case s.c <- ev:
				continue
			default:
			}
			slow = append(slow, s)
			break
		}
	}
	h.mu.Unlock()
	for _, s := range slow {
		h.drop(s, ErrTooSlow)
	}
}

// Subscribers is how many readers follow the stream (for tests and
// metrics).
func (h *Hub) Subscribers() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs)
}
