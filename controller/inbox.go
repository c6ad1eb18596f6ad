package controller

import (
	"reflect"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/usbctl/usbctl/reconcile"
)

// inbox is where events arrive, from any goroutine: handlers write what
// they saw under its lock and kick the loop, which takes it at the start
// of a sync. Nothing here decides anything.
type inbox struct {
	mu sync.Mutex
	in inputs
}

// inputs is what the inbox holds.
type inputs struct {
	// devices is the device cache, keyed by devpath (or bus:dev when the
	// source gives no devpath). Device events update it directly: they
	// carry the whole device, so re-reading udev would add nothing.
	devices map[string]reconcile.Device
	// unplanned holds the devices removed since the last plan, by cache
	// key, with the key they had; held holds those of them that came back
	// with the same number before a plan saw them go. A remove and an add
	// of the same device that both arrive while the loop is busy leave
	// the cache as it was, and the plan saw nothing to do: the guest kept
	// a hostdev of the device that went (issue 13 item 7's replug, lost
	// when the two events fell in one sync). A held device joins the
	// cache after the plan that sees it gone.
	unplanned     map[string]reconcile.DeviceKey
	held          map[string]reconcile.Device
	listing       bool            // a device re-list is under way
	replay        []deviceEvent   // events seen while listing
	relistDevices bool            // re-enumerate udev at the next sync
	relistDomains bool            // re-list every domain at the next sync
	staleDomains  map[string]bool // domains to re-read at the next sync
	// deviceDomains are domains a device was added to or removed from
	// (libvirt's device events): their failures that a change of devices
	// may cure (a freed USB port) are tried again at once.
	deviceDomains map[string]bool
	// changedKeys are devices that came or went: clear their permanent
	// failures. A set, so a storm of events on the same devices costs
	// memory by device, not by event.
	changedKeys map[reconcile.DeviceKey]struct{}
	clearAll    bool // clear every permanent failure (reload, reconnect)
	connected   bool
	hvErr       string
}

type deviceEvent struct {
	add bool
	dev reconcile.Device
}

func newInbox() *inbox {
	return &inbox{in: inputs{
		devices:       map[string]reconcile.Device{},
		unplanned:     map[string]reconcile.DeviceKey{},
		held:          map[string]reconcile.Device{},
		changedKeys:   map[reconcile.DeviceKey]struct{}{},
		staleDomains:  map[string]bool{},
		deviceDomains: map[string]bool{},
		relistDevices: true,
		relistDomains: true,
	}}
}

func (b *inbox) update(f func(in *inputs)) {
	b.mu.Lock()
	f(&b.in)
	b.mu.Unlock()
}

func devCacheKey(d reconcile.Device) string {
	if d.DevPath != "" {
		return d.DevPath
	}
	return d.Key().String()
}

func (in *inputs) applyDevice(ev deviceEvent) {
	k := devCacheKey(ev.dev)
	if in.listing {
		in.replay = append(in.replay, ev)
	}
	if old, ok := in.devices[k]; ok && ev.add && sameDevice(old, ev.dev) {
		// udev says "bind" or "change" after "add" for the same device,
		// often while the attach the add started is running: an event
		// that shows the device as the cache has it is no change, and
		// must not end a failure that waits for one (it made
		// e2e/kernel's TestSpeedMismatch try a refused attach twice).
		return
	}
	if ev.add {
		// A devpath that comes back with a new device number is a new
		// device: its old key goes with the old entry.
		if old, ok := in.devices[k]; ok && old.Key() != ev.dev.Key() {
			in.changedKeys[old.Key()] = struct{}{}
		}
		if key, ok := in.unplanned[k]; ok && key == ev.dev.Key() {
			in.held[k] = ev.dev
		} else {
			in.devices[k] = ev.dev
		}
	} else {
		if old, ok := in.devices[k]; ok {
			in.changedKeys[old.Key()] = struct{}{}
			in.unplanned[k] = old.Key()
		} else if _, ok := in.held[k]; !ok {
			// Gone before any listing or event showed it: the
			// event's own numbers are all there is.
			in.unplanned[k] = ev.dev.Key()
		}
		delete(in.devices, k)
		delete(in.held, k)
	}
	in.changedKeys[ev.dev.Key()] = struct{}{}
}

// sameDevice reports whether a and b show the device alike in every field,
// those added later too. (A nil and an empty slice differ: at worst that
// is a change that was none, as before.)
func sameDevice(a, b reconcile.Device) bool { return reflect.DeepEqual(a, b) }

// news is what a sync takes from the inbox: what to re-read, and which
// permanent failures may try again.
type news struct {
	relistDevices, relistDomains bool
	stale                        map[string]bool
	deviceDomains                map[string]bool
	changed                      []reconcile.DeviceKey
	clearAll                     bool
}

// take empties the inbox of news. A device re-list it asks for starts
// now: device events until listed() are replayed over the listing.
func (b *inbox) take() news {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := news{relistDevices: b.in.relistDevices, relistDomains: b.in.relistDomains, stale: b.in.staleDomains, deviceDomains: b.in.deviceDomains, clearAll: b.in.clearAll}
	b.in.staleDomains = map[string]bool{}
	b.in.deviceDomains = map[string]bool{}
	b.in.relistDomains = false
	if n.relistDevices {
		b.in.relistDevices = false
		b.in.listing = true
		b.in.replay = nil
	}
	n.changed = make([]reconcile.DeviceKey, 0, len(b.in.changedKeys))
	for k := range b.in.changedKeys {
		n.changed = append(n.changed, k)
	}
	clear(b.in.changedKeys)
	b.in.clearAll = false
	return n
}

