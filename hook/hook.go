// Package hook is usbctl's libvirt qemu hook: it fixes up the USB hostdevs
// usbctl attached when libvirt brings a saved guest back (managedsave,
// save/restore) or receives a migrating one.
//
// usbctl attaches live only, but libvirt writes the live hostdevs into
// saved state. A device unplugged and plugged again while the guest was
// saved comes back with a new device number, and the saved
// <address bus='1' device='94'/> then points at nothing: "virsh start"
// failed with "Did not find USB device bus:1 device:94" until the saved
// state was discarded. On a migration's destination the saved numbers
// name whatever device happens to have them there.
//
// The hostdevs cannot simply be dropped: libvirt refuses a restore or
// migration whose XML has fewer host devices than the saved machine
// ("Target domain host device count 0 does not match source 1", checked
// against the sandbox's libvirt 9.0), since QEMU's saved state holds them.
// So the hook re-points each one whose device is gone at a device the
// config gives the guest now, on the same guest-side port, with the alias
// of its new bus and device number; usbctld then finds it attached, as
// after any attach of its own. When no such device is present the
// operation fails, with a message that says what to do.
//
// libvirt runs the hook with the domain XML on stdin and, for "restore"
// and "migrate", uses what it prints as the new XML (nothing: unchanged).
// The hook must not call libvirt: libvirtd waits for it.
package hook

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"libvirt.org/go/libvirtxml"

	"github.com/usbctl/usbctl/reconcile"
)

// Operations whose XML the hook may rewrite (libvirt's qemu hook "operation"
// argument).
const (
	OpRestore = "restore"
	OpMigrate = "migrate"
)

// Input is one call of the hook.
type Input struct {
	Domain string
	Op     string
	XML    []byte
	// Devices are the USB devices present now.
	Devices []reconcile.Device
	// Rules are the config's; nil when there is no usable config, and
	// then no device is wanted anywhere.
	Rules *reconcile.Rules
}

// Change is one hostdev the hook re-pointed.
type Change struct {
	From, To reconcile.DeviceKey
	Device   reconcile.Device // the device it now names
}

func (c Change) String() string {
	return fmt.Sprintf("%s (its device is gone) now %s, %s on port %s", c.From.Alias(), c.To.Alias(), c.Device.ID(), c.Device.Port)
}

// ErrUnreadable marks XML the hook cannot read: it then leaves the XML to
// libvirt rather than fail an operation it does not understand.
var ErrUnreadable = errors.New("unreadable domain xml")

// Rewrites reports whether libvirt lets op rewrite the domain XML.
func Rewrites(op string) bool { return op == OpRestore || op == OpMigrate }

// hostdev is one <hostdev> element of the domain's devices.
type hostdev struct {
	start, end int // byte range of the element in the XML
	def        libvirtxml.DomainHostdev
	rec        reconcile.Hostdev
}

// Rewrite decides what to do with the usbctl hostdevs of in.XML. It
// returns the new XML, or nil when nothing needs to change, and the
// changes made. An error means the operation cannot succeed; its text is
// for the person who started it.
func Rewrite(in Input) ([]byte, []Change, error) {
	if !Rewrites(in.Op) {
		return nil, nil, nil
	}
	hds, err := hostdevs(in.XML)
	if err != nil {
		return nil, nil, err
	}
	present := map[reconcile.DeviceKey]reconcile.Device{}
	for _, d := range in.Devices {
		present[d.Key()] = d
	}
	rules := reconcile.Rules{}
	if in.Rules != nil {
		rules = *in.Rules
	}

	// Which of usbctl's hostdevs stay as they are: on a restore (this
	// host), those whose device is still at that address; on a
	// migration's destination, only those whose device here is one the
	// rules give the guest, since the numbers come from another host.
	keep := make([]bool, len(hds))
	var ours []int
	dom := reconcile.Domain{Name: in.Domain, State: reconcile.StateRunning}
	for i, h := range hds {
		k, hasKey := h.rec.Key()
		if !h.rec.Owned() {
			dom.Hostdevs = append(dom.Hostdevs, h.rec)
			continue
		}
		ours = append(ours, i)
		if _, ok := present[k]; hasKey && ok {
			keep[i] = true
			dom.Hostdevs = append(dom.Hostdevs, h.rec)
		}
	}
	if len(ours) == 0 {
		return nil, nil, nil
	}
	if in.Op == OpMigrate {
		unwanted := map[string]bool{}
		// By the rules alone: the hook runs inside libvirtd and must not
		// ask usbctld, whose runtime assignments (nil here) it corrects
		// a sync later if they say otherwise.
		for _, a := range reconcile.Plan(rules, reconcile.Observed{Devices: in.Devices, Domains: []reconcile.Domain{dom}}, nil).Actions {
			if a.Kind == reconcile.Detach && a.Domain == in.Domain {
				unwanted[a.Alias] = true
			}
		}
		kept := dom.Hostdevs[:0]
		for _, h := range dom.Hostdevs {
			if !unwanted[h.Alias] {
				kept = append(kept, h)
			}
		}
		dom.Hostdevs = kept
		for _, i := range ours {
			keep[i] = keep[i] && !unwanted[hds[i].rec.Alias]
		}
	}
	var lost []int
	for _, i := range ours {
		if !keep[i] {
			lost = append(lost, i)
		}
	}
	if len(lost) == 0 {
		return nil, nil, nil
	}

	// The devices usbctld would attach to the guest now, in the plan's
	// order, take the places of the lost ones.
	var fresh []reconcile.Device
	for _, a := range reconcile.Plan(rules, reconcile.Observed{Devices: in.Devices, Domains: []reconcile.Domain{dom}}, nil).Actions {
		if a.Kind == reconcile.Attach && a.Domain == in.Domain && a.Device != nil {
			fresh = append(fresh, *a.Device)
		}
	}
	if len(fresh) < len(lost) {
		return nil, nil, unrestorable(in, hds, lost, len(fresh), in.Rules == nil)
	}

	var out bytes.Buffer
	var changes []Change
	at := 0
	for n, i := range lost {
		h := hds[i]
		d := fresh[n]
		from, _ := h.rec.Key()
		def := h.def
		bus, dev := uint(d.Bus), uint(d.Dev)
		// Only the source and the alias change; the guest-side address
		// and everything else stay, as libvirt's ABI check requires.
		src := *def.SubsysUSB.Source
		src.Address = &libvirtxml.DomainAddressUSB{Bus: &bus, Device: &dev}
		src.Vendor, src.Product = nil, nil
		def.SubsysUSB = &libvirtxml.DomainHostdevSubsysUSB{Source: &src}
		def.Alias = &libvirtxml.DomainAlias{Name: d.Key().Alias()}
		x, err := def.Marshal()
		if err != nil {
			return nil, nil, fmt.Errorf("hostdev %s of %s: %w", h.rec.Alias, in.Domain, err)
		}
		out.Write(in.XML[at:h.start])
		out.WriteString(x)
		at = h.end
		changes = append(changes, Change{From: from, To: d.Key(), Device: d})
	}
	out.Write(in.XML[at:])
	return out.Bytes(), changes, nil
}

