// Package virt is usbctl's libvirt adapter: it lists domains with their USB
// hostdevs, attaches and detaches devices live, turns libvirt events into
// notifications, and keeps its connection alive, reconnecting by itself
// when libvirtd restarts.
package virt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"libvirt.org/go/libvirt"

	"github.com/usbctl/usbctl/internal/backoff"
	"github.com/usbctl/usbctl/reconcile"
)

// EventKind says what happened.
type EventKind string

const (
	EventLifecycle           EventKind = "lifecycle"
	EventDeviceAdded         EventKind = "device-added"
	EventDeviceRemoved       EventKind = "device-removed"
	EventDeviceRemovalFailed EventKind = "device-removal-failed"
	// EventConnected follows every (re)connect: anything may have changed
	// while disconnected, so the consumer must re-list everything.
	EventConnected    EventKind = "connected"
	EventDisconnected EventKind = "disconnected"
)

// Event is a libvirt event, reduced to what usbctl needs: which domain to
// look at again.
type Event struct {
	Kind   EventKind
	Domain string
	Alias  string
	Detail string
}

// Options configure a connection.
type Options struct {
	URI string
	Log *slog.Logger
	// Keepalive: a ping every KeepaliveInterval; the connection is dead
	// after KeepaliveCount unanswered pings. Defaults 5 s and 3.
	KeepaliveInterval time.Duration
	KeepaliveCount    uint
	// ReconnectMin and ReconnectMax bound the reconnect backoff (defaults
	// 200 ms and 10 s).
	ReconnectMin, ReconnectMax time.Duration
}

// eventLoop registers libvirt's default event loop once per process and
// runs it. libvirt's event loop is process-global state in C, so this Once
// mirrors it; it is the one piece of package state here. The loop runs for
// the life of the process: libvirt offers no way to stop it.
var eventLoop struct {
	once sync.Once
	err  error
}

func startEventLoop(log *slog.Logger) error {
	eventLoop.once.Do(func() {
		if err := libvirt.EventRegisterDefaultImpl(); err != nil {
			eventLoop.err = fmt.Errorf("register libvirt event loop: %w", err)
			return
		}
		go func() {
			for {
				if err := libvirt.EventRunDefaultImpl(); err != nil {
					log.Error("libvirt event loop", "err", err)
					time.Sleep(100 * time.Millisecond)
				}
			}
		}()
	})
	return eventLoop.err
}

// Conn is a self-healing libvirt connection.
type Conn struct {
	opt Options
	log *slog.Logger
	// Set once by Start, read by Close and the connection goroutine.
	onEvent func(Event)
	cancel  context.CancelFunc
	done    chan struct{}
	lost    chan struct{} // the close callback fired

	mu   sync.Mutex
	conn *libvirt.Connect
	ids  []int // event callback ids
	// doms caches domain handles of conn by name (withDomain).
	doms map[string]*libvirt.Domain
}

// New returns a connection that is not started: nothing connects and no
// event is delivered until Start. Build whatever consumes the events first,
// then Start (the order of sample-controller's main: informers start after
// the controller they feed exists). Until Start, every call fails with
// ErrConnection.
func New(opt Options) (*Conn, error) {
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	if opt.KeepaliveInterval <= 0 {
		opt.KeepaliveInterval = 5 * time.Second
	}
	if opt.KeepaliveCount == 0 {
		opt.KeepaliveCount = 3
	}
	if opt.ReconnectMin <= 0 {
		opt.ReconnectMin = 200 * time.Millisecond
	}
	if opt.ReconnectMax < opt.ReconnectMin {
		opt.ReconnectMax = max(10*time.Second, opt.ReconnectMin)
	}
	if err := startEventLoop(opt.Log); err != nil {
		return nil, err
	}
	return &Conn{opt: opt, log: opt.Log, done: make(chan struct{}), lost: make(chan struct{}, 1), doms: map[string]*libvirt.Domain{}}, nil
}

