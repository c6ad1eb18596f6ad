package controller

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/usbctl/usbctl/devname"
	"github.com/usbctl/usbctl/events"
	"github.com/usbctl/usbctl/override"
	"github.com/usbctl/usbctl/reconcile"
)

// Errors of runtime requests; the control socket turns them into answers.
var (
	// ErrNotFound: no such device, domain or assignment.
	ErrNotFound = errors.New("not found")
	// ErrRefused: a request that cannot be carried out as asked (an
	// excluded device, --until-stop of a stopped domain, ...).
	ErrRefused = errors.New("refused")
)

// Verb is what a person asked.
type Verb string

const (
	VerbAttach Verb = "attach"
	VerbDetach Verb = "detach"
	VerbMove   Verb = "move"
)

// AssignRequest asks for a runtime assignment: a device to a domain, or to
// the host, until it is unplugged, for a while, or until the domain stops.
type AssignRequest struct {
	// Device is a person's name for a present device (package devname).
	Device string
	// Domain is where it goes; "" for detach, and for an attach that
	// answers an offer.
	Domain    string
	Verb      Verb
	For       time.Duration
	UntilStop bool
	By        override.Setter
}

// AssignResult says what became of a request, after the sync that
// followed it.
type AssignResult struct {
	Device   reconcile.Device
	Override *override.Override
	// Replaced is the assignment the new one replaced, or the one a
	// release removed.
	Replaced *override.Override
	// From is the domain that held the device before.
	From string
}

// runtimeState is the loop's runtime desired state: assignments, offers,
// and what the last sync saw, for the events that tell what changed.
type runtimeState struct {
	overrides []override.Override
	offers    []override.Offer
	// stateFile is where overrides are kept ("" keeps them in memory).
	stateFile string
	// saveErr is the last failure to write the state file, shown in
	// status until a write succeeds.
	saveErr string
	// seen are the devices of the last sync, by identity, each with the
	// sync (gen) that last saw it, and active the domains that were
	// active: diffed into plug and domain events.
	seen   map[override.Identity]seenDevice
	gen    uint64
	active map[string]bool
	// rejectedAt is the time of the rejected reload already told.
	rejectedAt time.Time
	// queue holds the sync's events until its status is published.
	queue []events.Event
}

// identity is d's identity without its name: what tells devices apart
// from sync to sync, built without allocating (this runs for every device
// at every sync).
type seenDevice struct {
	dev reconcile.Device
	gen uint64
}

func identity(d reconcile.Device) override.Identity {
	return override.Identity{Bus: d.Bus, Dev: d.Dev, Port: d.Port, Vendor: d.Vendor, Product: d.Product, Serial: d.Serial}
}

// loadState reads the state file at start. An unreadable file is moved
// aside, said loudly, and usbctld starts without assignments: the rules
// still work, and nothing is lost that cannot be set again.
func (c *Controller) loadState() {
	path := c.loop.rt.stateFile
	if path == "" {
		return
	}
	ovs, err := override.Load(path)
	if err != nil {
		aside := path + ".unreadable"
		rerr := os.Rename(path, aside)
		c.log.Error("state file unreadable; starting without runtime assignments", "err", err, "moved_to", aside, "move_err", rerr)
		c.loop.rt.saveErr = fmt.Sprintf("%v (moved to %s)", err, aside)
		return
	}
	c.loop.rt.overrides = ovs
	if len(ovs) > 0 {
		c.log.Info("runtime assignments loaded", "file", path, "count", len(ovs))
	}
}

// save writes the assignments to the state file.
func (c *Controller) save() error {
	rt := &c.loop.rt
	if rt.stateFile == "" {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(rt.stateFile), 0o700); err != nil {
		rt.saveErr = err.Error()
		return fmt.Errorf("state directory: %w", err)
	}
	if err := override.Save(rt.stateFile, rt.overrides); err != nil {
		rt.saveErr = err.Error()
		return err
	}
	rt.saveErr = ""
	return nil
}

