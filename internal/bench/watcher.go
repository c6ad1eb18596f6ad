//go:build umockdev

package main

// libvirt events, as an independent client sees them: the clock of the
// latency measurement stops at libvirt's device-added event.

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/usbctl/usbctl/virt"
)

type timedEvent struct {
	at time.Time
	ev virt.Event
}

type watcher struct {
	conn    *virt.Conn
	ch      chan timedEvent
	total   atomic.Int64
	dropped atomic.Int64
}

func newWatcher(ctx context.Context, uri string) (*watcher, error) {
	w := &watcher{ch: make(chan timedEvent, 4096)}
	conn, err := virt.New(virt.Options{URI: uri, ReconnectMin: 50 * time.Millisecond, ReconnectMax: 500 * time.Millisecond})
	if err != nil {
		return nil, err
	}
	w.conn = conn
	conn.Start(ctx, func(ev virt.Event) {
		at := time.Now()
		w.total.Add(1)
		select {
		case w.ch <- timedEvent{at, ev}:
		default:
			w.dropped.Add(1)
		}
	})
	if _, err := w.wait(ctx, 30*time.Second, func(ev virt.Event) bool { return ev.Kind == virt.EventConnected }); err != nil {
		conn.Close()
		return nil, fmt.Errorf("event watcher: %w", err)
	}
	return w, nil
}

// drain drops the events received so far.
func (w *watcher) drain() {
	for {
		select {
		case <-w.ch:
		default:
			return
		}
	}
}

// wait returns the arrival time of the first event that satisfies f,
// dropping the others.
func (w *watcher) wait(ctx context.Context, timeout time.Duration, f func(virt.Event) bool) (time.Time, error) {
	tm := time.NewTimer(timeout)
	defer tm.Stop()
	for {
		select {
		case te := <-w.ch:
			if f(te.ev) {
				return te.at, nil
			}
		case <-tm.C:
			return time.Time{}, fmt.Errorf("no such event within %v", timeout)
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		}
	}
}

func deviceEvent(kind virt.EventKind, dom, alias string) func(virt.Event) bool {
	return func(ev virt.Event) bool { return ev.Kind == kind && ev.Domain == dom && ev.Alias == alias }
}
