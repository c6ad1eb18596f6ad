package controller

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/usbctl/usbctl/devname"
	"github.com/usbctl/usbctl/events"
	"github.com/usbctl/usbctl/override"
	"github.com/usbctl/usbctl/reconcile"
)

var alice = override.Setter{UID: 1000, User: "alice", Via: "usbctl attach"}

// runtimeTest is a controller with a state file and an event reader.
func runtimeTest(t *testing.T, hv *fakeHV, devs *fakeDevices, r reconcile.Rules, state string) (*Controller, *clock, *events.Sub) {
	t.Helper()
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	hub := events.NewHub(clk.now)
	sub := hub.Subscribe(1024)
	c := New(Options{Hypervisor: hv, Devices: devs, Now: clk.now, BackoffMin: time.Second, BackoffMax: 8 * time.Second,
		StateFile: state, AskTimeout: time.Minute, Events: hub}, r, ConfigStatus{Files: []string{"test.hcl"}})
	return c, clk, sub
}

// drain returns the events published so far, as "type key domain: reason".
func drain(sub *events.Sub) []string {
	var out []string
	for {
		select {
		case ev := <-sub.C():
			s := string(ev.Type)
			if ev.Key != nil {
				s += " " + ev.Key.String()
			}
			if ev.Domain != "" {
				s += " " + ev.Domain
			}
			if ev.Reason != "" {
				s += ": " + ev.Reason
			}
			out = append(out, s)
		default:
			return out
		}
	}
}

func hasEvent(evs []string, prefix string) bool {
	for _, e := range evs {
		if strings.HasPrefix(e, prefix) {
			return true
		}
	}
	return false
}

func TestAssignAttachesAndEndsAtUnplug(t *testing.T) {
	hv := newFakeHV(running("win11"))
	devs := &fakeDevices{}
	stick := dev(1, 3, "0781:5583", "1-2")
	stick.ProductName = "Ultra Fit"
	devs.set(stick)
	c, _, sub := runtimeTest(t, hv, devs, rules(allow("win11", 0, "046d:c52b")), filepath.Join(t.TempDir(), "overrides.json"))
	c.sync(ctx)
	wantCalls(t, hv) // no rule wants it
	res, err := c.assign(AssignRequest{Device: "ultra", Domain: "win11", Verb: VerbAttach, By: alice})
	if err != nil || res.Device.Key() != stick.Key() || res.Override == nil || res.Override.Lifetime != override.UntilUnplug {
		t.Fatalf("assign: %+v %v", res, err)
	}
	c.sync(ctx)
	wantCalls(t, hv, "attach win11 001:003")
	st := c.Status()
	if len(st.Overrides) != 1 || st.Overrides[0].SetBy.User != "alice" {
		t.Fatalf("status overrides %+v", st.Overrides)
	}
	if w := findDomain(st, "win11"); len(w.Attached) != 1 || !strings.Contains(w.Attached[0].Rule, "usbctl attach by alice") {
		t.Fatalf("attached %+v", w.Attached)
	}
	evs := drain(sub)
	for _, want := range []string{"override-set 001:003 win11", "attached 001:003 win11"} {
		if !hasEvent(evs, want) {
			t.Errorf("no %q in %q", want, evs)
		}
	}
	// Unplugged: detached, the assignment ends; replugged (new number):
	// it stays on the host.
	devs.set()
	c.DeviceRemoved(reconcile.Device{Bus: 1, Dev: 3, DevPath: stick.DevPath})
	c.sync(ctx)
	wantCalls(t, hv, "detach win11 ua-usbctl-001-003")
	if st := c.Status(); len(st.Overrides) != 0 {
		t.Fatalf("override outlived the unplug: %+v", st.Overrides)
	}
	evs = drain(sub)
	for _, want := range []string{"device-unplugged 001:003", "override-ended 001:003 win11: device unplugged", "detached 001:003 win11"} {
		if !hasEvent(evs, want) {
			t.Errorf("no %q in %q", want, evs)
		}
	}
	again := stick
	again.Dev = 4
	c.DeviceAdded(again)
	c.sync(ctx)
	wantCalls(t, hv)
	if evs := drain(sub); !hasEvent(evs, "device-plugged 001:004") {
		t.Errorf("no plug event in %q", evs)
	}
}

