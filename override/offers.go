package override

import (
	"time"

	"github.com/usbctl/usbctl/reconcile"
)

// Offer is a device that a domain in mode "ask" (or an ask device rule)
// would get, held on the host until someone answers: usbctl attach or
// detach, or the desktop agent. Nobody answering within the timeout is an
// answer too: the device stays on the host (an override the controller
// sets, so a restart does not ask again).
type Offer struct {
	Device  reconcile.Device `json:"device"`
	Domain  string           `json:"domain"`
	Rule    string           `json:"rule,omitempty"`
	Since   time.Time        `json:"since"`
	Expires time.Time        `json:"expires"`
}

// Planned is an offer as Plan makes it: device, domain, rule.
type Planned struct {
	Device reconcile.Device
	Domain string
	Rule   string
}

// TrackOffers carries the offers of the last sync over to this one: an
// offer Plan still makes keeps its Since and Expires, a new one starts now
// and expires after timeout. It returns the offers now open, those that
// started, those Plan no longer makes (answered, unplugged, taken by a
// rule), and those whose time is up, which are no longer open: the caller
// keeps their devices on the host.
func TrackOffers(prev []Offer, planned []Planned, now time.Time, timeout time.Duration) (open, started, gone, expired []Offer) {
	type key struct {
		id     Identity
		domain string
	}
	k := func(d reconcile.Device, domain string) key {
		id := IdentityOf(d)
		id.Name = ""
		return key{id, domain}
	}
	old := make(map[key]Offer, len(prev))
	for _, o := range prev {
		old[k(o.Device, o.Domain)] = o
	}
	seen := make(map[key]bool, len(planned))
	for _, p := range planned {
		kk := k(p.Device, p.Domain)
		seen[kk] = true
		o, ok := old[kk]
		if !ok {
			o = Offer{Device: p.Device, Domain: p.Domain, Rule: p.Rule, Since: now, Expires: now.Add(timeout)}
			started = append(started, o)
		}
		o.Device, o.Rule = p.Device, p.Rule
		if !now.Before(o.Expires) {
			expired = append(expired, o)
			continue
		}
		open = append(open, o)
	}
	for _, o := range prev {
		if !seen[k(o.Device, o.Domain)] {
			gone = append(gone, o)
		}
	}
	return open, started, gone, expired
}

// NextExpiry is the earliest Expires of the offers, zero if none.
func NextExpiry(offers []Offer) time.Time {
	var next time.Time
	for _, o := range offers {
		if next.IsZero() || o.Expires.Before(next) {
			next = o.Expires
		}
	}
	return next
}
