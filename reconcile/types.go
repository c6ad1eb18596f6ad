// Package reconcile decides which host USB devices belong to which libvirt
// domain. It is pure: no I/O, no clocks, no globals, no cgo. Everything it
// needs arrives as arguments (the compiled rules and the observed world) and
// everything it decides leaves as data (actions, conflicts, explanations) for
// the controller to carry out.
package reconcile

import (
	"fmt"
	"strings"
)

// AliasPrefix marks a hostdev as ours. libvirt keeps user aliases that start
// with "ua-" on hotplugged devices, so the live domain XML itself records what
// usbctl owns: no state file to go stale.
const AliasPrefix = "ua-usbctl-"

// The ranges of bus and device numbers: the kernel numbers devices 1 to
// 127 on each bus (USB addresses), and buses from 1. Everything that reads
// devices (udev, snapshots) refuses numbers outside them.
const (
	MaxBus = 999
	MaxDev = 127
)

// DeviceKey identifies a present USB device by its bus and device number.
// vendor:product cannot: two identical devices share it.
type DeviceKey struct {
	Bus int `json:"bus"`
	Dev int `json:"dev"`
}

func (k DeviceKey) String() string { return fmt.Sprintf("%03d:%03d", k.Bus, k.Dev) }

// Alias is the libvirt user alias usbctl gives the hostdev of this device.
func (k DeviceKey) Alias() string { return fmt.Sprintf("%s%03d-%03d", AliasPrefix, k.Bus, k.Dev) }

// Less orders keys by bus, then device number.
func (k DeviceKey) Less(o DeviceKey) bool {
	if k.Bus != o.Bus {
		return k.Bus < o.Bus
	}
	return k.Dev < o.Dev
}

// Device is a USB device present on the host, as udev reports it. All
// strings except the hex fields come from the hardware and must be treated as
// hostile: they are never put into XML or terminals unescaped.
type Device struct {
	Bus int `json:"bus"`
	Dev int `json:"dev"`
	// Vendor and Product are four lower-case hex digits.
	Vendor  string `json:"vendor"`
	Product string `json:"product"`
	Serial  string `json:"serial,omitempty"`
	// Port is the physical path from the kernel devpath: "1-4.2" is port 2 of
	// the hub on port 4 of bus 1. Root hubs have "usb1" and so on.
	Port string `json:"port"`
	// Class is bDeviceClass as two lower-case hex digits ("09" is a hub,
	// "00" means "see the interfaces"). InterfaceClasses holds the class of
	// every interface, two lower-case hex digits each.
	Class            string   `json:"class,omitempty"`
	InterfaceClasses []string `json:"interface_classes,omitempty"`
	Manufacturer     string   `json:"manufacturer,omitempty"`
	ProductName      string   `json:"product_name,omitempty"`
	// DevPath is the kernel devpath (/devices/...), the identity udev uses.
	DevPath string `json:"devpath,omitempty"`
	// Speed is the sysfs "speed" in Mb/s ("1.5", "12", "480", "5000"...):
	// what explains a guest controller refusing the device (SpeedMismatch).
	Speed string `json:"speed,omitempty"`
}

// Key returns the bus/device number pair that identifies d.
func (d Device) Key() DeviceKey { return DeviceKey{Bus: d.Bus, Dev: d.Dev} }

// ID returns "vendor:product".
func (d Device) ID() string { return d.Vendor + ":" + d.Product }

// IsHub reports whether d is a USB hub (device class 09). Hubs are never
// passed through by broad rules: a guest that takes a hub takes everything
// plugged into it, often the host's own keyboard.
func (d Device) IsHub() bool { return d.Class == "09" }

// DomainState is the libvirt state of a domain, in libvirt's own words.
type DomainState string

// Domain states, as virsh names them.
const (
	StateRunning     DomainState = "running"
	StateBlocked     DomainState = "blocked"
	StatePaused      DomainState = "paused"
	StateShutdown    DomainState = "in shutdown"
	StateShutoff     DomainState = "shut off"
	StateCrashed     DomainState = "crashed"
	StatePMSuspended DomainState = "pmsuspended"
	StateUnknown     DomainState = "unknown"
)

