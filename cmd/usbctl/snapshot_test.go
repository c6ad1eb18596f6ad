package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/usbctl/usbctl/config"
	"github.com/usbctl/usbctl/reconcile"
)

// TestSnapshotWithoutLibvirtd runs usbctl snapshot against a libvirt
// socket nobody listens on, with real libvirt and real udev: it writes
// what it could observe, marks the domains as not observed in the JSON and
// on stderr, and exits 1. Before, it failed outright and wrote nothing.
func TestSnapshotWithoutLibvirtd(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "snap.json")
	uri := "qemu+unix:///system?socket=" + filepath.Join(dir, "no-libvirtd.sock")
	stderr, code := run(t, "snapshot", "--uri", uri, "-o", out)
	if code != 1 {
		t.Fatalf("exit %d, want 1 (incomplete):\n%s", code, stderr)
	}
	if !strings.Contains(stderr, "snapshot incomplete: domains not observed: connect to "+uri) {
		t.Fatalf("stderr does not say what is missing:\n%s", stderr)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatalf("no snapshot written: %v", err)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatalf("snapshot is not JSON: %v\n%s", err, b)
	}
	if _, ok := raw["devices"]; !ok {
		t.Fatalf("the devices udev reports are missing:\n%s", b)
	}
	snap, errs, warns := reconcile.ParseSnapshot(b)
	if len(errs) != 0 || len(warns) != 0 {
		t.Fatalf("the partial snapshot does not read back: %v %v", errs, warns)
	}
	if len(snap.Unobserved) != 1 || snap.Unobserved[0].Part != reconcile.PartDomains || !strings.Contains(snap.Unobserved[0].Error, "no-libvirtd.sock") {
		t.Fatalf("unobserved = %+v", snap.Unobserved)
	}
	// plan --from replays it, saying the domains are unknown.
	planOut, code := run(t, "plan", "--config", "testdata/plan.hcl", "--from", out)
	if code != 0 || !strings.Contains(planOut, "its domains were not observed") {
		t.Fatalf("plan of the partial snapshot: exit %d\n%s", code, planOut)
	}
}

func TestTakeSnapshotPartial(t *testing.T) {
	devs := fakeDevices{devs: []reconcile.Device{{Bus: 1, Dev: 2, Vendor: "046d", Product: "c52b", Port: "1-1"}}}
	down := func(context.Context, string) ([]reconcile.Domain, error) {
		return nil, errors.New("connection refused")
	}
	snap := takeSnapshot(context.Background(), "qemu:///system", devs, down)
	if len(snap.Devices) != 1 || len(snap.Unobserved) != 1 || snap.Unobserved[0].Part != "domains" || !strings.Contains(snap.Unobserved[0].Error, "connection refused (is libvirtd running?") {
		t.Fatalf("libvirt down: %+v", snap)
	}
	up := func(context.Context, string) ([]reconcile.Domain, error) {
		return []reconcile.Domain{{Name: "g", State: reconcile.StateRunning}}, nil
	}
	snap = takeSnapshot(context.Background(), "qemu:///system", fakeDevices{err: errors.New("no udev")}, up)
	if len(snap.Domains) != 1 || snap.Devices == nil || len(snap.Unobserved) != 1 || snap.Unobserved[0].Part != "devices" {
		t.Fatalf("udev down: %+v", snap)
	}
	snap = takeSnapshot(context.Background(), "qemu:///system", devs, up)
	if len(snap.Unobserved) != 0 {
		t.Fatalf("all up: %+v", snap.Unobserved)
	}
}

type fakeDevices struct {
	devs []reconcile.Device
	err  error
}

func (f fakeDevices) List(context.Context) ([]reconcile.Device, error) { return f.devs, f.err }

// TestURIFromConfig: a missing config is "no config at PATH", not
// "unreadable"; an invalid one says so; a valid one gives its URI.
func TestURIFromConfig(t *testing.T) {
	dir := t.TempDir()
	var w bytes.Buffer
	missing := filepath.Join(dir, "usbctl.hcl")
	if uri := uriFromConfig(&w, []string{missing}); uri != config.DefaultURI || !strings.Contains(w.String(), "no config at "+missing+", using qemu:///system") {
		t.Fatalf("missing config: %q, %q", uri, w.String())
	}
	w.Reset()
	os.WriteFile(missing, []byte("domain {\n"), 0o644)
	if uri := uriFromConfig(&w, []string{missing}); uri != config.DefaultURI || !strings.Contains(w.String(), "is invalid (usbctl check shows why)") {
		t.Fatalf("invalid config: %q, %q", uri, w.String())
	}
	w.Reset()
	os.WriteFile(missing, []byte("libvirt {\n  uri = \"qemu+ssh://h/system\"\n}\ndomain \"g\" {\n  mode = \"all\"\n}\n"), 0o644)
	if uri := uriFromConfig(&w, []string{missing}); uri != "qemu+ssh://h/system" || w.Len() != 0 {
		t.Fatalf("valid config: %q, %q", uri, w.String())
	}
}
