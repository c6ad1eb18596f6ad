package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/usbctl/usbctl/controller"
	"github.com/usbctl/usbctl/controller/api"
	"github.com/usbctl/usbctl/events"
	"github.com/usbctl/usbctl/override"
	"github.com/usbctl/usbctl/reconcile"
)

// evil is what a hostile device could report as its strings.
const evil = "\x1b]0;pwned\x07\x1b[2J<hostdev mode='subsystem'>&\"\x00\xff"

func sampleStatus(now time.Time) controller.Status {
	recv := &reconcile.Device{Bus: 1, Dev: 5, Vendor: "046d", Product: "c52b", Port: "1-4.2", Manufacturer: "Logitech", ProductName: "USB Receiver"}
	return controller.Status{
		StartedAt: now.Add(-time.Hour), LastSync: now.Add(-2 * time.Second), LastSyncDuration: 3100 * time.Microsecond, Syncs: 42, Ready: true,
		Config: controller.ConfigStatus{Files: []string{"/etc/usbctl/usbctl.hcl"}, LoadedAt: now.Add(-time.Hour), Domains: 2, Rules: 3, Excludes: 1,
			Rejected: &controller.RejectedConfig{At: now.Add(-time.Minute), Diagnostics: []string{`/etc/usbctl/usbctl.hcl:4,12-18: Invalid vendor id; "0b5" must be 4 hex digits`}}},
		Hypervisor: controller.HypervisorStatus{URI: "qemu:///system", Connected: true},
		Domains: []controller.DomainStatus{
			{Name: "win11", State: reconcile.StateRunning, Managed: true, Priority: 10,
				Attached: []controller.AttachedDevice{{Alias: "ua-usbctl-001-005", Key: recv.Key(), Device: recv, Rule: `domain "win11" device "receiver" (usbctl.hcl:7)`, Since: now.Add(-90 * time.Second)},
					{Alias: "ua-usbctl-001-009", Key: reconcile.DeviceKey{Bus: 1, Dev: 9}, Since: now.Add(-time.Hour), Adopted: true}},
				Foreign: []reconcile.Hostdev{{Alias: "hostdev0", Bus: 1, Dev: 7}}},
			{Name: "linux", State: reconcile.StateShutoff, Managed: true},
		},
		Pending: []controller.PendingAction{
			{Action: reconcile.Action{Kind: reconcile.Attach, Domain: "win11", Key: reconcile.DeviceKey{Bus: 1, Dev: 6}}, Attempts: 3, LastError: "attach 001:006 to win11: internal error", NextRetry: now.Add(8 * time.Second)},
			{Action: reconcile.Action{Kind: reconcile.Attach, Domain: "linux", Key: reconcile.DeviceKey{Bus: 1, Dev: 7}}, Attempts: 1, LastError: "device busy", Permanent: true},
			{Action: reconcile.Action{Kind: reconcile.Attach, Domain: "win11", Alias: "ua-usbctl-001-010", Key: reconcile.DeviceKey{Bus: 1, Dev: 10}}, Attempts: 2,
				LastError: "attach ua-usbctl-001-010 to win11: internal error: unable to execute QEMU command 'device_add': Bus 'usb.0' does not support hotplugging: No free USB ports: no free usb port in the guest: " + portsFix,
				Fix:       portsFix, NextRetry: now.Add(2 * time.Second)},
		},
		UndefinedDomains: []string{"win-11"},
		Conflicts:        []reconcile.Conflict{{Key: reconcile.DeviceKey{Bus: 1, Dev: 7}, Domains: []string{"linux"}, Reason: `held by hostdev "hostdev0" of win11, which usbctl did not attach`}},
		Unassigned: []reconcile.Placement{
			{Device: reconcile.Device{Bus: 1, Dev: 8, Vendor: "1050", Product: "0407", Port: "1-3", Serial: evil, Manufacturer: evil, ProductName: evil}, Reason: "no rule matches"},
		},
		Overrides: []override.Override{
			{Device: override.Identity{Bus: 1, Dev: 5, Vendor: "046d", Product: "c52b", Port: "1-4.2", Name: "Logitech USB Receiver"}, Domain: "win11", Lifetime: override.UntilUnplug,
				SetBy: override.Setter{UID: 1000, User: "alice", Via: "usbctl attach"}, SetAt: now.Add(-90 * time.Second)},
			{Device: override.Identity{Bus: 1, Dev: 8, Vendor: "1050", Product: "0407", Port: "1-3", Name: evil}, Lifetime: override.For, Until: now.Add(5 * time.Minute),
				SetBy: override.Setter{UID: 0, User: "root", Via: "usbctl detach"}, SetAt: now.Add(-time.Minute)},
		},
		Offers: []override.Offer{{Device: reconcile.Device{Bus: 2, Dev: 3, Vendor: "0781", Product: "5583", Port: "2-1", Manufacturer: "SanDisk", ProductName: "Ultra Fit"},
			Domain: "win11", Since: now.Add(-10 * time.Second), Expires: now.Add(110 * time.Second)}},
		StateError: "write /var/lib/usbctl/overrides.json: read-only file system",
		HeldOnHost: []controller.HostHold{{Key: recv.Key(), Device: reconcile.Device{Bus: 1, Dev: 5, Vendor: "046d", Product: "c52b", Port: "1-4.2", ProductName: evil},
			Domain: "win11", Alias: "ua-usbctl-001-005", Interfaces: []string{"1-4.2:1.1"}, Since: now.Add(-90 * time.Second),
			Warning: "interface 1-4.2:1.1 held on the host by another program through usbfs", Fix: "stop the program that holds it"}},
	}
}