// Start connects in the background and returns at once: a daemon must come
// up even when libvirtd is down, and connect when it appears. Events go to
// onEvent (nil for none), called from libvirt's event loop goroutine or the
// connection goroutine; it must not block. EventConnected follows each
// connect. Call Start once; Close ends what it started.
func (c *Conn) Start(ctx context.Context, onEvent func(Event)) {
	if onEvent == nil {
		onEvent = func(Event) {}
	}
	ctx, cancel := context.WithCancel(ctx)
	c.mu.Lock()
	if c.cancel != nil {
		c.mu.Unlock()
		cancel()
		panic("virt: Conn.Start called twice")
	}
	c.onEvent, c.cancel = onEvent, cancel
	c.mu.Unlock()
	go c.run(ctx)
}

// Connected reports whether the connection is up now.
func (c *Conn) Connected() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.conn != nil
}

// Close disconnects and stops reconnecting. A Conn never started has
// nothing to close.
func (c *Conn) Close() error {
	c.mu.Lock()
	cancel := c.cancel
	c.mu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	<-c.done
	return nil
}

func (c *Conn) run(ctx context.Context) {
	defer close(c.done)
	retry := backoff.Policy{Min: c.opt.ReconnectMin, Max: c.opt.ReconnectMax}
	failures := 0
	for {
		err := c.connect()
		if err == nil {
			failures = 0
			c.log.Info("connected to libvirt", "uri", c.opt.URI)
			c.onEvent(Event{Kind: EventConnected})
			select {
			case <-ctx.Done():
				c.teardown()
				return
			case <-c.lost:
			}
			c.teardown()
			c.log.Warn("libvirt connection lost; reconnecting", "uri", c.opt.URI)
			c.onEvent(Event{Kind: EventDisconnected, Detail: "connection closed"})
		}
		failures++
		wait := retry.Delay(failures)
		if err != nil {
			c.log.Warn("connect to libvirt", "uri", c.opt.URI, "err", err, "retry_in", wait)
			c.onEvent(Event{Kind: EventDisconnected, Detail: err.Error()})
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// connect opens the connection and registers every callback on it.
func (c *Conn) connect() error {
	conn, err := libvirt.NewConnect(c.opt.URI)
	if err != nil {
		return fmt.Errorf("connect %s: %w", c.opt.URI, err)
	}
	fail := func(what string, err error) error {
		c.deregister(conn, c.ids)
		c.ids = nil
		conn.Close()
		return fmt.Errorf("%s on %s: %w", what, c.opt.URI, err)
	}
	if err := conn.SetKeepAlive(int(c.opt.KeepaliveInterval/time.Second), c.opt.KeepaliveCount); err != nil {
		// Keepalive finds a dead libvirtd at the other end of a socket.
		// A driver that runs in this process (test:///) has no other
		// end and no keepalive.
		var le libvirt.Error
		if !errors.As(err, &le) || le.Code != libvirt.ERR_NO_SUPPORT {
			return fail("keepalive", err)
		}
		c.log.Debug("no keepalive on this connection: the driver runs in this process", "uri", c.opt.URI)
	}
	// Drain a stale signal from an earlier connection.
	select {
	case <-c.lost:
	default:
	}
	if err := conn.RegisterCloseCallback(func(_ *libvirt.Connect, reason libvirt.ConnectCloseReason) {
		select {
		case c.lost <- struct{}{}:
		default:
		}
	}); err != nil {
		return fail("close callback", err)
	}
	var ids []int
	reg := func(id int, err error) error {
		if err == nil {
			ids = append(ids, id)
		}
		return err
	}
	emit := func(kind EventKind, d *libvirt.Domain, alias, detail string) {
		name, _ := d.GetName()
		c.onEvent(Event{Kind: kind, Domain: name, Alias: alias, Detail: detail})
	}
	if err := reg(conn.DomainEventLifecycleRegister(nil, func(_ *libvirt.Connect, d *libvirt.Domain, ev *libvirt.DomainEventLifecycle) {
		emit(EventLifecycle, d, "", ev.String())
	})); err != nil {
		c.ids = ids
		return fail("lifecycle events", err)
	}
	if err := reg(conn.DomainEventDeviceAddedRegister(nil, func(_ *libvirt.Connect, d *libvirt.Domain, ev *libvirt.DomainEventDeviceAdded) {
		emit(EventDeviceAdded, d, ev.DevAlias, "")
	})); err != nil {
		c.ids = ids
		return fail("device-added events", err)
	}
	if err := reg(conn.DomainEventDeviceRemovedRegister(nil, func(_ *libvirt.Connect, d *libvirt.Domain, ev *libvirt.DomainEventDeviceRemoved) {
		emit(EventDeviceRemoved, d, ev.DevAlias, "")
	})); err != nil {
		c.ids = ids
		return fail("device-removed events", err)
	}
	if err := reg(conn.DomainEventDeviceRemovalFailedRegister(nil, func(_ *libvirt.Connect, d *libvirt.Domain, ev *libvirt.DomainEventDeviceRemovalFailed) {
		emit(EventDeviceRemovalFailed, d, ev.DevAlias, "")
	})); err != nil {
		c.ids = ids
		return fail("device-removal-failed events", err)
	}
	c.mu.Lock()
	c.conn, c.ids = conn, ids
	c.mu.Unlock()
	return nil
}

func (c *Conn) deregister(conn *libvirt.Connect, ids []int) {
	for _, id := range ids {
		_ = conn.DomainEventDeregister(id)
	}
	_ = conn.UnregisterCloseCallback()
}

func (c *Conn) teardown() {
	c.mu.Lock()
	conn, ids, doms := c.conn, c.ids, c.doms
	c.conn, c.ids, c.doms = nil, nil, map[string]*libvirt.Domain{}
	c.mu.Unlock()
	for _, d := range doms {
		d.Free()
	}
	if conn == nil {
		return
	}
	c.deregister(conn, ids)
	_, _ = conn.Close()
}

// current returns the live connection, with a reference of its own so a
// reconnect cannot close it under the caller. A done ctx fails it before
// any call to libvirt.
func (c *Conn) current(ctx context.Context) (*libvirt.Connect, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("libvirt %s: %w", c.opt.URI, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil {
		return nil, fmt.Errorf("libvirt %s: not connected: %w", c.opt.URI, ErrConnection)
	}
	if err := c.conn.Ref(); err != nil {
		return nil, fmt.Errorf("libvirt %s: %w", c.opt.URI, ErrConnection)
	}
	return c.conn, nil
}

// ListDomains returns every defined domain with its state and, for active
// ones, the USB hostdevs of its live XML. ctx is checked before each
// domain is read: a call already in libvirt runs to its end.
func (c *Conn) ListDomains(ctx context.Context) ([]reconcile.Domain, error) {
	conn, err := c.current(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return listDomains(ctx, conn)
}

// ListDomainsAt lists domains over a short-lived read-only connection to
// uri: for one-shot readers such as usbctl snapshot, which need no events
// and no write access. ctx is honoured as by ListDomains.
func ListDomainsAt(ctx context.Context, uri string) ([]reconcile.Domain, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("connect to %s: %w", uri, err)
	}
	conn, err := libvirt.NewConnectReadOnly(uri)
	if err != nil {
		return nil, classify(err, "connect to "+uri)
	}
	defer conn.Close()
	return listDomains(ctx, conn)
}

func listDomains(ctx context.Context, conn *libvirt.Connect) ([]reconcile.Domain, error) {
	doms, err := conn.ListAllDomains(0)
	if err != nil {
		return nil, classify(err, "list domains")
	}
	out := make([]reconcile.Domain, 0, len(doms))
	var firstErr error
	for i := range doms {
		if err := ctx.Err(); err != nil {
			for j := i; j < len(doms); j++ {
				doms[j].Free()
			}
			return nil, fmt.Errorf("list domains: %w", err)
		}
		d, err := readDomain(&doms[i])
		doms[i].Free()
		if err != nil {
			// A domain undefined while we list it is not an error.
			if errors.Is(err, ErrDomainNotFound) {
				continue
			}
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		out = append(out, d)
	}
	if firstErr != nil && errors.Is(firstErr, ErrConnection) {
		return nil, firstErr
	}
	return out, nil
}

// Domain reads one domain.
func (c *Conn) Domain(ctx context.Context, name string) (reconcile.Domain, error) {
	conn, err := c.current(ctx)
	if err != nil {
		return reconcile.Domain{}, err
	}
	defer conn.Close()
	d, err := conn.LookupDomainByName(name)
	if err != nil {
		return reconcile.Domain{}, classify(err, "domain "+name)
	}
	defer d.Free()
	return readDomain(d)
}

func readDomain(d *libvirt.Domain) (reconcile.Domain, error) {
	name, err := d.GetName()
	if err != nil {
		return reconcile.Domain{}, classify(err, "domain name")
	}
	st, _, err := d.GetState()
	if err != nil {
		return reconcile.Domain{}, classify(err, "state of domain "+name)
	}
	out := reconcile.Domain{Name: name, State: stateName(st)}
	if !out.State.Active() {
		// Only live hostdevs matter; an inactive domain's XML is its
		// persistent config.
		return out, nil
	}
	doc, err := d.GetXMLDesc(0)
	if err != nil {
		return reconcile.Domain{}, classify(err, "xml of domain "+name)
	}
	_, uuid, hs, usb, err := parseDomainXML(doc)
	if err != nil {
		return reconcile.Domain{}, fmt.Errorf("domain %s: %w", name, err)
	}
	out.UUID, out.Hostdevs, out.USBControllers = uuid, hs, usb
	return out, nil
}

func stateName(s libvirt.DomainState) reconcile.DomainState {
	switch s {
	case libvirt.DOMAIN_RUNNING:
		return reconcile.StateRunning
	case libvirt.DOMAIN_BLOCKED:
		return reconcile.StateBlocked
	case libvirt.DOMAIN_PAUSED:
		return reconcile.StatePaused
	case libvirt.DOMAIN_SHUTDOWN:
		return reconcile.StateShutdown
	case libvirt.DOMAIN_SHUTOFF:
		return reconcile.StateShutoff
	case libvirt.DOMAIN_CRASHED:
		return reconcile.StateCrashed
	case libvirt.DOMAIN_PMSUSPENDED:
		return reconcile.StatePMSuspended
	}
	return reconcile.StateUnknown
}

// Attach hotplugs the device at key into the running domain, live only:
// nothing is written to the persistent XML, so nothing stale is left when
// the domain stops. ctx is checked before each call to libvirt and ends the
// wait between the retries below; it cannot cut short a call in libvirt.
func (c *Conn) Attach(ctx context.Context, domain string, key reconcile.DeviceKey) error {
	doc, err := HostdevXML(key)
	if err != nil {
		return err
	}
	alias := key.Alias()
	return c.withDomain(ctx, domain, "attach "+alias+" to "+domain, func(conn *libvirt.Connect, d *libvirt.Domain) error {
		err := d.AttachDeviceFlags(doc, libvirt.DOMAIN_DEVICE_MODIFY_LIVE)
		if err == nil || !isOrphan(err, alias) {
			return err
		}
		// libvirtd died after QEMU's device_add and before it recorded
		// the hostdev: QEMU has our device, libvirt's XML does not, and
		// every attach fails as a duplicate until QEMU lets go of it.
		// Only the monitor can reach it.
		c.log.Warn("QEMU holds a usbctl device that libvirt lost track of (libvirtd restarted during an attach?); removing it through the QEMU monitor",
			"domain", domain, "alias", alias)
		if rerr := c.removeOrphan(ctx, conn, d, alias); rerr != nil {
			return fmt.Errorf("%w; removing the orphan through the monitor failed: %w", classify(err, "device_add"), rerr)
		}
		// Not attached yet, on purpose: the caller's backoff retries.
		// Attaching again under the same id at once is what looped:
		// QEMU frees the id on device_del but sends DEVICE_DELETED only
		// when the device is gone (~60-90 ms later on the sandbox), and
		// libvirt, handling that event, removes whatever hostdev has the
		// alias by then, which was the new one; QEMU kept the new device,
		// the next attach found a duplicate again, and so on, ~7 times a
		// second. The event is in; libvirt handles it in a worker before
		// any retry comes, and a repeat goes through the backoff like
		// any other failure.
		return ErrOrphanRemoved
	})
}

// orphanWait bounds the wait for QEMU to finish deleting an orphan.
const orphanWait = 10 * time.Second

// removeOrphan deletes the QEMU device alias (which libvirt does not know)
// through the monitor, and returns once QEMU says it is gone: its
// DEVICE_DELETED event, which libvirt passes on to monitor-event listeners
// when it queues its own handling of it. The alias is built from numbers
// (bus/device), so the command cannot carry anything else.
func (c *Conn) removeOrphan(ctx context.Context, conn *libvirt.Connect, d *libvirt.Domain, alias string) error {
	deleted := make(chan struct{}, 1)
	id, err := conn.DomainQemuMonitorEventRegister(d, "DEVICE_DELETED", func(_ *libvirt.Connect, _ *libvirt.Domain, ev *libvirt.DomainQemuMonitorEvent) {
		var data struct {
			Device string `json:"device"`
		}
		if json.Unmarshal([]byte(ev.Details), &data) == nil && data.Device == alias {
			select {
			case deleted <- struct{}{}:
			default:
			}
		}
	}, 0)
	if err != nil {
		return classify(err, "watch QEMU's DEVICE_DELETED")
	}
	defer func() { _ = conn.DomainQemuEventDeregister(id) }()
	cmd := fmt.Sprintf(`{"execute":"device_del","arguments":{"id":%q}}`, alias)
	if _, err := d.QemuMonitorCommand(cmd, libvirt.DOMAIN_QEMU_MONITOR_COMMAND_DEFAULT); err != nil {
		return classify(err, "device_del "+alias)
	}
	t := time.NewTimer(orphanWait)
	defer t.Stop()
	select {
	case <-deleted:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wait for QEMU to delete %s: %w", alias, ctx.Err())
	case <-t.C:
		return fmt.Errorf("QEMU did not finish deleting %s within %v", alias, orphanWait)
	}
}

// isOrphan reports whether an attach failed because QEMU already has a
// device with our alias as its id.
func isOrphan(err error, alias string) bool {
	var le libvirt.Error
	return errors.As(err, &le) && kindOf(le) == errQEMUHasID && strings.Contains(le.Message, "'"+alias+"'")
}

// Detach unplugs the hostdev with alias from the running domain. A hostdev
// that is already gone counts as detached. libvirt returns once QEMU was
// asked; the device-removed event says when it is done. ctx is checked
// before the call.
func (c *Conn) Detach(ctx context.Context, domain, alias string) error {
	err := c.withDomain(ctx, domain, "detach "+alias+" from "+domain, func(_ *libvirt.Connect, d *libvirt.Domain) error {
		return d.DetachDeviceAlias(alias, libvirt.DOMAIN_DEVICE_MODIFY_LIVE)
	})
	if errors.Is(err, ErrDeviceMissing) {
		return nil
	}
	return err
}

func (c *Conn) withDomain(ctx context.Context, name, what string, f func(*libvirt.Connect, *libvirt.Domain) error) error {
	conn, err := c.current(ctx)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	defer conn.Close()
	for try := 0; ; try++ {
		d, cached, err := c.domainHandle(conn, name)
		if err != nil {
			return classify(err, what)
		}
		err = f(conn, d)
		d.Free()
		if err == nil {
			return nil
		}
		err = classify(err, what)
		// A cached handle of a domain undefined and defined again under
		// the same name names the old one: look it up afresh, once.
		if cached && try == 0 && errors.Is(err, ErrDomainNotFound) && ctx.Err() == nil {
			c.forgetDomain(name)
			continue
		}
		return err
	}
}

// domainHandle returns a handle of domain name with a reference of its own
// (the caller frees it), from the cache of the current connection when it
// can: a lookup is a round trip to libvirtd on the path of every attach,
// about half a millisecond of the daemon's share of a plug.
func (c *Conn) domainHandle(conn *libvirt.Connect, name string) (*libvirt.Domain, bool, error) {
	c.mu.Lock()
	if h, ok := c.doms[name]; ok && c.conn == conn {
		d := *h
		err := d.Ref()
		c.mu.Unlock()
		if err == nil {
			return &d, true, nil
		}
		c.forgetDomain(name)
	} else {
		c.mu.Unlock()
	}
	d, err := conn.LookupDomainByName(name)
	if err != nil {
		return nil, false, err
	}
	keep := *d
	if keep.Ref() == nil {
		c.mu.Lock()
		if c.conn == conn && c.doms[name] == nil {
			c.doms[name] = &keep
		} else {
			keep.Free()
		}
		c.mu.Unlock()
	}
	return d, false, nil
}

func (c *Conn) forgetDomain(name string) {
	c.mu.Lock()
	h := c.doms[name]
	delete(c.doms, name)
	c.mu.Unlock()
	if h != nil {
		h.Free()
	}
}
