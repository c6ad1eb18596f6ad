package controller

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/usbctl/usbctl/internal/stats"
	"github.com/usbctl/usbctl/reconcile"
)

// Controller overhead with an in-memory hypervisor (issue "Performance",
// item 2). The benchmarks only report; they assert correctness (every
// device attached, no duplicate attach) but never timing.
//
//	go test -run '^$' -bench 'EventToAttach|Burst' -benchmem ./controller
//	go test -run '^$' -bench . -benchtime 1x ./controller   # CI smoke run
//
// The 1,000-add burst as a plain test with bounds is TestRunBurst in
// controller_test.go.

// benchHV is an in-memory hypervisor for benchmarks. Unlike fakeHV it does
// no string formatting or linear scans on the attach path, so the numbers
// are the controller's, and it reports every attach on a channel with the
// time taken on entry to Attach.
type benchHV struct {
	mu      sync.Mutex
	domains map[string]*reconcile.Domain
	held    map[string]bool                        // "domain/alias" present
	calls   map[string]map[reconcile.DeviceKey]int // attach calls per domain and device
	total   int                                    // attach calls
	dups    int                                    // attach calls for a device already asked for

	// onAttach, if set, runs first in Attach, on the controller's Run
	// goroutine.
	onAttach func()
	attached chan time.Time // entry time of each successful attach
	detached chan struct{}
}

func newBenchHV(buf int, domains ...reconcile.Domain) *benchHV {
	hv := &benchHV{
		domains:  map[string]*reconcile.Domain{},
		held:     map[string]bool{},
		calls:    map[string]map[reconcile.DeviceKey]int{},
		attached: make(chan time.Time, buf),
		detached: make(chan struct{}, buf),
	}
	for _, d := range domains {
		d := d
		d.Hostdevs = slices.Clone(d.Hostdevs)
		for _, h := range d.Hostdevs {
			hv.held[d.Name+"/"+h.Alias] = true
		}
		hv.domains[d.Name] = &d
	}
	return hv
}

func (hv *benchHV) ListDomains(ctx context.Context) ([]reconcile.Domain, error) {
	hv.mu.Lock()
	defer hv.mu.Unlock()
	return listCopies(hv.domains), nil
}

func (hv *benchHV) Domain(ctx context.Context, name string) (reconcile.Domain, error) {
	hv.mu.Lock()
	defer hv.mu.Unlock()
	return domainCopy(hv.domains, name)
}

func (hv *benchHV) Attach(ctx context.Context, domain string, key reconcile.DeviceKey) error {
	t := time.Now()
	if hv.onAttach != nil {
		hv.onAttach()
	}
	hv.mu.Lock()
	hv.total++
	perDom := hv.calls[domain]
	if perDom == nil {
		perDom = map[reconcile.DeviceKey]int{}
		hv.calls[domain] = perDom
	}
	perDom[key]++
	if perDom[key] > 1 {
		hv.dups++
	}
	d, ok := hv.domains[domain]
	if !ok || !d.State.Active() {
		hv.mu.Unlock()
		return fmt.Errorf("attach to %s: %w", domain, errNoDom)
	}
	alias := key.Alias()
	if hv.held[domain+"/"+alias] {
		hv.mu.Unlock()
		return fmt.Errorf("duplicate alias %s in %s", alias, domain)
	}
	hv.held[domain+"/"+alias] = true
	d.Hostdevs = append(d.Hostdevs, reconcile.Hostdev{Alias: alias, Bus: key.Bus, Dev: key.Dev})
	hv.mu.Unlock()
	// Never block the loop: the buffer holds every attach a run expects,
	// and one more would be a duplicate, counted above.
	select {
	case hv.attached <- t:
	default:
	}
	return nil
}

func (hv *benchHV) Detach(ctx context.Context, domain, alias string) error {
	hv.mu.Lock()
	d, ok := hv.domains[domain]
	if !ok {
		hv.mu.Unlock()
		return errNoDom
	}
	d.Hostdevs = slices.DeleteFunc(d.Hostdevs, func(h reconcile.Hostdev) bool { return h.Alias == alias })
	delete(hv.held, domain+"/"+alias)
	hv.mu.Unlock()
	select {
	case hv.detached <- struct{}{}:
	default:
	}
	return nil
}

