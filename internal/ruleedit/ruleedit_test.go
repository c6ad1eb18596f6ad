package ruleedit

import (
	"errors"
	"strings"
	"testing"

	"github.com/usbctl/usbctl/config"
	"github.com/usbctl/usbctl/reconcile"
)

var stick = Block{Label: "sandisk-ultra-fit", Criteria: Criteria{IDs: []string{"0781:5583"}, Serial: "4C530001"}, Comment: "saved by usbctl attach --save"}

// parses checks that out is a valid config and returns it.
func parses(t *testing.T, out []byte) *config.Config {
	t.Helper()
	cfg, diags := config.Parse(config.Source{Name: "t.hcl", Data: out})
	if diags.HasErrors() {
		t.Fatalf("result does not parse: %v\n%s", diags.Strings(), out)
	}
	return cfg
}

func TestAddDevice(t *testing.T) {
	for _, tc := range []struct {
		name, domain, src, want string
	}{{
		name:   "tabs, comments and alignment kept",
		domain: "win11",
		src: "# gaming\n" +
			"domain \"win11\" {\n" +
			"\tpriority = 10    # wins\n" +
			"\t# the receiver\n" +
			"\tdevice \"receiver\" { ids = [\"046d:c52b\"] }   // keep\n" +
			"}\n" +
			"\n" +
			"domain \"work\" {\n" +
			"    device \"yubikey\" { serial = \"7654321\" }\n" +
			"}\n",
		want: "# gaming\n" +
			"domain \"win11\" {\n" +
			"\tpriority = 10    # wins\n" +
			"\t# the receiver\n" +
			"\tdevice \"receiver\" { ids = [\"046d:c52b\"] }   // keep\n" +
			"\n" +
			"\t# saved by usbctl attach --save\n" +
			"\tdevice \"sandisk-ultra-fit\" {\n" +
			"\t\tids    = [\"0781:5583\"]\n" +
			"\t\tserial = \"4C530001\"\n" +
			"\t}\n" +
			"}\n" +
			"\n" +
			"domain \"work\" {\n" +
			"    device \"yubikey\" { serial = \"7654321\" }\n" +
			"}\n",
	}, {
		name:   "four spaces, second domain, no newline at the end",
		domain: "work",
		src:    "domain \"win11\" {\n  device \"r\" { ids = [\"046d:c52b\"] }\n}\ndomain \"work\" {\n    mode = \"allow\"\n    device \"yubikey\" {\n        serial = \"7654321\"\n    }\n}",
		want:   "domain \"win11\" {\n  device \"r\" { ids = [\"046d:c52b\"] }\n}\ndomain \"work\" {\n    mode = \"allow\"\n    device \"yubikey\" {\n        serial = \"7654321\"\n    }\n\n    # saved by usbctl attach --save\n    device \"sandisk-ultra-fit\" {\n        ids    = [\"0781:5583\"]\n        serial = \"4C530001\"\n    }\n}",
	}, {
		name:   "empty domain block",
		domain: "vm",
		src:    "domain \"vm\" {\n}\n",
		want:   "domain \"vm\" {\n  # saved by usbctl attach --save\n  device \"sandisk-ultra-fit\" {\n    ids    = [\"0781:5583\"]\n    serial = \"4C530001\"\n  }\n}\n",
	}, {
		name:   "domain not in the file",
		domain: "new",
		src:    "exclude \"kbd\" { ids = [\"04d9:0006\"] } # the host's",
		want:   "exclude \"kbd\" { ids = [\"04d9:0006\"] } # the host's\n\ndomain \"new\" {\n  # saved by usbctl attach --save\n  device \"sandisk-ultra-fit\" {\n    ids    = [\"0781:5583\"]\n    serial = \"4C530001\"\n  }\n}\n",
	}, {
		name:   "new file",
		domain: "new",
		src:    "",
		want:   NewFileHeader + "domain \"new\" {\n  # saved by usbctl attach --save\n  device \"sandisk-ultra-fit\" {\n    ids    = [\"0781:5583\"]\n    serial = \"4C530001\"\n  }\n}\n",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := AddDevice([]byte(tc.src), "t.hcl", tc.domain, stick)
			if err != nil {
				t.Fatal(err)
			}
			if string(out) != tc.want {
				t.Fatalf("got:\n%s\nwant:\n%s", out, tc.want)
			}
			cfg := parses(t, out)
			var found bool
			for _, d := range cfg.Rules.Domains {
				for _, m := range d.Devices {
					if d.Name == tc.domain && m.Label == stick.Label {
						found = true
						if ok, exact := reconcile.Matches(m, reconcile.Device{Vendor: "0781", Product: "5583", Serial: "4C530001"}); !ok || !exact {
							t.Errorf("the saved block does not match the device exactly: %+v", m)
						}
					}
				}
			}
			if !found {
				t.Fatalf("no device %q in domain %q after the edit", stick.Label, tc.domain)
			}
			// Removing it again gives back the file as it was.
			back, err := RemoveDevice(out, "t.hcl", tc.domain, stick.Label)
			if err != nil {
				t.Fatal(err)
			}
			wantBack := tc.src
			if !strings.Contains(tc.src, `domain "`+tc.domain+`"`) {
				wantBack = "" // the domain block added stays, empty
			}
			if wantBack != "" && string(back) != wantBack {
				t.Fatalf("add then remove changed the file:\n%q\nwant\n%q", back, wantBack)
			}
		})
	}
}

