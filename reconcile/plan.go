package reconcile

import (
	"cmp"
	"fmt"
	"slices"
	"sort"
	"strings"
)

// Matches reports whether m matches d, and whether it matched exactly: by an
// exact vendor:product or by serial. Only exact matches may place a hub.
// Every criterion that is set must match; within IDs and Classes one entry is
// enough. A Match with no criterion matches nothing.
func Matches(m Match, d Device) (ok, exact bool) {
	if len(m.IDs) == 0 && m.Serial == "" && m.Port == nil && len(m.Classes) == 0 {
		return false, false
	}
	if len(m.IDs) > 0 {
		hit := false
		for _, p := range m.IDs {
			if (p.Vendor == "" || p.Vendor == d.Vendor) && (p.Product == "" || p.Product == d.Product) {
				hit = true
				exact = exact || p.Exact()
			}
		}
		if !hit {
			return false, false
		}
	}
	if m.Serial != "" {
		if m.Serial != d.Serial {
			return false, false
		}
		exact = true
	}
	if m.Port != nil && !portMatches(*m.Port, d.Port) {
		return false, false
	}
	if len(m.Classes) > 0 && !classMatches(m.Classes, d) {
		return false, false
	}
	return true, exact
}

func portMatches(p PortPattern, port string) bool {
	if p.Subtree {
		return strings.HasPrefix(port, p.Path+".")
	}
	return port == p.Path
}

func classMatches(classes []string, d Device) bool {
	for _, c := range classes {
		if c == d.Class {
			return true
		}
		for _, ic := range d.InterfaceClasses {
			if c == ic {
				return true
			}
		}
	}
	return false
}

// ruleRef points at one device block of one domain (or one exclude block
// when dom is -1).
type ruleRef struct {
	dom, dev int
}

// ruleIndex finds the blocks that may match a device without trying every
// block: each block is filed under its most selective criterion, and a
// device looks up only the keys it has. Candidates are then checked with
// Matches, so the index only has to be complete, not exact.
type ruleIndex struct {
	byID                     map[IDPattern][]ruleRef
	byVendor, byProduct      map[string][]ruleRef
	bySerial, byPort, byTree map[string][]ruleRef
	byClass                  map[string][]ruleRef
}

func newRuleIndex() *ruleIndex {
	return &ruleIndex{
		byID: map[IDPattern][]ruleRef{}, byVendor: map[string][]ruleRef{}, byProduct: map[string][]ruleRef{},
		bySerial: map[string][]ruleRef{}, byPort: map[string][]ruleRef{}, byTree: map[string][]ruleRef{},
		byClass: map[string][]ruleRef{},
	}
}

func (x *ruleIndex) add(r ruleRef, m Match) {
	switch {
	case len(m.IDs) > 0:
		for _, p := range m.IDs {
			switch {
			case p.Vendor != "" && p.Product != "":
				x.byID[p] = append(x.byID[p], r)
			case p.Vendor != "":
				x.byVendor[p.Vendor] = append(x.byVendor[p.Vendor], r)
			case p.Product != "":
				x.byProduct[p.Product] = append(x.byProduct[p.Product], r)
			default:
				// "*:*" is rejected by config; index it where every
				// device looks so the index stays complete anyway.
				x.byClass[""] = append(x.byClass[""], r)
			}
		}
	case m.Serial != "":
		x.bySerial[m.Serial] = append(x.bySerial[m.Serial], r)
	case m.Port != nil && m.Port.Subtree:
		x.byTree[m.Port.Path] = append(x.byTree[m.Port.Path], r)
	case m.Port != nil:
		x.byPort[m.Port.Path] = append(x.byPort[m.Port.Path], r)
	case len(m.Classes) > 0:
		for _, c := range m.Classes {
			x.byClass[c] = append(x.byClass[c], r)
		}
	}
}

// candidates appends to buf every block filed under a key of d.
func (x *ruleIndex) candidates(d Device, buf []ruleRef) []ruleRef {
	buf = append(buf, x.byID[IDPattern{Vendor: d.Vendor, Product: d.Product}]...)
	buf = append(buf, x.byVendor[d.Vendor]...)
	buf = append(buf, x.byProduct[d.Product]...)
	if d.Serial != "" {
		buf = append(buf, x.bySerial[d.Serial]...)
	}
	buf = append(buf, x.byPort[d.Port]...)
	// Every ancestor port: "1-4.2.1" is behind "1-4.2" and "1-4".
	for p := d.Port; ; {
		i := strings.LastIndexByte(p, '.')
		if i < 0 {
			break
		}
		p = p[:i]
		buf = append(buf, x.byTree[p]...)
	}
	buf = append(buf, x.byClass[""]...)
	buf = append(buf, x.byClass[d.Class]...)
	for _, c := range d.InterfaceClasses {
		if c != d.Class {
			buf = append(buf, x.byClass[c]...)
		}
	}
	return buf
}

