// Package controller keeps libvirt guests in sync with host USB devices. One
// goroutine (Run) owns all decisions: udev events, libvirt events, reconnects,
// config reloads and a slow periodic resync only update a cache and kick it.
// Each sync observes (re-reading only what events marked stale), asks
// reconcile.Plan what to do, and applies the actions with per-action backoff.
// A lost event is repaired by the next sync: nothing here depends on seeing
// every event, only on seeing the current state.
//
// Who owns what is in the types: the inbox (inbox.go) takes events from any
// goroutine under its lock; the configSlot holds reloaded rules until a
// sync takes them; published (publish.go) is the last sync's snapshot for
// readers; loopState is the Run goroutine's alone (the domain cache in
// observe.go, the failures and their backoff in failures.go, the hostdev
// book in hostdevs.go).
package controller

import (
	"context"
	"log/slog"
	"os"
	"time"

	"github.com/usbctl/usbctl/events"
	"github.com/usbctl/usbctl/failure"
	"github.com/usbctl/usbctl/internal/backoff"
	"github.com/usbctl/usbctl/override"
	"github.com/usbctl/usbctl/reconcile"
)

// Hypervisor is what the controller needs from libvirt. virt implements it;
// tests use an in-memory fake. Errors carry their failure.Class (the
// adapter classifies them where they arise); the controller reads only that.
// Attach and Detach errors name the action and its object ("attach
// ua-usbctl-001-002 to win11: ..."): the controller shows them as they are.
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
	// Claims reads which interfaces of a device host programs hold
	// through usbfs, at each attach; nil: not looked at.
	Claims ClaimReader
	// HoldRecheck is how often a device attached while held on the host
	// is looked at again (default DefaultHoldRecheck).
	HoldRecheck time.Duration
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
	// StateFile keeps the runtime assignments across restarts ("" keeps
	// them in memory only).
	StateFile string
	// AskTimeout is how long an offer waits for an answer before its
	// device stays on the host (default 2 minutes).
	AskTimeout time.Duration
	// Self is who usbctld is, for the assignments it sets itself (an
	// offer nobody answered).
	Self override.Setter
	// Events receives what happens; nil for a hub nobody reads.
	Events *events.Hub
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

// Controller is the reconcile loop. Create it with New, feed it events with
// its methods (safe from any goroutine, never blocking), and run it with Run.
type Controller struct {
	opt   Options
	log   *slog.Logger
	kick  chan struct{}
	ready chan struct{}

	inbox    *inbox
	config   configSlot
	pub      published
	loop     loopState
	requests chan request
}

// loopState belongs to the Run goroutine: only Run and what it calls read
// or write it, so it needs no lock.
type loopState struct {
	rules         reconcile.Rules
	domains       domainCache
	devicesListed bool // a udev enumeration has succeeded
	failures      failures
	hostdevs      hostdevBook
	detaching     detachBook
	// holds are devices attached while a host program held them.
	holds holdBook
	// wakeAt is when the loop must look again although no backoff runs
	// out and no event may come: an attach waits for a detach (apply).
	wakeAt      time.Time
	readyClosed bool
	syncs       uint64
	started     time.Time
	rt          runtimeState
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
	if opt.HoldRecheck <= 0 {
		opt.HoldRecheck = DefaultHoldRecheck
	}
	if opt.AskTimeout <= 0 {
		opt.AskTimeout = 2 * time.Minute
	}
	if opt.Events == nil {
		opt.Events = events.NewHub(opt.Now)
	}
	if opt.Self.Via == "" {
		opt.Self = override.Setter{UID: uint32(os.Getuid()), User: "usbctld", Via: "offer unanswered"}
	}
	c := &Controller{
		opt:    opt,
		log:    opt.Log,
		kick:   make(chan struct{}, 1),
		ready:  make(chan struct{}),
		inbox:  newInbox(),
		config: configSlot{status: cs},
		loop: loopState{
			rules:     rules,
			domains:   newDomainCache(),
			failures:  newFailures(backoff.Policy{Min: opt.BackoffMin, Max: opt.BackoffMax, Jitter: 0.1}),
			hostdevs:  hostdevBook{},
			detaching: detachBook{},
			holds:     holdBook{},
			rt:        runtimeState{stateFile: opt.StateFile},
		},
		requests: make(chan request),
	}
	c.loadState()
	return c
}

// RulesInForce returns the rules the last sync planned with.
func (c *Controller) RulesInForce() reconcile.Rules {
	_, rules := c.pub.world()
	return rules
}

// Events is the event stream: subscribe to follow what happens.
func (c *Controller) Events() *events.Hub { return c.opt.Events }

// Ready is closed after the first sync that observed both udev and libvirt
// (systemd readiness).
func (c *Controller) Ready() <-chan struct{} { return c.ready }

// Status returns the snapshot built by the last sync. It never waits for
// libvirt or udev.
func (c *Controller) Status() Status { return c.pub.get() }

// PlanNow computes, without changing anything, the plan for the world as
// the last sync observed it and the rules now in force.
func (c *Controller) PlanNow() reconcile.Result {
	obs, rules := c.pub.world()
	if r := c.config.peek(); r != nil {
		rules = *r
	}
	return reconcile.Plan(rules, obs, c.pub.overrides())
}

// Run is the loop. It returns when ctx is done.
func (c *Controller) Run(ctx context.Context) error {
	c.loop.started = c.opt.Now()
	resync := time.NewTicker(c.opt.Resync)
	defer resync.Stop()
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	c.Kick()
	var answered []chan struct{}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case r := <-c.requests:
			r.fn()
			answered = append(answered, r.done)
		case <-c.kick:
		case <-resync.C:
			c.inbox.update(func(in *inputs) {
				in.relistDevices, in.relistDomains = true, true
				// A permanent failure waits for an event (the holder's
				// device-removed, a lifecycle change). If that event
				// was lost, the re-list shows the change but nothing
				// would retry the action: "busy" stayed forever after,
				// e.g., our own detach from the domain a device moves
				// away from, whose device-removed event never came
				// (found by TestModel). Give them one more try per
				// resync.
				in.clearAll = true
			})
		case <-retry.C:
		}
		next := c.sync(ctx)
		for _, d := range answered {
			close(d)
		}
		answered = answered[:0]
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
	rules, cfg := c.config.take()
	if rules != nil {
		c.loop.rules = *rules
	}
	obs := c.observe(ctx)
	c.noteWorld(obs, rules != nil, cfg)
	now := c.opt.Now()
	ovs := c.endOverrides(obs, now)
	res := reconcile.Plan(c.loop.rules, obs, ovs)
	c.trackOffers(res, now)
	c.apply(ctx, res)
	// Our own attaches and detaches changed the world we planned on:
	// status and PlanNow must show the world after them.
	obs.Domains = c.loop.domains.list()
	holdNext := c.recheckHolds(ctx, obs.Devices, now)
	c.loop.syncs++
	next := c.publish(start, obs, res, cfg, ovs)
	c.flushEvents()
	if w := c.loop.wakeAt; !w.IsZero() && (next.IsZero() || w.Before(next)) {
		next = w
	}
	c.opt.Observer.SyncDone(c.opt.Now().Sub(start))
	for _, t := range []time.Time{override.Next(c.loop.rt.overrides), override.NextExpiry(c.loop.rt.offers), holdNext} {
		if !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	return next
}
