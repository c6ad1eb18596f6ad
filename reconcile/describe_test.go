package reconcile

import "testing"

// TestUnlabeledExcludeReason: an exclude without a label is named by its
// file and line in the plan's reasons, not by an empty label.
func TestUnlabeledExcludeReason(t *testing.T) {
	rules := Rules{Excludes: []Match{{Source: "usbctl.hcl:5", IDs: []IDPattern{{Vendor: "04d9", Product: "0006"}}}}}
	res := Plan(rules, Observed{Devices: []Device{{Bus: 1, Dev: 2, Vendor: "04d9", Product: "0006", Port: "1-1"}}}, nil)
	if len(res.Placements) != 1 || res.Placements[0].Reason != "excluded by exclude (usbctl.hcl:5)" {
		t.Fatalf("placements %+v", res.Placements)
	}
	rules.Excludes[0].Label = "kbd"
	res = Plan(rules, Observed{Devices: []Device{{Bus: 1, Dev: 2, Vendor: "04d9", Product: "0006", Port: "1-1"}}}, nil)
	if res.Placements[0].Reason != `excluded by exclude "kbd" (usbctl.hcl:5)` {
		t.Fatalf("placements %+v", res.Placements)
	}
}
