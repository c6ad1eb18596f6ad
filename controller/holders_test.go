package controller

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/usbctl/usbctl/reconcile"
)

// fakeClaims is the host's usbfs claims by devpath; every device has two
// interfaces.
type fakeClaims struct {
	mu    sync.Mutex
	by    map[string][]string
	err   error
	reads int
	read  chan struct{} // one token per read, if set
}

func (f *fakeClaims) UsbfsClaims(ctx context.Context, d reconcile.Device) ([]string, int, error) {
	f.mu.Lock()
	f.reads++
	ifaces, err := f.by[d.DevPath], f.err
	f.mu.Unlock()
	if f.read != nil {
		f.read <- struct{}{}
	}
	return ifaces, 2, err
}

func (f *fakeClaims) set(devpath string, ifaces ...string) {
	f.mu.Lock()
	f.by[devpath] = ifaces
	f.mu.Unlock()
}

// duringAttach runs a function inside each attach, before the fake's own.
type duringAttach struct {
	*fakeHV
	during func()
}

func (h duringAttach) Attach(ctx context.Context, domain string, key reconcile.DeviceKey) error {
	h.during()
	return h.fakeHV.Attach(ctx, domain, key)
}

func newHoldTest(t *testing.T, hv Hypervisor, devs *fakeDevices, claims *fakeClaims, r reconcile.Rules) (*Controller, *clock) {
	t.Helper()
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	c := New(Options{Hypervisor: hv, Devices: devs, Claims: claims, Now: clk.now, HoldRecheck: 5 * time.Second,
		BackoffMin: time.Second, BackoffMax: 8 * time.Second}, r, ConfigStatus{Files: []string{"test.hcl"}})
	return c, clk
}

// TestHeldOnHostWarns: a device attached while a host program holds one
// of its interfaces through usbfs is attached as the rules say (libvirt
// and QEMU accept it), once, and status warns with what to do; the
// warning ends when the program lets go, and nothing is attached again.
func TestHeldOnHostWarns(t *testing.T) {
	hv := newFakeHV(running("win11"))
	devs := &fakeDevices{}
	card := dev(1, 2, "1050:0407", "1-1")
	free := dev(1, 3, "046d:c52b", "1-2")
	devs.set(card, free)
	claims := &fakeClaims{by: map[string][]string{card.DevPath: {"1-1:1.1"}}}
	c, clk := newHoldTest(t, hv, devs, claims, rules(allow("win11", 0, "1050:0407", "046d:c52b")))
	sub := c.Events().Subscribe(64)
	holdEvents := func() []string {
		var out []string
		for _, e := range drain(sub) {
			if strings.HasPrefix(e, "held-on-host") || strings.HasPrefix(e, "released-on-host") {
				out = append(out, e)
			}
		}
		return out
	}

	next := c.sync(ctx)
	wantCalls(t, hv, "attach win11 001:002", "attach win11 001:003")
	if evs := holdEvents(); len(evs) != 1 || !strings.HasPrefix(evs[0], "held-on-host 001:002 win11: interface 1-1:1.1 held") {
		t.Errorf("events = %q, want one held-on-host for the card", evs)
	}
	st := c.Status()
	if len(st.HeldOnHost) != 1 {
		t.Fatalf("held on host = %+v, want the card only", st.HeldOnHost)
	}
	h := st.HeldOnHost[0]
	if h.Key != card.Key() || h.Domain != "win11" || h.Alias != "ua-usbctl-001-002" || len(h.Interfaces) != 1 || h.Interfaces[0] != "1-1:1.1" {
		t.Errorf("hold = %+v", h)
	}
	for _, want := range []string{"interface 1-1:1.1", "usbfs", "may not be able to use"} {
		if !strings.Contains(h.Warning, want) {
			t.Errorf("warning %q does not say %q", h.Warning, want)
		}
	}
	for _, want := range []string{"fuser -v /dev/bus/usb/001/002", "usbctl detach 001:002", "usbctl release 001:002"} {
		if !strings.Contains(h.Fix, want) {
			t.Errorf("fix %q does not say %q", h.Fix, want)
		}
	}
	if len(st.Pending) != 0 {
		t.Errorf("a held device is no failure: pending %+v", st.Pending)
	}
	if want := clk.t.Add(5 * time.Second); !next.Equal(want) {
		t.Errorf("next wake-up %v, want %v (the recheck)", next, want)
	}

	// Still held: the recheck keeps the warning, and attaches nothing.
	clk.advance(5 * time.Second)
	c.sync(ctx)
	wantCalls(t, hv)
	if len(c.Status().HeldOnHost) != 1 {
		t.Fatalf("warning gone while the program still holds the card")
	}
	// QEMU's own claims (the guest configured the device) show as usbfs
	// too; they are no host program's.
	claims.set(card.DevPath, "1-1:1.0", "1-1:1.1")
	claims.set(free.DevPath, "1-2:1.0")
	clk.advance(5 * time.Second)
	c.sync(ctx)
	if st := c.Status(); len(st.HeldOnHost) != 1 || len(st.HeldOnHost[0].Interfaces) != 1 {
		t.Fatalf("QEMU's claims counted as a host program's: %+v", st.HeldOnHost)
	}

	// The program lets go: the warning ends at the next recheck, not before.
	claims.set(card.DevPath, "1-1:1.0")
	clk.advance(time.Second)
	c.sync(ctx)
	if len(c.Status().HeldOnHost) != 1 {
		t.Fatalf("recheck before it was due")
	}
	clk.advance(4 * time.Second)
	if next := c.sync(ctx); !next.IsZero() {
		t.Errorf("next wake-up %v with nothing to look at again", next)
	}
	if st := c.Status(); len(st.HeldOnHost) != 0 {
		t.Fatalf("still warned after the program let go: %+v", st.HeldOnHost)
	}
	wantCalls(t, hv)
	if evs := holdEvents(); len(evs) != 1 || evs[0] != "released-on-host 001:002 win11" {
		t.Errorf("events after the rechecks = %q, want one released-on-host for the card", evs)
	}
}