// want is one domain wanting one device, through device block dev (-1 for
// mode deny/all). The rule's text is built only for the winner: formatting
// it for every candidate dominated Plan's cost at scale.
type want struct {
	dom int // index into Rules.Domains
	dev int
}

func (w want) explicit() bool { return w.dev >= 0 }

func (w want) rule(doms []DomainRules) string {
	dr := doms[w.dom]
	if w.dev >= 0 {
		return fmt.Sprintf("domain %q %s", dr.Name, describe("device", dr.Devices[w.dev]))
	}
	rule := fmt.Sprintf("domain %q mode %s", dr.Name, dr.Mode)
	if dr.Source != "" {
		rule += " (" + dr.Source + ")"
	}
	return rule
}

type holder struct {
	domain string
	alias  string
	owned  bool
}

// Plan decides, for the world in obs, which devices must be attached to or
// detached from which domains under rules. It does no I/O and its output
// depends only on its input, not on the order of slices in it.
func Plan(rules Rules, obs Observed) Result {
	doms := rules.Domains
	idx := newRuleIndex()
	denyIdx := newRuleIndex() // the blocks of deny domains: what they refuse
	var broad []int           // deny and all domains: they consider every device
	for i, dr := range doms {
		x := idx
		if dr.Mode == ModeDeny || dr.Mode == ModeAll {
			broad = append(broad, i)
			x = denyIdx
		}
		for j, m := range dr.Devices {
			x.add(ruleRef{dom: i, dev: j}, m)
		}
	}
	exIdx := newRuleIndex()
	for j, m := range rules.Excludes {
		exIdx.add(ruleRef{dom: -1, dev: j}, m)
	}

	// Who holds what, from the live XML of active domains.
	state := make(map[string]DomainState, len(obs.Domains))
	holders := map[DeviceKey][]holder{}
	foreignByID := map[IDPattern][]string{} // domains with hostdevs that name a device by id only
	for _, dm := range obs.Domains {
		state[dm.Name] = dm.State
		if !dm.State.Active() {
			continue
		}
		for _, h := range dm.Hostdevs {
			if k, ok := h.Key(); ok {
				holders[k] = append(holders[k], holder{domain: dm.Name, alias: h.Alias, owned: h.Owned()})
			} else if !h.Owned() && h.Vendor != "" && h.Product != "" {
				id := IDPattern{Vendor: h.Vendor, Product: h.Product}
				foreignByID[id] = append(foreignByID[id], dm.Name)
			}
		}
	}
	for k := range holders {
		hs := holders[k]
		sort.Slice(hs, func(i, j int) bool {
			if hs[i].domain != hs[j].domain {
				return hs[i].domain < hs[j].domain
			}
			return hs[i].alias < hs[j].alias
		})
	}

	activeDom := make([]bool, len(doms))
	for i, dr := range doms {
		activeDom[i] = state[dr.Name].Active()
	}

	devs := make([]Device, len(obs.Devices))
	copy(devs, obs.Devices)
	sort.Slice(devs, func(i, j int) bool { return devs[i].Key().Less(devs[j].Key()) })
	idCount := make(map[IDPattern]int, len(devs))
	for _, d := range devs {
		idCount[IDPattern{Vendor: d.Vendor, Product: d.Product}]++
	}

	res := Result{Placements: make([]Placement, 0, len(devs))}
	present := make(map[DeviceKey]bool, len(devs))
	names := ruleNames{blocks: map[want]string{}}
	var buf []ruleRef
	var wants, active []want
	var idle []string
	for _, d := range devs {
		k := d.Key()
		present[k] = true
		p := Placement{Device: d}
		hs := holders[k]
		var foreign []string
		for _, h := range hs {
			if !h.owned {
				foreign = append(foreign, h.domain)
			}
		}
		// A hand-made hostdev that names the device only by id holds it
		// if no other present device has that id.
		if id := (IDPattern{Vendor: d.Vendor, Product: d.Product}); len(foreignByID[id]) > 0 && idCount[id] == 1 {
			ds := foreignByID[id]
			foreign = append(foreign, ds...)
		}

		target := ""
		if ex, why := excluded(exIdx, rules.Excludes, d, buf[:0]); ex {
			p.Reason = why
		} else {
			buf, wants = wanted(idx, denyIdx, doms, broad, d, buf[:0], wants[:0])
			active, idle = active[:0], idle[:0]
			for _, w := range wants {
				if activeDom[w.dom] {
					active = append(active, w)
				} else {
					idle = append(idle, doms[w.dom].Name)
				}
			}
			sortWants(doms, active)
			switch {
			case len(foreign) > 0:
				p.HeldBy = foreign[0]
				p.Reason = fmt.Sprintf("held by a hostdev not managed by usbctl in domain %q", foreign[0])
				var others []string
				for _, w := range active {
					if n := doms[w.dom].Name; !contains(foreign, n) {
						others = append(others, n)
					}
				}
				if len(others) > 0 {
					res.Conflicts = append(res.Conflicts, Conflict{Key: k, Domains: append(dedupe(foreign), others...),
						Reason: fmt.Sprintf("wanted by %s but held by a hostdev usbctl does not own in %s; detach it there to let usbctl place it", strings.Join(others, ", "), strings.Join(dedupe(foreign), ", "))})
				}
			case len(active) == 0 && len(idle) > 0:
				sort.Strings(idle)
				p.Reason = fmt.Sprintf("wanted by %s, which is not running", strings.Join(dedupe(idle), ", "))
			case len(active) == 0:
				p.Reason = "no rule matches"
				if d.IsHub() && (len(broad) > 0 || anyMatch(idx, doms, d, buf[:0])) {
					p.Reason = "hub: placed only by an exact vendor:product or serial rule"
				}
			default:
				win := active[0]
				chosen := win
				// Stickiness: a device stays with the active domain we gave
				// it to while that domain still wants it, unless the winner
				// outranks it and may preempt.
				for _, w := range active {
					if holdsOwned(hs, doms[w.dom].Name) {
						if !(doms[win.dom].Priority > doms[w.dom].Priority && doms[win.dom].Preempt) {
							chosen = w
						}
						break
					}
				}
				target = doms[chosen.dom].Name
				p.Domain = target
				p.Rule = names.rule(doms, chosen)
				p.Reason = "matched " + p.Rule
				if chosen != win {
					wp, cp := doms[win.dom].Priority, doms[chosen.dom].Priority
					if wp > cp {
						// Here the winner has no preempt, or it would be chosen.
						p.Reason += fmt.Sprintf("; stays although %q has higher priority (%d > %d) without preempt", doms[win.dom].Name, wp, cp)
					} else {
						p.Reason += fmt.Sprintf("; stays: %q ranks first only by name or rule kind, and only a strictly higher priority with preempt moves an attached device", doms[win.dom].Name)
					}
				}
				if n := tiedCount(doms, active); n > 1 {
					tied := make([]string, n)
					for i := range tied {
						tied[i] = doms[active[i].dom].Name
					}
					how := fmt.Sprintf("%q chosen by name order", doms[win.dom].Name)
					if chosen != win {
						how = fmt.Sprintf("%q keeps it where it is (no flapping)", doms[chosen.dom].Name)
					}
					res.Conflicts = append(res.Conflicts, Conflict{Key: k, Domains: tied,
						Reason: fmt.Sprintf("wanted by %d running domains of priority %d; %s (set priorities to decide)", len(tied), doms[active[0].dom].Priority, how)})
				}
			}
		}
		for _, h := range hs {
			if h.owned {
				if h.domain == target {
					p.AttachedTo = h.domain
					continue
				}
				why := "domain no longer wants it"
				switch {
				case strings.HasPrefix(p.Reason, "excluded"):
					why = p.Reason
				case target != "":
					why = fmt.Sprintf("moves to %q (%s)", target, p.Rule)
				case p.HeldBy != "":
					why = "also held by a hostdev usbctl does not own"
				}
				a := Action{Kind: Detach, Domain: h.domain, Alias: h.alias, Key: k, Reason: why}
				dd := d
				a.Device = &dd
				res.Actions = append(res.Actions, a)
			}
		}
		if target != "" && p.AttachedTo == "" {
			dd := d
			res.Actions = append(res.Actions, Action{Kind: Attach, Domain: target, Alias: k.Alias(), Key: k, Device: &dd, Rule: p.Rule, Reason: p.Reason})
		}
		res.Placements = append(res.Placements, p)
	}

	// Our hostdevs whose device is gone.
	for k, hs := range holders {
		if present[k] {
			continue
		}
		for _, h := range hs {
			if h.owned {
				res.Actions = append(res.Actions, Action{Kind: Detach, Domain: h.domain, Alias: h.alias, Key: k, Reason: "device unplugged"})
			}
		}
	}

	sort.SliceStable(res.Actions, func(i, j int) bool {
		a, b := res.Actions[i], res.Actions[j]
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
	return res
}

// excluded reports whether an exclude block matches d, and says which.
// Excludes need no exact match: they keep devices on the host, which is
// always safe, hubs included.
func excluded(x *ruleIndex, excl []Match, d Device, buf []ruleRef) (bool, string) {
	if len(excl) == 0 {
		return false, ""
	}
	best := -1
	for _, r := range x.candidates(d, buf) {
		if ok, _ := Matches(excl[r.dev], d); ok && (best < 0 || r.dev < best) {
			best = r.dev
		}
	}
	if best < 0 {
		return false, ""
	}
	return true, "excluded by " + describe("exclude", excl[best])
}

func describe(kind string, m Match) string {
	s := fmt.Sprintf("%s %q", kind, m.Label)
	if m.Source != "" {
		s += " (" + m.Source + ")"
	}
	return s
}

// wanted lists the domains that want d, with the first block that says so.
// Hubs are wanted only through an exact match.
func wanted(x, deny *ruleIndex, doms []DomainRules, broad []int, d Device, buf []ruleRef, out []want) ([]ruleRef, []want) {
	buf = x.candidates(d, buf)
	for _, r := range buf {
		ok, exact := Matches(doms[r.dom].Devices[r.dev], d)
		if !ok || (d.IsHub() && !exact) {
			continue
		}
		out = addWant(out, want{dom: r.dom, dev: r.dev})
	}
	if d.IsHub() || len(broad) == 0 {
		return buf, out
	}
	// Deny domains take every device except those their blocks match;
	// mark the refusals with dev = -2, then keep the rest.
	n := len(out)
	buf = deny.candidates(d, buf[:0])
	for _, r := range buf {
		if ok, _ := Matches(doms[r.dom].Devices[r.dev], d); ok {
			out = addWant(out, want{dom: r.dom, dev: -2})
		}
	}
	// Append after the refusals, then drop them: appending over them
	// while reading them let a broad domain listed before a deny domain
	// erase that domain's refusal.
	m := len(out)
	for _, i := range broad {
		if !slices.ContainsFunc(out[n:m], func(w want) bool { return w.dom == i }) {
			out = append(out, want{dom: i, dev: -1})
		}
	}
	return buf, append(out[:n], out[m:]...)
}

// addWant keeps one entry per domain: its lowest-numbered matching block.
func addWant(out []want, w want) []want {
	for i := range out {
		if out[i].dom == w.dom {
			out[i].dev = min(out[i].dev, w.dev)
			return out
		}
	}
	return append(out, w)
}

// anyMatch reports whether some allow-mode block matches d at all, exact or
// not; it tells "no rule" from "hub refused" in explanations.
func anyMatch(x *ruleIndex, doms []DomainRules, d Device, buf []ruleRef) bool {
	for _, r := range x.candidates(d, buf) {
		if ok, _ := Matches(doms[r.dom].Devices[r.dev], d); ok {
			return true
		}
	}
	return false
}

// sortWants orders candidates: higher priority, then explicit over broad,
// then domain name.
func sortWants(doms []DomainRules, ws []want) {
	slices.SortFunc(ws, func(a, b want) int {
		da, db := &doms[a.dom], &doms[b.dom]
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

// tiedCount returns how many of the sorted candidates only the name order
// separates from the first.
func tiedCount(doms []DomainRules, ws []want) int {
	n := 0
	for _, w := range ws {
		if doms[w.dom].Priority != doms[ws[0].dom].Priority || w.explicit() != ws[0].explicit() {
			break
		}
		n++
	}
	return n
}

// ruleNames formats each rule's text once per Plan: many devices share a
// rule (a port subtree, a mode all domain), and formatting dominated the
// cost of planning for thousands of devices.
type ruleNames struct {
	blocks map[want]string
}

func (r *ruleNames) rule(doms []DomainRules, w want) string {
	if s, ok := r.blocks[w]; ok {
		return s
	}
	s := w.rule(doms)
	r.blocks[w] = s
	return s
}

func holdsOwned(hs []holder, domain string) bool {
	for _, h := range hs {
		if h.owned && h.domain == domain {
			return true
		}
	}
	return false
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func dedupe(ss []string) []string {
	var out []string
	for _, s := range ss {
		if !contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}