func TestAddDeviceRefuses(t *testing.T) {
	if _, err := AddDevice([]byte("domain \"vm\" { priority = 1 }\n"), "t.hcl", "vm", stick); err == nil || !strings.Contains(err.Error(), "one line") {
		t.Errorf("one-line domain: %v", err)
	}
	src := []byte("domain \"vm\" {\n  device \"sandisk-ultra-fit\" { ids = [\"1111:2222\"] }\n}\n")
	if _, err := AddDevice(src, "t.hcl", "vm", stick); !errors.Is(err, ErrLabelTaken) {
		t.Errorf("label taken: %v", err)
	}
	if _, err := AddDevice([]byte("domain \"vm\" {\n"), "t.hcl", "vm", stick); err == nil || !strings.Contains(err.Error(), "does not parse") {
		t.Errorf("broken file: %v", err)
	}
	if _, err := AddDevice(nil, "t.hcl", "vm", Block{Label: "x"}); err == nil {
		t.Error("a block with no criteria was written")
	}
}

// A device's strings are the hardware's: whatever they hold must stay
// inside their string, and come back as they were.
func TestHostileStrings(t *testing.T) {
	serial := "x\"\n}\nlibvirt { uri = \"evil:///\" }\n${file(\"/etc/shadow\")}%{ if true }\x1b[31m\\"
	label := "a\"b${c}\n"
	b := Block{Label: label, Criteria: Criteria{IDs: []string{"0781:5583"}, Serial: serial},
		Comment: "product \"Evil\nlibvirt { uri = \"evil:///\" }\r\u2028"}
	out, err := AddDevice([]byte("domain \"vm\" {\n}\n"), "t.hcl", "vm", b)
	if err != nil {
		t.Fatal(err)
	}
	cfg := parses(t, out)
	if cfg.LibvirtURI != config.DefaultURI {
		t.Fatalf("a device string set the libvirt URI to %q:\n%s", cfg.LibvirtURI, out)
	}
	m := cfg.Rules.Domains[0].Devices
	if len(m) != 1 || m[0].Serial != serial || m[0].Label != label {
		t.Fatalf("strings did not round-trip: %+v\n%s", m, out)
	}
	if strings.Count(string(out), "\n") != 7 {
		t.Errorf("the comment or a string added lines:\n%s", out)
	}
	ex, err := AddExclude(nil, "t.hcl", Block{Label: label, Criteria: Criteria{Serial: serial}})
	if err != nil {
		t.Fatal(err)
	}
	if cfg := parses(t, ex); len(cfg.Rules.Excludes) != 1 || cfg.Rules.Excludes[0].Serial != serial {
		t.Fatalf("exclude strings did not round-trip:\n%s", ex)
	}
}