// Active reports whether the domain has a live QEMU process that can take
// or hold a hotplugged device. A paused guest keeps its devices: pausing is
// not a reason to yank a device from under it.
func (s DomainState) Active() bool {
	switch s {
	case StateRunning, StateBlocked, StatePaused, StatePMSuspended:
		return true
	}
	return false
}

// Hostdev is a USB hostdev in a domain's live XML.
type Hostdev struct {
	// Alias is the device alias; "ua-usbctl-BBB-DDD" for ours.
	Alias string `json:"alias"`
	// Bus and Dev are the source address; zero when the hostdev names its
	// device by vendor/product only.
	Bus     int    `json:"bus,omitempty"`
	Dev     int    `json:"dev,omitempty"`
	Vendor  string `json:"vendor,omitempty"`
	Product string `json:"product,omitempty"`
}

// Owned reports whether usbctl attached this hostdev.
func (h Hostdev) Owned() bool { return strings.HasPrefix(h.Alias, AliasPrefix) }

// Key returns the source address of the hostdev, and false if it has none.
func (h Hostdev) Key() (DeviceKey, bool) {
	if h.Bus == 0 && h.Dev == 0 {
		return DeviceKey{}, false
	}
	return DeviceKey{Bus: h.Bus, Dev: h.Dev}, true
}

// Domain is a libvirt domain and the USB hostdevs of its live XML.
type Domain struct {
	Name     string      `json:"name"`
	UUID     string      `json:"uuid,omitempty"`
	State    DomainState `json:"state"`
	Hostdevs []Hostdev   `json:"hostdevs,omitempty"`
	// USBControllers are the models of its live USB controllers
	// ("qemu-xhci", "piix3-uhci"; "" for libvirt's default), read with
	// the hostdevs, for SpeedMismatch.
	USBControllers []string `json:"usb_controllers,omitempty"`
}

// Observed is the world as seen at one moment: present devices and all
// defined domains.
type Observed struct {
	Devices []Device `json:"devices"`
	Domains []Domain `json:"domains"`
}

// Mode says which devices a domain wants, as the older bash tool's
// whitelist / blacklist / matchall did.
type Mode string

const (
	// ModeAllow: only the listed devices (the old "whitelist").
	ModeAllow Mode = "allow"
	// ModeDeny: every device except the listed ones (the old "blacklist").
	ModeDeny Mode = "deny"
	// ModeAll: every device (the old "matchall").
	ModeAll Mode = "all"
	// ModeAsk: every device, offered rather than attached: it waits on
	// the host until someone answers (usbctl attach or detach, or the
	// desktop agent). Listed devices are attached without asking.
	ModeAsk Mode = "ask"
)

// IDPattern matches vendor:product; an empty field matches any value.
type IDPattern struct {
	Vendor  string `json:"vendor,omitempty"`
	Product string `json:"product,omitempty"`
}

// Exact reports whether the pattern names one vendor:product with no
// wildcard.
func (p IDPattern) Exact() bool { return p.Vendor != "" && p.Product != "" }

func (p IDPattern) String() string {
	v, pr := p.Vendor, p.Product
	if v == "" {
		v = "*"
	}
	if pr == "" {
		pr = "*"
	}
	return v + ":" + pr
}

// PortPattern matches a physical port path.
type PortPattern struct {
	// Path is the port path without the wildcard: "1-4.2" or "1-4".
	Path string `json:"path"`
	// Subtree is true for "1-4.*": every device behind port 1-4, not the
	// device on 1-4 itself (that is the hub).
	Subtree bool `json:"subtree,omitempty"`
}

func (p PortPattern) String() string {
	if p.Subtree {
		return p.Path + ".*"
	}
	return p.Path
}