// portsFix is virt's fix for a full USB controller, as status carries it.
const portsFix = "give the domain's USB controller more ports: <controller type='usb' model='qemu-xhci' ports='15'/> (virsh edit; applies at its next start), or add a usb-hub"

func TestPrintStatusGolden(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	var buf bytes.Buffer
	if err := printStatus(&buf, sampleStatus(now), now, time.UTC); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if strings.ContainsAny(out, "\x1b\x07\x00") || !strings.Contains(out, `\x1b`) {
		t.Fatalf("hostile device string not escaped:\n%q", out)
	}
	// The whole error, said once, and the fix on a line of its own
	// (issue 13 item 11: cut at 80 characters, the fix only in --json).
	if !strings.Contains(out, "\n    error: attach ua-usbctl-001-010 to win11: internal error: unable to execute QEMU command 'device_add': Bus 'usb.0' does not support hotplugging: No free USB ports: no free usb port in the guest\n    fix:   "+portsFix+"\n") {
		t.Fatalf("the error and its fix are not each on a line of their own:\n%s", out)
	}
	// A device held on the host: marked in its domain's row, and its
	// warning and fix under it.
	if !strings.Contains(out, "HELD ON THE HOST (see below)") || !strings.Contains(out, "\n    warning: interface 1-4.2:1.1 held on the host by another program through usbfs\n    fix:     stop the program that holds it\n") {
		t.Fatalf("held device not shown with its warning and fix:\n%s", out)
	}
	golden(t, "status.golden", out)
}

// fakeDaemon serves a status on a real unix socket, as usbctld does.
// fakeDaemon answers status, plan and reload; the runtime routes are not
// used by these tests (their methods would panic).
type fakeDaemon struct {
	st controller.Status
	api.RuntimeBackend
}

func (f fakeDaemon) Status() controller.Status { return f.st }
func (f fakeDaemon) Plan(ctx context.Context) (reconcile.Result, error) {
	return reconcile.Plan(reconcile.Rules{}, reconcile.Observed{}, nil), nil
}
func (f fakeDaemon) Reload(ctx context.Context) (api.ReloadResult, error) {
	return api.ReloadResult{Applied: false, Diagnostics: []string{"a.hcl:1,1-2: Unsupported block type"}}, nil
}

func TestStatusOverSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "s.sock")
	ln, err := api.Listen(sock, -1)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- api.NewServer(fakeDaemon{st: sampleStatus(time.Now())}, nil).Serve(ctx, ln) }()
	defer func() { cancel(); <-done }()

	out, code := run(t, "--socket", sock, "status")
	if code != 0 || !strings.Contains(out, "001:005") {
		t.Fatalf("status: exit %d\n%s", code, out)
	}
	for _, want := range []string{"win11", "Logitech USB Receiver", `device "receiver"`, "RELOAD REJECTED", "NOT OURS", "PENDING", "CONFLICTS", "no rule matches"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	out, code = run(t, "--socket", sock, "status", "--json")
	if code != 0 || !strings.Contains(out, `"syncs": 42`) || strings.Contains(out, "\x1b") {
		t.Fatalf("status --json: exit %d\n%s", code, out)
	}
	out, code = run(t, "--socket", sock, "plan")
	if code != 0 || !strings.Contains(out, "ACTIONS: none") {
		t.Fatalf("live plan: exit %d\n%s", code, out)
	}
	out, code = run(t, "--socket", sock, "reload")
	if code != 1 || !strings.Contains(out, "reload rejected") || !strings.Contains(out, "Unsupported block type") {
		t.Fatalf("rejected reload: exit %d\n%s", code, out)
	}
}