// A replug between two syncs (remove and add seen together, a new device
// number) ends the assignment too.
func TestReplugBetweenSyncsEndsAssignment(t *testing.T) {
	hv := newFakeHV(running("win11"))
	devs := &fakeDevices{}
	stick := dev(1, 3, "0781:5583", "1-2")
	devs.set(stick)
	c, _, _ := runtimeTest(t, hv, devs, reconcile.Rules{}, "")
	c.sync(ctx)
	if _, err := c.assign(AssignRequest{Device: "1:3", Domain: "win11", Verb: VerbAttach, By: alice}); err != nil {
		t.Fatal(err)
	}
	c.sync(ctx)
	wantCalls(t, hv, "attach win11 001:003")
	again := stick
	again.Dev = 5
	c.DeviceRemoved(reconcile.Device{Bus: 1, Dev: 3, DevPath: stick.DevPath})
	c.DeviceAdded(again)
	c.sync(ctx)
	wantCalls(t, hv, "detach win11 ua-usbctl-001-003")
	if len(c.Status().Overrides) != 0 {
		t.Fatal("the assignment followed the replugged device")
	}
}

func TestAssignForExpires(t *testing.T) {
	hv := newFakeHV(running("win11"))
	devs := &fakeDevices{}
	stick := dev(1, 3, "0781:5583", "1-2")
	devs.set(stick)
	c, clk, sub := runtimeTest(t, hv, devs, reconcile.Rules{}, "")
	c.sync(ctx)
	if _, err := c.assign(AssignRequest{Device: "0781:5583", Domain: "win11", Verb: VerbAttach, For: 3 * time.Second, By: alice}); err != nil {
		t.Fatal(err)
	}
	next := c.sync(ctx)
	wantCalls(t, hv, "attach win11 001:003")
	if !next.Equal(clk.now().Add(3 * time.Second)) {
		t.Fatalf("the loop wakes at %v, want when the assignment ends", next)
	}
	clk.advance(2 * time.Second)
	c.sync(ctx)
	wantCalls(t, hv)
	clk.advance(time.Second)
	c.sync(ctx)
	wantCalls(t, hv, "detach win11 ua-usbctl-001-003")
	if evs := drain(sub); !hasEvent(evs, "override-ended 001:003 win11: time is up") {
		t.Errorf("events %q", evs)
	}
}

func TestUntilStopEnds(t *testing.T) {
	hv := newFakeHV(running("win11"), running("work"))
	devs := &fakeDevices{}
	recv := dev(1, 2, "046d:c52b", "1-1")
	devs.set(recv)
	c, _, _ := runtimeTest(t, hv, devs, rules(allow("work", 0, "046d:c52b")), "")
	c.sync(ctx)
	wantCalls(t, hv, "attach work 001:002")
	if _, err := c.assign(AssignRequest{Device: "receiver-is-no-word", Domain: "win11", Verb: VerbMove, By: alice}); err == nil {
		t.Fatal("a name that fits nothing resolved")
	}
	res, err := c.assign(AssignRequest{Device: "1-1", Domain: "win11", Verb: VerbMove, UntilStop: true, By: alice})
	if err != nil || res.From != "work" {
		t.Fatalf("move: %+v %v", res, err)
	}
	c.sync(ctx)
	wantCalls(t, hv, "detach work ua-usbctl-001-002", "attach win11 001:002")
	c.DomainChanged("work") // libvirt's device-removed: the detach is done
	hv.setState("win11", reconcile.StateShutoff)
	c.DomainChanged("win11")
	c.sync(ctx)
	wantCalls(t, hv, "attach work 001:002") // the rule decides again
	if len(c.Status().Overrides) != 0 {
		t.Fatal("the --until-stop assignment outlived its domain")
	}
}

