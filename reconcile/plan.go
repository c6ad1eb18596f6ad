package reconcile

import (
	"cmp"
	"slices"
	"sort"
	"strings"
)

// Plan decides, for the world in obs, which devices must be attached to or
// detached from which domains under rules and the runtime assignments ovs
// (at most one per device key). It does no I/O and its output depends only
// on its input, not on the order of slices in it.
//
// For each present device it decides a placement (place), then derives the
// conflict that placement reports (conflict) and the hostdevs to detach and
// attach to carry it out (moves); hostdevs of devices that are gone are
// detached last (unplugged). Every decision is a PlacementKind; the words
// of reasons are rendered from it (explain.go).
func Plan(rules Rules, obs Observed, ovs []Override) Result {
	pl := newPlanner(rules, obs, ovs)
	res := Result{Placements: make([]Placement, 0, len(pl.devices))}
	for _, d := range pl.devices {
		dec := pl.place(d)
		p := pl.placement(d, dec)
		if c, ok := pl.conflict(d, dec); ok {
			res.Conflicts = append(res.Conflicts, c)
		}
		res.Actions = pl.moves(res.Actions, d, dec, &p)
		res.Placements = append(res.Placements, p)
	}
	res.Actions = pl.unplugged(res.Actions)
	sortActions(res.Actions)
	return res
}

// via says how a domain wants a device.
type via uint8

const (
	viaBlock via = iota // one of its device blocks matches (mode allow)
	viaMode             // mode deny or all, and no block refuses it
)

// want is one domain wanting one device. The rule's text is built only for
// the domain that gets the device: formatting it for every candidate
// dominated Plan's cost at scale.
type want struct {
	dom   int // index into Rules.Domains
	via   via
	block int // with viaBlock, the domain's first block that matches
	// ask: the domain would get it only by an answer (mode "ask", or an
	// ask block): the device is offered rather than attached.
	ask bool
}

func (w want) explicit() bool { return w.via == viaBlock }

// holder is a hostdev of an active domain that holds a device.
type holder struct {
	domain string
	alias  string
	owned  bool
}

// decision is what Plan decided for one present device, before any words.
// Its slices point into the planner's buffers: use it before the next place.
type decision struct {
	kind PlacementKind
	// exclude is the exclude block that matched (Excluded).
	exclude int
	// idle are the stopped domains that want the device (NotRunning),
	// and undefined those libvirt does not have (NotRunning, NotDefined);
	// each sorted, without duplicates.
	idle      []string
	undefined []string
	// foreign are the domains holding it through hostdevs usbctl does not
	// own (HeldForeign; the first is HeldBy), in holder order.
	foreign []string
	// active are the running domains that want it, best first (Placed,
	// Kept, HeldForeign); chosen is where it goes (Placed, Kept).
	active []want
	chosen want
	// override is the runtime assignment of the device (Assigned,
	// AssignedNotRunning, HostAssigned; and Excluded or HeldForeign when
	// one stands in its way).
	override *Override
}

// planner is one Plan call: the rules indexed, who holds what, and the
// buffers reused from device to device.
type planner struct {
	rules      Rules
	doms       []DomainRules
	allow      ruleIndex[ruleRef] // blocks of allow domains: what they want
	refusals   ruleIndex[ruleRef] // blocks of deny domains: what they refuse
	broad      []int              // deny and all domains: they consider every device
	excludes   ruleIndex[int]
	activeDom  []bool // by index into doms
	definedDom []bool // libvirt has the domain, by index into doms
	holders    map[DeviceKey][]holder
	// foreignByID are the domains with a hostdev that names its device by
	// vendor:product only, and idCount how many present devices have each
	// vendor:product: such a hostdev holds a device only if it is the one.
	foreignByID map[IDPattern][]string
	idCount     map[IDPattern]int
	devices     []Device // sorted by key
	present     map[DeviceKey]bool
	names       ruleNames
	overrides   map[DeviceKey]Override
	state       map[string]DomainState

	refs      []ruleRef
	exRefs    []int
	wants     []want
	active    []want
	idle      []string
	undefined []string
	refused   []int
	foreignB  []string
}