func (c *Controller) emit(ev events.Event) { c.loop.rt.queue = append(c.loop.rt.queue, ev) }

func keyPtr(k reconcile.DeviceKey) *reconcile.DeviceKey { return &k }

func devPtr(d reconcile.Device) *reconcile.Device { return &d }

// endOverrides ends the assignments whose time is up or whose device or
// domain is gone, and returns those still in force for Plan.
func (c *Controller) endOverrides(obs reconcile.Observed, now time.Time) []reconcile.Override {
	rt := &c.loop.rt
	if len(rt.overrides) == 0 {
		return nil
	}
	keep, ended := override.Expire(rt.overrides, override.World{Now: now, Devices: obs.Devices, Domains: obs.Domains,
		DevicesListed: c.loop.devicesListed, DomainsListed: c.loop.domains.listed})
	if len(ended) > 0 {
		rt.overrides = keep
		if err := c.save(); err != nil {
			c.log.Error("write state file", "err", err)
		}
		for _, e := range ended {
			c.log.Info("runtime assignment ended", "device", e.Device.String(), "domain", e.Domain, "why", string(e.Why))
			c.emit(events.Event{Type: events.OverrideEnded, Key: keyPtr(e.Device.Key()), Domain: e.Domain, Reason: string(e.Why), By: e.SetBy.String()})
		}
	}
	out := make([]reconcile.Override, 0, len(rt.overrides))
	for _, o := range rt.overrides {
		for _, d := range obs.Devices {
			if o.Device.Is(d) {
				out = append(out, reconcile.Override{Key: d.Key(), Domain: o.Domain, Source: o.Describe()})
				break
			}
		}
	}
	return out
}

// trackOffers carries the offers over from the last sync and times out
// those nobody answered: their devices stay on the host, by an assignment
// usbctld sets itself, so a restart does not ask again.
func (c *Controller) trackOffers(res reconcile.Result, now time.Time) {
	rt := &c.loop.rt
	var planned []override.Planned
	for _, p := range res.Placements {
		if p.Kind == reconcile.Offered {
			planned = append(planned, override.Planned{Device: p.Device, Domain: p.OfferedTo, Rule: p.Rule})
		}
	}
	if len(planned) == 0 && len(rt.offers) == 0 {
		return
	}
	open, started, gone, expired := override.TrackOffers(rt.offers, planned, now, c.opt.AskTimeout)
	rt.offers = open
	for _, o := range started {
		c.log.Info("offered", "device", o.Device.Key().String(), "domain", o.Domain, "rule", o.Rule)
		c.emit(events.Event{Type: events.Offered, Key: keyPtr(o.Device.Key()), Device: devPtr(o.Device), Domain: o.Domain, Reason: o.Rule, Until: o.Expires})
	}
	for _, o := range gone {
		why := "no longer offered"
		if ov, ok := override.Find(rt.overrides, o.Device.Key()); ok && ov.Device.Is(o.Device) {
			why = "answered by " + ov.SetBy.String()
		} else if _, present := rt.seen[identity(o.Device)]; !present {
			why = string(override.Unplugged)
		}
		c.emit(events.Event{Type: events.OfferEnded, Key: keyPtr(o.Device.Key()), Device: devPtr(o.Device), Domain: o.Domain, Reason: why})
	}
	if len(expired) == 0 {
		return
	}
	for _, o := range expired {
		ov := override.Override{Device: override.IdentityOf(o.Device), Lifetime: override.UntilUnplug, SetBy: c.opt.Self, SetAt: now}
		rt.overrides, _ = override.Set(rt.overrides, ov)
		c.log.Info("offer unanswered: kept on the host", "device", o.Device.Key().String(), "domain", o.Domain, "after", c.opt.AskTimeout)
		c.emit(events.Event{Type: events.OfferEnded, Key: keyPtr(o.Device.Key()), Device: devPtr(o.Device), Domain: o.Domain,
			Reason: fmt.Sprintf("no answer within %s: kept on the host until unplugged", c.opt.AskTimeout)})
		c.emit(events.Event{Type: events.OverrideSet, Key: keyPtr(o.Device.Key()), Device: devPtr(o.Device), Reason: ov.Ends(), By: ov.SetBy.String()})
	}
	if err := c.save(); err != nil {
		c.log.Error("write state file", "err", err)
	}
	c.Kick() // plan again with the new assignments
}

