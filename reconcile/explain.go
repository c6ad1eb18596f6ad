package reconcile

import (
	"fmt"
	"strings"
)

// The words of Plan's output. Everything here renders a decision already
// taken; nothing here decides, and nothing reads these strings back.

const (
	reasonUnmatched    = "no rule matches"
	reasonHubRefused   = "hub: placed only by an exact vendor:product or serial rule"
	reasonUnplugged    = "device unplugged"
	reasonUnwanted     = "domain no longer wants it"
	reasonAlsoHeld     = "also held by a hostdev usbctl does not own"
	heldForeignFormat  = "held by a hostdev not managed by usbctl in domain %q"
	notRunningFormat   = "wanted by %s, which is not running"
	notDefinedFormat   = "wanted by %s, which is not defined in libvirt (virsh list --all does not show it: check the domain block's name, or define the domain)"
	andNotDefined      = "; and by %s, which is not defined in libvirt"
	keptByPriority     = "; stays although %q has higher priority (%d > %d) without preempt"
	keptByOrder        = "; stays: %q ranks first only by name or rule kind, and only a strictly higher priority with preempt moves an attached device"
	movesToFormat      = "moves to %q (%s)"
	tieFormat          = "wanted by %d running domains of priority %d; %s (set priorities to decide)"
	heldForeignConfFmt = "wanted by %s but held by a hostdev usbctl does not own in %s; detach it there to let usbctl place it"
	assignedFormat     = "runtime assignment: %s"
	notRunningAssigned = "runtime assignment to %q, which is not running: %s"
	hostAssignedFormat = "kept on the host by a runtime assignment: %s"
	excludedAssignment = "; the runtime assignment (%s) does not apply"
	offeredFormat      = "offered to %q (%s); waits on the host for an answer: usbctl attach or detach, or usbctl agent"
)

// placement renders the decision for device d.
func (pl *planner) placement(d Device, dec decision) Placement {
	p := Placement{Device: d, Kind: dec.kind}
	switch dec.kind {
	case Excluded:
		p.Reason = "excluded by " + describe("exclude", pl.rules.Excludes[dec.exclude])
		if dec.override != nil {
			p.Reason += fmt.Sprintf(excludedAssignment, dec.override.Source)
		}
	case Assigned:
		p.Domain, p.Rule = pl.target(dec)
		p.Reason = fmt.Sprintf(assignedFormat, p.Rule)
	case AssignedNotRunning:
		p.Reason = fmt.Sprintf(notRunningAssigned, dec.override.Domain, dec.override.Source)
	case HostAssigned:
		p.Reason = fmt.Sprintf(hostAssignedFormat, dec.override.Source)
	case Offered:
		p.OfferedTo, p.Rule = pl.doms[dec.chosen.dom].Name, pl.names.rule(pl.doms, dec.chosen)
		p.Reason = fmt.Sprintf(offeredFormat, p.OfferedTo, p.Rule)
	case HeldForeign:
		p.HeldBy = dec.foreign[0]
		p.Reason = fmt.Sprintf(heldForeignFormat, p.HeldBy)
	case NotRunning:
		p.Reason = fmt.Sprintf(notRunningFormat, strings.Join(dec.idle, ", "))
		if len(dec.undefined) > 0 {
			p.Reason += fmt.Sprintf(andNotDefined, strings.Join(dec.undefined, ", "))
		}
	case NotDefined:
		p.Reason = fmt.Sprintf(notDefinedFormat, strings.Join(dec.undefined, ", "))
	case HubRefused:
		p.Reason = reasonHubRefused
	case Unmatched:
		p.Reason = reasonUnmatched
	case Placed, Kept:
		p.Domain, p.Rule = pl.target(dec)
		p.Reason = "matched " + p.Rule
		if dec.kind == Kept {
			first, kept := pl.doms[dec.active[0].dom], pl.doms[dec.chosen.dom]
			if first.Priority > kept.Priority {
				// first has no preempt, or it would have the device.
				p.Reason += fmt.Sprintf(keptByPriority, first.Name, first.Priority, kept.Priority)
			} else {
				p.Reason += fmt.Sprintf(keptByOrder, first.Name)
			}
		}
	}
	return p
}

// detachReason says why one of our hostdevs of a present device goes.
func detachReason(dec decision, p Placement) string {
	switch dec.kind {
	case Excluded, HostAssigned, AssignedNotRunning, Offered:
		return p.Reason
	case Placed, Kept, Assigned:
		return fmt.Sprintf(movesToFormat, p.Domain, p.Rule)
	case HeldForeign:
		return reasonAlsoHeld
	}
	return reasonUnwanted
}

func heldForeignConflict(wanting, holding []string) string {
	return fmt.Sprintf(heldForeignConfFmt, strings.Join(wanting, ", "), strings.Join(holding, ", "))
}

// tieConflict explains a device that tied domains want equally.
func (pl *planner) tieConflict(dec decision, tied []string) string {
	how := fmt.Sprintf("%q chosen by name order", tied[0])
	if dec.kind == Kept {
		how = fmt.Sprintf("%q keeps it where it is (no flapping)", pl.doms[dec.chosen.dom].Name)
	}
	return fmt.Sprintf(tieFormat, len(tied), pl.doms[dec.active[0].dom].Priority, how)
}

// describe names a block: exclude "kbd" (usbctl.hcl:20). An exclude may
// have no label; its file and line name it then: exclude (usbctl.hcl:20).
func describe(kind string, m Match) string {
	s := kind
	if m.Label != "" || kind != "exclude" {
		s = fmt.Sprintf("%s %q", kind, m.Label)
	}
	if m.Source != "" {
		s += " (" + m.Source + ")"
	}
	return s
}

// ruleNames formats each rule's text once per Plan: many devices share a
// rule (a port subtree, a mode all domain), and formatting dominated the
// cost of planning for thousands of devices.
type ruleNames struct {
	texts map[want]string
}

func (r *ruleNames) rule(doms []DomainRules, w want) string {
	if s, ok := r.texts[w]; ok {
		return s
	}
	if r.texts == nil {
		r.texts = map[want]string{}
	}
	dr := doms[w.dom]
	var s string
	switch w.via {
	case viaBlock:
		s = fmt.Sprintf("domain %q %s", dr.Name, describe("device", dr.Devices[w.block]))
	case viaMode:
		s = fmt.Sprintf("domain %q mode %s", dr.Name, dr.Mode)
		if dr.Source != "" {
			s += " (" + dr.Source + ")"
		}
	}
	r.texts[w] = s
	return s
}
