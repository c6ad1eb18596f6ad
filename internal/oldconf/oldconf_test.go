package oldconf

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/usbctl/usbctl/config"
	"github.com/usbctl/usbctl/reconcile"
)

// domainOf parses a translation as usbctld would, and returns its one
// domain; with strict, warnings fail too.
func domainOf(t *testing.T, out []byte, strict bool) reconcile.DomainRules {
	t.Helper()
	cfg, diags := config.Parse(config.Source{Name: "imported.hcl", Data: out})
	if diags.HasErrors() || strict && len(diags.Diagnostics) > 0 {
		t.Fatalf("translation does not parse cleanly:\n%s\n%s", strings.Join(diags.Strings(), "\n"), out)
	}
	if n := len(cfg.Rules.Domains); n != 1 {
		t.Fatalf("%d domains, want 1:\n%s", n, out)
	}
	return cfg.Rules.Domains[0]
}

// idList is every id pattern of d's device blocks, in order.
func idList(d reconcile.DomainRules) (out []string) {
	for _, m := range d.Devices {
		for _, p := range m.IDs {
			out = append(out, p.String())
		}
	}
	return out
}

// TestImportShell covers the bash the reader understands, through the
// entries it finds.
func TestImportShell(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		ids       []string
		notes     []string
	}{
		{"scalar with spaces", "mode=whitelist\ndevlist=\"046d:c52b 0b05:\"\n", []string{"046d:c52b", "0b05:*"},
			[]string{"devlist is a string, not an array"}},
		{"continuations and comments", "mode=whitelist # comment\ndevlist=( \\\n  046d:c52b \\\n  # a comment line\n  '0b05:'#not-a-comment\n)\n", []string{"046d:c52b"},
			[]string{`devlist entry "0b05:#not-a-comment" not carried over`}},
		{"indexes and appends", "MODE=WHITELIST\ndevlist=([0]=046d:c52b)\ndevlist[1]=0b05:1872\ndevlist[0]=1050:0407\ndevlist=(\"${devlist[@]}\" :1872)\n",
			[]string{"1050:0407", "0b05:1872", "*:1872"}, nil},
		{"variables", "V=046d\ndevlist=(\"$V:c52b\" \"${V}:\" $'\\x41')\nmode=whitelist\n", []string{"046d:c52b", "046d:*"}, nil},
		{"function bodies", "mode=whitelist\ndevlist=(046d:c52b)\nadd() {\n  devlist+=(dead:beef)\n}\nfunction more {\n  devlist=(beef:dead)\n}\n",
			[]string{"046d:c52b"}, []string{"assignment inside a block"}},
		{"env prefix is no assignment", "mode=whitelist\ndevlist=(046d:c52b) true\n", nil, []string{"command not run"}},
		{"unclosed array", "mode=whitelist\ndevlist=(046d:c52b\n", []string{"046d:c52b"}, []string{"array not closed"}},
		{"unclosed quote", "mode=whitelist\ndevlist=(046d:c52b \"0b05:\n", []string{"046d:c52b"}, []string{`quote " not closed`}},
		{"mode under another name", "filter=blacklist\ndevlist=(046d:c52b)\n", []string{"046d:c52b"}, []string{"took the mode from filter"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, notes, err := Translate("old.conf", []byte(tc.src), "vm")
			if err != nil {
				t.Fatalf("%v\n%s", err, strings.Join(notes, "\n"))
			}
			d := domainOf(t, out, len(tc.ids) > 0)
			if got := idList(d); !reflect.DeepEqual(got, tc.ids) {
				t.Errorf("ids %q, want %q\n%s", got, tc.ids, strings.Join(notes, "\n"))
			}
			for _, n := range tc.notes {
				if all := strings.Join(notes, "\n"); !strings.Contains(all, n) {
					t.Errorf("notes lack %q:\n%s", n, all)
				}
			}
		})
	}
}

// TestImportDomainNames checks that any valid domain name survives the trip
// through HCL quoting, and that --domain wins over the file's name.
func TestImportDomainNames(t *testing.T) {
	for _, name := range []string{`we"ird`, "a ${b} %{c}", `back\slash`, "ünïcode vm", "tab\tin"} {
		out, notes, err := Translate("old.conf", []byte("mode=matchall\n"), name)
		if err != nil {
			t.Fatalf("%q: %v %q", name, err, notes)
		}
		if d := domainOf(t, out, true); d.Name != name {
			t.Errorf("domain %q came back as %q:\n%s", name, d.Name, out)
		}
	}
	_, notes, err := Translate("old.conf", []byte("vm=old\nmode=matchall\n"), "new")
	if err != nil || !strings.Contains(strings.Join(notes, "\n"), `vm="old": --domain "new" is used instead`) {
		t.Errorf("err %v, notes %q", err, notes)
	}
}

// FuzzImport: no input makes the reader panic or loop, and every
// translation it prints is a valid config.
func FuzzImport(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.conf"))
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("mode=whitelist\ndevlist=(\"${x\" $'\\' `a\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		out, _, err := Translate("old.conf", data, "vm")
		if err != nil {
			return
		}
		if _, diags := config.Parse(config.Source{Name: "imported.hcl", Data: out}); diags.HasErrors() {
			t.Fatalf("invalid translation of %q:\n%s", data, out)
		}
	})
}