func TestDetachSurvivesRestart(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state", "overrides.json")
	hv := newFakeHV(running("win11"))
	devs := &fakeDevices{}
	recv := dev(1, 2, "046d:c52b", "1-1")
	devs.set(recv)
	r := rules(allow("win11", 0, "046d:c52b"))
	c, _, _ := runtimeTest(t, hv, devs, r, state)
	c.sync(ctx)
	wantCalls(t, hv, "attach win11 001:002")
	if _, err := c.assign(AssignRequest{Device: "046d:c52b", Verb: VerbDetach, By: override.Setter{UID: 0, User: "root", Via: "usbctl detach"}}); err != nil {
		t.Fatal(err)
	}
	c.sync(ctx)
	wantCalls(t, hv, "detach win11 ua-usbctl-001-002")
	if p := c.Status().Unassigned; len(p) != 1 || p[0].Kind != reconcile.HostAssigned || !strings.Contains(p[0].Reason, "usbctl detach by root") {
		t.Fatalf("unassigned %+v", p)
	}

	// usbctld restarts: the assignment is read back and holds.
	c2, _, _ := runtimeTest(t, hv, devs, r, state)
	if ovs := c2.loop.rt.overrides; len(ovs) != 1 || !ovs[0].Host() {
		t.Fatalf("state file gave %+v", ovs)
	}
	c2.sync(ctx)
	wantCalls(t, hv)
	if _, err := c2.release("1:2", alice); err != nil {
		t.Fatal(err)
	}
	c2.sync(ctx)
	wantCalls(t, hv, "attach win11 001:002")
	if _, err := c2.release("1:2", alice); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second release: %v", err)
	}
	if ovs, _ := override.Load(state); len(ovs) != 0 {
		t.Fatalf("state file after release: %+v", ovs)
	}
}

func TestAssignRefusals(t *testing.T) {
	hv := newFakeHV(running("win11"), reconcile.Domain{Name: "off", State: reconcile.StateShutoff})
	devs := &fakeDevices{}
	a, b := dev(1, 3, "0781:5583", "1-2"), dev(1, 4, "0781:5583", "1-3")
	kbd := dev(1, 5, "04d9:0006", "1-4")
	root := dev(1, 1, "1d6b:0002", "usb1")
	devs.set(root, a, b, kbd)
	r := reconcile.Rules{Excludes: []reconcile.Match{{Label: "kbd", Source: "u.hcl:9", IDs: []reconcile.IDPattern{{Vendor: "04d9", Product: "0006"}}}}}
	c, _, _ := runtimeTest(t, hv, devs, r, "")
	c.sync(ctx)
	var amb *devname.AmbiguousError
	if _, err := c.assign(AssignRequest{Device: "0781:5583", Domain: "win11", Verb: VerbAttach}); !errors.As(err, &amb) || len(amb.Candidates) != 2 {
		t.Fatalf("ambiguous: %v", err)
	}
	for _, tc := range []struct {
		req  AssignRequest
		is   error
		want string
	}{
		{AssignRequest{Device: "1:5", Domain: "win11", Verb: VerbAttach}, ErrRefused, `excluded by exclude "kbd" (u.hcl:9)`},
		{AssignRequest{Device: "1:3", Domain: "nosuch", Verb: VerbAttach}, ErrNotFound, `libvirt has no domain "nosuch"`},
		{AssignRequest{Device: "1:3", Domain: "off", Verb: VerbAttach, UntilStop: true}, ErrRefused, `"off" is not running`},
		{AssignRequest{Device: "1:3", Verb: VerbAttach}, ErrRefused, "name the domain"},
		{AssignRequest{Device: "1:1", Domain: "win11", Verb: VerbAttach}, ErrRefused, "root hub"},
		{AssignRequest{Device: "1:3", Domain: "win11", Verb: VerbDetach}, ErrRefused, "takes no domain"},
	} {
		if _, err := c.assign(tc.req); !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %v with %q", tc.req, err, tc.is, tc.want)
		}
	}
	// Attach to a domain that is not running: allowed, it waits.
	if _, err := c.assign(AssignRequest{Device: "1:3", Domain: "off", Verb: VerbAttach}); err != nil {
		t.Fatal(err)
	}
	c.sync(ctx)
	wantCalls(t, hv)
	if len(c.Status().Overrides) != 1 {
		t.Fatal("refused requests left assignments")
	}
}

func TestStateFileUnwritable(t *testing.T) {
	dir := t.TempDir()
	// The state "directory" is a file: nothing can be written under it.
	blocker := filepath.Join(dir, "blocker")
	os.WriteFile(blocker, nil, 0o600)
	hv := newFakeHV(running("win11"))
	devs := &fakeDevices{}
	devs.set(dev(1, 3, "0781:5583", "1-2"))
	c, _, _ := runtimeTest(t, hv, devs, reconcile.Rules{}, filepath.Join(blocker, "overrides.json"))
	c.sync(ctx)
	if _, err := c.assign(AssignRequest{Device: "1:3", Domain: "win11", Verb: VerbAttach}); err == nil || !strings.Contains(err.Error(), "state") {
		t.Fatalf("assign with no state file: %v", err)
	}
	c.sync(ctx)
	wantCalls(t, hv) // not attached: the request failed whole
	if st := c.Status(); len(st.Overrides) != 0 || st.StateError == "" {
		t.Fatalf("status %+v / %q", st.Overrides, st.StateError)
	}
}

