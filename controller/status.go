package controller

import (
	"time"

	"github.com/usbctl/usbctl/override"
	"github.com/usbctl/usbctl/reconcile"
)

// Status is a snapshot of what the daemon knows and did, served on the
// control socket and rendered by `usbctl status`. It is a value: the
// controller builds a fresh one after every sync, so readers never share
// memory with the loop.
type Status struct {
	StartedAt time.Time `json:"started_at"`
	// LastSync is when the last sync finished; zero before the first one.
	LastSync         time.Time     `json:"last_sync"`
	LastSyncDuration time.Duration `json:"last_sync_duration_ns"`
	Syncs            uint64        `json:"syncs"`
	// Ready is true once a sync has observed both udev and libvirt.
	Ready bool `json:"ready"`

	Config     ConfigStatus     `json:"config"`
	Hypervisor HypervisorStatus `json:"hypervisor"`

	Domains []DomainStatus `json:"domains"`
	// UndefinedDomains are named by the config's domain blocks but not
	// defined in libvirt (a typo, or a domain not created yet).
	UndefinedDomains []string `json:"undefined_domains,omitempty"`
	// Pending are actions the plan wants that have not succeeded yet:
	// failing ones with their last error and next retry.
	Pending   []PendingAction      `json:"pending,omitempty"`
	Conflicts []reconcile.Conflict `json:"conflicts,omitempty"`
	// Unassigned are present devices that no running domain gets, with the
	// reason (no rule, excluded, hub, wanted by a stopped domain, ...).
	Unassigned []reconcile.Placement `json:"unassigned,omitempty"`
	// Overrides are the runtime assignments in force (usbctl attach,
	// detach, move, answered offers), with who set them, when and until
	// when.
	Overrides []override.Override `json:"overrides,omitempty"`
	// Offers are devices held on the host for an answer (mode "ask").
	Offers []override.Offer `json:"offers,omitempty"`
	// StateError is the last failure to read or write the state file of
	// runtime assignments; empty when all is well.
	StateError string `json:"state_error,omitempty"`
	// HeldOnHost are devices usbctl attached while a program on the host
	// held some of their interfaces through usbfs: the guest may not be
	// able to use them. Each says what to do.
	HeldOnHost []HostHold `json:"held_on_host,omitempty"`
}

// ConfigStatus describes the rules in force and the last rejected reload.
type ConfigStatus struct {
	Files    []string  `json:"files"`
	LoadedAt time.Time `json:"loaded_at"`
	Domains  int       `json:"domains"`
	Rules    int       `json:"rules"`
	Excludes int       `json:"excludes"`
	// Rejected is set when the newest reload was refused; the rules above
	// stay in force until a valid config is loaded.
	Rejected *RejectedConfig `json:"rejected,omitempty"`
}

// RejectedConfig is a reload that failed validation.
type RejectedConfig struct {
	At          time.Time `json:"at"`
	Diagnostics []string  `json:"diagnostics"`
}

// HypervisorStatus is the state of the libvirt connection.
type HypervisorStatus struct {
	URI       string `json:"uri"`
	Connected bool   `json:"connected"`
	LastError string `json:"last_error,omitempty"`
}

// DomainStatus is one libvirt domain as the daemon sees it.
type DomainStatus struct {
	Name     string                `json:"name"`
	State    reconcile.DomainState `json:"state"`
	Managed  bool                  `json:"managed"` // has a domain block in the config
	Priority int                   `json:"priority,omitempty"`
	Attached []AttachedDevice      `json:"attached,omitempty"`
	// Foreign are USB hostdevs of this domain that usbctl does not own
	// (attached by hand or in the persistent XML); never touched.
	Foreign []reconcile.Hostdev `json:"foreign,omitempty"`
}

// AttachedDevice is a device held by one of our hostdevs.
type AttachedDevice struct {
	Alias string `json:"alias"`
	// Device is nil when the hostdev's device is no longer present (it is
	// about to be detached).
	Device *reconcile.Device   `json:"device,omitempty"`
	Key    reconcile.DeviceKey `json:"key"`
	// Rule is the rule that placed it, from the current plan.
	Rule string `json:"rule,omitempty"`
	// Since is when this daemon first saw the hostdev in place: its own
	// attach, or adoption at start-up (Adopted).
	Since   time.Time `json:"since"`
	Adopted bool      `json:"adopted,omitempty"`
}

// PendingAction is a planned action not yet done.
type PendingAction struct {
	Action   reconcile.Action `json:"action"`
	Attempts int              `json:"attempts"`
	// LastError is the whole message; Fix, when there is one, is what a
	// person can do about it, also the message's end.
	LastError string `json:"last_error,omitempty"`
	Fix       string `json:"fix,omitempty"`
	// NextRetry is zero for a permanent failure, which waits for a change
	// (device replugged, domain restarted, config reloaded) instead.
	NextRetry time.Time `json:"next_retry,omitempty"`
	Permanent bool      `json:"permanent,omitempty"`
}
