package main

// The plug's clock starts at the udev event, as a udev monitor of this
// program receives it: udevsrc, the monitor usbctld itself uses.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/usbctl/usbctl/udevsrc"
)

type udevEvent struct {
	at time.Time
	ev udevsrc.Event
}

type udevWatcher struct {
	ch      chan udevEvent
	dropped atomic.Int64
}

// newUdevWatcher watches udev until ctx is done. udevsrc gives no sign
// that its monitor is up, so this waits a moment for it (the first plug
// comes much later anyway: usbctld's start, or the settle pause).
func newUdevWatcher(ctx context.Context, log *slog.Logger) (*udevWatcher, error) {
	w := &udevWatcher{ch: make(chan udevEvent, 4096)}
	errc := make(chan error, 1)
	go func() {
		errc <- udevsrc.New(log).Watch(ctx, func(ev udevsrc.Event) {
			select {
			case w.ch <- udevEvent{time.Now(), ev}:
			default:
				w.dropped.Add(1)
			}
		})
	}()
	select {
	case err := <-errc:
		return nil, fmt.Errorf("udev monitor: %w", err)
	case <-time.After(200 * time.Millisecond):
	}
	return w, nil
}

func (w *udevWatcher) drain() {
	for {
		select {
		case <-w.ch:
		default:
			return
		}
	}
}

// wait returns the arrival time and devnum of the first event with action
// a for a device on bus (and devnum dev, unless 0). A resync means events
// were lost: the run is void.
func (w *udevWatcher) wait(ctx context.Context, a udevsrc.Action, bus, dev int) (time.Time, int, error) {
	tm := time.NewTimer(30 * time.Second)
	defer tm.Stop()
	for {
		select {
		case e := <-w.ch:
			if e.ev.Action == udevsrc.ActionResync {
				return time.Time{}, 0, errors.New("the udev monitor lost events (resync)")
			}
			if e.ev.Action == a && e.ev.Device.Bus == bus && (dev == 0 || e.ev.Device.Dev == dev) {
				return e.at, e.ev.Device.Dev, nil
			}
		case <-tm.C:
			return time.Time{}, 0, fmt.Errorf("no udev %s on bus %d within 30 s", a, bus)
		case <-ctx.Done():
			return time.Time{}, 0, ctx.Err()
		}
	}
}
