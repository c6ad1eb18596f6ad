package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/usbctl/usbctl/controller"
	"github.com/usbctl/usbctl/devname"
	"github.com/usbctl/usbctl/events"
	"github.com/usbctl/usbctl/override"
	"github.com/usbctl/usbctl/reconcile"
)

// fakeRuntime records the runtime requests that reach it.
type fakeRuntime struct {
	mu      sync.Mutex
	devs    []reconcile.Device
	assigns []controller.AssignRequest
	writes  []ConfigWrite
	hub     *events.Hub
	// writeErr is returned by WriteConfig when set.
	writeErr error
}

func newFakeRuntime() *fakeRuntime {
	return &fakeRuntime{hub: events.NewHub(nil), devs: []reconcile.Device{
		{Bus: 1, Dev: 3, Vendor: "0781", Product: "5583", Port: "1-2", Serial: "A"},
		{Bus: 1, Dev: 4, Vendor: "0781", Product: "5583", Port: "1-3", Serial: "B"},
	}}
}

func (f *fakeRuntime) Devices(name string) ([]reconcile.Device, error) {
	if name == "" {
		return f.devs, nil
	}
	d, err := devname.Resolve(name, f.devs)
	if err != nil {
		return nil, err
	}
	return []reconcile.Device{d}, nil
}

func (f *fakeRuntime) Assign(ctx context.Context, r controller.AssignRequest) (controller.AssignResult, bool, error) {
	f.mu.Lock()
	f.assigns = append(f.assigns, r)
	f.mu.Unlock()
	d, err := devname.Resolve(r.Device, f.devs)
	if err != nil {
		return controller.AssignResult{}, false, err
	}
	if r.Domain == "nosuch" {
		return controller.AssignResult{}, false, fmt.Errorf("libvirt has no domain %q: %w", r.Domain, controller.ErrNotFound)
	}
	if r.Domain == "excluded" {
		return controller.AssignResult{}, false, fmt.Errorf("excluded: %w", controller.ErrRefused)
	}
	o := override.Override{Device: override.IdentityOf(d), Domain: r.Domain, Lifetime: override.UntilUnplug, SetBy: r.By}
	return controller.AssignResult{Device: d, Override: &o}, true, nil
}

func (f *fakeRuntime) Unassign(ctx context.Context, device string, by override.Setter) (controller.AssignResult, bool, error) {
	return controller.AssignResult{}, false, fmt.Errorf("%s has no runtime assignment: %w", device, controller.ErrNotFound)
}

func (f *fakeRuntime) ConfigFile(domain string) (ConfigFile, error) {
	return ConfigFile{Name: domain + ".hcl", Path: "/etc/usbctl/conf.d/" + domain + ".hcl", Content: []byte("# x\n"), SHA256: "abc", Exists: true}, nil
}

func (f *fakeRuntime) WriteConfig(ctx context.Context, w ConfigWrite, uid uint32) (ConfigWritten, error) {
	f.mu.Lock()
	f.writes = append(f.writes, w)
	f.mu.Unlock()
	if f.writeErr != nil {
		return ConfigWritten{}, f.writeErr
	}
	return ConfigWritten{Path: "/etc/usbctl/conf.d/" + w.Name, Written: true, Reload: ReloadResult{Applied: true}}, nil
}

func (f *fakeRuntime) Events() *events.Hub { return f.hub }