func TestUnreadableStateFileMovedAside(t *testing.T) {
	state := filepath.Join(t.TempDir(), "overrides.json")
	os.WriteFile(state, []byte("{not json"), 0o600)
	c, _, _ := runtimeTest(t, newFakeHV(), &fakeDevices{}, reconcile.Rules{}, state)
	c.sync(ctx)
	if st := c.Status(); !strings.Contains(st.StateError, "moved to") {
		t.Fatalf("StateError %q", st.StateError)
	}
	if _, err := os.Stat(state + ".unreadable"); err != nil {
		t.Fatal(err)
	}
}

func TestOfferAnsweredAndTimedOut(t *testing.T) {
	hv := newFakeHV(running("desk"))
	devs := &fakeDevices{}
	stick, pad := dev(1, 3, "0781:5583", "1-2"), dev(1, 4, "045e:028e", "1-3")
	devs.set(stick, pad)
	c, clk, sub := runtimeTest(t, hv, devs, rules(reconcile.DomainRules{Name: "desk", Mode: reconcile.ModeAsk}), "")
	next := c.sync(ctx)
	wantCalls(t, hv)
	st := c.Status()
	if len(st.Offers) != 2 || st.Offers[0].Domain != "desk" || !st.Offers[0].Expires.Equal(clk.now().Add(time.Minute)) {
		t.Fatalf("offers %+v", st.Offers)
	}
	if !next.Equal(clk.now().Add(time.Minute)) {
		t.Fatalf("the loop wakes at %v, want when the offers expire", next)
	}
	if evs := drain(sub); !hasEvent(evs, "offered 001:003 desk") || !hasEvent(evs, "offered 001:004 desk") {
		t.Fatalf("events %q", evs)
	}
	// An attach without a domain answers the offer.
	clk.advance(10 * time.Second)
	res, err := c.assign(AssignRequest{Device: "1:3", Verb: VerbAttach, By: alice})
	if err != nil || res.Override.Domain != "desk" {
		t.Fatalf("answer: %+v %v", res, err)
	}
	c.sync(ctx)
	wantCalls(t, hv, "attach desk 001:003")
	if evs := drain(sub); !hasEvent(evs, "offer-ended 001:003 desk: answered by alice (usbctl attach)") {
		t.Fatalf("events %q", evs)
	}
	// The other goes unanswered: kept on the host, by usbctld itself.
	clk.advance(time.Minute)
	c.sync(ctx)
	c.sync(ctx)
	wantCalls(t, hv)
	st = c.Status()
	if len(st.Offers) != 0 || len(st.Overrides) != 2 {
		t.Fatalf("offers %+v overrides %+v", st.Offers, st.Overrides)
	}
	o, _ := override.Find(st.Overrides, pad.Key())
	if !o.Host() || o.SetBy.Via != "offer unanswered" {
		t.Fatalf("timed-out offer: %+v", o)
	}
	if evs := drain(sub); !hasEvent(evs, "offer-ended 001:004 desk: no answer within 1m0s") {
		t.Fatalf("events %q", evs)
	}
}

// Assign through the loop returns after the sync that carried it out.
func TestAssignThroughRun(t *testing.T) {
	hv := newFakeHV(running("win11"))
	devs := &fakeDevices{}
	devs.set(dev(1, 3, "0781:5583", "1-2"))
	c, _, _ := runtimeTest(t, hv, devs, reconcile.Rules{}, "")
	c.opt.Now = time.Now
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go c.Run(rctx)
	<-c.Ready()
	actx, acancel := context.WithTimeout(ctx, 10*time.Second)
	defer acancel()
	res, synced, err := c.Assign(actx, AssignRequest{Device: "1:3", Domain: "win11", Verb: VerbAttach, By: alice})
	if err != nil || !synced || res.Override == nil {
		t.Fatalf("Assign: %+v %v %v", res, synced, err)
	}
	if got := hv.hostdevs("win11"); len(got) != 1 {
		t.Fatalf("hostdevs after Assign returned: %+v", got)
	}
	if _, _, err := c.Unassign(actx, "1:3", alice); err != nil {
		t.Fatal(err)
	}
	if got := hv.hostdevs("win11"); len(got) != 0 {
		t.Fatalf("hostdevs after Unassign returned: %+v", got)
	}
}
