package reconcile

import (
	"strings"
	"testing"
)

func TestParseIDPattern(t *testing.T) {
	ok := map[string]IDPattern{
		"046d:c52b": {Vendor: "046d", Product: "c52b"},
		"046D:C52B": {Vendor: "046d", Product: "c52b"},
		"0b05:*":    {Vendor: "0b05"},
		"0b05:":     {Vendor: "0b05"},
		"*:1872":    {Product: "1872"},
		":1872":     {Product: "1872"},
	}
	for in, want := range ok {
		got, err := ParseIDPattern(in)
		if err != nil || got != want {
			t.Errorf("ParseIDPattern(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"", ":", "*:*", "046d", "046d-c52b", "46d:c52b", "046dd:c52b", "046g:c52b", "046d:c52b:1", " 046d:c52b", "0x46:c52b"} {
		if p, err := ParseIDPattern(in); err == nil {
			t.Errorf("ParseIDPattern(%q) = %+v, want an error", in, p)
		} else if !strings.Contains(err.Error(), "id") {
			t.Errorf("error %q does not name the id", err)
		}
	}
}

func TestParsePortPattern(t *testing.T) {
	ok := map[string]PortPattern{
		"1-4":           {Path: "1-4"},
		"1-4.2":         {Path: "1-4.2"},
		"1-4.*":         {Path: "1-4", Subtree: true},
		"12-1.2.3.*":    {Path: "12-1.2.3", Subtree: true},
		"3-255":         {Path: "3-255"},
		"1-1.2.3.4.5.6": {Path: "1-1.2.3.4.5.6"},
	}
	for in, want := range ok {
		got, err := ParsePortPattern(in)
		if err != nil || got != want {
			t.Errorf("ParsePortPattern(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "usb1", "1", "1-", "1-4.", "-4", "0-1", "1-0", "01-4", "1-04", "1-256", "*", "1-*", "1-4.*.*", "1-4..2", "1-1.2.3.4.5.6.7", "a-1", "1-4 "} {
		if p, err := ParsePortPattern(in); err == nil {
			t.Errorf("ParsePortPattern(%q) = %+v, want an error", in, p)
		}
	}
}

func TestParseClass(t *testing.T) {
	ok := map[string]string{"hid": "03", "HID": "03", "mass-storage": "08", "video": "0e", "03": "03", "0x0E": "0e", "ff": "ff", "3": "03", "vendor-specific": "ff"}
	for in, want := range ok {
		if got, err := ParseClass(in); err != nil || got != want {
			t.Errorf("ParseClass(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "keyboard", "0x", "100", "zz", "0x1ff", "00", "0", "0x00"} {
		if c, err := ParseClass(in); err == nil {
			t.Errorf("ParseClass(%q) = %q, want an error", in, c)
		}
	}
	if ClassName("03") != "hid" || ClassName("42") != "" {
		t.Errorf("ClassName")
	}
}

// FuzzParseIDPattern: never panics, and what parses prints back to itself.
func FuzzParseIDPattern(f *testing.F) {
	for _, s := range []string{"046d:c52b", "0b05:", ":1872", "*:1872", "*:*", "", "046D:C52B"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseIDPattern(s)
		if err != nil {
			return
		}
		q, err := ParseIDPattern(p.String())
		if err != nil || q != p {
			t.Fatalf("%q → %+v → %q → %+v, %v", s, p, p.String(), q, err)
		}
		if p.Vendor == "" && p.Product == "" {
			t.Fatalf("%q parsed to the match-everything pattern", s)
		}
	})
}

// FuzzParsePortPattern: never panics, round-trips, and a subtree pattern
// never matches its own port.
func FuzzParsePortPattern(f *testing.F) {
	for _, s := range []string{"1-4", "1-4.*", "1-4.2.1", "usb1", "1-", "1-1.2.3.4.5.6"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePortPattern(s)
		if err != nil {
			return
		}
		q, err := ParsePortPattern(p.String())
		if err != nil || q != p {
			t.Fatalf("%q → %+v → %q → %+v, %v", s, p, p.String(), q, err)
		}
		if p.Subtree && portMatches(p, p.Path) {
			t.Fatalf("subtree %q matches its own port", s)
		}
	})
}
