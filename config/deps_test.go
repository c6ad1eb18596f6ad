package config

import (
	"testing"

	"github.com/usbctl/usbctl/internal/deptest"
)

// config turns HCL into reconcile.Rules; like reconcile it builds without
// cgo and knows nothing of libvirt or udev (DESIGN.md).
func TestDeps(t *testing.T) {
	deptest.Checker{
		Pkg:   ".",
		NoCgo: "config must build with CGO_ENABLED=0: usbctl check runs where libvirt and libudev are not installed",
		BadDeps: map[string]string{
			"libvirt.org/go/...":                "libvirt is the virt adapter's; config only compiles rules",
			"github.com/jochenvg/go-udev":       "udev is udevsrc's; config only compiles rules",
			"github.com/hashicorp/hcl/v2/gohcl": "gohcl imports hclwrite and so go-cmp, whose package init left ~0.5 MB in usbctld's heap; decode.go decodes with the same diagnostics (58012d2)",
			"github.com/google/go-cmp/...":      "see gohcl: usbctld links config (58012d2)",
		},
	}.Check(t)
}
