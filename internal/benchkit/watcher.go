package benchkit

// libvirt events, as an independent client sees them: the clocks of the
// latency measurements stop at libvirt's device-added and device-removed
// events.

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/usbctl/usbctl/virt"
)

// TimedEvent is a libvirt event and when this process received it.
type TimedEvent struct {
	At time.Time
	Ev virt.Event
}

// Watcher receives a connection's libvirt events into a buffer; Total
// counts them and Dropped those the full buffer lost (a measurement that
// saw drops is not to be trusted).
type Watcher struct {
	conn    *virt.Conn
	ch      chan TimedEvent
	Total   atomic.Int64
	Dropped atomic.Int64
}

// NewWatcher connects to uri and returns once the connection is up.
func NewWatcher(ctx context.Context, uri string) (*Watcher, error) {
	w := &Watcher{ch: make(chan TimedEvent, 4096)}
	conn, err := virt.New(virt.Options{URI: uri, ReconnectMin: 50 * time.Millisecond, ReconnectMax: 500 * time.Millisecond})
	if err != nil {
		return nil, err
	}
	w.conn = conn
	conn.Start(ctx, func(ev virt.Event) {
		at := time.Now()
		w.Total.Add(1)
		select {
		case w.ch <- TimedEvent{at, ev}:
		default:
			w.Dropped.Add(1)
		}
	})
	if _, err := w.Wait(ctx, 30*time.Second, func(ev virt.Event) bool { return ev.Kind == virt.EventConnected }); err != nil {
		conn.Close()
		return nil, fmt.Errorf("event watcher: %w", err)
	}
	return w, nil
}

// Close ends the connection.
func (w *Watcher) Close() error { return w.conn.Close() }

// Drain drops the events received so far.
func (w *Watcher) Drain() {
	for {
		select {
		case <-w.ch:
		default:
			return
		}
	}
}

// Wait returns the arrival time of the first event that satisfies f,
// dropping the others.
func (w *Watcher) Wait(ctx context.Context, timeout time.Duration, f func(virt.Event) bool) (time.Time, error) {
	tm := time.NewTimer(timeout)
	defer tm.Stop()
	for {
		select {
		case te := <-w.ch:
			if f(te.Ev) {
				return te.At, nil
			}
		case <-tm.C:
			return time.Time{}, fmt.Errorf("no such event within %v", timeout)
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		}
	}
}

// DeviceEvent matches an event of kind for the device alias of domain dom.
func DeviceEvent(kind virt.EventKind, dom, alias string) func(virt.Event) bool {
	return func(ev virt.Event) bool { return ev.Kind == kind && ev.Domain == dom && ev.Alias == alias }
}