// counts returns attach calls, duplicate attach calls, and hostdevs held.
func (hv *benchHV) counts() (total, dups, held int) {
	hv.mu.Lock()
	defer hv.mu.Unlock()
	return hv.total, hv.dups, len(hv.held)
}

// benchWaitTimeout bounds every wait, so a lost attach fails the benchmark
// instead of hanging it.
const benchWaitTimeout = 10 * time.Second

// benchRules: the running guest win11 takes every Logitech device; a
// stopped guest wants them too (planned, never attached); the host's own
// devices match nothing.
func benchRules() reconcile.Rules {
	logi := []reconcile.Match{{Label: "all-logitech", IDs: []reconcile.IDPattern{{Vendor: "046d"}}}}
	return reconcile.Rules{Domains: []reconcile.DomainRules{
		{Name: "win11", Priority: 10, Mode: reconcile.ModeAllow, Devices: logi},
		{Name: "backup", Priority: 0, Mode: reconcile.ModeAllow, Devices: logi},
	}}
}

// benchBackground is the host before the events: 20 devices, 4 of them
// Logitech (attached by the first sync).
func benchBackground() []reconcile.Device {
	var out []reconcile.Device
	for i := range 20 {
		id := "8087:0a2b"
		if i%5 == 0 {
			id = "046d:c52b"
		}
		out = append(out, dev(1+i/10, 2+i%10, id, fmt.Sprintf("%d-%d", 1+i/10, 1+i%10)))
	}
	return out
}

const benchBackgroundWanted = 4

// benchDevice is the i-th fresh device of a run: a Logitech device on a bus
// the background does not use, with a key and devpath never seen before.
func benchDevice(i int) reconcile.Device {
	bus, n := 3+i/100, i%100
	return dev(bus, 2+n, "046d:c52b", fmt.Sprintf("%d-%d", bus, 1+n))
}

type benchRig struct {
	c      *Controller
	hv     *benchHV
	cancel context.CancelFunc
	done   chan error
	// lastAttachSync is the number of the sync that issued the latest
	// attach (1 for the first sync). Written on the Run goroutine; read
	// it after stop.
	lastAttachSync uint64
}

// startBench runs a controller on a fresh world and returns once its first
// sync has attached the background devices.
func startBench(tb testing.TB, buf int) *benchRig {
	tb.Helper()
	hv := newBenchHV(buf+benchBackgroundWanted,
		running("win11"), reconcile.Domain{Name: "backup", State: reconcile.StateShutoff})
	devs := &fakeDevices{}
	devs.set(benchBackground()...)
	c := New(Options{Hypervisor: hv, Devices: devs}, benchRules(), ConfigStatus{})
	rctx, cancel := context.WithCancel(context.Background())
	r := &benchRig{c: c, hv: hv, cancel: cancel, done: make(chan error, 1)}
	// Attach runs on the Run goroutine, inside a sync: c.loop.syncs
	// counts the syncs finished before this one.
	hv.onAttach = func() { r.lastAttachSync = c.loop.syncs + 1 }
	go func() { r.done <- c.Run(rctx) }()
	select {
	case <-c.Ready():
	case <-time.After(benchWaitTimeout):
		r.stop()
		tb.Fatal("controller not ready")
	}
	for range benchBackgroundWanted {
		r.waitAttach(tb)
	}
	return r
}

func (r *benchRig) waitAttach(tb testing.TB) time.Time {
	tb.Helper()
	select {
	case t := <-r.hv.attached:
		return t
	case <-time.After(benchWaitTimeout):
		total, dups, held := r.hv.counts()
		tb.Fatalf("no attach within %v (attach calls %d, duplicates %d, held %d; status pending %+v)",
			benchWaitTimeout, total, dups, held, r.c.Status().Pending)
		return time.Time{}
	}
}

func (r *benchRig) waitDetach(tb testing.TB) {
	tb.Helper()
	select {
	case <-r.hv.detached:
	case <-time.After(benchWaitTimeout):
		tb.Fatalf("no detach within %v", benchWaitTimeout)
	}
}

func (r *benchRig) stop() {
	r.cancel()
	<-r.done
}

