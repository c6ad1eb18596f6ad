package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
)

const oneDomain = "domain \"vm001\" {\n  device \"rx\" {\n    ids = [\"046d:c52b\"]\n  }\n}\n"

// TestConfDirLeftovers: what editors and package managers leave in a
// drop-in directory does not break the config. Hidden files and backups
// are skipped as systemd skips them; a dangling *.hcl symlink that is not
// hidden is one warning naming it, and the rest of the directory loads.
func TestConfDirLeftovers(t *testing.T) {
	dir := t.TempDir()
	confd := filepath.Join(dir, "conf.d")
	os.Mkdir(confd, 0o755)
	write := func(name, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(confd, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("vm001.hcl", oneDomain)
	// Emacs' lock file: a dangling symlink to user@host.pid.
	if err := os.Symlink("root@desk.4242:1700000000", filepath.Join(confd, ".#vm002.hcl")); err != nil {
		t.Fatal(err)
	}
	write(".vm001.hcl.swp", "\x00binary vim swap")
	write(".hidden.hcl", "this is { not hcl")
	write("vm001.hcl~", "domain \"vm001\" {\n  mode = \"all\"\n}\n")
	write("vm001.hcl.dpkg-old", "domain \"vm001\" {\n  mode = \"all\"\n}\n")
	write("#vm001.hcl#", "autosave {")
	if err := os.Symlink(filepath.Join(dir, "gone", "vm003.hcl"), filepath.Join(confd, "vm003.hcl")); err != nil {
		t.Fatal(err)
	}
	cfg, diags := Load(confd)
	if cfg == nil {
		t.Fatalf("config refused:\n%s", strings.Join(diags.Strings(), "\n"))
	}
	if len(cfg.Files) != 1 || filepath.Base(cfg.Files[0]) != "vm001.hcl" || len(cfg.Rules.Domains) != 1 {
		t.Fatalf("files read %v, domains %d: want vm001.hcl alone", cfg.Files, len(cfg.Rules.Domains))
	}
	if len(diags.Diagnostics) != 1 {
		t.Fatalf("want one diagnostic (the dangling vm003.hcl), got:\n%s", strings.Join(diags.Strings(), "\n"))
	}
	d := diags.Diagnostics[0]
	link := filepath.Join(confd, "vm003.hcl")
	if d.Severity != hcl.DiagWarning || !strings.Contains(d.Summary, link) || !strings.Contains(d.Detail, filepath.Join(dir, "gone", "vm003.hcl")) {
		t.Fatalf("dangling symlink: %s", diags.Strings()[0])
	}

	// A symlink that resolves is read like a file.
	if err := os.MkdirAll(filepath.Join(dir, "gone"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "gone", "vm003.hcl"), []byte("domain \"vm003\" {\n  mode = \"all\"\n}\n"), 0o644)
	cfg, diags = Load(confd)
	if cfg == nil || len(cfg.Rules.Domains) != 2 || len(diags.Diagnostics) != 0 {
		t.Fatalf("restored symlink: cfg %v, %v", cfg != nil, diags.Strings())
	}
}

func TestHiddenOrBackup(t *testing.T) {
	for name, skip := range map[string]bool{
		"vm.hcl": false, "a.b.hcl": false, ".#vm.hcl": true, ".vm.hcl": true, "vm.hcl~": true,
		"vm.hcl.swp": true, "vm.hcl.dpkg-dist": true, "vm.hcl.rpmnew": true, "vm.hcl.ucf-old": true,
		"vm.hcl.bak": true, "new.hcl": false,
	} {
		if got := hiddenOrBackup(name); got != skip {
			t.Errorf("hiddenOrBackup(%q) = %v, want %v", name, got, skip)
		}
	}
}

// fakeClock drives a loader deterministically: its sleep advances the
// clock and runs whatever a writer does meanwhile, and files it writes are
// stamped with the fake time.
type fakeClock struct {
	t      *testing.T
	now    time.Time
	writer func(n int) // the writer's n-th turn, during the loader's n-th wait
	n      int
	path   string
}

func (c *fakeClock) loader() loader {
	return loader{settle: settle, maxWait: maxWait, now: func() time.Time { return c.now }, sleep: c.sleep}
}

func (c *fakeClock) sleep(d time.Duration) {
	c.now = c.now.Add(d)
	if c.writer != nil {
		c.writer(c.n)
	}
	c.n++
}

// write writes the file as a writer at the fake time would.
func (c *fakeClock) write(content string, trunc bool) {
	c.t.Helper()
	flag := os.O_WRONLY | os.O_APPEND
	if trunc {
		flag = os.O_WRONLY | os.O_TRUNC
	}
	f, err := os.OpenFile(c.path, flag, 0o644)
	if err != nil {
		c.t.Fatal(err)
	}
	f.WriteString(content)
	f.Close()
	if err := os.Chtimes(c.path, c.now, c.now); err != nil {
		c.t.Fatal(err)
	}
}

// TestReadDuringRewrite: a writer truncates the config and writes it again
// a moment later, in two writes, as "> file" with a slow producer does. A
// load in between must not take the empty or half file (an empty file is
// a valid config with no domains, which detaches everything): it waits
// until the file has settled and reads the whole new content.
func TestReadDuringRewrite(t *testing.T) {
	f := filepath.Join(t.TempDir(), "usbctl.hcl")
	if err := os.WriteFile(f, []byte(oneDomain), 0o644); err != nil {
		t.Fatal(err)
	}
	c := &fakeClock{t: t, now: time.Now(), path: f}
	c.write("", true) // the truncation, just before the load
	c.writer = func(n int) {
		switch n {
		case 0:
			c.write(oneDomain[:20], false)
		case 1:
			c.write(oneDomain[20:], false)
		}
	}
	cfg, diags := c.loader().load([]string{f})
	if cfg == nil || len(cfg.Rules.Domains) != 1 {
		t.Fatalf("a load during the rewrite read a torn file: cfg %v\n%s", cfg != nil, strings.Join(diags.Strings(), "\n"))
	}
	if c.n < 3 {
		t.Fatalf("the load waited %d times; it must wait out each change", c.n)
	}

}

// TestFileKeepsChanging: a file that never settles is refused with an
// error, so a reload keeps the rules in force.
func TestFileKeepsChanging(t *testing.T) {
	f := filepath.Join(t.TempDir(), "usbctl.hcl")
	os.WriteFile(f, []byte(oneDomain), 0o644)
	c := &fakeClock{t: t, now: time.Now(), path: f}
	c.write(oneDomain, true)
	c.writer = func(n int) { c.write(oneDomain[:n%len(oneDomain)], true) }
	start := c.now
	cfg, diags := c.loader().load([]string{f})
	if cfg != nil || !diags.HasErrors() || !strings.Contains(diags.Strings()[0], "kept changing while it was read") {
		t.Fatalf("a file rewritten all the time was used: cfg %v %v", cfg != nil, diags.Strings())
	}
	if waited := c.now.Sub(start); waited < maxWait || waited > maxWait+2*settle {
		t.Fatalf("gave up after %v, want after %v", waited, maxWait)
	}
}

// TestFutureMtime: a file dated in the future (a clock set back, a copy
// that kept its times) is read after one settle period, not never.
func TestFutureMtime(t *testing.T) {
	f := filepath.Join(t.TempDir(), "usbctl.hcl")
	os.WriteFile(f, []byte(oneDomain), 0o644)
	future := time.Now().Add(time.Hour)
	os.Chtimes(f, future, future)
	start := time.Now()
	cfg, diags := Load(f)
	if cfg == nil || time.Since(start) > maxWait {
		t.Fatalf("future-dated file: cfg %v after %v: %v", cfg != nil, time.Since(start), diags.Strings())
	}
}
