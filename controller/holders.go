package controller

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/usbctl/usbctl/events"
	"github.com/usbctl/usbctl/reconcile"
)

// ClaimReader tells which interfaces of a device a program holds through
// usbfs (libusb_claim_interface: a smartcard daemon, a flashing tool),
// read from sysfs, where such an interface's driver is "usbfs". udevsrc
// implements it. It is read, not watched: no uevent arrives when usbfs
// claims or releases an interface (udevadm monitor on the real-kernel test
// host showed none, issue 12).
type ClaimReader interface {
	// UsbfsClaims returns the sysfs names of d's interfaces whose
	// driver is usbfs, and how many interfaces d has.
	UsbfsClaims(ctx context.Context, d reconcile.Device) (usbfs []string, interfaces int, err error)
}

// DefaultHoldRecheck is how often a device attached while a host program
// held it is looked at again, to see whether the program let go.
const DefaultHoldRecheck = 5 * time.Second

// HostHold is a device usbctl attached while a program on the host held
// some of its interfaces through usbfs. QEMU attaches such a device
// without complaint, but cannot claim the held interfaces when the guest
// configures it, so the guest may not be able to use the device (QEMU
// 7.2 stalls the guest's SET_CONFIGURATION unless it claims them all).
type HostHold struct {
	Key    reconcile.DeviceKey `json:"key"`
	Device reconcile.Device    `json:"device"`
	Domain string              `json:"domain"`
	Alias  string              `json:"alias"`
	// Interfaces are the held interfaces' sysfs names ("3-1:1.0").
	Interfaces []string  `json:"interfaces"`
	Since      time.Time `json:"since"`
	// Warning and Fix are rendered from Interfaces and Key (holdList).
	Warning string    `json:"warning"`
	Fix     string    `json:"fix"`
	next    time.Time // when to read the claims again
}

// holdBook holds the HostHolds by device. Only the loop touches it.
type holdBook map[reconcile.DeviceKey]*HostHold

func holdWarning(ifaces []string) string {
	what := "interface " + ifaces[0]
	if len(ifaces) > 1 {
		what = "interfaces " + strings.Join(ifaces, ", ")
	}
	return fmt.Sprintf("%s held on the host by another program through usbfs (driver usbfs in sysfs) when usbctl attached it: the guest may not be able to use the device", what)
}

func holdFix(k reconcile.DeviceKey) string {
	return fmt.Sprintf("stop the program that holds it (as root, fuser -v /dev/bus/usb/%03d/%03d names it); then replug the device, or run usbctl detach %s and usbctl release %s, so that the guest sets it up again",
		k.Bus, k.Dev, k, k)
}

type claimResult struct {
	ifaces []string
	total  int // interfaces of the device
	err    error
}

// readClaims reads d's usbfs claims in the background, so that the apply
// loop does not wait for it: a libudev scan of the device's subtree took
// 10-65 ms in the test host under TCG (took, in the debug log), not much
// less than the attach itself.
func (c *Controller) readClaims(ctx context.Context, d reconcile.Device) <-chan claimResult {
	ch := make(chan claimResult, 1)
	go func() {
		ctx, cancel := context.WithTimeout(ctx, c.opt.CallTimeout)
		defer cancel()
		t0 := time.Now()
		ifaces, total, err := c.opt.Claims.UsbfsClaims(ctx, d)
		c.log.Debug("usbfs claims read", "device", d.Key().String(), "usbfs", strings.Join(ifaces, ","), "interfaces", total, "took", time.Since(t0))
		ch <- claimResult{ifaces, total, err}
	}()
	return ch
}

// heldClaims tells, from a read started just before an attach and one
// just after it returned, which interfaces another program holds. A claim
// before the attach is not QEMU's: it had not opened the device. A claim
// that appeared during the attach may be QEMU's own, made when the guest
// configured the device at once (firmware scanning its ports at boot):
// QEMU claims all of a device's interfaces or, when another program holds
// one, fails; so new claims on only some of them still mean another
// program, and new claims on all of them are taken for QEMU's.
func heldClaims(before, after claimResult) []string {
	if after.err != nil || len(after.ifaces) == 0 {
		return nil
	}
	var kept []string
	if before.err == nil {
		for _, i := range after.ifaces {
			if slices.Contains(before.ifaces, i) {
				kept = append(kept, i)
			}
		}
	}
	if len(kept) == 0 && len(after.ifaces) < after.total {
		kept = after.ifaces
	}
	return kept
}

