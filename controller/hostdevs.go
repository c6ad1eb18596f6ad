package controller

import (
	"iter"
	"time"

	"github.com/usbctl/usbctl/reconcile"
)

// hostdevKey names one hostdev: its alias in its domain.
type hostdevKey struct {
	domain, alias string
}

// hostdevSeen is what the loop remembers of one of our hostdevs.
type hostdevSeen struct {
	// since is when this daemon first saw it in place: its own attach,
	// or the first listing after start-up.
	since time.Time
	// adopted: an earlier run attached it (found on the first listing).
	adopted bool
}

// hostdevBook is the loop's record of our hostdevs, for status. The live
// XML says which hostdevs exist; the book only adds since when and whether
// adopted.
type hostdevBook map[hostdevKey]hostdevSeen

// found records hostdevs seen in a listing or a re-read: those not yet in
// the book are there since now, and adopted if the first full listing of
// domains has not happened yet.
func (b hostdevBook) found(ds []reconcile.Domain, now time.Time, adopted bool) {
	for dom, h := range ownedActive(ds) {
		k := hostdevKey{dom, h.Alias}
		if _, ok := b[k]; !ok {
			b[k] = hostdevSeen{since: now, adopted: adopted}
		}
	}
}

// attached records our own attach at now.
func (b hostdevBook) attached(k hostdevKey, now time.Time) { b[k] = hostdevSeen{since: now} }

func (b hostdevBook) detached(k hostdevKey) { delete(b, k) }

// prune drops what no domain in ds has any more.
func (b hostdevBook) prune(ds []reconcile.Domain) {
	live := make(map[hostdevKey]bool)
	for _, d := range ds {
		for _, h := range d.Hostdevs {
			live[hostdevKey{d.Name, h.Alias}] = true
		}
	}
	for k := range b {
		if !live[k] {
			delete(b, k)
		}
	}
}

// ownedActive yields each hostdev usbctl owns in an active domain of ds,
// with the domain's name.
func ownedActive(ds []reconcile.Domain) iter.Seq2[string, reconcile.Hostdev] {
	return func(yield func(string, reconcile.Hostdev) bool) {
		for _, d := range ds {
			if !d.State.Active() {
				continue
			}
			for _, h := range d.Hostdevs {
				if h.Owned() && !yield(d.Name, h) {
					return
				}
			}
		}
	}
}