// listed ends a device re-list: the enumeration replaces the cache, and
// the events that raced with it, being newer, are applied over it. A
// failed enumeration is asked for again at the next sync.
func (b *inbox) listed(devs []reconcile.Device, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.in.listing = false
	if err != nil {
		b.in.relistDevices = true
	} else {
		fresh := make(map[string]reconcile.Device, len(devs))
		for _, d := range devs {
			fresh[devCacheKey(d)] = d
		}
		replay := b.in.replay
		// The listing may show a device whose removal no plan has seen
		// yet, back with the same number: it is held like its add.
		for k, key := range b.in.unplanned {
			if d, ok := fresh[k]; ok && d.Key() == key {
				if _, ok := b.in.held[k]; !ok {
					b.in.held[k] = d
				}
				delete(fresh, k)
			}
		}
		b.in.devices = fresh
		for _, ev := range replay {
			b.in.applyDevice(ev)
		}
	}
	b.in.replay = nil
}

// devices returns the device cache, sorted by key, for a plan: the
// removals in it are planned from now on, and the devices held back
// until a plan saw them go join the cache. It reports whether any did;
// the loop must then plan again.
func (b *inbox) devices() (devs []reconcile.Device, released bool) {
	b.mu.Lock()
	devs = make([]reconcile.Device, 0, len(b.in.devices))
	for _, d := range b.in.devices {
		devs = append(devs, d)
	}
	for k, d := range b.in.held {
		b.in.devices[k] = d
	}
	released = len(b.in.held) > 0
	clear(b.in.held)
	clear(b.in.unplanned)
	b.mu.Unlock()
	sort.Slice(devs, func(i, j int) bool { return devs[i].Key().Less(devs[j].Key()) })
	return devs, released
}

func (b *inbox) hypervisor() (connected bool, lastErr string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.in.connected, b.in.hvErr
}

// Kick asks for a sync soon. It never blocks: if a sync is already asked
// for, this one merges into it, so a burst of events costs one sync.
func (c *Controller) Kick() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

func (c *Controller) update(f func(in *inputs)) {
	c.inbox.update(f)
	c.Kick()
}

// DeviceAdded records a device plugged in (udev "add").
func (c *Controller) DeviceAdded(d reconcile.Device) {
	c.update(func(in *inputs) { in.applyDevice(deviceEvent{add: true, dev: d}) })
}

// DeviceRemoved records a device unplugged (udev "remove"). d needs only
// DevPath and bus/dev: a removed device has no sysfs left to read.
func (c *Controller) DeviceRemoved(d reconcile.Device) {
	c.update(func(in *inputs) { in.applyDevice(deviceEvent{add: false, dev: d}) })
}

// DevicesLost says device events may have been lost (the udev monitor was
// re-created): re-enumerate at the next sync.
func (c *Controller) DevicesLost() {
	c.update(func(in *inputs) { in.relistDevices = true })
}

// DomainChanged marks one domain for re-reading (lifecycle, device added or
// removed, removal failed). Its permanent failures get another chance.
func (c *Controller) DomainChanged(name string) {
	c.update(func(in *inputs) { in.staleDomains[name] = true })
}

// DomainDevicesChanged marks one domain for re-reading because a device
// was added to it or removed from it (libvirt's device-added and
// device-removed events): besides what DomainChanged does, its failures
// that such a change may cure, a full USB controller, are tried again at
// once instead of when their backoff runs out.
func (c *Controller) DomainDevicesChanged(name string) {
	c.update(func(in *inputs) {
		in.staleDomains[name] = true
		in.deviceDomains[name] = true
	})
}

// HypervisorConnected says libvirt is (re)connected: every domain is
// re-listed, because anything may have happened while we were away.
func (c *Controller) HypervisorConnected() {
	c.update(func(in *inputs) {
		in.connected = true
		in.hvErr = ""
		in.relistDomains = true
		in.clearAll = true
	})
}

// HypervisorDisconnected records that the libvirt connection is down.
func (c *Controller) HypervisorDisconnected(err error) {
	c.update(func(in *inputs) {
		in.connected = false
		if err != nil {
			in.hvErr = err.Error()
		}
	})
}

// configSlot holds the rules a reload set until a sync takes them, and the
// status of the config in force; written by SetRules and RejectConfig from
// the reload path, read by the loop and PlanNow.
type configSlot struct {
	mu      sync.Mutex
	pending *reconcile.Rules
	status  ConfigStatus
}

// take returns the rules set since the last take (nil for none) and the
// config status.
func (s *configSlot) take() (*reconcile.Rules, ConfigStatus) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.pending
	s.pending = nil
	return r, s.status
}

// peek returns the rules set and not yet taken, nil for none.
func (s *configSlot) peek() *reconcile.Rules {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pending
}

// SetRules replaces the rules in force (a valid config was loaded). The
// next sync plans with them.
func (c *Controller) SetRules(rules reconcile.Rules, cs ConfigStatus) {
	c.config.mu.Lock()
	c.config.pending = &rules
	cs.Rejected = nil
	c.config.status = cs
	c.config.mu.Unlock()
	c.update(func(in *inputs) { in.clearAll = true })
}

// RejectConfig records a reload that failed validation; the rules in force
// stay, and status shows the diagnostics until a valid config is loaded.
func (c *Controller) RejectConfig(at time.Time, diagnostics []string) {
	c.config.mu.Lock()
	c.config.status.Rejected = &RejectedConfig{At: at, Diagnostics: slices.Clone(diagnostics)}
	c.config.mu.Unlock()
	c.Kick() // refresh status
}
