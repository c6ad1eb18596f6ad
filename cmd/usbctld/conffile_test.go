package main

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/usbctl/usbctl/config"
	"github.com/usbctl/usbctl/controller/api"
)

// confWorld is a main config file and a conf.d with one domain's file.
func confWorld(t *testing.T) (*confFiles, string, string) {
	t.Helper()
	dir := t.TempDir()
	main := filepath.Join(dir, "usbctl.hcl")
	confd := filepath.Join(dir, "conf.d")
	os.Mkdir(confd, 0o755)
	os.WriteFile(main, []byte("domain \"win11\" {\n  device \"r\" { ids = [\"046d:c52b\"] }\n}\n"), 0o644)
	os.WriteFile(filepath.Join(confd, "gaming.hcl"), []byte("# mine\ndomain \"steam\" {\n\tdevice \"pad\" { ids = [\"045e:028e\"] }\n}\n"), 0o644)
	paths := []string{main, confd}
	return &confFiles{dir: confDir(paths), paths: paths, log: slog.New(slog.DiscardHandler)}, main, confd
}

func TestConfFileFor(t *testing.T) {
	c, main, confd := confWorld(t)
	cfg, diags := config.Load(c.paths...)
	if diags.HasErrors() {
		t.Fatal(diags.Strings())
	}
	f, err := c.fileFor("work", cfg.Rules)
	if err != nil || f.Exists || f.Path != filepath.Join(confd, "work.hcl") || f.SHA256 != hash(nil) {
		t.Fatalf("new domain: %+v %v", f, err)
	}
	f, err = c.fileFor("steam", cfg.Rules)
	if err != nil || !f.Exists || f.Name != "gaming.hcl" || !strings.HasPrefix(string(f.Content), "# mine") {
		t.Fatalf("domain in conf.d/gaming.hcl: %+v %v", f, err)
	}
	if _, err = c.fileFor("win11", cfg.Rules); !errors.Is(err, api.ErrBadRequest) || !strings.Contains(err.Error(), main) {
		t.Fatalf("domain in the main file: %v", err)
	}
	if f, err = c.fileFor("", cfg.Rules); err != nil || f.Name != "excludes.hcl" {
		t.Fatalf("excludes: %+v %v", f, err)
	}
	if got := fileName("a/b c.d"); got != "a_b_c.d.hcl" {
		t.Errorf("fileName = %q", got)
	}
	if got := fileName(".hidden"); got != "_hidden.hcl" {
		t.Errorf("fileName = %q", got)
	}
	noDir := &confFiles{paths: []string{main}}
	if _, err := noDir.fileFor("work", cfg.Rules); !errors.Is(err, api.ErrBadRequest) || !strings.Contains(err.Error(), "conf.d") {
		t.Fatalf("without conf.d: %v", err)
	}
}

func TestConfWrite(t *testing.T) {
	c, _, confd := confWorld(t)
	reloads := 0
	reload := func() api.ReloadResult { reloads++; return api.ReloadResult{Applied: true} }
	good := []byte("domain \"work\" {\n\tdevice \"stick\" { ids = [\"0781:5583\"] }   # tabs and spaces kept\n}\n")
	path := filepath.Join(confd, "work.hcl")

	for name, w := range map[string]api.ConfigWrite{
		"path":          {Name: "../usbctl.hcl", Content: good},
		"hidden":        {Name: ".x.hcl", Content: good},
		"not hcl":       {Name: "work.conf", Content: good},
		"libvirt block": {Name: "work.hcl", Content: []byte("libvirt { uri = \"qemu+ssh://elsewhere/system\" }\n")},
		"attribute":     {Name: "work.hcl", Content: []byte("x = 1\n")},
	} {
		if _, err := c.write(w, 1000, reload); !errors.Is(err, api.ErrBadRequest) {
			t.Errorf("%s: %v, want refused", name, err)
		}
	}
	// Invalid as a whole: the domain is already in the main file.
	res, err := c.write(api.ConfigWrite{Name: "dup.hcl", Content: []byte("domain \"win11\" {\n  device \"x\" { serial = \"1\" }\n}\n")}, 1000, reload)
	if err != nil || res.Written || len(res.Diagnostics) == 0 || !strings.Contains(strings.Join(res.Diagnostics, "\n"), "Duplicate domain") {
		t.Fatalf("invalid config: %+v %v", res, err)
	}
	if _, err := os.Stat(filepath.Join(confd, "dup.hcl")); err == nil {
		t.Fatal("an invalid file was written")
	}
	// Does not parse.
	if res, err := c.write(api.ConfigWrite{Name: "work.hcl", Content: []byte("domain \"work\" {")}, 1000, reload); err != nil || res.Written || len(res.Diagnostics) == 0 {
		t.Fatalf("broken file: %+v %v", res, err)
	}
	// A new file.
	res, err = c.write(api.ConfigWrite{Name: "work.hcl", Content: good, Why: "test"}, 1000, reload)
	if err != nil || !res.Written || res.Path != path || reloads != 1 || !res.Reload.Applied {
		t.Fatalf("write: %+v %v (reloads %d)", res, err, reloads)
	}
	b, _ := os.ReadFile(path)
	st, _ := os.Stat(path)
	if string(b) != string(good) || st.Mode().Perm() != 0o644 {
		t.Fatalf("written %q mode %v", b, st.Mode().Perm())
	}
	// Created meanwhile, changed meanwhile: refused.
	if _, err := c.write(api.ConfigWrite{Name: "work.hcl", Content: good}, 1000, reload); !errors.Is(err, api.ErrConflict) {
		t.Errorf("base says new, file exists: %v", err)
	}
	if _, err := c.write(api.ConfigWrite{Name: "work.hcl", BaseSHA256: hash([]byte("old")), Content: good}, 1000, reload); !errors.Is(err, api.ErrConflict) {
		t.Errorf("stale base: %v", err)
	}
	// Based on what is there: written.
	next := append(append([]byte(nil), good...), "exclude \"kbd\" { ids = [\"04d9:0006\"] }\n"...)
	if res, err := c.write(api.ConfigWrite{Name: "work.hcl", BaseSHA256: hash(good), Content: next}, 1000, reload); err != nil || !res.Written {
		t.Fatalf("second write: %+v %v", res, err)
	}
	if reloads != 2 {
		t.Errorf("%d reloads, want 2", reloads)
	}
}
