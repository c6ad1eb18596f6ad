package main

import (
	"testing"

	"github.com/usbctl/usbctl/internal/deptest"
)

// The daemon leaves out libraries that were measured to cost it (issue 5's
// performance note; the commits named below). Re-adding one should be a
// decision, not an accident: measure again first.
func TestDeps(t *testing.T) {
	deptest.Checker{
		Pkg: ".",
		BadDeps: map[string]string{
			"github.com/prometheus/client_golang/...": "client_golang with client_model and protobuf added 3.7 MiB to usbctld's idle RSS (target < 30 MiB) and 3.2 MB to the binary for a few dozen series; internal/exposition writes the same text (e1c4354)",
			"github.com/prometheus/client_model/...":  "comes with client_golang: see there (e1c4354); tests parse with it through internal/promtest only",
			"google.golang.org/protobuf/...":          "came with client_golang's client_model (e1c4354)",
			"github.com/hashicorp/hcl/v2/gohcl":       "gohcl imports hclwrite and so go-cmp; config/decode.go decodes with the same diagnostics (58012d2)",
			"github.com/hashicorp/hcl/v2/hclwrite":    "hclwrite links go-cmp (58012d2); only the CLI writes HCL",
			"github.com/google/go-cmp/...":            "go-cmp's package init compiles regular expressions that stayed in usbctld's heap for good: ~0.5 MB of a 1.7 MB live heap, found with a heap profile at MemProfileRate=1 (58012d2)",
		},
		BadSymbols: map[string]string{
			"github.com/jochenvg/go-udev.(*Monitor).DeviceChan": "go-udev's reader sleeps in EpollWait with a 1 s timeout in a goroutine of its own (idle wake-ups 434–516 a minute, 235 without), hands each device to a second goroutine, and drops receive errors; udevsrc/monitor.go reads libudev's monitor from Go's netpoller instead (b26d994); go-udev still enumerates",
		},
	}.Check(t)
}
