package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/usbctl/usbctl/config"
	"github.com/usbctl/usbctl/reconcile"
)

// oldconfData holds sample configs of the old tool.
const oldconfData = "../../internal/oldconf/testdata"

// runSplit is run with standard output and standard error apart.
func runSplit(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := newRootCmd()
	var out, errb bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	cmd.SetArgs(args)
	err := cmd.Execute()
	var ec exitCode
	switch {
	case errors.As(err, &ec):
		code = int(ec)
	case err != nil:
		errb.WriteString("error: " + err.Error() + "\n")
		code = 1
	}
	return out.String(), errb.String(), code
}

// parseImported checks that the output is a config without errors or
// warnings (unless warnings is set) and returns its one domain.
func parseImported(t *testing.T, out string, warnings bool) reconcile.DomainRules {
	t.Helper()
	cfg, diags := config.Parse(config.Source{Name: "imported.hcl", Data: []byte(out)})
	if diags.HasErrors() || (!warnings && len(diags.Diagnostics) > 0) {
		t.Fatalf("imported config does not parse cleanly:\n%s\n%s", strings.Join(diags.Strings(), "\n"), out)
	}
	if len(cfg.Rules.Domains) != 1 {
		t.Fatalf("want 1 domain, got %d:\n%s", len(cfg.Rules.Domains), out)
	}
	return cfg.Rules.Domains[0]
}

func ids(d reconcile.DomainRules) []string {
	var out []string
	for _, m := range d.Devices {
		for _, p := range m.IDs {
			out = append(out, p.String())
		}
	}
	return out
}

func wantNotes(t *testing.T, stderr string, notes ...string) {
	t.Helper()
	for _, n := range notes {
		if !strings.Contains(stderr, n) {
			t.Errorf("stderr lacks %q:\n%s", n, stderr)
		}
	}
}

func TestImportModes(t *testing.T) {
	for _, tc := range []struct {
		file   string
		args   []string
		domain string
		mode   reconcile.Mode
		ids    []string
		notes  []string
	}{
		{
			file: "whitelist.conf", domain: "win11", mode: reconcile.ModeAllow,
			ids: []string{"046d:c52b", "0b05:*", "*:1872", "1050:0407"},
			notes: []string{
				`whitelist.conf:14: devlist entry "1050:0407" repeats`,
				"whitelist.conf:17: variable LOGFILE ignored",
				"whitelist.conf:18: command not run: logger",
			},
		},
		{
			file: "blacklist.conf", domain: "work vm", mode: reconcile.ModeDeny,
			ids:   []string{"046d:c31c", "8087:0a2b", "0bda:*"},
			notes: []string{"blacklist.conf:9: variable DEBUG ignored"},
		},
		{
			file: "matchall.conf", args: []string{"--domain", "desktop"}, domain: "desktop", mode: reconcile.ModeAll,
			notes: []string{"matchall.conf:3: devlist (1 entry) not carried over: matchall"},
		},
	} {
		t.Run(tc.file, func(t *testing.T) {
			args := append([]string{"import", filepath.Join(oldconfData, tc.file)}, tc.args...)
			out, stderr, code := runSplit(t, args...)
			if code != 0 {
				t.Fatalf("exit %d\n%s", code, stderr)
			}
			d := parseImported(t, out, false)
			if d.Name != tc.domain || d.Mode != tc.mode {
				t.Errorf("domain %q mode %q, want %q %q:\n%s", d.Name, d.Mode, tc.domain, tc.mode, out)
			}
			if got := ids(d); !reflect.DeepEqual(got, tc.ids) {
				t.Errorf("ids %q, want %q:\n%s", got, tc.ids, out)
			}
			wantNotes(t, stderr, tc.notes...)
			if tc.file == "whitelist.conf" {
				golden(t, filepath.Join("import", "whitelist.golden"), out)
			}
			// Load, as usbctld would read the file from conf.d.
			path := filepath.Join(t.TempDir(), "imported.hcl")
			if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
				t.Fatal(err)
			}
			if _, diags := config.Load(path); diags.HasErrors() {
				t.Fatalf("config.Load: %s", strings.Join(diags.Strings(), "\n"))
			}
		})
	}
}