func newPlanner(rules Rules, obs Observed, ovs []Override) *planner {
	doms := rules.Domains
	pl := &planner{
		rules: rules, doms: doms,
		holders: map[DeviceKey][]holder{},
	}
	if len(ovs) > 0 { // a nil map reads as empty, for nothing
		pl.overrides = make(map[DeviceKey]Override, len(ovs))
		for _, o := range ovs {
			pl.overrides[o.Key] = o
		}
	}
	for i, dr := range doms {
		x := &pl.allow
		switch dr.Mode {
		case ModeDeny, ModeAll:
			pl.broad = append(pl.broad, i)
			x = &pl.refusals
		case ModeAsk:
			// Every device is offered; its blocks are attached as in
			// mode allow.
			pl.broad = append(pl.broad, i)
		}
		for j, m := range dr.Devices {
			x.add(ruleRef{dom: i, block: j}, m)
		}
	}
	for j, m := range rules.Excludes {
		pl.excludes.add(j, m)
	}

	// Who holds what, from the live XML of active domains.
	state := make(map[string]DomainState, len(obs.Domains))
	pl.state = state
	for _, dm := range obs.Domains {
		state[dm.Name] = dm.State
		if !dm.State.Active() {
			continue
		}
		for _, h := range dm.Hostdevs {
			if k, ok := h.Key(); ok {
				pl.holders[k] = append(pl.holders[k], holder{domain: dm.Name, alias: h.Alias, owned: h.Owned()})
			} else if !h.Owned() && h.Vendor != "" && h.Product != "" {
				id := IDPattern{Vendor: h.Vendor, Product: h.Product}
				if pl.foreignByID == nil {
					pl.foreignByID = map[IDPattern][]string{}
				}
				pl.foreignByID[id] = append(pl.foreignByID[id], dm.Name)
			}
		}
	}
	for _, hs := range pl.holders {
		sort.Slice(hs, func(i, j int) bool {
			if hs[i].domain != hs[j].domain {
				return hs[i].domain < hs[j].domain
			}
			return hs[i].alias < hs[j].alias
		})
	}
	pl.activeDom = make([]bool, len(doms))
	pl.definedDom = make([]bool, len(doms))
	for i, dr := range doms {
		st, ok := state[dr.Name]
		pl.activeDom[i], pl.definedDom[i] = st.Active(), ok
	}

	pl.devices = make([]Device, len(obs.Devices))
	copy(pl.devices, obs.Devices)
	sort.Slice(pl.devices, func(i, j int) bool { return pl.devices[i].Key().Less(pl.devices[j].Key()) })
	pl.idCount = make(map[IDPattern]int, len(pl.devices))
	pl.present = make(map[DeviceKey]bool, len(pl.devices))
	for _, d := range pl.devices {
		pl.idCount[IDPattern{Vendor: d.Vendor, Product: d.Product}]++
		pl.present[d.Key()] = true
	}
	return pl
}

// place decides where device d goes. In order: an exclude keeps it on the
// host; a hostdev that is not ours holds it; the running domains that want
// it rank (priority, then explicit over broad, then name) and the first
// gets it, unless another that wants it has it already and the first may
// not take it (Kept); else it waits for a stopped domain, or nobody wants
// it (a hub only broad rules match is refused).
func (pl *planner) place(d Device) decision {
	// The override is looked up in each branch: a variable whose address
	// a decision keeps lives on the heap, and this runs for every device.
	if ex, ok := pl.excluded(d); ok {
		dec := decision{kind: Excluded, exclude: ex}
		if ov, assigned := pl.overrides[d.Key()]; assigned {
			dec.override = &ov
		}
		return dec
	}
	if ov, assigned := pl.overrides[d.Key()]; assigned {
		return pl.assigned(d, ov)
	}
	pl.wanted(d)
	pl.active, pl.idle, pl.undefined = pl.active[:0], pl.idle[:0], pl.undefined[:0]
	for _, w := range pl.wants {
		switch {
		case pl.activeDom[w.dom]:
			pl.active = append(pl.active, w)
		case pl.definedDom[w.dom]:
			pl.idle = append(pl.idle, pl.doms[w.dom].Name)
		default:
			pl.undefined = append(pl.undefined, pl.doms[w.dom].Name)
		}
	}
	pl.rank(pl.active)
	dec := decision{active: pl.active}
	if foreign := pl.foreignHolders(d); len(foreign) > 0 {
		dec.kind, dec.foreign = HeldForeign, foreign
		return dec
	}
	switch {
	case len(pl.active) > 0:
		dec.kind, dec.chosen = Placed, pl.sticky(d.Key(), pl.active)
		switch {
		case dec.chosen.ask && !pl.holdsOwned(d.Key(), pl.doms[dec.chosen.dom].Name):
			// Asked for, not attached: a domain that has it already
			// keeps it without asking again.
			dec.kind = Offered
		case dec.chosen != pl.active[0]:
			dec.kind = Kept
		}
	case len(pl.idle) > 0 || len(pl.undefined) > 0:
		sort.Strings(pl.idle)
		sort.Strings(pl.undefined)
		dec.kind, dec.idle, dec.undefined = NotRunning, slices.Compact(pl.idle), slices.Compact(pl.undefined)
		if len(dec.idle) == 0 {
			dec.kind = NotDefined
		}
	case d.IsHub() && (len(pl.broad) > 0 || pl.anyAllowMatch(d)):
		dec.kind = HubRefused
	default:
		dec.kind = Unmatched
	}
	return dec
}