// BenchmarkEventToAttach measures the latency from ctl.DeviceAdded of a
// device a rule gives a running domain to the Attach call on the
// hypervisor (the time taken on entry to benchHV.Attach), one event at a
// time: each waits for its attach before the next is sent. Every iteration
// plugs 10,000 fresh devices (keys and devpaths never seen before) into a
// host of 20 background devices; each is unplugged again, and its detach
// awaited, untimed, before the next, so the host stays its size and the
// numbers are the controller's per-event cost. p50-ns and p99-ns are over
// every event of every iteration; ns/op is the wall time of 10,000 events,
// unplugs included.
func BenchmarkEventToAttach(b *testing.B) {
	eventToAttach(b, 10000, true)
}

// BenchmarkEventToAttachGrowing is the same but the devices stay plugged,
// so the host grows from 20 to 1,020 devices (1,004 on one guest): every
// sync re-plans and re-publishes the whole world, and this shows what that
// costs per event. 1,000 events, not 10,000: at 10,000 one iteration takes
// minutes (the cost per event grows with the world, the run with its
// square).
func BenchmarkEventToAttachGrowing(b *testing.B) {
	eventToAttach(b, 1000, false)
}

func eventToAttach(b *testing.B, events int, replug bool) {
	b.ReportAllocs()
	lat := make([]time.Duration, 0, events*b.N)
	for range b.N {
		b.StopTimer()
		r := startBench(b, events)
		b.StartTimer()
		for i := range events {
			d := benchDevice(i)
			t0 := time.Now()
			r.c.DeviceAdded(d)
			t1 := r.waitAttach(b)
			lat = append(lat, t1.Sub(t0))
			if replug {
				r.c.DeviceRemoved(d)
				r.waitDetach(b)
			}
		}
		b.StopTimer()
		r.stop()
		if total, dups, _ := r.hv.counts(); dups != 0 || total != events+benchBackgroundWanted {
			b.Fatalf("%d attach calls (%d duplicate) for %d devices", total, dups, events+benchBackgroundWanted)
		}
		b.StartTimer()
	}
	slices.Sort(lat)
	b.ReportMetric(float64(stats.Percentile(lat, 0.50)), "p50-ns")
	b.ReportMetric(float64(stats.Percentile(lat, 0.99)), "p99-ns")
}

// benchBurst sends n DeviceAdded events as fast as possible to a controller
// whose first sync is done, and waits for all n attaches. It returns the
// syncs the burst took (after the first sync, up to and including the one
// that issued the last attach) and the duplicate attach calls.
func benchBurst(tb testing.TB, n int, timed func(start bool)) (syncs uint64, dups int) {
	tb.Helper()
	devs := make([]reconcile.Device, n)
	for i := range devs {
		devs[i] = benchDevice(i)
	}
	r := startBench(tb, n)
	base := r.c.Status().Syncs // the first sync, which attached the background
	if timed != nil {
		timed(true)
	}
	for _, d := range devs {
		r.c.DeviceAdded(d)
	}
	for range n {
		r.waitAttach(tb)
	}
	if timed != nil {
		timed(false)
	}
	r.stop()
	total, dups, held := r.hv.counts()
	if total-dups != n+benchBackgroundWanted || held != n+benchBackgroundWanted {
		tb.Fatalf("%d attach calls (%d duplicate), %d held, want %d", total, dups, held, n+benchBackgroundWanted)
	}
	return r.lastAttachSync - base, dups
}

// BenchmarkBurst1000 sends 1,000 DeviceAdded events as fast as possible and
// waits until all 1,000 are attached. ns/op is the burst's total time;
// syncs is the most syncs any burst took (target ≤ 10); dup-attaches the
// duplicate attach calls over all bursts (must be 0).
func BenchmarkBurst1000(b *testing.B) {
	const n = 1000
	b.ReportAllocs()
	var maxSyncs uint64
	dupsTotal := 0
	for range b.N {
		b.StopTimer()
		syncs, dups := benchBurst(b, n, func(start bool) {
			if start {
				b.StartTimer()
			} else {
				b.StopTimer()
			}
		})
		maxSyncs = max(maxSyncs, syncs)
		dupsTotal += dups
	}
	b.StartTimer()
	b.ReportMetric(float64(maxSyncs), "syncs")
	b.ReportMetric(float64(dupsTotal), "dup-attaches")
	if dupsTotal != 0 {
		b.Errorf("%d duplicate attach calls", dupsTotal)
	}
}
