package controller

import (
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/usbctl/usbctl/reconcile"
)

// published is what the last sync showed the world: its status, and the
// world and rules it planned with. The loop writes it after each sync;
// Status and PlanNow read it from any goroutine.
type published struct {
	mu       sync.RWMutex
	status   Status
	observed reconcile.Observed
	rules    reconcile.Rules
	assigned []reconcile.Override
}

func (p *published) set(st Status, obs reconcile.Observed, rules reconcile.Rules, ovs []reconcile.Override) {
	p.mu.Lock()
	p.status, p.observed, p.rules, p.assigned = st, obs, rules, ovs
	p.mu.Unlock()
}

// overrides returns the runtime assignments the last sync planned with.
func (p *published) overrides() []reconcile.Override {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.assigned
}

func (p *published) get() Status {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.status
}

// world returns what the last sync observed and the rules it planned with.
func (p *published) world() (reconcile.Observed, reconcile.Rules) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.observed, p.rules
}

// publish builds the status snapshot and returns the earliest retry time.
func (c *Controller) publish(start time.Time, obs reconcile.Observed, res reconcile.Result, cfg ConfigStatus, ovs []reconcile.Override) time.Time {
	now := c.opt.Now()
	connected, hvErr := c.inbox.hypervisor()
	l := &c.loop
	st := Status{
		StartedAt:        l.started,
		LastSync:         now,
		LastSyncDuration: now.Sub(start),
		Syncs:            l.syncs,
		Ready:            l.devicesListed && l.domains.listed,
		Config:           cfg,
		Hypervisor:       HypervisorStatus{URI: c.opt.URI, Connected: connected, LastError: hvErr},
		Conflicts:        res.Conflicts,
		Overrides:        slices.Clone(l.rt.overrides),
		Offers:           slices.Clone(l.rt.offers),
		StateError:       l.rt.saveErr,
		HeldOnHost:       c.holdList(),
	}
	rulesFor := make(map[reconcile.DeviceKey]string, len(res.Placements))
	for _, p := range res.Placements {
		switch p.Kind {
		case reconcile.Placed, reconcile.Kept, reconcile.Assigned:
			rulesFor[p.Device.Key()] = p.Rule
		case reconcile.HeldForeign:
			// Shown with the domain that holds it, and as a conflict
			// when a running domain wants it.
		default:
			st.Unassigned = append(st.Unassigned, p)
		}
	}
	st.Domains = c.domainStatus(obs, rulesFor)
	st.UndefinedDomains = c.undefinedDomains(obs)
	var next time.Time
	for _, a := range res.Actions {
		f, ok := l.failures.get(idOf(a))
		if !ok {
			continue // done in this sync
		}
		st.Pending = append(st.Pending, PendingAction{Action: a, Attempts: f.attempts, LastError: f.lastErr, Fix: f.fix, NextRetry: f.next, Permanent: f.waitsForChange()})
		if !f.next.IsZero() && (next.IsZero() || f.next.Before(next)) {
			next = f.next
		}
	}
	c.pub.set(st, obs, l.rules, ovs)
	if st.Ready && !l.readyClosed {
		l.readyClosed = true
		close(c.ready)
	}
	l.hostdevs.prune(obs.Domains)
	return next
}

// domainStatus describes each domain: ours and others' hostdevs in it.
func (c *Controller) domainStatus(obs reconcile.Observed, rulesFor map[reconcile.DeviceKey]string) []DomainStatus {
	byKey := make(map[reconcile.DeviceKey]reconcile.Device, len(obs.Devices))
	for _, d := range obs.Devices {
		byKey[d.Key()] = d
	}
	managed := make(map[string]reconcile.DomainRules, len(c.loop.rules.Domains))
	for _, dr := range c.loop.rules.Domains {
		managed[dr.Name] = dr
	}
	var out []DomainStatus
	for _, d := range obs.Domains {
		dr, isManaged := managed[d.Name]
		ds := DomainStatus{Name: d.Name, State: d.State, Managed: isManaged, Priority: dr.Priority}
		for _, h := range d.Hostdevs {
			if !h.Owned() {
				ds.Foreign = append(ds.Foreign, h)
				continue
			}
			k, _ := h.Key()
			seen := c.loop.hostdevs[hostdevKey{d.Name, h.Alias}]
			ad := AttachedDevice{Alias: h.Alias, Key: k, Rule: rulesFor[k], Since: seen.since, Adopted: seen.adopted}
			if dev, ok := byKey[k]; ok {
				ad.Device = &dev
			}
			ds.Attached = append(ds.Attached, ad)
		}
		out = append(out, ds)
	}
	return out
}

// undefinedDomains are the domains the rules name that libvirt does not
// have, sorted: unsaid, one looked like a stopped domain.
func (c *Controller) undefinedDomains(obs reconcile.Observed) []string {
	if !c.loop.domains.listed {
		return nil // not known yet
	}
	have := make(map[string]bool, len(obs.Domains))
	for _, d := range obs.Domains {
		have[d.Name] = true
	}
	var out []string
	for _, dr := range c.loop.rules.Domains {
		if !have[dr.Name] {
			out = append(out, dr.Name)
		}
	}
	sort.Strings(out)
	return out
}