// assigned decides for a device that a runtime assignment names: it goes
// where the assignment says, whatever the rules want, unless a hostdev
// usbctl does not own holds it.
func (pl *planner) assigned(d Device, ov Override) decision {
	dec := decision{override: &ov}
	if foreign := pl.foreignHolders(d); len(foreign) > 0 {
		dec.kind, dec.foreign = HeldForeign, foreign
		return dec
	}
	switch {
	case ov.Domain == "":
		dec.kind = HostAssigned
	case pl.state[ov.Domain].Active():
		dec.kind = Assigned
	default:
		dec.kind = AssignedNotRunning
	}
	return dec
}

// excluded returns the first exclude block that matches d. Excludes need no
// exact match: they keep devices on the host, which is always safe, hubs
// included.
func (pl *planner) excluded(d Device) (int, bool) {
	if len(pl.rules.Excludes) == 0 {
		return 0, false
	}
	best, found := 0, false
	pl.exRefs = pl.excludes.candidates(d, pl.exRefs[:0])
	for _, j := range pl.exRefs {
		if ok, _ := Matches(pl.rules.Excludes[j], d); ok && (!found || j < best) {
			best, found = j, true
		}
	}
	return best, found
}

// wanted fills pl.wants with the domains that want d, each with the first
// of its blocks that says so. Hubs are wanted only through an exact match.
func (pl *planner) wanted(d Device) {
	pl.wants = pl.wants[:0]
	pl.refs = pl.allow.candidates(d, pl.refs[:0])
	for _, r := range pl.refs {
		m := pl.doms[r.dom].Devices[r.block]
		ok, exact := Matches(m, d)
		if !ok || (d.IsHub() && !exact) {
			continue
		}
		pl.addBlockWant(r, m.Ask)
	}
	if d.IsHub() || len(pl.broad) == 0 {
		return
	}
	// Deny domains take every device except those their blocks match;
	// all domains take every device.
	pl.refused = pl.refused[:0]
	pl.refs = pl.refusals.candidates(d, pl.refs[:0])
	for _, r := range pl.refs {
		if ok, _ := Matches(pl.doms[r.dom].Devices[r.block], d); ok {
			pl.refused = append(pl.refused, r.dom)
		}
	}
	for _, i := range pl.broad {
		if slices.Contains(pl.refused, i) {
			continue
		}
		ask := pl.doms[i].Mode == ModeAsk
		if ask && slices.ContainsFunc(pl.wants, func(w want) bool { return w.dom == i }) {
			continue // one of its blocks names it: attached without asking
		}
		pl.wants = append(pl.wants, want{dom: i, via: viaMode, ask: ask})
	}
}

// addBlockWant keeps one want per domain: its lowest-numbered matching block.
func (pl *planner) addBlockWant(r ruleRef, ask bool) {
	for i := range pl.wants {
		if pl.wants[i].dom == r.dom {
			if r.block < pl.wants[i].block {
				pl.wants[i].block, pl.wants[i].ask = r.block, ask
			}
			return
		}
	}
	pl.wants = append(pl.wants, want{dom: r.dom, via: viaBlock, block: r.block, ask: ask})
}

// anyAllowMatch reports whether some allow-mode block matches d at all,
// exact or not: it tells a refused hub from one no rule names.
func (pl *planner) anyAllowMatch(d Device) bool {
	pl.refs = pl.allow.candidates(d, pl.refs[:0])
	for _, r := range pl.refs {
		if ok, _ := Matches(pl.doms[r.dom].Devices[r.block], d); ok {
			return true
		}
	}
	return false
}

// foreignHolders returns the domains that hold d through a hostdev usbctl
// does not own: by bus/device, or by a vendor:product no other present
// device has.
func (pl *planner) foreignHolders(d Device) []string {
	pl.foreignB = pl.foreignB[:0]
	for _, h := range pl.holders[d.Key()] {
		if !h.owned {
			pl.foreignB = append(pl.foreignB, h.domain)
		}
	}
	if id := (IDPattern{Vendor: d.Vendor, Product: d.Product}); pl.idCount[id] == 1 {
		pl.foreignB = append(pl.foreignB, pl.foreignByID[id]...)
	}
	return pl.foreignB
}

// rank orders candidates: higher priority, then explicit over broad, then
// domain name.
func (pl *planner) rank(ws []want) {
	slices.SortFunc(ws, func(a, b want) int {
		da, db := &pl.doms[a.dom], &pl.doms[b.dom]
		if da.Priority != db.Priority {
			// cmp.Compare, not a subtraction: priorities are any int
			// and a difference can overflow.
			return cmp.Compare(db.Priority, da.Priority)
		}
		if a.explicit() != b.explicit() {
			if a.explicit() {
				return -1
			}
			return 1
		}
		return strings.Compare(da.Name, db.Name)
	})
}