// heldAtAttach records what the claim reads around a successful attach
// found.
func (c *Controller) heldAtAttach(a reconcile.Action, before, after claimResult, now time.Time) {
	if after.err != nil {
		c.log.Warn("cannot tell whether a host program holds the device", "domain", a.Domain, "device", a.Key.String(), "err", after.err)
		return
	}
	ifaces := heldClaims(before, after)
	if len(ifaces) == 0 {
		delete(c.loop.holds, a.Key)
		if len(after.ifaces) > 0 {
			c.log.Debug("usbfs claims made during the attach on every interface: taken for QEMU's own", "device", a.Key.String(), "interfaces", strings.Join(after.ifaces, ","))
		}
		return
	}
	ifaces = slices.Clone(ifaces)
	sort.Strings(ifaces)
	h := &HostHold{Key: a.Key, Domain: a.Domain, Alias: a.Alias, Interfaces: ifaces, Since: now, next: now.Add(c.opt.HoldRecheck)}
	if a.Device != nil {
		h.Device = *a.Device
	}
	c.loop.holds[a.Key] = h
	warning := holdWarning(ifaces)
	c.log.Warn("device held on the host", "domain", a.Domain, "alias", a.Alias, "device", a.Key.String(), "interfaces", strings.Join(ifaces, ","), "warning", warning, "fix", holdFix(a.Key))
	c.emit(events.Event{Type: events.HeldOnHost, Key: keyPtr(a.Key), Device: a.Device, Domain: a.Domain, Reason: warning})
}

// recheckHolds forgets the holds whose hostdev is gone and, for those due,
// reads the claims again: a hold ends when the program has let go of
// every interface it held. It returns when the next look is due (zero for
// none). Only the interfaces held at the attach count: QEMU's own claims,
// made when the guest configures the device, show as usbfs too.
func (c *Controller) recheckHolds(ctx context.Context, devs []reconcile.Device, now time.Time) time.Time {
	if len(c.loop.holds) == 0 {
		return time.Time{}
	}
	present := make(map[reconcile.DeviceKey]reconcile.Device, len(devs))
	for _, d := range devs {
		present[d.Key()] = d
	}
	var next time.Time
	for k, h := range c.loop.holds {
		d, ok := present[k]
		if !ok || !c.hasHostdev(h.Domain, h.Alias) {
			delete(c.loop.holds, k) // unplugged, or detached
			continue
		}
		if now.Before(h.next) {
			if next.IsZero() || h.next.Before(next) {
				next = h.next
			}
			continue
		}
		r := <-c.readClaims(ctx, d)
		h.next = now.Add(c.opt.HoldRecheck)
		if r.err != nil {
			c.log.Debug("read usbfs claims", "device", k.String(), "err", r.err)
		} else {
			still := slices.DeleteFunc(slices.Clone(h.Interfaces), func(i string) bool { return !slices.Contains(r.ifaces, i) })
			if len(still) == 0 {
				delete(c.loop.holds, k)
				c.log.Info("device no longer held on the host", "domain", h.Domain, "alias", h.Alias, "device", k.String(),
					"hint", "if the guest could not set it up, replug it or run usbctl detach and usbctl release")
				c.emit(events.Event{Type: events.ReleasedOnHost, Key: keyPtr(k), Device: &d, Domain: h.Domain})
				continue
			}
			h.Interfaces = still
		}
		if next.IsZero() || h.next.Before(next) {
			next = h.next
		}
	}
	return next
}

func (c *Controller) hasHostdev(domain, alias string) bool {
	d, ok := c.loop.domains.byName[domain]
	if !ok || !d.State.Active() {
		return false
	}
	return slices.ContainsFunc(d.Hostdevs, func(h reconcile.Hostdev) bool { return h.Alias == alias })
}

// holdList returns the holds for status, sorted by device.
func (c *Controller) holdList() []HostHold {
	out := make([]HostHold, 0, len(c.loop.holds))
	for _, h := range c.loop.holds {
		hh := *h
		hh.Interfaces = slices.Clone(h.Interfaces)
		hh.Warning, hh.Fix = holdWarning(h.Interfaces), holdFix(h.Key)
		out = append(out, hh)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key.Less(out[j].Key) })
	return out
}