// Match is one device block (or exclude block) of the config. A device
// matches when every criterion that is set matches; within IDs and Classes
// any one entry is enough. A Match with no criterion matches nothing
// (config rejects such blocks).
type Match struct {
	// Label is the block label: device "receiver" { ... }.
	Label string `json:"label"`
	// Source is "file:line" of the block, for explanations.
	Source  string       `json:"source,omitempty"`
	IDs     []IDPattern  `json:"ids,omitempty"`
	Serial  string       `json:"serial,omitempty"`
	Port    *PortPattern `json:"port,omitempty"`
	Classes []string     `json:"classes,omitempty"` // two lower-case hex digits each
	// Ask, on a device block, offers what it matches rather than
	// attaching it, as mode "ask" does for a whole domain.
	Ask bool `json:"ask,omitempty"`
}

// DomainRules is one domain block of the config.
type DomainRules struct {
	Name     string `json:"name"`
	Source   string `json:"source,omitempty"`
	Priority int    `json:"priority"`
	// Preempt lets this domain take a device that a lower-priority running
	// domain already holds. Without it a device stays where it is.
	Preempt bool    `json:"preempt,omitempty"`
	Mode    Mode    `json:"mode"`
	Devices []Match `json:"devices,omitempty"`
}

// Rules is the compiled config: what every domain wants and what no domain
// may ever have.
type Rules struct {
	Domains  []DomainRules `json:"domains"`
	Excludes []Match       `json:"excludes,omitempty"`
}

// Override is a runtime assignment (usbctl attach, detach, move, an
// answered offer): the device with Key goes to Domain, or stays on the
// host when Domain is "", whatever the rules say; only an exclude outranks
// it. The controller keeps them, ends them when their time is up, and
// gives Plan those whose device is present.
type Override struct {
	Key    DeviceKey `json:"key"`
	Domain string    `json:"domain,omitempty"`
	// Source says who set it and until when, for explanations: "usbctl
	// attach by alice at 2026-11-26 12:00:00, until unplugged".
	Source string `json:"source"`
}

// ActionKind is what the controller must do.
type ActionKind string

const (
	Detach ActionKind = "detach"
	Attach ActionKind = "attach"
)

// Action is one hotplug to carry out. Detach actions name the hostdev by
// Alias; attach actions carry the Device (attached by bus/device number, with
// alias Key.Alias()).
type Action struct {
	Kind   ActionKind `json:"kind"`
	Domain string     `json:"domain"`
	Alias  string     `json:"alias"`
	Key    DeviceKey  `json:"key"`
	// Device is set for attaches, and for detaches of a device still present.
	Device *Device `json:"device,omitempty"`
	// Rule names the rule that placed the device (attach), e.g.
	// `domain "win11" device "receiver" (usbctl.hcl:12)`.
	Rule string `json:"rule,omitempty"`
	// Reason says why, in words for people: "device unplugged", "domain
	// no longer wants it", "excluded by ...", "moved to higher priority X".
	Reason string `json:"reason"`
}

func (a Action) String() string {
	return fmt.Sprintf("%s %s %s: %s", a.Kind, a.Alias, a.Domain, a.Reason)
}

// Conflict is a device that rules want but cannot have as they say: held by
// a hostdev usbctl does not own, or contested by domains of equal standing.
type Conflict struct {
	Key     DeviceKey `json:"key"`
	Domains []string  `json:"domains"`
	Reason  string    `json:"reason"`
}

// PlacementKind is what Plan decided for a present device. Plan decides on
// it; the placement's reason text is rendered from it, never read back.
type PlacementKind string