func TestRuntimeRoutes(t *testing.T) {
	rt := newFakeRuntime()
	c, _ := serve(t, &fakeBackend{fakeRuntime: rt}, nil)
	ctx := context.Background()

	devs, err := c.Devices(ctx, "")
	if err != nil || len(devs) != 2 {
		t.Fatalf("devices: %v %v", devs, err)
	}
	if devs, err = c.Devices(ctx, "B"); err != nil || len(devs) != 1 || devs[0].Dev != 4 {
		t.Fatalf("by serial: %v %v", devs, err)
	}
	var amb *AmbiguousError
	if _, err = c.Devices(ctx, "0781:5583"); !errors.As(err, &amb) || len(amb.Candidates) != 2 || !strings.Contains(amb.Message, "2 devices") {
		t.Fatalf("ambiguous: %v", err)
	}
	var he *HTTPError
	if _, err = c.Devices(ctx, "9:9"); !errors.As(err, &he) || he.Code != http.StatusNotFound {
		t.Fatalf("not found: %v", err)
	}

	res, err := c.SetOverride(ctx, OverrideRequest{Device: "A", Domain: "win11", Verb: VerbAttach, For: Duration(3 * time.Second)})
	if err != nil || res.Device.Dev != 3 || res.Override == nil || !res.Outcome.Synced {
		t.Fatalf("override: %+v %v", res, err)
	}
	got := rt.assigns[len(rt.assigns)-1]
	if got.By.UID != 0 || got.By.User != "root" || got.By.Via != "usbctl attach" || got.For != 3*time.Second || got.Verb != controller.VerbAttach {
		t.Fatalf("the backend got %+v", got)
	}
	for name, tc := range map[string]struct {
		req  OverrideRequest
		code int
	}{
		"unknown domain": {OverrideRequest{Device: "A", Domain: "nosuch", Verb: VerbAttach}, http.StatusNotFound},
		"refused":        {OverrideRequest{Device: "A", Domain: "excluded", Verb: VerbAttach}, http.StatusUnprocessableEntity},
	} {
		if _, err := c.SetOverride(ctx, tc.req); !errors.As(err, &he) || he.Code != tc.code {
			t.Errorf("%s: %v, want HTTP %d", name, err, tc.code)
		}
	}
	if _, err := c.SetOverride(ctx, OverrideRequest{Device: "0781:5583", Domain: "win11", Verb: VerbAttach}); !errors.As(err, &amb) {
		t.Errorf("ambiguous override: %v", err)
	}
	if _, err := c.Release(ctx, "A"); !errors.As(err, &he) || he.Code != http.StatusNotFound {
		t.Errorf("release: %v", err)
	}

	f, err := c.ConfigFileFor(ctx, "win11")
	if err != nil || f.Name != "win11.hcl" || string(f.Content) != "# x\n" {
		t.Fatalf("config file: %+v %v", f, err)
	}
	big := strings.Repeat("# a long comment line\n", 30000) // ~660 KB: over the 64 KiB of other requests
	if w, err := c.WriteConfig(ctx, ConfigWrite{Name: "win11.hcl", BaseSHA256: "abc", Content: []byte(big)}); err != nil || !w.Written {
		t.Fatalf("write: %+v %v", w, err)
	}
	rt.writeErr = fmt.Errorf("changed since: %w", ErrConflict)
	if _, err := c.WriteConfig(ctx, ConfigWrite{Name: "win11.hcl"}); !errors.As(err, &he) || he.Code != http.StatusConflict {
		t.Errorf("conflict: %v", err)
	}
}

