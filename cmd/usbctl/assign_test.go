package main

import (
	"strings"
	"testing"

	"github.com/usbctl/usbctl/internal/ruleedit"
	"github.com/usbctl/usbctl/reconcile"
)

// Flags that mean nothing are refused before usbctld is asked (the socket
// here leads nowhere: a request would fail with "not running").
func TestAssignFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"attach", "1:5", "win11", "--for", "3s", "--until-stop"}, "give one"},
		{[]string{"attach", "1:5", "win11", "--for", "-3s"}, "positive duration"},
		{[]string{"attach", "1:5", "win11", "--save", "--for", "1h"}, "--save makes a rule"},
		{[]string{"move", "1:5", "--save", "--until-stop"}, "accepts 2 arg(s)"},
		{[]string{"attach"}, "accepts between 1 and 2 arg(s)"},
		{[]string{"detach", "1:5", "--until-stop"}, "unknown flag: --until-stop"},
		{[]string{"release"}, "accepts 1 arg(s)"},
		{[]string{"rule", "add", "win11"}, "name a present DEVICE, or give --ids"},
		{[]string{"rule", "add", "win11", "--ids", "xyz"}, "--ids xyz"},
		{[]string{"rule", "add", "win11", "--port", "1-4.*.2"}, "--port 1-4.*.2"},
		{[]string{"rule", "add", "--exclude", "a", "b"}, "accepts between 0 and 1 arg(s)"},
		{[]string{"rule", "remove", "win11"}, "accepts 2 arg(s)"},
		{[]string{"rule", "remove", "--exclude", "a", "b"}, "accepts 1 arg(s)"},
		{[]string{"attach", "1:5", "win11", "--for", "3s"}, "usbctld is not running"},
	} {
		out, code := run(t, append([]string{"--socket", t.TempDir() + "/none.sock"}, tc.args...)...)
		if code == 0 || !strings.Contains(out, tc.want) {
			t.Errorf("usbctl %s: exit %d, want the error %q:\n%s", strings.Join(tc.args, " "), code, tc.want, out)
		}
	}
}

func TestLabels(t *testing.T) {
	stick := reconcile.Device{Vendor: "0781", Product: "5583", Manufacturer: "SanDisk", ProductName: "Ultra Fit\x1b[31m"}
	if got := labelFor(&stick, ruleedit.Criteria{}); got != "sandisk-ultra-fit-31m" {
		t.Errorf("label %q", got)
	}
	anon := reconcile.Device{Vendor: "0781", Product: "5583"}
	if got := labelFor(&anon, ruleedit.Criteria{}); got != "0781-5583" {
		t.Errorf("label %q", got)
	}
	if got := labelFor(nil, ruleedit.Criteria{Serial: "AB:12"}); got != "serial-ab-12" {
		t.Errorf("label %q", got)
	}
	if got := labelFor(&reconcile.Device{ProductName: "ÜÜÜ"}, ruleedit.Criteria{}); got != "device" {
		t.Errorf("label %q", got)
	}
	if got := uniqueLabel("a", []string{"a", "a-2", "b"}); got != "a-3" {
		t.Errorf("unique %q", got)
	}
	c := criteriaOf(reconcile.Device{Vendor: "1050", Product: "0407", Serial: "bad\xff"}, ruleedit.Criteria{})
	if c.Serial != "" || len(c.IDs) != 1 || c.IDs[0] != "1050:0407" {
		t.Errorf("a serial HCL cannot hold was kept: %+v", c)
	}
}
