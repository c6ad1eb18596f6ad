// Package controller keeps libvirt guests in sync with host USB devices. One
// goroutine (Run) owns all decisions: udev events, libvirt events, reconnects,
// config reloads and a slow periodic resync only update a cache and kick it.
// Each sync observes (re-reading only what events marked stale), asks
// reconcile.Plan what to do, and applies the actions with per-action backoff.
// A lost event is repaired by the next sync: nothing here depends on seeing
// every event, only on seeing the current state.
package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/usbctl/usbctl/failure"
	"github.com/usbctl/usbctl/internal/backoff"
	"github.com/usbctl/usbctl/reconcile"
)

// Hypervisor is what the controller needs from libvirt. virt implements it;
// tests use an in-memory fake. Errors carry their failure.Class (the
// adapter classifies them where they arise); the controller reads only that.
//
// ctx: the controller bounds each call with CallTimeout, and virt checks ctx
// before every call it makes to libvirt and while it waits between retries.
// It cannot stop a call already in libvirt, whose C API has no way to cancel
// one: such a call returns when libvirtd answers, or fails by itself (a
// domain busy with another job after libvirt's own 30 s wait, a dead
// connection after the keepalive gives up), whatever ctx says.
type Hypervisor interface {
	ListDomains(ctx context.Context) ([]reconcile.Domain, error)
	Domain(ctx context.Context, name string) (reconcile.Domain, error)
	Attach(ctx context.Context, domain string, key reconcile.DeviceKey) error
	Detach(ctx context.Context, domain, alias string) error
}

// DeviceLister enumerates the USB devices present on the host (udevsrc).
type DeviceLister interface {
	List(ctx context.Context) ([]reconcile.Device, error)
}

// Options configure a Controller.
type Options struct {
	Log        *slog.Logger
	Hypervisor Hypervisor
	Devices    DeviceLister
	// URI is shown in status.
	URI string
	// Resync is the period of the full re-list of devices and domains
	// that repairs anything events missed. Default 5 minutes.
	Resync time.Duration
	// BackoffMin and BackoffMax bound the retry delay of a failing action
	// (defaults 1 s and 2 min); it doubles per attempt with ±10 % jitter.
	BackoffMin, BackoffMax time.Duration
	// CallTimeout bounds each hypervisor call (default 30 s).
	CallTimeout time.Duration
	// Now is the clock; nil means time.Now. Tests set it.
	Now func() time.Time
	// Observer is told of every sync and action (metrics); nil for none.
	Observer Observer
}

// Observer is told what the loop does, as it does it. Calls come from the
// loop goroutine and must not block.
type Observer interface {
	SyncDone(d time.Duration)
	// ActionDone reports an attach or detach: err nil on success, else
	// the failure and its class.
	ActionDone(kind reconcile.ActionKind, err error, class failure.Class)
}

type noObserver struct{}

func (noObserver) SyncDone(time.Duration)                                {}
func (noObserver) ActionDone(reconcile.ActionKind, error, failure.Class) {}

// actionID names an action across syncs, for backoff bookkeeping.
type actionID struct {
	kind   reconcile.ActionKind
	domain string
	key    reconcile.DeviceKey
}

type failed struct {
	attempts int
	lastErr  string
	next     time.Time // zero for permanent
	class    failure.Class
}

