package deptest

import (
	"fmt"
	"strings"
	"testing"
)

// recorder is a testing.TB that keeps what Check reports.
type recorder struct {
	testing.TB
	errs []string
}

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

// Each check fails when it should, naming the package, the path to the
// dependency and the reason; and passes when it should.
func TestCheckerReports(t *testing.T) {
	for _, c := range []struct {
		name string
		c    Checker
		want []string // substrings of the one report, in order; nil for none
	}{
		{"a forbidden package, with the import path to it",
			Checker{Pkg: "github.com/usbctl/usbctl/config", BadDeps: map[string]string{"github.com/hashicorp/hcl/v2/hclsyntax": "because"}},
			[]string{"github.com/usbctl/usbctl/config depends on github.com/hashicorp/hcl/v2/hclsyntax", "github.com/usbctl/usbctl/config → github.com/hashicorp/hcl/v2/hclsyntax", "must not: because"}},
		{"a forbidden tree",
			Checker{Pkg: "github.com/usbctl/usbctl/virt", BadDeps: map[string]string{"libvirt.org/go/...": "no libvirt"}},
			[]string{"virt depends on libvirt.org/go/", "no libvirt"}},
		{"cgo where there must be none",
			Checker{Pkg: "github.com/usbctl/usbctl/udevsrc", NoCgo: "pure Go only"},
			[]string{"udevsrc depends on github.com/", "which uses cgo", "pure Go only"}},
		{"a forbidden symbol in the binary",
			Checker{Pkg: "github.com/usbctl/usbctl/cmd/usbctl", BadSymbols: map[string]string{"main.newRootCmd": "no root"}},
			[]string{"cmd/usbctl links main.newRootCmd", "no root"}},
		{"nothing forbidden",
			Checker{Pkg: "github.com/usbctl/usbctl/reconcile", NoCgo: "x", BadDeps: map[string]string{"os/exec": "x"}},
			nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := &recorder{TB: t}
			c.c.Check(r)
			if c.want == nil {
				if len(r.errs) > 0 {
					t.Fatalf("reports %q, want none", r.errs)
				}
				return
			}
			if len(r.errs) == 0 {
				t.Fatalf("no report, want one saying %q", c.want)
			}
			got := r.errs[0]
			for _, w := range c.want {
				i := strings.Index(got, w)
				if i < 0 {
					t.Fatalf("report %q lacks %q", got, w)
				}
				got = got[i+len(w):]
			}
		})
	}
}