// noteWorld turns what changed since the last sync into events: devices
// plugged and unplugged, domains started and stopped, a config reloaded or
// rejected.
func (c *Controller) noteWorld(obs reconcile.Observed, newRules bool, cfg ConfigStatus) {
	rt := &c.loop.rt
	if newRules {
		c.emit(events.Event{Type: events.ConfigReloaded, Reason: strings.Join(cfg.Files, ", ")})
	}
	if r := cfg.Rejected; r != nil && !r.At.Equal(rt.rejectedAt) {
		rt.rejectedAt = r.At
		c.emit(events.Event{Type: events.ConfigRejected, Diagnostics: r.Diagnostics})
	}
	if c.loop.devicesListed {
		c.noteDevices(obs.Devices)
	}
	if c.loop.domains.listed {
		c.noteDomains(obs.Domains)
	}
}

// noteDevices emits plug and unplug events against the devices of the last
// sync. Nothing is allocated when nothing changed: this runs every sync.
func (c *Controller) noteDevices(devs []reconcile.Device) {
	rt := &c.loop.rt
	first := rt.seen == nil
	if first {
		rt.seen = make(map[override.Identity]seenDevice, len(devs))
	}
	rt.gen++
	for _, d := range devs {
		id := identity(d)
		_, known := rt.seen[id]
		rt.seen[id] = seenDevice{dev: d, gen: rt.gen}
		if !known && !first {
			c.emit(events.Event{Type: events.DevicePlugged, Key: keyPtr(d.Key()), Device: devPtr(d)})
		}
	}
	if len(rt.seen) == len(devs) {
		return // every device seen before is still here
	}
	var gone []reconcile.Device
	for id, s := range rt.seen {
		if s.gen != rt.gen {
			gone = append(gone, s.dev)
			delete(rt.seen, id)
		}
	}
	slices.SortFunc(gone, func(a, b reconcile.Device) int { return compareKeys(a.Key(), b.Key()) })
	for _, d := range gone {
		c.emit(events.Event{Type: events.DeviceUnplugged, Key: keyPtr(d.Key()), Device: devPtr(d)})
	}
}

// noteDomains emits domain started and stopped events.
func (c *Controller) noteDomains(doms []reconcile.Domain) {
	rt := &c.loop.rt
	first := rt.active == nil
	if first {
		rt.active = map[string]bool{}
	}
	live := 0
	for _, d := range doms {
		active := d.State.Active()
		if active {
			live++
		}
		if active == rt.active[d.Name] {
			continue
		}
		if active {
			rt.active[d.Name] = true
			if !first {
				c.emit(events.Event{Type: events.DomainStarted, Domain: d.Name, Reason: string(d.State)})
			}
		} else {
			delete(rt.active, d.Name)
			c.emit(events.Event{Type: events.DomainStopped, Domain: d.Name, Reason: string(d.State)})
		}
	}
	if live == len(rt.active) {
		return
	}
	for n := range rt.active { // undefined while active
		if !slices.ContainsFunc(doms, func(d reconcile.Domain) bool { return d.Name == n }) {
			delete(rt.active, n)
			c.emit(events.Event{Type: events.DomainStopped, Domain: n, Reason: "undefined"})
		}
	}
}

func compareKeys(a, b reconcile.DeviceKey) int {
	switch {
	case a.Less(b):
		return -1
	case b.Less(a):
		return 1
	}
	return 0
}

// flushEvents publishes the sync's events, after its status: a reader
// that asks for the status on an event sees the world after it.
func (c *Controller) flushEvents() {
	if len(c.loop.rt.queue) == 0 {
		return
	}
	c.opt.Events.Publish(c.loop.rt.queue...)
	c.loop.rt.queue = c.loop.rt.queue[:0]
}