func TestImportBadEntries(t *testing.T) {
	out, stderr, code := runSplit(t, "import", oldconfData+"/bad.conf")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	d := parseImported(t, out, false)
	if want := []string{"046d:c52b", "046d:c31c"}; d.Name != "gaming" || !reflect.DeepEqual(ids(d), want) {
		t.Errorf("domain %q ids %q, want gaming %q:\n%s", d.Name, ids(d), want, out)
	}
	wantNotes(t, stderr,
		`bad.conf:7: devlist entry "zzzz:0001" not carried over`,
		`bad.conf:8: devlist entry "046d" not carried over`,
		`bad.conf:9: devlist entry ":" not carried over: id ":" matches every device`,
		`bad.conf:10: devlist entry "$(lsusb`, "needs bash to run",
		`bad.conf:11: devlist entry "${EXTRA_ID}" not carried over`,
		`bad.conf:13: devlist entry "0b05:1872:00" not carried over`,
		`bad.conf:14: empty devlist entry`,
		`bad.conf:15: devlist entry "046D:C52B" repeats line 6's`,
		`bad.conf:17: command not run: if [ -f /etc/usb-extra.conf ]`,
		`bad.conf:18: assignment inside a block`,
		`bad.conf:21: command not run: cat <<END`,
	)
	// Neither the conditional append nor the here-document's text counts.
	if strings.Contains(out, "1234:5678") || strings.Contains(out, "dead:beef") {
		t.Errorf("a conditional or here-document entry was carried over:\n%s", out)
	}
}

func TestImportErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{oldconfData + "/matchall.conf"}, "give it with --domain NAME"},
		{[]string{oldconfData + "/badmode.conf"}, `mode="greylist" is not a mode of the old tool`},
		{[]string{oldconfData + "/no-such.conf"}, "no such file"},
		{[]string{"../../examples/usbctl.hcl"}, "has no devlist and no mode variable"},
		{[]string{oldconfData + "/whitelist.conf", "--domain", " spaced"}, "cannot be a libvirt domain name"},
	} {
		out, stderr, code := runSplit(t, append([]string{"import"}, tc.args...)...)
		if code == 0 || out != "" || !strings.Contains(stderr, tc.want) {
			t.Errorf("import %q: exit %d, stdout %q, stderr lacks %q:\n%s", tc.args, code, out, tc.want, stderr)
		}
	}
	// Without a mode, whitelist is assumed, and said.
	out, stderr, code := runSplit(t, "import", "--domain", "vm1", oldconfData+"/nomode.conf")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	if d := parseImported(t, out, false); d.Mode != reconcile.ModeAllow {
		t.Errorf("mode %q, want allow", d.Mode)
	}
	wantNotes(t, stderr, "no mode variable: assumed whitelist")
}

func TestManPages(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("SOURCE_DATE_EPOCH", "0")
	out, stderr, code := runSplit(t, "man", dir)
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, stderr)
	}
	for page, th := range map[string]string{
		"usbctl.1":        `.TH "USBCTL" "1" "Jan 1970" "usbctl"`,
		"usbctl-check.1":  `.TH "USBCTL-CHECK" "1"`,
		"usbctl-import.1": `.TH "USBCTL-IMPORT" "1"`,
		"usbctl-status.1": `.TH "USBCTL-STATUS" "1"`,
	} {
		b, err := os.ReadFile(filepath.Join(dir, page))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(b, []byte(th)) {
			t.Errorf("%s lacks %s:\n%.200s", page, th, b)
		}
	}
	pages, _ := filepath.Glob(filepath.Join(dir, "*.1"))
	for _, page := range pages {
		b, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		for i, c := range b {
			if c >= 0x80 {
				t.Errorf("%s: non-ASCII byte at %d, want a roff escape: %q", page, i, b[max(0, i-20):i+1])
				break
			}
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "usbctl-man.1")); err == nil {
		t.Error("the hidden man command has a page")
	}
}