// inputs is what event handlers write and the loop reads, under mu.
type inputs struct {
	// devices is the device cache, keyed by devpath (or bus:dev when the
	// source gives no devpath). Device events update it directly: they
	// carry the whole device, so re-reading udev would add nothing.
	devices       map[string]reconcile.Device
	listing       bool            // a device re-list is under way
	replay        []deviceEvent   // events seen while listing
	relistDevices bool            // re-enumerate udev at the next sync
	relistDomains bool            // re-list every domain at the next sync
	staleDomains  map[string]bool // domains to re-read at the next sync
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

// Controller is the reconcile loop. Create it with New, feed it events with
// its methods (safe from any goroutine, never blocking), and run it with Run.
type Controller struct {
	opt   Options
	log   *slog.Logger
	retry backoff.Policy // of failing actions
	kick  chan struct{}
	ready chan struct{}

	mu sync.Mutex
	in inputs

	// Owned by the Run goroutine.
	rules         reconcile.Rules
	domains       map[string]reconcile.Domain
	failures      map[actionID]*failed
	since         map[string]time.Time // "domain/alias" → first seen attached
	adopted       map[string]bool
	devicesListed bool
	domainsListed bool
	readyClosed   bool
	syncs         uint64
	started       time.Time

	// reread (owned by the Run goroutine too) holds domains whose last
	// read failed. They are read again at the next sync, but unlike
	// staleDomains they are not news: a failed read must not count as a
	// domain change, or every sync while libvirt is down (or a read keeps
	// failing) would forget every permanent and disconnected failure and
	// retry it at once, and the backoff would never grow past BackoffMin
	// (found by TestModel).
	reread map[string]bool
	// ownHostdevs marks domains whose cached Hostdevs slice this sync
	// already copied (recordDone).
	ownHostdevs map[string]bool

	// rulesMu guards pending rules and config status, written by
	// SetRules/RejectConfig from the reload path.
	rulesMu      sync.Mutex
	pendingRules *reconcile.Rules
	config       ConfigStatus

	statusMu     sync.RWMutex
	status       Status
	lastObserved reconcile.Observed
	lastRules    reconcile.Rules
}

// New returns a controller that starts with rules and config status cs.
func New(opt Options, rules reconcile.Rules, cs ConfigStatus) *Controller {
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	if opt.Resync <= 0 {
		opt.Resync = 5 * time.Minute
	}
	if opt.BackoffMin <= 0 {
		opt.BackoffMin = time.Second
	}
	if opt.BackoffMax < opt.BackoffMin {
		opt.BackoffMax = max(2*time.Minute, opt.BackoffMin)
	}
	if opt.CallTimeout <= 0 {
		opt.CallTimeout = 30 * time.Second
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.Observer == nil {
		opt.Observer = noObserver{}
	}
	c := &Controller{
		opt:         opt,
		log:         opt.Log,
		retry:       backoff.Policy{Min: opt.BackoffMin, Max: opt.BackoffMax, Jitter: 0.1},
		kick:        make(chan struct{}, 1),
		ready:       make(chan struct{}),
		rules:       rules,
		domains:     map[string]reconcile.Domain{},
		failures:    map[actionID]*failed{},
		since:       map[string]time.Time{},
		adopted:     map[string]bool{},
		reread:      map[string]bool{},
		ownHostdevs: map[string]bool{},
		config:      cs,
	}
	c.in.devices = map[string]reconcile.Device{}
	c.in.changedKeys = map[reconcile.DeviceKey]struct{}{}
	c.in.staleDomains = map[string]bool{}
	c.in.relistDevices = true
	c.in.relistDomains = true
	return c
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
	c.mu.Lock()
	f(&c.in)
	c.mu.Unlock()
	c.Kick()
}

func devCacheKey(d reconcile.Device) string {
	if d.DevPath != "" {
		return d.DevPath
	}
	return d.Key().String()
}

func (in *inputs) applyDevice(ev deviceEvent) {
	k := devCacheKey(ev.dev)
	if ev.add {
		// A devpath that comes back with a new device number is a new
		// device: its old key goes with the old entry.
		if old, ok := in.devices[k]; ok && old.Key() != ev.dev.Key() {
			in.changedKeys[old.Key()] = struct{}{}
		}
		in.devices[k] = ev.dev
	} else {
		if old, ok := in.devices[k]; ok {
			in.changedKeys[old.Key()] = struct{}{}
		}
		delete(in.devices, k)
	}
	in.changedKeys[ev.dev.Key()] = struct{}{}
	if in.listing {
		in.replay = append(in.replay, ev)
	}
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

// SetRules replaces the rules in force (a valid config was loaded). The
// next sync plans with them.
func (c *Controller) SetRules(rules reconcile.Rules, cs ConfigStatus) {
	c.rulesMu.Lock()
	c.pendingRules = &rules
	cs.Rejected = nil
	c.config = cs
	c.rulesMu.Unlock()
	c.update(func(in *inputs) { in.clearAll = true })
}

// RejectConfig records a reload that failed validation; the rules in force
// stay, and status shows the diagnostics until a valid config is loaded.
func (c *Controller) RejectConfig(at time.Time, diagnostics []string) {
	c.rulesMu.Lock()
	c.config.Rejected = &RejectedConfig{At: at, Diagnostics: slices.Clone(diagnostics)}
	c.rulesMu.Unlock()
	c.Kick() // refresh status
}

// Ready is closed after the first sync that observed both udev and libvirt
// (systemd readiness).
func (c *Controller) Ready() <-chan struct{} { return c.ready }

// Status returns the snapshot built by the last sync. It never waits for
// libvirt or udev.
func (c *Controller) Status() Status {
	c.statusMu.RLock()
	defer c.statusMu.RUnlock()
	return c.status
}

// PlanNow computes, without changing anything, the plan for the world as
// the last sync observed it and the rules now in force.
func (c *Controller) PlanNow() reconcile.Result {
	c.statusMu.RLock()
	obs, rules := c.lastObserved, c.lastRules
	c.statusMu.RUnlock()
	c.rulesMu.Lock()
	if c.pendingRules != nil {
		rules = *c.pendingRules
	}
	c.rulesMu.Unlock()
	return reconcile.Plan(rules, obs)
}

// Run is the loop. It returns when ctx is done.
func (c *Controller) Run(ctx context.Context) error {
	c.started = c.opt.Now()
	resync := time.NewTicker(c.opt.Resync)
	defer resync.Stop()
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	c.Kick()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-c.kick:
		case <-resync.C:
			c.mu.Lock()
			c.in.relistDevices, c.in.relistDomains = true, true
			// A permanent failure waits for an event (the holder's
			// device-removed, a lifecycle change). If that event was
			// lost, the re-list shows the change but nothing would
			// retry the action: "busy" stayed forever after, e.g., our
			// own detach from the domain a device moves away from,
			// whose device-removed event never came (found by
			// TestModel). Give them one more try per resync.
			c.in.clearAll = true
			c.mu.Unlock()
		case <-retry.C:
		}
		next := c.sync(ctx)
		retry.Stop()
		if !next.IsZero() {
			retry.Reset(max(next.Sub(c.opt.Now()), time.Millisecond))
		}
	}
}

// sync runs one observe → plan → apply round and returns when the earliest
// backoff expires (zero if nothing waits).
func (c *Controller) sync(ctx context.Context) time.Time {
	start := c.opt.Now()
	c.rulesMu.Lock()
	if c.pendingRules != nil {
		c.rules = *c.pendingRules
		c.pendingRules = nil
	}
	cfg := c.config
	c.rulesMu.Unlock()

	obs := c.observe(ctx)
	res := reconcile.Plan(c.rules, obs)
	c.apply(ctx, res)
	// Our own attaches and detaches changed the world we planned on:
	// status and PlanNow must show the world after them.
	obs.Domains = c.domainList()
	c.syncs++
	next := c.publish(start, obs, res, cfg)
	c.opt.Observer.SyncDone(c.opt.Now().Sub(start))
	return next
}

// observe brings the caches up to date, re-reading only what is stale.
func (c *Controller) observe(ctx context.Context) reconcile.Observed {
	c.mu.Lock()
	relistDev, relistDom := c.in.relistDevices, c.in.relistDomains
	stale := c.in.staleDomains
	c.in.staleDomains = map[string]bool{}
	c.in.relistDomains = false
	if relistDev {
		c.in.relistDevices = false
		c.in.listing = true
		c.in.replay = nil
	}
	changed := make([]reconcile.DeviceKey, 0, len(c.in.changedKeys))
	for k := range c.in.changedKeys {
		changed = append(changed, k)
	}
	clear(c.in.changedKeys)
	clearAll := c.in.clearAll
	c.in.clearAll = false
	c.mu.Unlock()

	c.forgetPermanent(clearAll, stale, changed)

	// Enumerating udev and listing libvirt domains wait on different
	// things: at start-up and on every resync, do both at once (the
	// first sync with 50 domains defined took the sum, ~25 + 18 ms).
	type listing struct {
		devs []reconcile.Device
		err  error
	}
	var listed chan listing
	if relistDev {
		listed = make(chan listing, 1)
		go func() {
			devs, err := c.listDevices(ctx)
			listed <- listing{devs, err}
		}()
	}
	c.observeDomains(ctx, relistDom, stale)

	if relistDev {
		l := <-listed
		devs, err := l.devs, l.err
		c.mu.Lock()
		c.in.listing = false
		if err != nil {
			c.log.Error("list usb devices", "err", err)
			c.in.relistDevices = true // try again next sync
		} else {
			fresh := make(map[string]reconcile.Device, len(devs))
			for _, d := range devs {
				fresh[devCacheKey(d)] = d
			}
			// Events that raced with the enumeration are newer than it.
			replay := c.in.replay
			c.in.devices = fresh
			for _, ev := range replay {
				c.in.applyDevice(ev)
			}
			c.devicesListed = true
		}
		c.in.replay = nil
		c.mu.Unlock()
	}

	c.mu.Lock()
	devs := make([]reconcile.Device, 0, len(c.in.devices))
	for _, d := range c.in.devices {
		devs = append(devs, d)
	}
	c.mu.Unlock()
	sort.Slice(devs, func(i, j int) bool { return devs[i].Key().Less(devs[j].Key()) })
	return reconcile.Observed{Devices: devs, Domains: c.domainList()}
}

// observeDomains re-lists every domain, or re-reads the stale ones.
func (c *Controller) observeDomains(ctx context.Context, relistDom bool, stale map[string]bool) {
	if relistDom {
		ds, err := c.callList(ctx)
		if err != nil {
			c.log.Warn("list libvirt domains", "err", err)
			c.mu.Lock()
			c.in.relistDomains = true
			c.mu.Unlock()
		} else {
			fresh := make(map[string]reconcile.Domain, len(ds))
			for _, d := range ds {
				fresh[d.Name] = d
			}
			c.noteAdoptions(fresh)
			c.domains = fresh
			c.domainsListed = true
			clear(c.reread)
		}
	} else {
		names := make([]string, 0, len(stale)+len(c.reread))
		for n := range stale {
			names = append(names, n)
		}
		for n := range c.reread {
			if !stale[n] {
				names = append(names, n)
			}
		}
		clear(c.reread)
		sort.Strings(names)
		for _, n := range names {
			c.refreshDomain(ctx, n)
		}
	}
}

func (c *Controller) listDevices(ctx context.Context) ([]reconcile.Device, error) {
	ctx, cancel := context.WithTimeout(ctx, c.opt.CallTimeout)
	defer cancel()
	return c.opt.Devices.List(ctx)
}

func (c *Controller) callList(ctx context.Context) ([]reconcile.Domain, error) {
	ctx, cancel := context.WithTimeout(ctx, c.opt.CallTimeout)
	defer cancel()
	return c.opt.Hypervisor.ListDomains(ctx)
}

func (c *Controller) refreshDomain(ctx context.Context, name string) {
	ctx, cancel := context.WithTimeout(ctx, c.opt.CallTimeout)
	defer cancel()
	d, err := c.opt.Hypervisor.Domain(ctx, name)
	if err != nil {
		switch failure.ClassOf(err) {
		case failure.DomainGone:
			delete(c.domains, name)
		default:
			// Keep the cached view and look again at the next sync.
			c.log.Warn("read libvirt domain", "domain", name, "err", err)
			c.reread[name] = true
		}
		return
	}
	c.noteAdoptions(map[string]reconcile.Domain{name: d})
	c.domains[name] = d
}

// noteAdoptions records when our hostdevs were first seen: hostdevs found
// on the first listing were attached by an earlier run, and are adopted.
func (c *Controller) noteAdoptions(ds map[string]reconcile.Domain) {
	now := c.opt.Now()
	for _, d := range ds {
		if !d.State.Active() {
			continue
		}
		for _, h := range d.Hostdevs {
			if !h.Owned() {
				continue
			}
			k := d.Name + "/" + h.Alias
			if _, ok := c.since[k]; !ok {
				c.since[k] = now
				c.adopted[k] = !c.domainsListed
			}
		}
	}
}

func (c *Controller) forgetPermanent(all bool, stale map[string]bool, changed []reconcile.DeviceKey) {
	if !all && len(stale) == 0 && len(changed) == 0 {
		return
	}
	keys := make(map[reconcile.DeviceKey]bool, len(changed))
	for _, k := range changed {
		keys[k] = true
	}
	// Any domain change may be the one a permanent failure waits for (a
	// device freed by another domain's detach), and domain events are
	// rare: give every permanent failure another chance.
	all = all || len(stale) > 0
	for id, f := range c.failures {
		if all || keys[id.key] {
			if f.class != failure.Transient {
				delete(c.failures, id)
			}
		}
	}
}

func (c *Controller) domainList() []reconcile.Domain {
	out := make([]reconcile.Domain, 0, len(c.domains))
	for _, d := range c.domains {
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// apply carries out the plan's actions in order. A failure is recorded and
// never stops the other actions.
func (c *Controller) apply(ctx context.Context, res reconcile.Result) {
	clear(c.ownHostdevs)
	want := make(map[actionID]bool, len(res.Actions))
	for _, a := range res.Actions {
		id := actionID{kind: a.Kind, domain: a.Domain, key: a.Key}
		want[id] = true
		f := c.failures[id]
		now := c.opt.Now()
		if f != nil && (f.class != failure.Transient && f.class != failure.Disconnected || now.Before(f.next)) {
			continue // waiting for its backoff, or for a change
		}
		err := c.do(ctx, a)
		if err == nil {
			c.opt.Observer.ActionDone(a.Kind, nil, failure.Transient)
			delete(c.failures, id)
			c.log.Info(string(a.Kind), "domain", a.Domain, "alias", a.Alias, "device", a.Key.String(), "reason", a.Reason)
			c.recordDone(a)
			continue
		}
		if f == nil {
			f = &failed{}
			c.failures[id] = f
		}
		f.attempts++
		f.lastErr = err.Error()
		f.class = failure.ClassOf(err)
		c.opt.Observer.ActionDone(a.Kind, err, f.class)
		switch f.class {
		case failure.Transient, failure.Disconnected:
			f.next = now.Add(c.retry.Delay(f.attempts))
		case failure.DomainGone:
			f.next = time.Time{}
			c.mu.Lock()
			c.in.staleDomains[a.Domain] = true
			c.mu.Unlock()
		default:
			f.next = time.Time{}
		}
		c.log.Warn(string(a.Kind)+" failed", "domain", a.Domain, "alias", a.Alias, "device", a.Key.String(), "attempt", f.attempts, "err", err)
	}
	// An action the plan no longer wants is no longer failing.
	for id := range c.failures {
		if !want[id] {
			delete(c.failures, id)
		}
	}
}

func (c *Controller) do(ctx context.Context, a reconcile.Action) error {
	ctx, cancel := context.WithTimeout(ctx, c.opt.CallTimeout)
	defer cancel()
	var err error
	switch a.Kind {
	case reconcile.Attach:
		err = c.opt.Hypervisor.Attach(ctx, a.Domain, a.Key)
	case reconcile.Detach:
		err = c.opt.Hypervisor.Detach(ctx, a.Domain, a.Alias)
	default:
		err = errors.New("unknown action")
	}
	if err != nil {
		prep := "to"
		if a.Kind == reconcile.Detach {
			prep = "from"
		}
		return fmt.Errorf("%s %s %s %s: %w", a.Kind, a.Alias, prep, a.Domain, err)
	}
	return nil
}

// recordDone updates the domain cache with a successful action, so the next
// sync does not repeat it before libvirt's event makes us re-read the domain.
func (c *Controller) recordDone(a reconcile.Action) {
	d, ok := c.domains[a.Domain]
	if !ok {
		return
	}
	// The cached slice may be shared with the last published status:
	// copy it once per sync, not once per action (a burst of k attaches
	// to one domain would cost k² otherwise).
	hs := d.Hostdevs
	if !c.ownHostdevs[a.Domain] {
		hs = slices.Clone(hs)
		c.ownHostdevs[a.Domain] = true
	}
	switch a.Kind {
	case reconcile.Attach:
		hs = append(hs, reconcile.Hostdev{Alias: a.Alias, Bus: a.Key.Bus, Dev: a.Key.Dev})
		c.since[a.Domain+"/"+a.Alias] = c.opt.Now()
		delete(c.adopted, a.Domain+"/"+a.Alias)
	case reconcile.Detach:
		hs = slices.DeleteFunc(hs, func(h reconcile.Hostdev) bool { return h.Alias == a.Alias })
		delete(c.since, a.Domain+"/"+a.Alias)
		delete(c.adopted, a.Domain+"/"+a.Alias)
	}
	d.Hostdevs = hs
	c.domains[a.Domain] = d
}

// publish builds the status snapshot and returns the earliest retry time.
func (c *Controller) publish(start time.Time, obs reconcile.Observed, res reconcile.Result, cfg ConfigStatus) time.Time {
	now := c.opt.Now()
	c.mu.Lock()
	hv := HypervisorStatus{URI: c.opt.URI, Connected: c.in.connected, LastError: c.in.hvErr}
	c.mu.Unlock()

	byKey := make(map[reconcile.DeviceKey]reconcile.Device, len(obs.Devices))
	for _, d := range obs.Devices {
		byKey[d.Key()] = d
	}
	rulesFor := make(map[reconcile.DeviceKey]string, len(res.Placements))
	var unassigned []reconcile.Placement
	for _, p := range res.Placements {
		if p.Domain != "" {
			rulesFor[p.Device.Key()] = p.Rule
		} else if p.HeldBy == "" {
			unassigned = append(unassigned, p)
		}
	}
	managed := make(map[string]reconcile.DomainRules, len(c.rules.Domains))
	for _, dr := range c.rules.Domains {
		managed[dr.Name] = dr
	}
	st := Status{
		StartedAt:        c.started,
		LastSync:         now,
		LastSyncDuration: now.Sub(start),
		Syncs:            c.syncs,
		Ready:            c.devicesListed && c.domainsListed,
		Config:           cfg,
		Hypervisor:       hv,
		Conflicts:        res.Conflicts,
		Unassigned:       unassigned,
	}
	for _, d := range obs.Domains {
		dr, isManaged := managed[d.Name]
		ds := DomainStatus{Name: d.Name, State: d.State, Managed: isManaged, Priority: dr.Priority}
		for _, h := range d.Hostdevs {
			if !h.Owned() {
				ds.Foreign = append(ds.Foreign, h)
				continue
			}
			k, _ := h.Key()
			ad := AttachedDevice{Alias: h.Alias, Key: k, Rule: rulesFor[k], Since: c.since[d.Name+"/"+h.Alias], Adopted: c.adopted[d.Name+"/"+h.Alias]}
			if dev, ok := byKey[k]; ok {
				ad.Device = &dev
			}
			ds.Attached = append(ds.Attached, ad)
		}
		st.Domains = append(st.Domains, ds)
	}
	var next time.Time
	for _, a := range res.Actions {
		id := actionID{kind: a.Kind, domain: a.Domain, key: a.Key}
		f, ok := c.failures[id]
		if !ok {
			continue // done in this sync
		}
		pa := PendingAction{Action: a, Attempts: f.attempts, LastError: f.lastErr, NextRetry: f.next, Permanent: f.class == failure.Permanent || f.class == failure.DomainGone}
		st.Pending = append(st.Pending, pa)
		if !f.next.IsZero() && (next.IsZero() || f.next.Before(next)) {
			next = f.next
		}
	}
	c.statusMu.Lock()
	c.status = st
	c.lastObserved = obs
	c.lastRules = c.rules
	c.statusMu.Unlock()
	if st.Ready && !c.readyClosed {
		c.readyClosed = true
		close(c.ready)
	}
	// Drop bookkeeping of hostdevs that no longer exist.
	live := make(map[string]bool)
	for _, d := range obs.Domains {
		for _, h := range d.Hostdevs {
			live[d.Name+"/"+h.Alias] = true
		}
	}
	for k := range c.since {
		if !live[k] {
			delete(c.since, k)
			delete(c.adopted, k)
		}
	}
	return next
}

// Release detaches every device usbctl attached, in every active domain,
// from a fresh listing. The daemon calls it on stop when asked to give the
// devices back; by default stopping leaves guests undisturbed. Call it only
// after Run has returned.
func (c *Controller) Release(ctx context.Context) error {
	ds, err := c.callList(ctx)
	if err != nil {
		return fmt.Errorf("release devices: %w", err)
	}
	var errs []error
	asked := 0
	for _, d := range ds {
		if !d.State.Active() {
			continue
		}
		for _, h := range d.Hostdevs {
			if !h.Owned() {
				continue
			}
			k, _ := h.Key()
			if err := c.do(ctx, reconcile.Action{Kind: reconcile.Detach, Domain: d.Name, Alias: h.Alias, Key: k}); err != nil {
				errs = append(errs, err)
				continue
			}
			c.log.Info("released", "domain", d.Name, "alias", h.Alias)
			asked++
		}
	}
	// libvirt returns once QEMU was asked; the device is back on the
	// host only when QEMU is done. Wait for that, so that when the
	// service has stopped the devices are really released.
	for asked > 0 {
		ds, err := c.callList(ctx)
		if err != nil {
			errs = append(errs, fmt.Errorf("release devices: %w", err))
			break
		}
		left := 0
		for _, d := range ds {
			if d.State.Active() {
				for _, h := range d.Hostdevs {
					if h.Owned() {
						left++
					}
				}
			}
		}
		if left == 0 {
			break
		}
		select {
		case <-ctx.Done():
			errs = append(errs, fmt.Errorf("release devices: %d still detaching: %w", left, ctx.Err()))
			return errors.Join(errs...)
		case <-time.After(20 * time.Millisecond):
		}
	}
	return errors.Join(errs...)
}
