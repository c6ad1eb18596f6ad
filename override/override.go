// Package override holds what people ask usbctld at runtime — usbctl
// attach, detach, move, and the answers to offers — as desired state: a
// device, where it goes (a domain or the host), who asked, when, and until
// when. The controller keeps the set, ends overrides whose time is up
// (Expire: a pure function of the clock and the observed world), hands the
// rest to reconcile.Plan as one more input (Plan: which device key each
// names now), and stores them in a state file (Save, Load) so they outlive
// a restart of usbctld.
package override

import (
	"fmt"
	"time"

	"github.com/usbctl/usbctl/reconcile"
)

// Identity pins one plugged-in device. The bus and device number alone are
// not enough across time: the kernel gives a replugged device a new device
// number, but numbers wrap and are reused. With the port, the ids and the
// serial, an identity matches the same device as long as it stays plugged
// in — across usbctld restarts too — and never its successor on the port.
type Identity struct {
	Bus     int    `json:"bus"`
	Dev     int    `json:"dev"`
	Port    string `json:"port"`
	Vendor  string `json:"vendor"`
	Product string `json:"product"`
	Serial  string `json:"serial,omitempty"`
	// Name is the maker and product name when the override was set, for
	// status and logs once the device is gone. Not part of the match.
	Name string `json:"name,omitempty"`
}

// IdentityOf is d's identity.
func IdentityOf(d reconcile.Device) Identity {
	name := d.ProductName
	if d.Manufacturer != "" {
		name = d.Manufacturer + " " + name
	}
	return Identity{Bus: d.Bus, Dev: d.Dev, Port: d.Port, Vendor: d.Vendor, Product: d.Product, Serial: d.Serial, Name: name}
}

// Key is the device key the identity had.
func (id Identity) Key() reconcile.DeviceKey { return reconcile.DeviceKey{Bus: id.Bus, Dev: id.Dev} }

// Is reports whether d is the device the identity pins.
func (id Identity) Is(d reconcile.Device) bool {
	return d.Bus == id.Bus && d.Dev == id.Dev && d.Port == id.Port && d.Vendor == id.Vendor && d.Product == id.Product && d.Serial == id.Serial
}

func (id Identity) String() string {
	return fmt.Sprintf("%s (%s:%s, port %s)", id.Key(), id.Vendor, id.Product, id.Port)
}

// Lifetime says when an override ends by itself.
type Lifetime string

const (
	// UntilUnplug ends when the device is unplugged (the default).
	UntilUnplug Lifetime = "unplug"
	// For ends at Until (--for 2h), or at unplug if that comes first.
	For Lifetime = "for"
	// UntilStop ends when the domain stops (--until-stop), or at unplug.
	UntilStop Lifetime = "until-stop"
)

// Setter is who set an override and how.
type Setter struct {
	// UID is the peer's uid on the control socket; for overrides usbctld
	// sets itself (an offer nobody answered) it is its own.
	UID  uint32 `json:"uid"`
	User string `json:"user,omitempty"`
	// Via is what set it: "usbctl attach", "usbctl detach", "usbctl
	// move", "offer unanswered".
	Via string `json:"via"`
}

func (s Setter) String() string {
	who := s.User
	if who == "" {
		who = fmt.Sprintf("uid %d", s.UID)
	}
	return who + " (" + s.Via + ")"
}

// Override is one runtime assignment.
type Override struct {
	Device Identity `json:"device"`
	// Domain is where the device goes; "" keeps it on the host.
	Domain   string    `json:"domain,omitempty"`
	Lifetime Lifetime  `json:"lifetime"`
	Until    time.Time `json:"until,omitzero"` // For only
	SetBy    Setter    `json:"set_by"`
	SetAt    time.Time `json:"set_at"`
}

// Host reports whether the override keeps the device on the host.
func (o Override) Host() bool { return o.Domain == "" }

