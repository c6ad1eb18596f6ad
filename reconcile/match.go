package reconcile

import "strings"

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

// ExcludedBy returns the first exclude block of rules that matches d, as
// Plan would pick it.
func ExcludedBy(rules Rules, d Device) (Match, bool) {
	for _, m := range rules.Excludes {
		if ok, _ := Matches(m, d); ok {
			return m, true
		}
	}
	return Match{}, false
}