// request is work for the loop goroutine, which owns the state it reads
// and changes; done is closed after the sync that follows it.
type request struct {
	fn   func()
	done chan struct{}
}

// call runs fn on the loop goroutine and waits for the sync after it (or
// ctx). It returns false if ctx ended before fn ran.
func (c *Controller) call(ctx context.Context, fn func()) (synced bool, ran bool) {
	r := request{done: make(chan struct{})}
	ranCh := make(chan struct{})
	r.fn = func() { fn(); close(ranCh) }
	select {
	case c.requests <- r:
	case <-ctx.Done():
		return false, false
	}
	select {
	case <-ranCh:
	case <-ctx.Done():
		// It may still run; the caller cannot know its result.
		return false, false
	}
	select {
	case <-r.done:
		return true, true
	case <-ctx.Done():
		return false, true
	}
}

// Devices returns the present devices as the last sync saw them; with a
// name, the one device it designates (a *devname.AmbiguousError lists the
// candidates, a *devname.NotFoundError says none has it).
func (c *Controller) Devices(name string) ([]reconcile.Device, error) {
	obs, _ := c.pub.world()
	if name == "" {
		return slices.Clone(obs.Devices), nil
	}
	d, err := devname.Resolve(name, obs.Devices)
	if err != nil {
		return nil, err
	}
	return []reconcile.Device{d}, nil
}

// Assign sets a runtime assignment and returns after the sync that acted
// on it (or when ctx ends: Synced false, the assignment set all the same).
func (c *Controller) Assign(ctx context.Context, r AssignRequest) (res AssignResult, synced bool, err error) {
	synced, ran := c.call(ctx, func() { res, err = c.assign(r) })
	if !ran {
		return res, false, fmt.Errorf("usbctld is busy: %w", ctx.Err())
	}
	return res, synced && err == nil, err
}

// Unassign removes the runtime assignment of a device (usbctl release).
func (c *Controller) Unassign(ctx context.Context, name string, by override.Setter) (res AssignResult, synced bool, err error) {
	synced, ran := c.call(ctx, func() { res, err = c.release(name, by) })
	if !ran {
		return res, false, fmt.Errorf("usbctld is busy: %w", ctx.Err())
	}
	return res, synced && err == nil, err
}

// loopWorld is what the loop last observed: the published world, which
// includes its own attaches and detaches.
func (c *Controller) loopWorld() reconcile.Observed {
	obs, _ := c.pub.world()
	return obs
}

func holderOf(obs reconcile.Observed, k reconcile.DeviceKey) string {
	for _, dm := range obs.Domains {
		if !dm.State.Active() {
			continue
		}
		for _, h := range dm.Hostdevs {
			if hk, ok := h.Key(); ok && h.Owned() && hk == k {
				return dm.Name
			}
		}
	}
	return ""
}

