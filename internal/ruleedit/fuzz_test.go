package ruleedit

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/usbctl/usbctl/config"
)

// FuzzAddDevice: whatever valid config a person wrote, adding a device
// block keeps every byte of it (the original is a subsequence of the
// result, in order) and gives a valid config holding the new block; and
// whatever a device's serial says, it stays inside its string.
func FuzzAddDevice(f *testing.F) {
	seeds, _ := filepath.Glob("../../examples/*.hcl")
	for _, s := range seeds {
		if b, err := os.ReadFile(s); err == nil {
			f.Add(b, "gaming", "x\"}\n${a}")
		}
	}
	f.Add([]byte("domain \"vm\" {\n\t# tab\n\tpriority = 1\n}"), "vm", "")
	f.Fuzz(func(t *testing.T, src []byte, domain, serial string) {
		if domain == "" {
			return
		}
		if cfg, _ := config.Parse(config.Source{Name: "f.hcl", Data: src}); cfg == nil {
			return
		}
		b := Block{Label: "fuzzed", Criteria: Criteria{IDs: []string{"0781:5583"}, Serial: serial}, Comment: serial}
		out, err := AddDevice(src, "f.hcl", domain, b)
		if err != nil {
			return // a one-line domain, a label taken: refused, not broken
		}
		if !subsequence(src, out) {
			t.Fatalf("bytes of the original changed:\n%q\n->\n%q", src, out)
		}
		cfg, diags := config.Parse(config.Source{Name: "f.hcl", Data: out})
		if cfg == nil {
			// An invalid domain name, a device block in mode "all":
			// the config parser refuses it, as the daemon will.
			for _, d := range diags.Diagnostics {
				if d.Summary != "Invalid domain name" && d.Summary != "Device block in mode \"all\"" && d.Summary != "Empty serial" {
					t.Fatalf("result does not parse: %v\n%q", diags.Strings(), out)
				}
			}
			return
		}
		for _, dr := range cfg.Rules.Domains {
			for _, m := range dr.Devices {
				if dr.Name == domain && m.Label == "fuzzed" && m.Serial == serial {
					return
				}
			}
		}
		t.Fatalf("the block is not in domain %q:\n%q", domain, out)
	})
}

func subsequence(a, b []byte) bool {
	i := 0
	for j := 0; i < len(a) && j < len(b); j++ {
		if a[i] == b[j] {
			i++
		}
	}
	return i == len(a)
}
