package config

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"

	"github.com/usbctl/usbctl/reconcile"
)

var marker = regexp.MustCompile(`#\s*(ERROR|WARNING):\s*(.+?)\s*$`)

// TestErrorFiles checks every testdata/errors file: each line marked
// "# ERROR: summary" or "# WARNING: summary" must get exactly that
// diagnostic on that line, and no other line may get one. The style is
// Terraform's: the expectation sits on the offending line.
func TestErrorFiles(t *testing.T) {
	files, _ := filepath.Glob("testdata/errors/*.hcl")
	if len(files) == 0 {
		t.Fatal("no testdata/errors files")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			src, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]int{} // "line:SEVERITY:summary" → count
			for i, line := range strings.Split(string(src), "\n") {
				if m := marker.FindStringSubmatch(line); m != nil {
					want[fmt.Sprintf("%d:%s:%s", i+1, m[1], m[2])]++
				}
			}
			cfg, diags := Load(f)
			got := map[string]int{}
			for _, d := range diags.Diagnostics {
				if d.Subject == nil {
					t.Errorf("diagnostic without a location: %s: %s", d.Summary, d.Detail)
					continue
				}
				if d.Detail == "" {
					t.Errorf("diagnostic %q at line %d says nothing about what to do", d.Summary, d.Subject.Start.Line)
				}
				sev := "ERROR"
				if d.Severity == hcl.DiagWarning {
					sev = "WARNING"
				}
				got[fmt.Sprintf("%d:%s:%s", d.Subject.Start.Line, sev, d.Summary)]++
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("diagnostics differ\n got  %v\n want %v\nall:\n%s", keys(got), keys(want), strings.Join(diags.Strings(), "\n"))
			}
			hasErr := false
			for k := range want {
				hasErr = hasErr || strings.Contains(k, ":ERROR:")
			}
			if hasErr != (cfg == nil) {
				t.Errorf("config returned = %v with errors expected = %v", cfg != nil, hasErr)
			}
		})
	}
}

func keys(m map[string]int) []string {
	var out []string
	for k, n := range m {
		out = append(out, fmt.Sprintf("%s (x%d)", k, n))
	}
	sort.Strings(out)
	return out
}

func TestSyntaxErrorHasLocation(t *testing.T) {
	cfg, diags := Parse(Source{Name: "broken.hcl", Data: []byte("domain \"win11\" {\n  device \"rx\" {\n    vendor = \"046d\n  }\n}\n")})
	if cfg != nil || !diags.HasErrors() {
		t.Fatal("broken config accepted")
	}
	lines := diags.Strings()
	if !strings.HasPrefix(lines[0], "broken.hcl:3:") {
		t.Fatalf("first diagnostic %q, want it at broken.hcl:3", lines[0])
	}
	var buf bytes.Buffer
	if err := diags.Write(&buf, 0, false); err != nil {
		t.Fatal(err)
	}
	// The writer shows the offending source line.
	if !strings.Contains(buf.String(), `vendor = "046d`) || !strings.Contains(buf.String(), "broken.hcl line 3") {
		t.Fatalf("written diagnostics lack the source line:\n%s", buf.String())
	}
}

const full = `
libvirt {
  uri = "qemu+ssh://root@host/system"
}

domain "win11" {
  priority = 10
  preempt  = true

  device "receiver" {
    vendor  = "046D"
    product = "c52b"
  }
  device "yubikey" {
    vendor = "1050"
    serial = "12345678"
  }
  device "stm32" {
    ids = ["0483:5740", "0483:DF11"]
  }
  device "any-id" {
    ids = ["0b05:", ":1872", "0b05:*", "*:1872"]
  }
  device "desk" {
    port = "1-4.*"
  }
  device "cams" {
    class = ["video", "0x0e"]
  }
}

domain "linux" {
  mode = "deny"
  device "receiver" {
    ids = ["046d:c52b"]
  }
}

exclude "host-keyboard" {
  port  = "1-1"
  class = "hid"
}
`

func TestCompile(t *testing.T) {
	cfg, diags := Parse(Source{Name: "u.hcl", Data: []byte(full)})
	if diags.HasErrors() || len(diags.Diagnostics) != 0 {
		t.Fatalf("diagnostics: %v", diags.Strings())
	}
	want := &Config{
		LibvirtURI: "qemu+ssh://root@host/system",
		Files:      []string{"u.hcl"},
		Rules: reconcile.Rules{
			Domains: []reconcile.DomainRules{
				{Name: "win11", Source: "u.hcl:6", Priority: 10, Preempt: true, Mode: reconcile.ModeAllow, Devices: []reconcile.Match{
					{Label: "receiver", Source: "u.hcl:10", IDs: []reconcile.IDPattern{{Vendor: "046d", Product: "c52b"}}},
					{Label: "yubikey", Source: "u.hcl:14", IDs: []reconcile.IDPattern{{Vendor: "1050"}}, Serial: "12345678"},
					{Label: "stm32", Source: "u.hcl:18", IDs: []reconcile.IDPattern{{Vendor: "0483", Product: "5740"}, {Vendor: "0483", Product: "df11"}}},
					{Label: "any-id", Source: "u.hcl:21", IDs: []reconcile.IDPattern{{Vendor: "0b05"}, {Product: "1872"}, {Vendor: "0b05"}, {Product: "1872"}}},
					{Label: "desk", Source: "u.hcl:24", Port: &reconcile.PortPattern{Path: "1-4", Subtree: true}},
					{Label: "cams", Source: "u.hcl:27", Classes: []string{"0e", "0e"}},
				}},
				{Name: "linux", Source: "u.hcl:32", Mode: reconcile.ModeDeny, Devices: []reconcile.Match{
					{Label: "receiver", Source: "u.hcl:34", IDs: []reconcile.IDPattern{{Vendor: "046d", Product: "c52b"}}},
				}},
			},
			Excludes: []reconcile.Match{{Label: "host-keyboard", Source: "u.hcl:39", Port: &reconcile.PortPattern{Path: "1-1"}, Classes: []string{"03"}}},
		},
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Fatalf("compiled:\n%#v\nwant:\n%#v", cfg, want)
	}
}