func TestStatusDaemonNotRunning(t *testing.T) {
	out, code := run(t, "--socket", filepath.Join(t.TempDir(), "none.sock"), "status")
	if code == 0 || !strings.Contains(out, "usbctld is not running") || !strings.Contains(out, "systemctl start usbctld") {
		t.Fatalf("exit %d\n%s", code, out)
	}
}

func TestDeviceTree(t *testing.T) {
	devs := []reconcile.Device{
		{Bus: 1, Dev: 1, Vendor: "1d6b", Product: "0002", Port: "usb1", Class: "09", ProductName: "xHCI Host Controller"},
		{Bus: 1, Dev: 3, Vendor: "046d", Product: "c52b", Port: "1-4.10", Class: "00", InterfaceClasses: []string{"03", "03"}, ProductName: "USB Receiver"},
		{Bus: 1, Dev: 2, Vendor: "05e3", Product: "0610", Port: "1-4", Class: "09", ProductName: "USB2.0 Hub"},
		{Bus: 1, Dev: 4, Vendor: "1050", Product: "0407", Port: "1-4.2", Serial: evil, Class: "00", InterfaceClasses: []string{"03", "0b"}},
		{Bus: 1, Dev: 5, Vendor: "0483", Product: "df11", Port: "1-1", Class: "fe"},
		// Its hub is missing (a plug raced the listing): shown, not lost.
		{Bus: 2, Dev: 9, Vendor: "abcd", Product: "0001", Port: "2-1.1"},
	}
	var buf bytes.Buffer
	if err := printDeviceTree(&buf, devs); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if strings.Contains(out, "\x1b") {
		t.Fatalf("serial reached the terminal raw:\n%s", out)
	}
	golden(t, "devices.golden", out)
}

func TestParentPort(t *testing.T) {
	for in, want := range map[string]string{"usb1": "", "1-4": "usb1", "1-4.2": "1-4", "3-1.2.3": "3-1.2"} {
		if got := parentPort(in); got != want {
			t.Errorf("parentPort(%q) = %q, want %q", in, got, want)
		}
	}
	if !portLess("1-2", "1-10") || !portLess("1-4", "1-4.1") || portLess("1-4.2", "1-4.10") == false {
		t.Error("portLess is not numeric")
	}
}

// seqStatus answers a sequence of statuses, and sends an event whenever
// the test says.
type seqStatus struct {
	mu     sync.Mutex
	n      int
	sts    []controller.Status
	events chan events.Event
	opens  int
}

func (s *seqStatus) Status(ctx context.Context) (controller.Status, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.sts[min(s.n, len(s.sts)-1)]
	s.n++
	return st, nil
}

func (s *seqStatus) calls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

func (s *seqStatus) EventsOpened(ctx context.Context, opened func(), f func(events.Event) error) error {
	s.mu.Lock()
	s.opens++
	s.mu.Unlock()
	opened()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case ev := <-s.events:
			if err := f(ev); err != nil {
				return err
			}
		}
	}
}

// Watch redraws on events, and only when what it shows changed.
func TestWatchRedrawsOnChangeOnly(t *testing.T) {
	now := time.Now()
	a := sampleStatus(now)
	a2 := a
	a2.Syncs, a2.LastSync = 99, now.Add(time.Second) // a sync that changed nothing
	b := a
	b.Unassigned = nil // a device was placed
	src := &seqStatus{sts: []controller.Status{a, a2, a2, a2, b, b}, events: make(chan events.Event)}
	ctx, cancel := context.WithCancel(context.Background())
	var buf syncBuffer
	done := make(chan error)
	go func() { done <- watchStatus(ctx, &buf, src, false) }()
	// One read at start, one when the stream opened, then one per event.
	for n := 2; n <= 6; n++ {
		deadline := time.Now().Add(5 * time.Second)
		for src.calls() < n {
			if time.Now().After(deadline) {
				t.Fatalf("status read %d times, want %d", src.calls(), n)
			}
			time.Sleep(time.Millisecond)
		}
		if n < 6 {
			src.events <- events.Event{Type: events.Attached}
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if n := strings.Count(out, "usbctld:  ready"); n != 2 {
		t.Fatalf("drew %d times, want 2 (initial and the one change):\n%s", n, out)
	}
	if strings.Count(out, "\n--- ") != 1 {
		t.Fatalf("non-terminal output should separate redraws:\n%s", out)
	}
}

// syncBuffer is a bytes.Buffer safe for the watcher and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
