package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParse: any input yields either a config or error diagnostics, never
// a panic, and every diagnostic that has a location points into the input.
func FuzzParse(f *testing.F) {
	f.Add([]byte(full))
	seeds, _ := filepath.Glob("testdata/*/*.hcl")
	for _, s := range seeds {
		if b, err := os.ReadFile(s); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		cfg, diags := Parse(Source{Name: "f.hcl", Data: src})
		if (cfg == nil) != diags.HasErrors() {
			t.Fatalf("cfg nil = %v but errors = %v", cfg == nil, diags.HasErrors())
		}
		for _, d := range diags.Diagnostics {
			if d.Subject != nil && d.Subject.Filename != "f.hcl" {
				t.Fatalf("diagnostic in unknown file %q", d.Subject.Filename)
			}
			// Messages are in the config's words, never HCL's own.
			for _, raw := range rawHCL {
				if strings.Contains(d.Summary, raw) || strings.Contains(d.Detail, raw) {
					t.Fatalf("HCL's own words %q in %q: %q", raw, d.Summary, d.Detail)
				}
			}
		}
		_ = diags.Strings()
		if cfg != nil {
			for _, dr := range cfg.Rules.Domains {
				if dr.Name == "" {
					t.Fatal("domain with empty name accepted")
				}
				for _, m := range dr.Devices {
					if len(m.IDs) == 0 && m.Serial == "" && m.Port == nil && len(m.Classes) == 0 {
						t.Fatalf("device block %q without criteria accepted", m.Label)
					}
				}
			}
		}
	})
}