func TestDefaultsAndMerge(t *testing.T) {
	dir := t.TempDir()
	main := filepath.Join(dir, "usbctl.hcl")
	confd := filepath.Join(dir, "conf.d")
	os.Mkdir(confd, 0o755)
	os.WriteFile(main, []byte("exclude \"kbd\" {\n  ids = [\"04d9:0006\"]\n}\n"), 0o644)
	os.WriteFile(filepath.Join(confd, "b-win.hcl"), []byte("domain \"win\" {\n  device \"rx\" {\n    vendor = \"046d\"\n  }\n}\n"), 0o644)
	os.WriteFile(filepath.Join(confd, "a-lab.hcl"), []byte("domain \"lab\" {\n  mode = \"all\"\n}\n"), 0o644)
	os.WriteFile(filepath.Join(confd, "README"), []byte("not hcl"), 0o644)
	cfg, diags := Load(main, confd)
	if diags.HasErrors() {
		t.Fatal(diags.Strings())
	}
	if cfg.LibvirtURI != DefaultURI {
		t.Errorf("uri = %q", cfg.LibvirtURI)
	}
	if got := []string{cfg.Rules.Domains[0].Name, cfg.Rules.Domains[1].Name}; !reflect.DeepEqual(got, []string{"lab", "win"}) {
		t.Errorf("merge order %v, want lexical file order", got)
	}
	if cfg.Rules.Domains[1].Mode != reconcile.ModeAllow || cfg.Rules.Domains[1].Priority != 0 || cfg.Rules.Domains[1].Preempt {
		t.Errorf("defaults: %+v", cfg.Rules.Domains[1])
	}
	if len(cfg.Files) != 3 {
		t.Errorf("files = %v", cfg.Files)
	}

	// The same domain in two files is one error citing the first file.
	os.WriteFile(filepath.Join(confd, "c-dup.hcl"), []byte("domain \"win\" {\n  mode = \"all\"\n}\n"), 0o644)
	cfg, diags = Load(main, confd)
	if cfg != nil || len(diags.Diagnostics) != 1 || !strings.Contains(diags.Diagnostics[0].Detail, "b-win.hcl:1") {
		t.Fatalf("duplicate across files: cfg=%v diags=%v", cfg != nil, diags.Strings())
	}
}

func TestMissingFile(t *testing.T) {
	cfg, diags := Load(filepath.Join(t.TempDir(), "nope.hcl"))
	if cfg != nil || !diags.HasErrors() || !strings.Contains(diags.Strings()[0], "nope.hcl") {
		t.Fatalf("missing file: %v", diags.Strings())
	}
}

func TestDescribeFiles(t *testing.T) {
	many := []string{"/etc/usbctl/usbctl.hcl"}
	for i := 1; i <= 299; i++ {
		many = append(many, fmt.Sprintf("/etc/usbctl/conf.d/vm%03d.hcl", i))
	}
	for _, c := range []struct {
		files []string
		want  string
	}{
		{nil, "(no files)"},
		{[]string{"/etc/usbctl/usbctl.hcl", "/etc/usbctl/conf.d/a.hcl"}, "/etc/usbctl/usbctl.hcl, /etc/usbctl/conf.d/a.hcl"},
		{many, "/etc/usbctl/usbctl.hcl, 299 files in /etc/usbctl/conf.d (vm001.hcl … vm299.hcl)"},
		{append([]string{"a.hcl", "b.hcl"}, many[1:4]...), "a.hcl, b.hcl, 3 files in /etc/usbctl/conf.d (vm001.hcl … vm003.hcl)"},
	} {
		if got := DescribeFiles(c.files); got != c.want {
			t.Errorf("DescribeFiles(%d files) = %q, want %q", len(c.files), got, c.want)
		}
	}
}

func TestAsk(t *testing.T) {
	cfg, diags := Parse(Source{Name: "a.hcl", Data: []byte(`
domain "desk" {
  mode = "ask"
  device "kbd" { ids = ["04d9:0006"] }
}
domain "vm" {
  device "sticks" {
    class = "mass-storage"
    ask   = true
  }
}
`)})
	if diags.HasErrors() || len(diags.Diagnostics) != 0 {
		t.Fatal(diags.Strings())
	}
	if d := cfg.Rules.Domains[0]; d.Mode != reconcile.ModeAsk || len(d.Devices) != 1 || d.Devices[0].Ask {
		t.Fatalf("desk: %+v", d)
	}
	if m := cfg.Rules.Domains[1].Devices[0]; !m.Ask || len(m.Classes) != 1 {
		t.Fatalf("vm sticks: %+v", m)
	}
}