// Describe is the override in words, for Plan's explanations:
// "usbctl attach by alice at 2026-11-26 12:03:04, until unplugged".
func (o Override) Describe() string {
	return fmt.Sprintf("%s by %s at %s, %s", o.SetBy.Via, o.SetBy.user(), o.SetAt.Format("2006-01-02 15:04:05"), o.Ends())
}

// Ends says when the override ends: "until unplugged", "until 14:00:00",
// "until win11 stops".
func (o Override) Ends() string {
	switch o.Lifetime {
	case For:
		return "until " + o.Until.Format("15:04:05")
	case UntilStop:
		return fmt.Sprintf("until %s stops", o.Domain)
	}
	return "until unplugged"
}

func (s Setter) user() string {
	if s.User != "" {
		return s.User
	}
	return fmt.Sprintf("uid %d", s.UID)
}

// Why an override ended.
type Reason string

const (
	Unplugged  Reason = "device unplugged"
	TimeUp     Reason = "time is up"
	DomainDown Reason = "domain stopped"
	Released   Reason = "released"
	Replaced   Reason = "replaced"
)

// Ended is an override that ended, and why.
type Ended struct {
	Override
	Why Reason
}

// World is what Expire needs to know about the present.
type World struct {
	Now     time.Time
	Devices []reconcile.Device
	Domains []reconcile.Domain
	// DevicesListed and DomainsListed say whether the lists are complete
	// (the first enumeration is done). Until they are, nothing is ended
	// for being absent: after a restart the device is there, only not
	// listed yet.
	DevicesListed, DomainsListed bool
}

// Expire splits ovs into those that still hold and those that end now.
// An override ends when its device is no longer present (unplugged, or
// replugged: then it has a new device number), when its time is up, or,
// with UntilStop, when its domain is no longer active. It does no I/O and
// keeps the order of ovs.
func Expire(ovs []Override, w World) (keep []Override, ended []Ended) {
	state := make(map[string]reconcile.DomainState, len(w.Domains))
	for _, d := range w.Domains {
		state[d.Name] = d.State
	}
	for _, o := range ovs {
		why := Reason("")
		switch {
		case w.DevicesListed && !present(o.Device, w.Devices):
			why = Unplugged
		case o.Lifetime == For && !w.Now.Before(o.Until):
			why = TimeUp
		case o.Lifetime == UntilStop && w.DomainsListed && !state[o.Domain].Active():
			why = DomainDown
		}
		if why != "" {
			ended = append(ended, Ended{Override: o, Why: why})
		} else {
			keep = append(keep, o)
		}
	}
	return keep, ended
}

func present(id Identity, devs []reconcile.Device) bool {
	for _, d := range devs {
		if id.Is(d) {
			return true
		}
	}
	return false
}

// Next is the earliest time an override of ovs ends by the clock, zero if
// none does: the controller sets a timer for it.
func Next(ovs []Override) time.Time {
	var next time.Time
	for _, o := range ovs {
		if o.Lifetime == For && (next.IsZero() || o.Until.Before(next)) {
			next = o.Until
		}
	}
	return next
}

// Set puts o in ovs, replacing the override of the same device; one device
// has at most one override. It returns the new set and the one replaced.
func Set(ovs []Override, o Override) ([]Override, *Override) {
	out := make([]Override, 0, len(ovs)+1)
	var old *Override
	for _, x := range ovs {
		if x.Device.Key() == o.Device.Key() {
			x := x
			old = &x
			continue
		}
		out = append(out, x)
	}
	return append(out, o), old
}

// Remove takes the override of the device with key k out of ovs.
func Remove(ovs []Override, k reconcile.DeviceKey) ([]Override, *Override) {
	out := make([]Override, 0, len(ovs))
	var old *Override
	for _, x := range ovs {
		if x.Device.Key() == k {
			x := x
			old = &x
			continue
		}
		out = append(out, x)
	}
	return out, old
}

// Find returns the override of the device with key k.
func Find(ovs []Override, k reconcile.DeviceKey) (Override, bool) {
	for _, o := range ovs {
		if o.Device.Key() == k {
			return o, true
		}
	}
	return Override{}, false
}