const (
	// Placed: the device goes to Domain, the running domain that ranks
	// first among those that want it.
	Placed PlacementKind = "placed"
	// Kept: the device stays with the running domain that has it,
	// although another one ranks first: a strictly higher priority with
	// preempt is all that moves an attached device.
	Kept PlacementKind = "kept"
	// Excluded: an exclude block keeps the device on the host.
	Excluded PlacementKind = "excluded"
	// HeldForeign: a hostdev usbctl does not own holds the device (HeldBy).
	HeldForeign PlacementKind = "held-foreign"
	// NotRunning: only domains that are not running want the device, and
	// at least one of them is defined in libvirt.
	NotRunning PlacementKind = "not-running"
	// NotDefined: only domains libvirt does not have want the device: a
	// domain block whose name no libvirt domain has (a typo, or a domain
	// not defined yet).
	NotDefined PlacementKind = "not-defined"
	// HubRefused: a hub that only a broad rule (wildcard, port, class,
	// mode) would take.
	HubRefused PlacementKind = "hub-refused"
	// Unmatched: no rule wants the device.
	Unmatched PlacementKind = "unmatched"
	// Assigned: a runtime assignment (usbctl attach or move) puts the
	// device in Domain, which is running, whatever the rules say.
	Assigned PlacementKind = "assigned"
	// AssignedNotRunning: a runtime assignment names a domain that is
	// not running; the device waits on the host for it.
	AssignedNotRunning PlacementKind = "assigned-not-running"
	// HostAssigned: a runtime assignment (usbctl detach, an offer
	// answered "no" or not at all) keeps the device on the host.
	HostAssigned PlacementKind = "host-assigned"
	// Offered: a domain in mode "ask" (or an ask device block) would get
	// the device; it waits on the host for an answer (OfferedTo).
	Offered PlacementKind = "offered"
)

// Placement explains one present device: where it should be and which rule
// says so, or why it goes nowhere.
type Placement struct {
	Device Device        `json:"device"`
	Kind   PlacementKind `json:"kind"`
	// Domain is where the device should be attached ("" for nowhere).
	Domain string `json:"domain,omitempty"`
	// AttachedTo is the domain that holds it now through one of our
	// hostdevs ("" for none), and HeldBy a domain holding it through a
	// hostdev that is not ours.
	AttachedTo string `json:"attached_to,omitempty"`
	HeldBy     string `json:"held_by,omitempty"`
	// OfferedTo is the domain the device is offered to (Offered).
	OfferedTo string `json:"offered_to,omitempty"`
	Rule      string `json:"rule,omitempty"`
	// Reason in words: "matched domain "win11" device "receiver" (f:3)",
	// "no rule matches", "excluded by exclude "kbd" (f:20)", "hub: passed only
	// by an exact vendor:product or serial rule", "wanted by vm1, which is not
	// running".
	Reason string `json:"reason"`
}

// Result is the output of Plan. Actions are ordered: all detaches, then all
// attaches, each sorted by device key and domain. Placements are sorted by
// device key.
type Result struct {
	Actions    []Action    `json:"actions"`
	Conflicts  []Conflict  `json:"conflicts,omitempty"`
	Placements []Placement `json:"placements"`
}

// SnapshotVersion is the current version of the snapshot format.
const SnapshotVersion = 1

// Snapshot is the observed state of a host, as written by `usbctl snapshot`
// and read by `usbctl plan --from`: everything Plan needs besides the rules,
// so a bug report can be replayed exactly.
type Snapshot struct {
	Version  int    `json:"version"`
	Host     string `json:"host,omitempty"`
	TakenAt  string `json:"taken_at,omitempty"` // RFC 3339
	Observed        // devices and domains
	// Unobserved lists the parts the snapshot could not observe, with
	// why (libvirtd not running, udev not readable). Such a part is empty
	// in the snapshot and means "unknown", not "none".
	Unobserved []Unobserved `json:"unobserved,omitempty"`
	// Overrides are the runtime assignments in force when it was taken.
	Overrides []Override `json:"overrides,omitempty"`
}

// Parts of a snapshot that can go unobserved.
const (
	PartDevices = "devices"
	PartDomains = "domains"
)

// Unobserved is a part of a snapshot that could not be observed.
type Unobserved struct {
	Part  string `json:"part"` // PartDevices or PartDomains
	Error string `json:"error"`
}
