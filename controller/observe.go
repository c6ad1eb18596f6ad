package controller

import (
	"context"
	"log/slog"
	"slices"
	"sort"
	"strings"

	"github.com/usbctl/usbctl/failure"
	"github.com/usbctl/usbctl/reconcile"
)

// domainCache is the loop's view of libvirt's domains: the full list from
// the last listing, with the domains events marked stale read again since.
type domainCache struct {
	byName map[string]reconcile.Domain
	// listed: a full listing has succeeded since start-up.
	listed bool
	// reread holds domains whose last read failed. They are read again at
	// the next sync, but unlike stale domains they are not news: a failed
	// read must not count as a domain change, or every sync while libvirt
	// is down (or a read keeps failing) would forget every permanent and
	// disconnected failure and retry it at once, and the backoff would
	// never grow past BackoffMin (found by TestModel).
	reread map[string]bool
	// copied marks domains whose cached Hostdevs slice this sync already
	// copied (done).
	copied map[string]bool
}

func newDomainCache() domainCache {
	return domainCache{byName: map[string]reconcile.Domain{}, reread: map[string]bool{}, copied: map[string]bool{}}
}

// list returns the cached domains sorted by name.
func (dc *domainCache) list() []reconcile.Domain {
	out := make([]reconcile.Domain, 0, len(dc.byName))
	for _, d := range dc.byName {
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// done updates the cache with a successful action, so the next sync does
// not repeat it before libvirt's event makes the loop re-read the domain.
// It reports whether the domain is in the cache.
func (dc *domainCache) done(a reconcile.Action) bool {
	d, ok := dc.byName[a.Domain]
	if !ok {
		return false
	}
	// The cached slice may be shared with the last published status:
	// copy it once per sync, not once per action (a burst of k attaches
	// to one domain would cost k² otherwise).
	hs := d.Hostdevs
	if !dc.copied[a.Domain] {
		hs = slices.Clone(hs)
		dc.copied[a.Domain] = true
	}
	switch a.Kind {
	case reconcile.Attach:
		hs = append(hs, reconcile.Hostdev{Alias: a.Alias, Bus: a.Key.Bus, Dev: a.Key.Dev})
	case reconcile.Detach:
		hs = slices.DeleteFunc(hs, func(h reconcile.Hostdev) bool { return h.Alias == a.Alias })
	}
	d.Hostdevs = hs
	dc.byName[a.Domain] = d
	return true
}

// observe brings the caches up to date, re-reading only what is stale.
func (c *Controller) observe(ctx context.Context) reconcile.Observed {
	n := c.inbox.take()
	keys := make(map[reconcile.DeviceKey]bool, len(n.changed))
	for _, k := range n.changed {
		keys[k] = true
	}
	// Any domain change may be the one a permanent failure waits for (a
	// device freed by another domain's detach), and domain events are
	// rare: give every permanent failure another chance.
	if all := n.clearAll || len(n.stale) > 0; all || len(keys) > 0 {
		c.logForgotten(c.loop.failures.changed(all, keys), n, keys)
	}
	// A device that left a domain may have freed the USB port an attach
	// there waits for: try it now, not when its backoff runs out (13-20 s
	// late, issue 13). A reload, reconnect or resync may have changed
	// anything.
	if n.clearAll || len(n.deviceDomains) > 0 {
		c.loop.failures.woken(n.clearAll, n.deviceDomains, c.opt.Now())
	}

	// Enumerating udev and listing libvirt domains wait on different
	// things: at start-up and on every resync, do both at once (the
	// first sync with 50 domains defined took the sum, ~25 + 18 ms).
	type listing struct {
		devs []reconcile.Device
		err  error
	}
	var listed chan listing
	if n.relistDevices {
		listed = make(chan listing, 1)
		go func() {
			devs, err := c.listDevices(ctx)
			listed <- listing{devs, err}
		}()
	}
	all, fresh := c.observeDomains(ctx, n.relistDomains, n.stale)
	c.loop.detaching.reconcile(&c.loop.domains, all, fresh, &c.loop.failures, c.opt.Now())
	if n.relistDevices {
		l := <-listed
		if l.err != nil {
			c.log.Error("list usb devices", "err", l.err)
		} else {
			c.loop.devicesListed = true
		}
		c.inbox.listed(l.devs, l.err)
	}
	devs, released := c.inbox.devices()
	if released {
		// A device replugged with the same number is in the cache
		// again: plan once more after this sync has detached the
		// hostdev of the one that went.
		c.Kick()
	}
	return reconcile.Observed{Devices: devs, Domains: c.loop.domains.list()}
}

// observeDomains re-lists every domain, or re-reads the stale ones. It
// reports what it read afresh from libvirt: all (a listing), or the
// domains in fresh.
func (c *Controller) observeDomains(ctx context.Context, relist bool, stale map[string]bool) (all bool, fresh map[string]bool) {
	dc := &c.loop.domains
	if relist {
		ds, err := c.callList(ctx)
		if err != nil {
			c.logReadFailure("list libvirt domains", err)
			c.inbox.update(func(in *inputs) { in.relistDomains = true })
			return false, nil
		}
		c.loop.hostdevs.found(ds, c.opt.Now(), !dc.listed)
		byName := make(map[string]reconcile.Domain, len(ds))
		for _, d := range ds {
			byName[d.Name] = d
		}
		dc.byName = byName
		dc.listed = true
		clear(dc.reread)
		return true, nil
	}
	names := make([]string, 0, len(stale)+len(dc.reread))
	for n := range stale {
		names = append(names, n)
	}
	for n := range dc.reread {
		if !stale[n] {
			names = append(names, n)
		}
	}
	clear(dc.reread)
	sort.Strings(names)
	fresh = make(map[string]bool, len(names))
	for _, n := range names {
		fresh[n] = c.refreshDomain(ctx, n)
	}
	return false, fresh
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

// refreshDomain reads one domain again; it reports whether libvirt said
// how it is (read, or gone).
func (c *Controller) refreshDomain(ctx context.Context, name string) bool {
	ctx, cancel := context.WithTimeout(ctx, c.opt.CallTimeout)
	defer cancel()
	dc := &c.loop.domains
	d, err := c.opt.Hypervisor.Domain(ctx, name)
	if err != nil {
		if failure.ClassOf(err) == failure.DomainGone {
			delete(dc.byName, name)
			return true
		}
		// Keep the cached view and look again at the next sync.
		c.logReadFailure("read libvirt domain", err, "domain", name)
		dc.reread[name] = true
		return false
	}
	c.loop.hostdevs.found([]reconcile.Domain{d}, c.opt.Now(), !dc.listed)
	dc.byName[name] = d
	return true
}

// logReadFailure logs a failed read of libvirt. One that failed because
// the connection is down is no news: virt logs the connection's own ups
// and downs, status shows it, and the reconnect re-lists everything. At
// every start the first sync runs before the connection is up, and warned
// "list libvirt domains: not connected" on a normal start.
func (c *Controller) logReadFailure(what string, err error, attrs ...any) {
	lv := slog.LevelWarn
	if failure.ClassOf(err) == failure.Disconnected {
		lv = slog.LevelDebug
	}
	c.log.Log(context.Background(), lv, what, append(attrs, "err", err)...)
}

// logForgotten says at debug level which change let each failure that
// waited for one try again: a retry that nothing seemed to cause is
// otherwise hard to tell from a hot loop.
func (c *Controller) logForgotten(ids []actionID, n news, keys map[reconcile.DeviceKey]bool) {
	if len(ids) == 0 || !c.log.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	stale := make([]string, 0, len(n.stale))
	for d := range n.stale {
		stale = append(stale, d)
	}
	sort.Strings(stale)
	slices.SortFunc(ids, func(a, b actionID) int {
		if a.key != b.key {
			if a.key.Less(b.key) {
				return -1
			}
			return 1
		}
		return strings.Compare(a.domain+string(a.kind), b.domain+string(b.kind))
	})
	for _, id := range ids {
		c.log.Debug("failure forgotten: a change may cure it", "action", string(id.kind), "domain", id.domain, "device", id.key.String(),
			"device_event", keys[id.key], "domains_changed", stale, "reload_or_reconnect", n.clearAll)
	}
}