func TestRemove(t *testing.T) {
	src := "domain \"vm\" {\n" +
		"  priority = 2\n" +
		"\n" +
		"  # the stick, for backups\n" +
		"  # (two lines of comment)\n" +
		"  device \"stick\" {\n" +
		"    ids = [\"0781:5583\"]\n" +
		"  } # trailing\n" +
		"\n" +
		"  device \"kbd\" { ids = [\"04d9:0006\"] }\n" +
		"}\n" +
		"\n" +
		"# never\n" +
		"exclude \"hub\" { ids = [\"05e3:0610\"] }\n"
	out, err := RemoveDevice([]byte(src), "t.hcl", "vm", "stick")
	if err != nil {
		t.Fatal(err)
	}
	want := "domain \"vm\" {\n  priority = 2\n\n  device \"kbd\" { ids = [\"04d9:0006\"] }\n}\n\n# never\nexclude \"hub\" { ids = [\"05e3:0610\"] }\n"
	if string(out) != want {
		t.Fatalf("got:\n%q\nwant:\n%q", out, want)
	}
	parses(t, out)
	out, err = RemoveExclude(out, "t.hcl", "hub")
	if err != nil {
		t.Fatal(err)
	}
	if want := "domain \"vm\" {\n  priority = 2\n\n  device \"kbd\" { ids = [\"04d9:0006\"] }\n}\n"; string(out) != want {
		t.Fatalf("got:\n%q\nwant:\n%q", out, want)
	}
	for _, err := range []error{
		func() error { _, err := RemoveDevice([]byte(src), "t.hcl", "vm", "nope"); return err }(),
		func() error { _, err := RemoveDevice([]byte(src), "t.hcl", "other", "stick"); return err }(),
		func() error { _, err := RemoveExclude([]byte(src), "t.hcl", "nope"); return err }(),
	} {
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("removing what is not there: %v", err)
		}
	}
}

func TestAddExclude(t *testing.T) {
	src := "domain \"vm\" {\n\tdevice \"a\" { ids = [\"1111:2222\"] }\n}\n"
	b := Block{Label: "keyboard", Criteria: Criteria{IDs: []string{"04d9:0006"}}, Comment: "kept on the host by usbctl detach --save"}
	out, err := AddExclude([]byte(src), "t.hcl", b)
	if err != nil {
		t.Fatal(err)
	}
	want := src + "\n# kept on the host by usbctl detach --save\nexclude \"keyboard\" {\n  ids = [\"04d9:0006\"]\n}\n"
	if string(out) != want {
		t.Fatalf("got:\n%q\nwant:\n%q", out, want)
	}
	if cfg := parses(t, out); len(cfg.Rules.Excludes) != 1 {
		t.Fatal("no exclude after the edit")
	}
	if _, err := AddExclude(out, "t.hcl", b); !errors.Is(err, ErrLabelTaken) {
		t.Errorf("second exclude of the same label: %v", err)
	}
	back, err := RemoveExclude(out, "t.hcl", "keyboard")
	if err != nil || string(back) != src {
		t.Fatalf("add then remove: %v\n%q", err, back)
	}
	labels, err := Labels(out, "t.hcl", "")
	if err != nil || len(labels) != 1 || labels[0] != "keyboard" {
		t.Errorf("exclude labels %v, %v", labels, err)
	}
	labels, err = Labels(out, "t.hcl", "vm")
	if err != nil || len(labels) != 1 || labels[0] != "a" {
		t.Errorf("device labels %v, %v", labels, err)
	}
}