// Only root (or, later, the control group) changes anything; a refused
// peer never reaches the backend.
func TestRuntimeChangesNeedPermission(t *testing.T) {
	rt := newFakeRuntime()
	c, _ := serve(t, &fakeBackend{fakeRuntime: rt}, func(peer) bool { return false })
	ctx := context.Background()
	var he *HTTPError
	if _, err := c.SetOverride(ctx, OverrideRequest{Device: "A", Domain: "win11", Verb: VerbAttach}); !errors.As(err, &he) || he.Code != http.StatusForbidden || !strings.Contains(he.Message, "needs root") {
		t.Fatalf("override: %v", err)
	}
	if _, err := c.Release(ctx, "A"); !errors.As(err, &he) || he.Code != http.StatusForbidden {
		t.Fatalf("release: %v", err)
	}
	if _, err := c.WriteConfig(ctx, ConfigWrite{Name: "x.hcl"}); !errors.As(err, &he) || he.Code != http.StatusForbidden {
		t.Fatalf("write: %v", err)
	}
	if len(rt.assigns) != 0 || len(rt.writes) != 0 {
		t.Fatal("a refused request reached the backend")
	}
	// Reading is for whoever may open the socket.
	if _, err := c.Devices(ctx, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ConfigFileFor(ctx, "win11"); err != nil {
		t.Fatal(err)
	}
}

func TestEventStream(t *testing.T) {
	rt := newFakeRuntime()
	c, _ := serve(t, &fakeBackend{fakeRuntime: rt}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan events.Event, 16)
	opened := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- c.EventsOpened(ctx, func() { close(opened) }, func(ev events.Event) error { got <- ev; return nil })
	}()
	<-opened
	waitSubscribers(t, rt.hub, 1)
	k := reconcile.DeviceKey{Bus: 1, Dev: 3}
	rt.hub.Publish(events.Event{Type: events.Attached, Key: &k, Domain: "win11"}, events.Event{Type: events.ConfigReloaded})
	for _, want := range []events.Type{events.Attached, events.ConfigReloaded} {
		select {
		case ev := <-got:
			if ev.Type != want || ev.Seq == 0 {
				t.Fatalf("event %+v, want %s", ev, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no %s event", want)
		}
	}
	// The stream outlives the server's request timeouts (write 30 s):
	// checked by its deadline being lifted, not by waiting; and the reader
	// going away ends the subscription.
	cancel()
	<-done
	waitSubscribers(t, rt.hub, 0)
}

// A server that stops ends its event streams at once instead of waiting
// for them in its graceful shutdown.
func TestEventStreamEndsWithServer(t *testing.T) {
	rt := newFakeRuntime()
	sock := t.TempDir() + "/s.sock"
	ln, err := Listen(sock, -1)
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(&fakeBackend{fakeRuntime: rt}, nil)
	sctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Serve(sctx, ln) }()
	c := &Client{Socket: sock}
	streamed := make(chan error, 1)
	go func() { streamed <- c.Events(context.Background(), func(events.Event) error { return nil }) }()
	waitSubscribers(t, rt.hub, 1)
	t0 := time.Now()
	stop()
	select {
	case <-served:
	case <-time.After(4 * time.Second):
		t.Fatal("Serve waited for the open event stream")
	}
	if err := <-streamed; err == nil || !strings.Contains(err.Error(), "ended the event stream") {
		t.Fatalf("stream ended with %v", err)
	}
	if d := time.Since(t0); d > 2*time.Second {
		t.Fatalf("shutdown took %v", d)
	}
}

func waitSubscribers(t *testing.T, h *events.Hub, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for h.Subscribers() != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d subscribers, want %d", h.Subscribers(), n)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// settlingBackend's status changes while a request waits.
type settlingBackend struct {
	*fakeBackend
	mu sync.Mutex
	st controller.Status
}

func (b *settlingBackend) Status() controller.Status {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.st
}

// A move is carried out a sync or two after the request's own (QEMU lets
// go of the device in its own time): the answer waits for it.
func TestAssignAnswerWaitsForTheMove(t *testing.T) {
	rt := newFakeRuntime()
	k := reconcile.DeviceKey{Bus: 1, Dev: 3}
	b := &settlingBackend{fakeBackend: &fakeBackend{fakeRuntime: rt}, st: controller.Status{Pending: []controller.PendingAction{
		{Action: reconcile.Action{Kind: reconcile.Attach, Domain: "work", Key: k}, Attempts: 1, LastError: "device in use by domain gaming", Permanent: true}}}}
	c, _ := serve(t, b, nil)
	go func() {
		waitSubscribers(t, rt.hub, 1)
		time.Sleep(50 * time.Millisecond)
		b.mu.Lock()
		b.st = controller.Status{Domains: []controller.DomainStatus{{Name: "work", Attached: []controller.AttachedDevice{{Key: k, Rule: "usbctl move by root"}}}}}
		b.mu.Unlock()
		rt.hub.Publish(events.Event{Type: events.Attached, Key: &k, Domain: "work"})
	}()
	t0 := time.Now()
	res, err := c.SetOverride(context.Background(), OverrideRequest{Device: "A", Domain: "work", Verb: VerbMove})
	if err != nil {
		t.Fatal(err)
	}
	if res.Outcome.Pending || res.Outcome.AttachedTo != "work" {
		t.Fatalf("outcome %+v, want attached to work", res.Outcome)
	}
	if d := time.Since(t0); d > 4*time.Second {
		t.Fatalf("answered after %v", d)
	}
}
