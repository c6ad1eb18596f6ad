package controller

import (
	"context"
	"fmt"
	"time"

	"github.com/usbctl/usbctl/events"
	"github.com/usbctl/usbctl/failure"
	"github.com/usbctl/usbctl/reconcile"
)

// apply carries out the plan's actions in order. A failure is recorded and
// never stops the other actions.
func (c *Controller) apply(ctx context.Context, res reconcile.Result) {
	fs := &c.loop.failures
	clear(c.loop.domains.copied)
	c.loop.wakeAt = time.Time{}
	want := make(map[actionID]bool, len(res.Actions))
	var reads []claimRead
	for _, a := range res.Actions {
		id := idOf(a)
		want[id] = true
		now := c.opt.Now()
		if !fs.due(id, now) {
			continue // waiting for its backoff, or for a change
		}
		if a.Kind == reconcile.Attach && c.loop.detaching.holds(a.Domain, a.Alias) {
			// The device came back with the number of one whose
			// hostdev libvirt is still removing: attaching now fails
			// with "non unique alias". The device-removed event lets
			// it go; read the domain again soon in case it is lost.
			c.loop.domains.reread[a.Domain] = true
			if w := now.Add(detachPoll); c.loop.wakeAt.IsZero() || w.Before(c.loop.wakeAt) {
				c.loop.wakeAt = w
			}
			continue
		}
		// The device's usbfs claims, read as the attach starts and
		// again once it returned (holders.go): both in the background.
		var before <-chan claimResult
		if a.Kind == reconcile.Attach && a.Device != nil && c.opt.Claims != nil {
			before = c.readClaims(ctx, *a.Device)
		}
		err := c.do(ctx, a)
		if before != nil {
			if err == nil {
				reads = append(reads, claimRead{a, before, c.readClaims(ctx, *a.Device)})
			} else {
				<-before
			}
		}
		if err == nil {
			c.opt.Observer.ActionDone(a.Kind, nil, failure.Transient)
			fs.succeeded(id)
			c.log.Info(string(a.Kind), "domain", a.Domain, "alias", a.Alias, "device", a.Key.String(), "reason", a.Reason)
			c.done(a)
			typ := events.Attached
			if a.Kind == reconcile.Detach {
				typ = events.Detached
			}
			c.emit(events.Event{Type: typ, Key: keyPtr(a.Key), Device: a.Device, Domain: a.Domain, Reason: a.Reason})
			continue
		}
		if a.Kind == reconcile.Attach {
			err = explainSpeed(err, a.Device, c.loop.domains.byName[a.Domain])
		}
		f := fs.failedNow(id, err, now)
		c.emit(events.Event{Type: events.Failed, Key: keyPtr(a.Key), Device: a.Device, Domain: a.Domain, Action: a.Kind, Reason: a.Reason, Error: err.Error(), Until: f.next})
		c.opt.Observer.ActionDone(a.Kind, err, f.class)
		if f.class == failure.DomainGone {
			c.inbox.update(func(in *inputs) { in.staleDomains[a.Domain] = true })
		}
		c.log.Warn(string(a.Kind)+" failed", "domain", a.Domain, "alias", a.Alias, "device", a.Key.String(), "attempt", f.attempts, "err", err)
	}
	// An action the plan no longer wants is no longer failing.
	fs.keepOnly(want)
	for _, r := range reads {
		c.heldAtAttach(r.a, <-r.before, <-r.after, c.opt.Now())
	}
}

// claimRead is the usbfs claim reads around a successful attach.
type claimRead struct {
	a             reconcile.Action
	before, after <-chan claimResult
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
		err = fmt.Errorf("%s %s: unknown action", a.Kind, a.Alias)
	}
	// The Hypervisor's errors name the action and its object already
	// ("attach ua-usbctl-001-002 to win11: ..."): wrapping them again
	// here said it twice.
	return err
}

// done records a successful action in the domain cache and the hostdev
// book.
func (c *Controller) done(a reconcile.Action) {
	if !c.loop.domains.done(a) {
		return
	}
	k := hostdevKey{a.Domain, a.Alias}
	switch a.Kind {
	case reconcile.Attach:
		c.loop.hostdevs.attached(k, c.opt.Now())
	case reconcile.Detach:
		c.loop.hostdevs.detached(k)
		c.loop.detaching.asked(k, c.opt.Now())
	}
}
