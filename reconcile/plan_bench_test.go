package reconcile

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// benchWorld builds a host of the given size with a realistic mix of rules:
// exact ids, vendor wildcards, serials, port subtrees, classes, and a few
// deny/all domains; half the domains run and some devices are attached.
func benchWorld(devices, domains, rules int) (Rules, Observed) {
	rng := rand.New(rand.NewPCG(1, 2))
	var obs Observed
	for i := range devices {
		bus, dev := 1+i/120, 2+i%120
		x := Device{Bus: bus, Dev: dev,
			Vendor: fmt.Sprintf("%04x", rng.IntN(400)), Product: fmt.Sprintf("%04x", rng.IntN(2000)),
			Port:  fmt.Sprintf("%d-%d.%d", bus, 1+i%120/10, 1+i%10),
			Class: "00", InterfaceClasses: []string{[]string{"03", "08", "01", "ff"}[rng.IntN(4)]}}
		if i%7 == 0 {
			x.Serial = fmt.Sprint("SN", i)
		}
		if i%50 == 0 {
			x.Class = "09"
		}
		obs.Devices = append(obs.Devices, x)
	}
	var rs Rules
	perDomain := rules / domains
	for di := range domains {
		dr := DomainRules{Name: fmt.Sprintf("vm%03d", di), Priority: rng.IntN(5), Mode: ModeAllow}
		switch {
		case di%50 == 1:
			dr.Mode = ModeDeny
		case di%50 == 2:
			dr.Mode = ModeAll
		}
		if dr.Mode != ModeAll {
			for j := range perDomain {
				x := obs.Devices[rng.IntN(len(obs.Devices))]
				var m Match
				switch j % 5 {
				case 0, 1:
					m.IDs = []IDPattern{{Vendor: x.Vendor, Product: x.Product}}
				case 2:
					m.IDs = []IDPattern{{Vendor: x.Vendor}}
				case 3:
					if x.Serial != "" {
						m.Serial = x.Serial
					} else {
						m.Port = &PortPattern{Path: x.Port}
					}
				case 4:
					if j%2 == 0 {
						m.Port = &PortPattern{Path: fmt.Sprintf("%d-%d", x.Bus, 1+rng.IntN(12)), Subtree: true}
					} else {
						m.Classes = []string{"08"}
						m.IDs = []IDPattern{{Vendor: x.Vendor}}
					}
				}
				m.Label = fmt.Sprint("d", j)
				dr.Devices = append(dr.Devices, m)
			}
		}
		rs.Domains = append(rs.Domains, dr)
		dm := Domain{Name: dr.Name, State: StateShutoff}
		if di%2 == 0 {
			dm.State = StateRunning
		}
		obs.Domains = append(obs.Domains, dm)
	}
	// Attach what the plan wants once, so the benchmark measures the
	// steady state with many devices already placed (the common case).
	r := Plan(rs, obs, nil)
	obs = apply(obs, r)
	return rs, obs
}

func BenchmarkPlan(b *testing.B) {
	for _, sz := range []struct{ devices, domains, rules int }{
		{500, 20, 200}, {2000, 80, 800}, {5000, 200, 2000},
	} {
		rules, obs := benchWorld(sz.devices, sz.domains, sz.rules)
		b.Run(fmt.Sprintf("devices=%d/domains=%d/rules=%d", sz.devices, sz.domains, sz.rules), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				Plan(rules, obs, nil)
			}
		})
	}
}