// sticky picks from the ranked candidates where the device goes: the first,
// unless a candidate already has it through one of our hostdevs and the
// first may not take it from there (a strictly higher priority with
// preempt). No flapping.
func (pl *planner) sticky(k DeviceKey, ranked []want) want {
	first := ranked[0]
	for _, w := range ranked {
		if pl.holdsOwned(k, pl.doms[w.dom].Name) {
			if pl.doms[first.dom].Priority > pl.doms[w.dom].Priority && pl.doms[first.dom].Preempt {
				return first
			}
			return w
		}
	}
	return first
}

func (pl *planner) holdsOwned(k DeviceKey, domain string) bool {
	for _, h := range pl.holders[k] {
		if h.owned && h.domain == domain {
			return true
		}
	}
	return false
}

// target is the domain the device goes to, and its rule; "" for none.
func (pl *planner) target(dec decision) (domain, rule string) {
	switch dec.kind {
	case Placed, Kept:
		return pl.doms[dec.chosen.dom].Name, pl.names.rule(pl.doms, dec.chosen)
	case Assigned:
		return dec.override.Domain, dec.override.Source
	}
	return "", ""
}

// tied returns how many of the ranked candidates only the name order
// separates from the first.
func (pl *planner) tied(ranked []want) int {
	n := 0
	for _, w := range ranked {
		if pl.doms[w.dom].Priority != pl.doms[ranked[0].dom].Priority || w.explicit() != ranked[0].explicit() {
			break
		}
		n++
	}
	return n
}

// conflict is the conflict a decision reports, if any: a device held by a
// hostdev not ours that running domains want, or one that several running
// domains want equally.
func (pl *planner) conflict(d Device, dec decision) (Conflict, bool) {
	switch dec.kind {
	case HeldForeign:
		foreign := dedupe(dec.foreign)
		var others []string
		for _, w := range dec.active {
			if n := pl.doms[w.dom].Name; !slices.Contains(dec.foreign, n) {
				others = append(others, n)
			}
		}
		if o := dec.override; o != nil && o.Domain != "" && !slices.Contains(dec.foreign, o.Domain) {
			others = append(others, o.Domain)
		}
		if len(others) == 0 {
			return Conflict{}, false
		}
		return Conflict{Key: d.Key(), Domains: append(foreign, others...), Reason: heldForeignConflict(others, foreign)}, true
	case Placed, Kept, Offered:
		n := pl.tied(dec.active)
		if n < 2 {
			return Conflict{}, false
		}
		tied := make([]string, n)
		for i := range tied {
			tied[i] = pl.doms[dec.active[i].dom].Name
		}
		return Conflict{Key: d.Key(), Domains: tied, Reason: pl.tieConflict(dec, tied)}, true
	}
	return Conflict{}, false
}

// moves appends the actions that carry out dec for device d: detach each of
// our hostdevs of d outside the target domain, and attach d to the target
// unless it is there already (which p.AttachedTo then says).
func (pl *planner) moves(acts []Action, d Device, dec decision, p *Placement) []Action {
	k := d.Key()
	for _, h := range pl.holders[k] {
		if !h.owned {
			continue
		}
		if h.domain == p.Domain {
			p.AttachedTo = h.domain
			continue
		}
		dd := d
		acts = append(acts, Action{Kind: Detach, Domain: h.domain, Alias: h.alias, Key: k, Device: &dd, Reason: detachReason(dec, *p)})
	}
	if p.Domain != "" && p.AttachedTo == "" {
		dd := d
		acts = append(acts, Action{Kind: Attach, Domain: p.Domain, Alias: k.Alias(), Key: k, Device: &dd, Rule: p.Rule, Reason: p.Reason})
	}
	return acts
}

// unplugged appends the detaches of our hostdevs whose device is gone.
func (pl *planner) unplugged(acts []Action) []Action {
	for k, hs := range pl.holders {
		if pl.present[k] {
			continue
		}
		for _, h := range hs {
			if h.owned {
				acts = append(acts, Action{Kind: Detach, Domain: h.domain, Alias: h.alias, Key: k, Reason: reasonUnplugged})
			}
		}
	}
	return acts
}

// sortActions puts all detaches first, then all attaches, each by device
// key, domain and alias.
func sortActions(acts []Action) {
	sort.SliceStable(acts, func(i, j int) bool {
		a, b := acts[i], acts[j]
		if a.Kind != b.Kind {
			return a.Kind == Detach
		}
		if a.Key != b.Key {
			return a.Key.Less(b.Key)
		}
		if a.Domain != b.Domain {
			return a.Domain < b.Domain
		}
		return a.Alias < b.Alias
	})
}

func dedupe(ss []string) []string {
	var out []string
	for _, s := range ss {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}
