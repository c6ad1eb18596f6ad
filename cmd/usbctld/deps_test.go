package main

import (
	"os/exec"
	"strings"
	"testing"
)

// The CLI does the work that needs heavy libraries, so the daemon that
// runs all day does not carry them: rendering config edits (hclwrite, which
// links go-cmp, measured at ~0.5 MB of usbctld's resident heap) and the
// desktop agent (D-Bus). usbctld checks and writes what the CLI renders
// with the config parser it links anyway.
func TestDaemonLeavesCLIOnlyDepsOut(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	bad := map[string]string{
		"github.com/hashicorp/hcl/v2/hclwrite":       "hclwrite renders config edits in the CLI; it links go-cmp (~0.5 MB of heap)",
		"github.com/google/go-cmp/cmp":               "go-cmp's init keeps compiled regexps in the heap for good (~0.5 MB)",
		"github.com/godbus/dbus/v5":                  "D-Bus is for usbctl agent, in the desktop session",
		"github.com/usbctl/usbctl/internal/ruleedit": "the rule editor is the CLI's (hclwrite)",
		"github.com/usbctl/usbctl/internal/agent":    "the desktop agent is the CLI's (D-Bus)",
	}
	for _, dep := range strings.Fields(string(out)) {
		if why, ok := bad[dep]; ok {
			t.Errorf("usbctld depends on %s: %s", dep, why)
		}
	}
}
