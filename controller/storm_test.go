package controller

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/usbctl/usbctl/reconcile"
)

// TestStorm sends 100,000 udev events (plug and unplug churn over 1,000
// device slots on 20 buses, every replug with a new device number) and 1,000
// domain events (domains stopping and starting) as fast as they come,
// while attaches take real time. Memory must stay bounded while the storm
// lasts, and once it ends the guests must hold exactly what Plan wants,
// each device once.
func TestStorm(t *testing.T) {
	const (
		udevEvents = 100_000
		domEvents  = 1_000
		slots      = 1_000
		buses      = 20
		nDomains   = 10
	)
	var doms []reconcile.Domain
	var rules reconcile.Rules
	for i := range nDomains {
		name := fmt.Sprintf("vm%02d", i)
		doms = append(doms, running(name))
		// Each domain takes the devices of its own product id.
		rules.Domains = append(rules.Domains, reconcile.DomainRules{Name: name, Mode: reconcile.ModeAllow,
			Devices: []reconcile.Match{{Label: "mine", IDs: []reconcile.IDPattern{{Vendor: "046d", Product: fmt.Sprintf("c5%02x", i)}}}}})
	}
	hv := newFakeHV(doms...)
	slow := &slowHV{fakeHV: hv, delay: 20 * time.Microsecond}
	devs := &fakeDevices{}
	c := New(Options{Hypervisor: slow, Devices: devs, Resync: time.Hour}, rules, ConfigStatus{})
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- c.Run(rctx) }()
	<-c.Ready()

	// Peak heap while the storm lasts.
	var peak atomic.Uint64
	stopSample := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var ms runtime.MemStats
		for {
			select {
			case <-stopSample:
				return
			case <-time.After(20 * time.Millisecond):
			}
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
		}
	}()

	rng := rand.New(rand.NewPCG(20261125, 7))
	// present[slot] is the device in the slot now, if any. Slot i of a
	// bus alternates between device numbers 2+i and 52+i: a replug gets a
	// new number, and no two present devices share one.
	present := make(map[int]reconcile.Device, slots)
	devnum := make([]int, slots)
	for i := range devnum {
		devnum[i] = 2 + i/buses
	}
	mkDev := func(slot int) reconcile.Device {
		bus, port := 1+slot%buses, 1+slot/buses
		d := dev(bus, devnum[slot], fmt.Sprintf("046d:c5%02x", slot%nDomains), fmt.Sprintf("%d-%d", bus, port))
		d.DevPath = fmt.Sprintf("/devices/usb%d/%d-%d", bus, bus, port)
		return d
	}
	states := map[string]bool{}
	for _, d := range doms {
		states[d.Name] = true
	}
	start := time.Now()
	domEvery := udevEvents / domEvents
	for i := range udevEvents {
		slot := rng.IntN(slots)
		if d, ok := present[slot]; ok {
			c.DeviceRemoved(d)
			delete(present, slot)
			if devnum[slot] < 52 {
				devnum[slot] += 50
			} else {
				devnum[slot] -= 50
			}
		} else {
			d := mkDev(slot)
			present[slot] = d
			c.DeviceAdded(d)
		}
		if i%domEvery == 0 {
			name := doms[rng.IntN(nDomains)].Name
			states[name] = !states[name]
			st := reconcile.StateShutoff
			if states[name] {
				st = reconcile.StateRunning
			}
			hv.setState(name, st)
			c.DomainChanged(name)
		}
	}
	sent := time.Since(start)
	// The fake's device list (for any relist) is the final world.
	var final []reconcile.Device
	for _, d := range present {
		final = append(final, d)
	}
	devs.set(final...)

	// Quiet: no hypervisor call for 300 ms.
	deadline := time.Now().Add(60 * time.Second)
	for {
		n := slow.calls.Load()
		time.Sleep(300 * time.Millisecond)
		if slow.calls.Load() == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("still busy 60 s after the storm")
		}
	}
	close(stopSample)
	wg.Wait()
	cancel()
	<-done

	// Exactly what Plan wants, each device once.
	domsNow, _ := hv.ListDomains(ctx)
	res := reconcile.Plan(rules, reconcile.Observed{Devices: final, Domains: domsNow}, nil)
	if len(res.Actions) != 0 {
		t.Fatalf("not converged after the storm: %d actions left, first %v", len(res.Actions), res.Actions[0])
	}
	seen := map[reconcile.DeviceKey]string{}
	attached := 0
	for _, d := range domsNow {
		for _, h := range d.Hostdevs {
			k, _ := h.Key()
			if other, dup := seen[k]; dup {
				t.Fatalf("%s on both %s and %s", k, other, d.Name)
			}
			seen[k] = d.Name
			attached++
		}
	}
	st := c.Status()
	t.Logf("%d udev + %d domain events sent in %v; %d syncs; %d hypervisor calls; %d devices present, %d attached; peak heap %.1f MiB",
		udevEvents, domEvents, sent.Round(time.Millisecond), st.Syncs, slow.calls.Load(), len(final), attached, float64(peak.Load())/(1<<20))
	if attached == 0 {
		t.Fatal("nothing attached: the test proves nothing")
	}
	// Bounded: the storm's state is the devices present (1,000 slots),
	// not the events; 64 MiB leaves room for the race detector.
	if p := peak.Load(); p > 64<<20 {
		t.Fatalf("peak heap %.1f MiB during the storm; memory grows with events", float64(p)/(1<<20))
	}
}

// slowHV makes attaches and detaches take time, as libvirt's do, and
// counts calls.
type slowHV struct {
	*fakeHV
	delay time.Duration
	calls atomic.Int64
}

func (s *slowHV) Attach(ctx context.Context, domain string, key reconcile.DeviceKey) error {
	s.calls.Add(1)
	time.Sleep(s.delay)
	return s.fakeHV.Attach(ctx, domain, key)
}

func (s *slowHV) Detach(ctx context.Context, domain, alias string) error {
	s.calls.Add(1)
	time.Sleep(s.delay)
	return s.fakeHV.Detach(ctx, domain, alias)
}
