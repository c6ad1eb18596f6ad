package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/usbctl/usbctl/reconcile"
)

var update = flag.Bool("update", false, "rewrite golden files")

// run executes the CLI in-process and returns its output and exit status.
func run(t *testing.T, args ...string) (string, int) {
	t.Helper()
	cmd := newRootCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.Execute()
	code := 0
	var ec exitCode
	switch {
	case errors.As(err, &ec):
		code = int(ec)
	case err != nil:
		out.WriteString("error: " + err.Error() + "\n")
		code = 1
	}
	return out.String(), code
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (go test -update rewrites it):\n%s", path, got)
	}
}

func TestCheck(t *testing.T) {
	out, code := run(t, "check", "testdata/plan.hcl")
	if code != 0 || !strings.Contains(out, "OK, 2 domains, 3 device rules, 1 exclude") {
		t.Fatalf("valid config: exit %d\n%s", code, out)
	}
	out, code = run(t, "check", "../../config/testdata/errors/structure.hcl")
	if code != 1 {
		t.Fatalf("invalid config: exit %d, want 1\n%s", code, out)
	}
	for _, want := range []string{"structure.hcl line 10", `priority = "high"`, "Invalid mode", "errors, 0 warnings"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// Warnings alone do not fail.
	out, code = run(t, "check", "../../config/testdata/errors/warnings.hcl")
	if code != 0 || !strings.Contains(out, "3 warnings") {
		t.Fatalf("warnings-only config: exit %d\n%s", code, out)
	}
}

func TestPlanFromSnapshot(t *testing.T) {
	out, code := run(t, "plan", "--config", "testdata/plan.hcl", "--from", "testdata/snapshot.json")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	if strings.Contains(out, "\x1b") {
		t.Fatal("a device string reached the terminal unescaped")
	}
	golden(t, "plan.golden", out)

	out, code = run(t, "plan", "--config", "testdata/plan.hcl", "--from", "testdata/snapshot.json", "--json")
	if code != 0 || !strings.Contains(out, `"kind": "attach"`) || strings.Contains(out, "\x1b") {
		t.Fatalf("json: exit %d\n%s", code, out)
	}
}

func TestPlanRejectsBadSnapshot(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "v9.json")
	os.WriteFile(bad, []byte(`{"version": 9}`), 0o644)
	out, code := run(t, "plan", "--config", "testdata/plan.hcl", "--from", bad)
	if code == 0 || !strings.Contains(out, "version 9") {
		t.Fatalf("exit %d\n%s", code, out)
	}
}

// TestPlanValidatesSnapshot: the snapshot (dev 500, vendor zzzz,
// the same device twice) is refused, every problem named by its JSON path,
// and no plan is printed.
func TestPlanValidatesSnapshot(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.json")
	os.WriteFile(bad, []byte(`{
  "version": 1,
  "devices": [
    {"bus": 1, "dev": 500, "vendor": "046d", "product": "c52b", "port": "1-1"},
    {"bus": 1, "dev": 3, "vendor": "zzzz", "product": "c52b", "port": "1-2"},
    {"bus": 1, "dev": 3, "vendor": "046d", "product": "c52b", "port": "1-3"}
  ],
  "domains": [{"name": "win11", "state": "running"}]
}`), 0o644)
	out, code := run(t, "plan", "--config", "testdata/plan.hcl", "--from", bad)
	for _, want := range []string{
		"devices[0].dev: 500 is not a device number from 1 to 127",
		`devices[1].vendor: "zzzz" must be 4 hex digits`,
		"devices[2]: bus 1 dev 3 is devices[1]'s too",
		"is invalid (3 problems)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if code != 1 || strings.Contains(out, "ACTION") || strings.Contains(out, "DEVICE") {
		t.Fatalf("exit %d, want 1 and no plan:\n%s", code, out)
	}
}

func TestSafe(t *testing.T) {
	for in, want := range map[string]string{
		"Logitech":         "Logitech",
		"Ünïcödé":          "Ünïcödé",
		"a\x1b[31mred":     `"a\x1b[31mred"`,
		"line\nbreak":      `"line\nbreak"`,
		"bad\xffutf8":      `"bad\xffutf8"`,
		"nul\x00":          `"nul\x00"`,
		`<x a='1' b="2">&`: `<x a='1' b="2">&`,
	} {
		if got := safe(in); got != want {
			t.Errorf("safe(%q) = %s, want %s", in, got, want)
		}
	}
	if got := cell(strings.Repeat("x", 100), 10); got != "xxxxxxxxx…" {
		t.Errorf("cell = %q", got)
	}
}

// A snapshot's runtime assignments are replayed as usbctld honours them.
func TestPlanFromSnapshotWithAssignments(t *testing.T) {
	b, err := os.ReadFile("testdata/snapshot.json")
	if err != nil {
		t.Fatal(err)
	}
	var snap map[string]any
	if err := json.Unmarshal(b, &snap); err != nil {
		t.Fatal(err)
	}
	snap["overrides"] = []map[string]any{{"key": map[string]int{"bus": 1, "dev": 3}, "source": "usbctl detach by alice at 2026-11-24 21:00:00, until unplugged"}}
	b, _ = json.Marshal(snap)
	path := filepath.Join(t.TempDir(), "snap.json")
	os.WriteFile(path, b, 0o644)
	out, code := run(t, "plan", "--config", "testdata/plan.hcl", "--from", path, "--json")
	var res reconcile.Result
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil {
		t.Fatalf("exit %d\n%s", code, out)
	}
	for _, a := range res.Actions {
		if a.Key == (reconcile.DeviceKey{Bus: 1, Dev: 3}) {
			t.Fatalf("the detached receiver is planned: %+v", a)
		}
	}
	for _, p := range res.Placements {
		if p.Device.Dev == 3 && p.Kind != reconcile.HostAssigned {
			t.Fatalf("receiver placed as %s: %s", p.Kind, p.Reason)
		}
	}
}