func unrestorable(in Input, hds []hostdev, lost []int, fresh int, noRules bool) error {
	var aliases []string
	for _, i := range lost {
		aliases = append(aliases, hds[i].rec.Alias)
	}
	what := "restore"
	fix := fmt.Sprintf("Plug the device in again and retry, or start %s afresh without its saved state: virsh managedsave-remove %s (or, for virsh restore, start it from its definition).", in.Domain, in.Domain)
	if in.Op == OpMigrate {
		what = "migrate"
		fix = fmt.Sprintf("Detach them on the source host first, and keep usbctld there from attaching them again (a rule change), or give %s rules on this host for devices present here.", in.Domain)
	}
	why := fmt.Sprintf("%d of them would find another device here (of those usbctl's rules give %s)", fresh, in.Domain)
	if noRules {
		why = "there is no usbctl config here that gives it devices"
	}
	return fmt.Errorf("usbctl hook: cannot %s %s: its saved state holds %s, attached by usbctl, whose devices are not here, and %s; libvirt cannot %s a guest with fewer USB devices than it saved. %s",
		what, in.Domain, strings.Join(aliases, ", "), why, what, fix)
}

// hostdevs finds the <hostdev> elements of /domain/devices, with their
// byte ranges, decoded by libvirtxml.
func hostdevs(doc []byte) ([]hostdev, error) {
	d := xml.NewDecoder(bytes.NewReader(doc))
	var path []string
	var out []hostdev
	for {
		start := int(d.InputOffset())
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrUnreadable, err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if t.Name.Local == "hostdev" && len(path) == 2 && path[0] == "domain" && path[1] == "devices" {
				var h hostdev
				if err := d.DecodeElement(&h.def, &t); err != nil {
					return nil, fmt.Errorf("%w: hostdev: %v", ErrUnreadable, err)
				}
				h.start, h.end = start, int(d.InputOffset())
				if h.def.SubsysUSB == nil {
					continue
				}
				h.rec = record(h.def)
				out = append(out, h)
				continue
			}
			path = append(path, t.Name.Local)
		case xml.EndElement:
			if len(path) > 0 {
				path = path[:len(path)-1]
			}
		}
	}
	return out, nil
}

// record is the hostdev as the libvirt adapter reads it.
func record(h libvirtxml.DomainHostdev) reconcile.Hostdev {
	var r reconcile.Hostdev
	if h.Alias != nil {
		r.Alias = h.Alias.Name
	}
	src := h.SubsysUSB.Source
	if src == nil {
		return r
	}
	if a := src.Address; a != nil && a.Bus != nil && a.Device != nil && *a.Bus <= reconcile.MaxBus && *a.Device <= reconcile.MaxDev {
		r.Bus, r.Dev = int(*a.Bus), int(*a.Device)
	}
	if src.Vendor != nil {
		r.Vendor = hexID(src.Vendor.ID)
	}
	if src.Product != nil {
		r.Product = hexID(src.Product.ID)
	}
	return r
}

func hexID(s string) string {
	v, err := strconv.ParseUint(strings.TrimPrefix(strings.ToLower(s), "0x"), 16, 16)
	if err != nil {
		return ""
	}
	return fmt.Sprintf("%04x", v)
}
