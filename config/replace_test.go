package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadReplacing(t *testing.T) {
	dir := t.TempDir()
	main := filepath.Join(dir, "usbctl.hcl")
	confd := filepath.Join(dir, "conf.d")
	os.Mkdir(confd, 0o755)
	os.WriteFile(main, []byte(`domain "a" { mode = "all" }`), 0o644)
	os.WriteFile(filepath.Join(confd, "b.hcl"), []byte(`domain "b" { mode = "all" }`), 0o644)
	// A new file joins its directory in order.
	cfg, diags := LoadReplacing(Source{Name: filepath.Join(confd, "a0.hcl"), Data: []byte(`domain "c" { mode = "all" }`)}, main, confd)
	if diags.HasErrors() || len(cfg.Rules.Domains) != 3 || cfg.Rules.Domains[1].Name != "c" {
		t.Fatalf("new file: %v %+v", diags.Strings(), cfg)
	}
	// An existing file is read as given, not from disk.
	cfg, diags = LoadReplacing(Source{Name: filepath.Join(confd, "b.hcl"), Data: []byte(`domain "a" { mode = "all" }`)}, main, confd)
	if cfg != nil || !strings.Contains(strings.Join(diags.Strings(), "\n"), "Duplicate domain") {
		t.Fatalf("replaced file: %v", diags.Strings())
	}
	if cfg, _ := Load(main, confd); cfg == nil || len(cfg.Rules.Domains) != 2 {
		t.Fatal("Load changed")
	}
}

func TestBlockTypes(t *testing.T) {
	got, diags := BlockTypes([]byte("domain \"a\" {}\nexclude \"x\" { serial = \"1\" }\nlibvirt { uri = \"x:///\" }\nn = 1\n"), "f.hcl")
	if diags.HasErrors() || strings.Join(got, ",") != "domain,exclude,libvirt,attribute" {
		t.Fatalf("%v %v", got, diags)
	}
	if _, diags := BlockTypes([]byte("domain {"), "f.hcl"); !diags.HasErrors() {
		t.Fatal("no error for a broken file")
	}
}
