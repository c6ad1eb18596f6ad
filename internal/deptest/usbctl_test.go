package deptest

import "testing"

// TestUsbctl holds the project's dependency rules, one home for all of
// them (DESIGN.md's layering, and the libraries left out on purpose with
// the measured reason). Re-adding a library refused here should be a
// decision, not an accident: measure again first.
func TestUsbctl(t *testing.T) {
	for _, c := range []struct {
		name string
		c    Checker
	}{
		// reconcile is the pure decision: it builds without cgo and knows
		// nothing of libvirt or udev, so it runs and is tested anywhere.
		{"reconcile", Checker{
			Pkg:   "github.com/usbctl/usbctl/reconcile",
			NoCgo: "reconcile is pure: no I/O and no C, so Plan is tested with tables and fuzzed anywhere, and usbctl plan --from replays a host without libvirt or udev",
			BadDeps: map[string]string{
				"libvirt.org/go/...":           "libvirt is the virt adapter's; reconcile only decides",
				"github.com/jochenvg/go-udev":  "udev is udevsrc's; reconcile only decides",
				"github.com/usbctl/usbctl/...": "reconcile is the bottom layer: every other package of usbctl imports it, it imports none",
			},
		}},
		// config turns HCL into reconcile.Rules; like reconcile it builds
		// without cgo and knows nothing of libvirt or udev.
		{"config", Checker{
			Pkg:   "github.com/usbctl/usbctl/config",
			NoCgo: "config is pure like reconcile (DESIGN.md: both build with CGO_ENABLED=0): its parser and diagnostics are tested and fuzzed anywhere, with no libvirt or libudev installed",
			BadDeps: map[string]string{
				"libvirt.org/go/...":                "libvirt is the virt adapter's; config only compiles rules",
				"github.com/jochenvg/go-udev":       "udev is udevsrc's; config only compiles rules",
				"github.com/hashicorp/hcl/v2/gohcl": "gohcl imports hclwrite and so go-cmp, whose package init left ~0.5 MB in usbctld's heap; decode.go decodes with the same diagnostics (58012d2)",
				"github.com/google/go-cmp/...":      "see gohcl: usbctld links config (58012d2)",
			},
		}},
		// The daemon leaves out libraries measured to cost it (issue 5's
		// performance note; the commits named).
		{"usbctld", Checker{
			Pkg: "github.com/usbctl/usbctl/cmd/usbctld",
			BadDeps: map[string]string{
				"github.com/prometheus/client_golang/...":    "client_golang with client_model and protobuf added 3.7 MiB to usbctld's idle RSS (target < 30 MiB) and 3.2 MB to the binary for a few dozen series; internal/exposition writes the same text (e1c4354)",
				"github.com/prometheus/client_model/...":     "comes with client_golang: see there (e1c4354); tests parse with it through internal/promtest only",
				"google.golang.org/protobuf/...":             "came with client_golang's client_model (e1c4354)",
				"github.com/hashicorp/hcl/v2/gohcl":          "gohcl imports hclwrite and so go-cmp; config/decode.go decodes with the same diagnostics (58012d2)",
				"github.com/hashicorp/hcl/v2/hclwrite":       "hclwrite links go-cmp (58012d2); only the CLI writes HCL",
				"github.com/google/go-cmp/...":               "go-cmp's package init compiles regular expressions that stayed in usbctld's heap for good: ~0.5 MB of a 1.7 MB live heap, found with a heap profile at MemProfileRate=1 (58012d2)",
				"github.com/godbus/dbus/v5":                  "D-Bus is usbctl agent's, in a desktop session; the daemon never talks to a session bus",
				"github.com/usbctl/usbctl/internal/ruleedit": "the rule editor is the CLI's: it renders with hclwrite; usbctld only checks and writes what the CLI rendered",
				"github.com/usbctl/usbctl/internal/agent":    "the desktop agent is the CLI's (D-Bus)",
			},
			BadSymbols: map[string]string{
				"github.com/jochenvg/go-udev.(*Monitor).DeviceChan": "go-udev's reader sleeps in EpollWait with a 1 s timeout in a goroutine of its own (idle wake-ups 434–516 a minute, 235 without), hands each device to a second goroutine, and drops receive errors; udevsrc/monitor.go reads libudev's monitor from Go's netpoller instead (b26d994); go-udev still enumerates",
			},
		}},
		// The CLI writes HCL (hclwrite, and so go-cmp, are fine there)
		// but serves no metrics.
		{"usbctl", Checker{
			Pkg: "github.com/usbctl/usbctl/cmd/usbctl",
			BadDeps: map[string]string{
				"github.com/prometheus/client_golang/...": "usbctl serves no metrics, and client_golang left the module when usbctld stopped linking it (3.7 MiB of RSS, e1c4354); debian/copyright lists only the modules the binaries link",
				"google.golang.org/protobuf/...":          "came with client_golang (e1c4354); debian/copyright does not list it",
			},
		}},
	} {
		t.Run(c.name, func(t *testing.T) { c.c.Check(t) })
	}
}
