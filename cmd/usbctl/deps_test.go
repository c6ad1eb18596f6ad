package main

import (
	"testing"

	"github.com/usbctl/usbctl/internal/deptest"
)

// The CLI writes HCL (hclwrite, and so go-cmp, are fine here) but serves
// no metrics.
func TestDeps(t *testing.T) {
	deptest.Checker{
		Pkg: ".",
		BadDeps: map[string]string{
			"github.com/prometheus/client_golang/...": "usbctl serves no metrics, and client_golang left the module when usbctld stopped linking it (3.7 MiB of RSS, e1c4354); debian/copyright lists only the modules the binaries link",
			"google.golang.org/protobuf/...":          "came with client_golang (e1c4354); debian/copyright does not list it",
		},
	}.Check(t)
}