// TestHeldOnHostEndsWithTheHostdev: unplugging or detaching a held device
// ends its warning; reads that fail warn nothing.
func TestHeldOnHostEndsWithTheHostdev(t *testing.T) {
	hv := newFakeHV(running("win11"))
	devs := &fakeDevices{}
	card := dev(1, 2, "1050:0407", "1-1")
	devs.set(card)
	claims := &fakeClaims{by: map[string][]string{card.DevPath: {"1-1:1.0"}}}
	c, _ := newHoldTest(t, hv, devs, claims, rules(allow("win11", 0, "1050:0407")))
	c.sync(ctx)
	wantCalls(t, hv, "attach win11 001:002")
	if len(c.Status().HeldOnHost) != 1 {
		t.Fatalf("no warning")
	}
	reads := claims.reads
	devs.set()
	c.DeviceRemoved(reconcile.Device{Bus: 1, Dev: 2, DevPath: card.DevPath})
	c.sync(ctx)
	wantCalls(t, hv, "detach win11 ua-usbctl-001-002")
	if st := c.Status(); len(st.HeldOnHost) != 0 {
		t.Fatalf("warning outlived the device: %+v", st.HeldOnHost)
	}
	if claims.reads != reads {
		t.Errorf("claims read %d times after the unplug", claims.reads-reads)
	}

	// Back with a new number, and the read fails: attached, no warning.
	claims.err = errors.New("sysfs gone")
	card.Dev = 5
	devs.set(card)
	c.DeviceAdded(card)
	c.sync(ctx)
	wantCalls(t, hv, "attach win11 001:005")
	if st := c.Status(); len(st.HeldOnHost) != 0 {
		t.Fatalf("warned on a failed read: %+v", st.HeldOnHost)
	}
}

// TestHeldClaims: which claims are another program's, from the reads
// before and after an attach.
func TestHeldClaims(t *testing.T) {
	r := func(total int, ifaces ...string) claimResult { return claimResult{ifaces: ifaces, total: total} }
	failed := claimResult{err: errors.New("sysfs")}
	for _, c := range []struct {
		name          string
		before, after claimResult
		want          string
	}{
		{"none", r(2), r(2), "[]"},
		{"held before and after", r(2, "1-1:1.0"), r(2, "1-1:1.0"), "[1-1:1.0]"},
		{"let go during the attach", r(2, "1-1:1.0"), r(2), "[]"},
		{"claimed during the attach, some interfaces", r(2), r(2, "1-1:1.1"), "[1-1:1.1]"},
		{"claimed during the attach, every interface: QEMU's", r(2), r(2, "1-1:1.0", "1-1:1.1"), "[]"},
		{"one interface, claimed during the attach: QEMU's", r(1), r(1, "1-1:1.0"), "[]"},
		{"held before, QEMU took the rest", r(2, "1-1:1.0"), r(2, "1-1:1.0", "1-1:1.1"), "[1-1:1.0]"},
		{"before unknown, some interfaces", failed, r(2, "1-1:1.0"), "[1-1:1.0]"},
		{"before unknown, every interface", failed, r(2, "1-1:1.0", "1-1:1.1"), "[]"},
		{"after unknown", r(2, "1-1:1.0"), failed, "[]"},
	} {
		if got := fmt.Sprint(heldClaims(c.before, c.after)); got != c.want {
			t.Errorf("%s: held %s, want %s", c.name, got, c.want)
		}
	}
}

// TestClaimedDuringAttach: claims that appear while the attach runs, on
// every interface, are QEMU's (the guest configured the device at once);
// on some of them, another program's.
func TestClaimedDuringAttach(t *testing.T) {
	for _, c := range []struct {
		claims []string
		warned bool
	}{
		{[]string{"1-1:1.0", "1-1:1.1"}, false},
		{[]string{"1-1:1.1"}, true},
	} {
		devs := &fakeDevices{}
		card := dev(1, 2, "1050:0407", "1-1")
		devs.set(card)
		claims := &fakeClaims{by: map[string][]string{}, read: make(chan struct{}, 8)}
		hv := duringAttach{newFakeHV(running("win11")), func() {
			<-claims.read // the read as the attach starts is done
			claims.set(card.DevPath, c.claims...)
		}}
		ctl, _ := newHoldTest(t, hv, devs, claims, rules(allow("win11", 0, "1050:0407")))
		ctl.sync(ctx)
		wantCalls(t, hv.fakeHV, "attach win11 001:002")
		if got := len(ctl.Status().HeldOnHost) == 1; got != c.warned {
			t.Errorf("claims %v made during the attach: warned %v, want %v", c.claims, got, c.warned)
		}
	}
}