func (c *Controller) assign(r AssignRequest) (AssignResult, error) {
	obs := c.loopWorld()
	d, err := devname.Resolve(r.Device, obs.Devices)
	if err != nil {
		return AssignResult{}, err
	}
	res := AssignResult{Device: d, From: holderOf(obs, d.Key())}
	if strings.HasPrefix(d.Port, "usb") {
		return res, fmt.Errorf("%s is the root hub of bus %d, the host's own controller: it cannot be passed through: %w", d.Key(), d.Bus, ErrRefused)
	}
	switch {
	case r.For < 0 || r.For > 366*24*time.Hour:
		return res, fmt.Errorf("--for %v: give a duration between 1s and a year: %w", r.For, ErrRefused)
	case r.For > 0 && r.UntilStop:
		return res, fmt.Errorf("--for and --until-stop both say when it ends: give one: %w", ErrRefused)
	}
	domain := r.Domain
	switch r.Verb {
	case VerbDetach:
		if domain != "" || r.UntilStop {
			return res, fmt.Errorf("detach keeps a device on the host: it takes no domain and no --until-stop: %w", ErrRefused)
		}
	case VerbAttach, VerbMove:
		if domain == "" {
			for _, o := range c.loop.rt.offers {
				if identity(o.Device) == identity(d) {
					domain = o.Domain
				}
			}
			if domain == "" {
				return res, fmt.Errorf("name the domain: usbctl attach %s DOMAIN (no offer waits for %s): %w", d.Key(), d.Key(), ErrRefused)
			}
		}
		var found *reconcile.Domain
		for i := range obs.Domains {
			if obs.Domains[i].Name == domain {
				found = &obs.Domains[i]
			}
		}
		if found == nil {
			return res, fmt.Errorf("libvirt has no domain %q (virsh list --all shows them): %w", domain, ErrNotFound)
		}
		if r.UntilStop && !found.State.Active() {
			return res, fmt.Errorf("--until-stop: %q is not running (%s), so it would end at once: %w", domain, found.State, ErrRefused)
		}
	default:
		return res, fmt.Errorf("unknown request %q: %w", r.Verb, ErrRefused)
	}
	if ex, ok := reconcile.ExcludedBy(c.loop.rules, d); ok {
		return res, fmt.Errorf("%s is excluded by exclude %q (%s): no domain ever gets it; remove that block first: %w", d.Key(), ex.Label, ex.Source, ErrRefused)
	}
	now := c.opt.Now()
	o := override.Override{Device: override.IdentityOf(d), Domain: domain, Lifetime: override.UntilUnplug, SetBy: r.By, SetAt: now}
	switch {
	case r.For > 0:
		o.Lifetime, o.Until = override.For, now.Add(r.For)
	case r.UntilStop:
		o.Lifetime = override.UntilStop
	}
	rt := &c.loop.rt
	before := rt.overrides
	var old *override.Override
	rt.overrides, old = override.Set(rt.overrides, o)
	if err := c.save(); err != nil {
		rt.overrides = before
		return res, fmt.Errorf("keep the assignment in the state file: %w", err)
	}
	res.Override, res.Replaced = &o, old
	c.log.Info("runtime assignment set", "uid", r.By.UID, "user", r.By.User, "via", r.By.Via, "device", d.Key().String(), "id", d.ID(),
		"domain", domain, "lifetime", string(o.Lifetime), "until", o.Until)
	if old != nil {
		c.emit(events.Event{Type: events.OverrideEnded, Key: keyPtr(d.Key()), Domain: old.Domain, Reason: string(override.Replaced), By: r.By.String()})
	}
	c.emit(events.Event{Type: events.OverrideSet, Key: keyPtr(d.Key()), Device: devPtr(d), Domain: domain, Reason: o.Ends(), By: r.By.String(), Until: o.Until})
	return res, nil
}

func (c *Controller) release(name string, by override.Setter) (AssignResult, error) {
	obs := c.loopWorld()
	d, err := devname.Resolve(name, obs.Devices)
	if err != nil {
		return AssignResult{}, err
	}
	res := AssignResult{Device: d, From: holderOf(obs, d.Key())}
	rt := &c.loop.rt
	cur, ok := override.Find(rt.overrides, d.Key())
	if !ok || !cur.Device.Is(d) {
		return res, fmt.Errorf("%s has no runtime assignment: the rules decide already: %w", d.Key(), ErrNotFound)
	}
	before := rt.overrides
	rt.overrides, _ = override.Remove(rt.overrides, d.Key())
	if err := c.save(); err != nil {
		rt.overrides = before
		return res, fmt.Errorf("keep the release in the state file: %w", err)
	}
	res.Replaced = &cur
	c.log.Info("runtime assignment released", "uid", by.UID, "user", by.User, "device", d.Key().String(), "domain", cur.Domain)
	c.emit(events.Event{Type: events.OverrideEnded, Key: keyPtr(d.Key()), Device: devPtr(d), Domain: cur.Domain, Reason: string(override.Released), By: by.String()})
	return res, nil
}
