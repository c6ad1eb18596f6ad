package reconcile

import "strings"

// ruleRef points at one device block of one domain.
type ruleRef struct {
	dom, block int // indexes into Rules.Domains and its Devices
}

// ruleIndex finds the blocks that may match a device without trying every
// block: each block is filed under its most selective criterion, and a
// device looks up only the keys it has. Candidates are then checked with
// Matches, so the index only has to be complete, not exact. R is what a
// block is filed as: a ruleRef for domains' blocks, an exclude's number.
type ruleIndex[R any] struct {
	byID                     map[IDPattern][]R
	byVendor, byProduct      map[string][]R
	bySerial, byPort, byTree map[string][]R
	byClass                  map[string][]R
	// everyDevice holds blocks with a "*:*" id, which config rejects:
	// filed where every device looks, the index stays complete anyway.
	everyDevice []R
}

// The maps are made when a block is first filed under them: Plan runs on
// every sync, most syncs see few rules, and a lookup in a nil map finds
// nothing, as it should.

func (x *ruleIndex[R]) add(r R, m Match) {
	switch {
	case len(m.IDs) > 0:
		for _, p := range m.IDs {
			switch {
			case p.Vendor != "" && p.Product != "":
				if x.byID == nil {
					x.byID = map[IDPattern][]R{}
				}
				x.byID[p] = append(x.byID[p], r)
			case p.Vendor != "":
				file(&x.byVendor, p.Vendor, r)
			case p.Product != "":
				file(&x.byProduct, p.Product, r)
			default:
				x.everyDevice = append(x.everyDevice, r)
			}
		}
	case m.Serial != "":
		file(&x.bySerial, m.Serial, r)
	case m.Port != nil && m.Port.Subtree:
		file(&x.byTree, m.Port.Path, r)
	case m.Port != nil:
		file(&x.byPort, m.Port.Path, r)
	case len(m.Classes) > 0:
		for _, c := range m.Classes {
			file(&x.byClass, c, r)
		}
	}
}

func file[R any](m *map[string][]R, k string, r R) {
	if *m == nil {
		*m = map[string][]R{}
	}
	(*m)[k] = append((*m)[k], r)
}

// candidates appends to buf every block filed under a key of d.
func (x *ruleIndex[R]) candidates(d Device, buf []R) []R {
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
	buf = append(buf, x.everyDevice...)
	buf = append(buf, x.byClass[d.Class]...)
	for _, c := range d.InterfaceClasses {
		if c != d.Class {
			buf = append(buf, x.byClass[c]...)
		}
	}
	return buf
}
