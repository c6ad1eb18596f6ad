package testhost

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"
)

// qmpConn is a QMP client: commands tagged with an id, answered in order
// by QEMU, and events fanned out to whoever listens at the time.
type qmpConn struct {
	log   *slog.Logger
	conn  net.Conn
	wmu   sync.Mutex
	calls calls[qmpMsg]

	mu   sync.Mutex // guards subs
	subs map[chan qmpMsg]struct{}
}

type qmpMsg struct {
	ID     uint64          `json:"id"` // ours: QMP echoes any JSON value
	Return json.RawMessage `json:"return"`
	Error  *struct {
		Class string `json:"class"`
		Desc  string `json:"desc"`
	} `json:"error"`
	Event string          `json:"event"`
	Data  json.RawMessage `json:"data"`
	QMP   json.RawMessage `json:"QMP"`
}

func dialQMP(ctx context.Context, log *slog.Logger, path string, qemuDone <-chan struct{}) (*qmpConn, error) {
	c, err := dialUnix(ctx, path, qemuDone)
	if err != nil {
		return nil, fmt.Errorf("qmp: %w", err)
	}
	q := &qmpConn{log: log, conn: c, subs: map[chan qmpMsg]struct{}{}}
	go q.read()
	if _, err := q.call(ctx, "qmp_capabilities", nil); err != nil {
		c.Close()
		return nil, fmt.Errorf("qmp: %w", err)
	}
	return q, nil
}

func (q *qmpConn) read() {
	dec := json.NewDecoder(q.conn)
	var err error
	for {
		var m qmpMsg
		if err = dec.Decode(&m); err != nil {
			break
		}
		switch {
		case m.QMP != nil:
			// The greeting.
		case m.Event != "":
			q.log.Debug("qmp event", "event", m.Event, "data", string(m.Data))
			q.mu.Lock()
			for ch := range q.subs {
				select {
				case ch <- m:
				default:
					q.log.Warn("qmp: event dropped for a slow listener", "event", m.Event)
				}
			}
			q.mu.Unlock()
		default:
			q.calls.deliver(m.ID, m)
		}
	}
	if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
		err = errors.New("qmp connection closed (QEMU gone?)")
	}
	q.calls.fail(err)
}

// subscribe returns a channel of every event from now on; cancel stops it.
func (q *qmpConn) subscribe() (ch chan qmpMsg, cancel func()) {
	ch = make(chan qmpMsg, 64)
	q.mu.Lock()
	q.subs[ch] = struct{}{}
	q.mu.Unlock()
	return ch, func() {
		q.mu.Lock()
		delete(q.subs, ch)
		q.mu.Unlock()
	}
}

func (q *qmpConn) call(ctx context.Context, cmd string, args any) (json.RawMessage, error) {
	id, ch, err := q.calls.add()
	if err != nil {
		return nil, err
	}
	req := map[string]any{"execute": cmd, "id": id}
	if args != nil {
		req["arguments"] = args
	}
	b, err := json.Marshal(req)
	if err != nil {
		q.calls.drop(id)
		return nil, err
	}
	q.wmu.Lock()
	_, err = q.conn.Write(b)
	q.wmu.Unlock()
	if err != nil {
		q.calls.drop(id)
		return nil, err
	}
	select {
	case m, ok := <-ch:
		if !ok {
			return nil, q.calls.failure()
		}
		if m.Error != nil {
			return nil, fmt.Errorf("%s: %s", m.Error.Class, m.Error.Desc)
		}
		return m.Return, nil
	case <-ctx.Done():
		q.calls.drop(id)
		return nil, ctx.Err()
	}
}

func (q *qmpConn) close() { q.conn.Close() }

// QMP runs a QMP command on the test host's QEMU and returns its "return".
func (h *Host) QMP(ctx context.Context, cmd string, args any) (json.RawMessage, error) {
	r, err := h.qmp.call(ctx, cmd, args)
	if err != nil {
		return nil, fmt.Errorf("test host: qmp %s: %w", cmd, err)
	}
	return r, nil
}

// EmulatedDevice is a QEMU USB device plugged into the test host's
// qemu-xhci (bus xhci.0).
type EmulatedDevice struct {
	ID     string // QEMU device id, for Unplug
	Driver string // usb-kbd, usb-mouse, usb-tablet, usb-storage, usb-hub, usb-serial, usb-audio...
	Serial string // the serial property (usb-storage, usb-kbd...), if any
	// Port on the root hub ("1"…"8" are USB 2, "9"…"16" USB 3) or behind a
	// usb-hub ("1.2"); empty: the first free one.
	Port  string
	Props map[string]string // more device properties (e.g. drive= for usb-storage)
}

// Plug hot-plugs d (QMP device_add). It returns when QEMU has added it;
// the kernel inside sees it a moment later (wait for it with udevadm or
// /sys inside).
func (h *Host) Plug(ctx context.Context, d EmulatedDevice) error {
	if d.ID == "" || d.Driver == "" {
		return fmt.Errorf("test host: plug %+v: want an ID and a driver", d)
	}
	args := map[string]any{"driver": d.Driver, "id": d.ID, "bus": "xhci.0"}
	if d.Port != "" {
		args["port"] = d.Port
	}
	if d.Serial != "" {
		args["serial"] = d.Serial
	}
	for k, v := range d.Props {
		args[k] = v
	}
	if _, err := h.qmp.call(ctx, "device_add", args); err != nil {
		return fmt.Errorf("test host: plug %s (%s): %w", d.ID, d.Driver, err)
	}
	return nil
}

// Unplug removes the device id (QMP device_del) and waits for QEMU's
// DEVICE_DELETED for it.
func (h *Host) Unplug(ctx context.Context, id string) error {
	ev, cancel := h.qmp.subscribe()
	defer cancel()
	if _, err := h.qmp.call(ctx, "device_del", map[string]any{"id": id}); err != nil {
		return fmt.Errorf("test host: unplug %s: %w", id, err)
	}
	for {
		select {
		case m := <-ev:
			if m.Event != "DEVICE_DELETED" {
				continue
			}
			var d struct {
				Device string `json:"device"`
			}
			if json.Unmarshal(m.Data, &d) == nil && d.Device == id {
				return nil
			}
		case <-ctx.Done():
			return fmt.Errorf("test host: unplug %s: no DEVICE_DELETED: %w", id, ctx.Err())
		case <-time.After(30 * time.Second):
			return fmt.Errorf("test host: unplug %s: no DEVICE_DELETED within 30s", id)
		}
	}
}

// HMP runs a human monitor command on the test host's QEMU (e.g. "info usb").
func (h *Host) HMP(ctx context.Context, line string) (string, error) {
	r, err := h.QMP(ctx, "human-monitor-command", map[string]any{"command-line": line})
	if err != nil {
		return "", err
	}
	var s string
	if err := json.Unmarshal(r, &s); err != nil {
		return "", fmt.Errorf("test host: hmp %q: %w", line, err)
	}
	return s, nil
}
