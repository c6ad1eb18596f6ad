package controller

import (
	"fmt"
	"slices"
	"time"

	"github.com/usbctl/usbctl/failure"
	"github.com/usbctl/usbctl/reconcile"
)

// detachWait bounds how long a detach libvirt accepted may take to finish
// before the loop takes it for failed. A USB hostdev goes as soon as QEMU
// has deleted the device (~60-90 ms on the sandbox); libvirt itself gives
// up on a guest's unplug after 5 s.
const detachWait = 10 * time.Second

// detachPoll is how often a domain is read again while an attach waits for
// a detach of the same alias there, in case the device-removed event that
// says it is done is lost.
const detachPoll = 250 * time.Millisecond

// errDetachStuck is the failure of a detach libvirt accepted that did not
// finish within detachWait: it is asked again after the backoff.
var errDetachStuck = failure.New(failure.Transient, "libvirt accepted the detach, but the hostdev is still there")

// detachBook holds our detaches that libvirt accepted and has not finished:
// libvirt returns once QEMU was asked, and removes the hostdev from the
// live XML only when QEMU is done, which its device-removed event says. A
// re-read in between still shows the hostdev. Taken as it is, the plan
// detached it a second time (against an alias libvirt no longer had a
// moment later), and an attach of a replugged device that came back with
// the same device number failed with "non unique alias" and backed off a
// second (issue 13 item 7). The loop owns it.
type detachBook map[hostdevKey]time.Time

// asked records a detach libvirt accepted at now.
func (b detachBook) asked(k hostdevKey, now time.Time) { b[k] = now }

// holds reports whether an attach of alias to domain must wait: our detach
// of a hostdev with that alias there is not finished.
func (b detachBook) holds(domain, alias string) bool {
	_, ok := b[hostdevKey{domain, alias}]
	return ok
}

// reconcile brings the book and the domain cache together after the
// domains in fresh were read from libvirt (all of them if all): a detach
// whose hostdev is gone from a fresh read (or whose domain is) is done;
// one whose hostdev is still there is hidden from the cache, so the plan
// does not ask for it again; one that has not finished within detachWait
// is given up as a failure of the detach, which the plan then asks for
// again after its backoff. A domain not read this sync tells nothing: the
// cache lacks the hostdev since our own detach.
func (b detachBook) reconcile(dc *domainCache, all bool, fresh map[string]bool, fs *failures, now time.Time) {
	for k, at := range b {
		late := now.Sub(at) >= detachWait
		if !all && !fresh[k.domain] {
			if late {
				delete(b, k)
			}
			continue
		}
		d, ok := dc.byName[k.domain]
		i := -1
		if ok && d.State.Active() {
			i = slices.IndexFunc(d.Hostdevs, func(h reconcile.Hostdev) bool { return h.Alias == k.alias })
		}
		if i < 0 {
			delete(b, k)
			continue
		}
		if late {
			delete(b, k)
			key, _ := d.Hostdevs[i].Key()
			fs.failedNow(actionID{kind: reconcile.Detach, domain: k.domain, key: key}, fmt.Errorf("detach %s from %s: %w", k.alias, k.domain, errDetachStuck), now)
			continue
		}
		// The cached slice may be shared with the published status.
		d.Hostdevs = slices.Delete(slices.Clone(d.Hostdevs), i, i+1)
		dc.byName[k.domain] = d
	}
}
