package controller

// A model-based convergence test: the real loop (New + Run) against an
// in-memory world of USB ports and libvirt domains, driven through random
// sequences of plugs, unplugs, replugs, domain lifecycle, a person's own
// hostdevs, injected attach/detach/read failures, lost and duplicated
// events, connection drops and config reloads. After each sequence the
// faults stop and the test waits until the loop is quiet, then checks that
// the world is a fixed point of reconcile.Plan and that nothing forbidden
// happened on the way (see model.check).
//
// A failure prints its seed and steps. Replay one sequence with
//
//	go test ./controller -run TestModel -model.seed=N -v
//
// The steps are the same on replay; the interleaving with the loop is not
// (it runs on real timers), so a timing-dependent failure may need
// -count=50, or -model.repeat=2000 (the sequence many times at once, under
// load) to show again; -model.log adds the loop's log to the report.

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/usbctl/usbctl/failure"
	"github.com/usbctl/usbctl/reconcile"
)

var (
	modelSeed   = flag.Uint64("model.seed", 0, "run only the model sequence with this seed (0: run -model.n random ones)")
	modelN      = flag.Int("model.n", 3000, "number of random model sequences")
	modelRepeat = flag.Int("model.repeat", 1, "with -model.seed: run that sequence this many times, in parallel")
	modelLog    = flag.Bool("model.log", false, "show the loop's log in failure reports")
)

const (
	mBackoffMin = time.Millisecond
	mBackoffMax = 20 * time.Millisecond
	mResync     = 20 * time.Millisecond
	// mSettle bounds the wait for convergence after the faults stop.
	mSettle = 10 * time.Second
	// mWorkers sequences run at once: each one mostly sleeps on timers.
	mWorkers = 24
)

var (
	errMissing = errors.New("fake: usb device not found")
)

// The ports of the model host. 1-4 holds a hub (always present) with two
// ports of its own.
var mPorts = []string{"1-1", "1-2", "1-3", "1-4.1", "1-4.2", "2-1", "2-2"}

const mHubPort = "1-4"

type mKind struct {
	vendor, product, class string
	ifaces                 []string
	serials                []string
}

var mKinds = []mKind{
	{"046d", "c52b", "00", []string{"03", "03"}, nil}, // receiver; two may be plugged: identical devices
	{"046d", "c077", "00", []string{"03"}, nil},
	{"1050", "0407", "00", []string{"03", "0b"}, []string{"12345678", "87654321"}},
	{"0483", "5740", "02", []string{"02", "0a"}, nil},
	{"0483", "df11", "00", []string{"fe"}, nil},
	{"dead", "beef", "ff", []string{"ff"}, nil}, // excluded by every rule set
	{"0bda", "8153", "00", []string{"ff", "02"}, nil},
	{"05e3", "0608", "09", []string{"09"}, nil}, // a second hub, plugged into a port
}

// The rule blocks the random configs pick from. No block names a hub
// exactly, so no hub may ever be attached.
var mBlocks = []reconcile.Match{
	{Label: "receiver", IDs: []reconcile.IDPattern{{Vendor: "046d", Product: "c52b"}}},
	{Label: "stm32", IDs: []reconcile.IDPattern{{Vendor: "0483", Product: "5740"}, {Vendor: "0483", Product: "df11"}}},
	{Label: "logitech", IDs: []reconcile.IDPattern{{Vendor: "046d"}}},
	{Label: "any-0407", IDs: []reconcile.IDPattern{{Product: "0407"}}},
	{Label: "yubikey", IDs: []reconcile.IDPattern{{Vendor: "1050"}}, Serial: "12345678"},
	{Label: "desk-hub", Port: &reconcile.PortPattern{Path: "1-4", Subtree: true}},
	{Label: "port-2-1", Port: &reconcile.PortPattern{Path: "2-1"}},
	{Label: "hub-port", Port: &reconcile.PortPattern{Path: "1-4"}},   // only the hub is there
	{Label: "genesys", IDs: []reconcile.IDPattern{{Vendor: "05e3"}}}, // hub vendor, by wildcard
	{Label: "hubs", Classes: []string{"09"}},
	{Label: "hid", Classes: []string{"03"}},
	{Label: "beef", IDs: []reconcile.IDPattern{{Vendor: "dead", Product: "beef"}}}, // excluded anyway
}

var mDomainNames = []string{"bsd", "lab", "linux", "win11"}

// personHostdev is in lab's persistent XML: a hand-made hostdev naming a
// device by id that is never plugged. It comes back on every start and must
// never be touched.
var personHostdev = reconcile.Hostdev{Alias: "hostdev0", Vendor: "1234", Product: "5678"}

func randRules(r *rand.Rand) reconcile.Rules {
	var rs reconcile.Rules
	for _, n := range append(slices.Clone(mDomainNames), "old-vm") { // old-vm is not defined
		if r.IntN(10) < 3 {
			continue
		}
		dr := reconcile.DomainRules{Name: n, Source: "model.hcl:" + n, Priority: []int{0, 5, 10}[r.IntN(3)],
			Preempt: r.IntN(5) < 2, Mode: reconcile.ModeAllow}
		k := 1 + r.IntN(3)
		switch r.IntN(10) {
		case 0:
			dr.Mode, k = reconcile.ModeAll, 0
		case 1:
			dr.Mode, k = reconcile.ModeDeny, 1+r.IntN(2)
		}
		for _, i := range r.Perm(len(mBlocks))[:k] {
			dr.Devices = append(dr.Devices, mBlocks[i])
		}
		rs.Domains = append(rs.Domains, dr)
	}
	rs.Excludes = []reconcile.Match{{Label: "beef", IDs: []reconcile.IDPattern{{Vendor: "dead", Product: "beef"}}}}
	if r.IntN(3) == 0 {
		rs.Excludes = append(rs.Excludes, reconcile.Match{Label: "port-2-2", Port: &reconcile.PortPattern{Path: "2-2"}})
	}
	return rs
}

func describeRules(rs reconcile.Rules) string {
	var b strings.Builder
	for _, d := range rs.Domains {
		fmt.Fprintf(&b, " %s{prio %d", d.Name, d.Priority)
		if d.Preempt {
			b.WriteString(" preempt")
		}
		b.WriteString(" " + string(d.Mode))
		for _, m := range d.Devices {
			b.WriteString(" " + m.Label)
		}
		b.WriteString("}")
	}
	for _, m := range rs.Excludes {
		b.WriteString(" exclude:" + m.Label)
	}
	return b.String()
}

type mOutcome int

const (
	mOK    mOutcome = iota
	mRetry          // transient or disconnected: retried after a backoff
	mWait           // permanent: retried only after a change
	mGone           // domain gone: the loop re-reads it
)

// mCall is one Attach or Detach the loop made.
type mCall struct {
	at      time.Time // the loop's clock when it decided on the call
	real    time.Time
	kind    reconcile.ActionKind
	domain  string
	key     reconcile.DeviceKey
	alias   string
	outcome mOutcome
	err     string
}

type mDomain struct {
	state      reconcile.DomainState
	hostdevs   []reconcile.Hostdev
	persistent []reconcile.Hostdev // back on every start
}

// modelWorld is the host and libvirt: it implements Hypervisor and
// DeviceLister, fails as told, records every call, and sends the events
// libvirt would send for the loop's own attaches and detaches (each may be
// lost).
type modelWorld struct {
	lastNow atomic.Pointer[time.Time] // the loop's clock, set by Options.Now

	mu       sync.Mutex
	rnd      *rand.Rand // for the world's own events, under mu
	lossP    float64
	ctl      *Controller
	devices  map[string]reconcile.Device // by port
	ever     map[reconcile.DeviceKey]reconcile.Device
	domains  map[string]*mDomain
	nextDev  map[int]int
	personN  int
	down     bool
	failAtt  map[reconcile.DeviceKey]int    // the next n attaches fail (transient)
	ambigAtt map[reconcile.DeviceKey]int    // the next n attaches happen but report a transient error
	permAtt  map[reconcile.DeviceKey]string // attaches fail "busy" until cleared; the value is the pretend holder
	failDet  map[string]int                 // alias → the next n detaches fail (transient)
	flaky    map[string]int                 // domain → the next n reads fail (transient)
	// slowDet: detaches from these domains are accepted and finish only
	// at the next qemuDone (or the end), as libvirt's finish when QEMU's
	// DEVICE_DELETED comes; a read in between still shows the hostdev.
	slowDet   map[string]bool
	detaching []hostdevKey

	calls      []mCall
	resets     []mSpan // when something happened that may rightly end a backoff or a permanent wait
	lastCall   time.Time
	devLists   []time.Time // when the loop re-listed the devices: a resync
	domLists   []time.Time // when it re-listed the domains (a resync lists both, at once)
	violations []string
}

func newModelWorld(seed uint64, lossP float64) *modelWorld {
	w := &modelWorld{
		rnd: rand.New(rand.NewPCG(seed, 0x5eed)), lossP: lossP,
		devices: map[string]reconcile.Device{}, ever: map[reconcile.DeviceKey]reconcile.Device{},
		domains: map[string]*mDomain{}, nextDev: map[int]int{1: 2, 2: 2},
		failAtt: map[reconcile.DeviceKey]int{}, ambigAtt: map[reconcile.DeviceKey]int{},
		permAtt: map[reconcile.DeviceKey]string{}, failDet: map[string]int{}, flaky: map[string]int{},
		slowDet: map[string]bool{},
	}
	return w
}

// now is Options.Now. The loop reads its clock right before each call, so
// the time a call sees here is the time its backoff was computed from.
func (w *modelWorld) now() time.Time {
	t := time.Now()
	w.lastNow.Store(&t)
	return t
}

func (w *modelWorld) loopNow() time.Time {
	if p := w.lastNow.Load(); p != nil {
		return *p
	}
	return time.Now()
}

// mSpan is when something happened: [from, to].
type mSpan struct{ from, to time.Time }

// noteResetLocked notes a change made on the loop's goroutine, or one the
// loop sees in the same sync (a re-list).
func (w *modelWorld) noteResetLocked() {
	t := time.Now()
	w.resets = append(w.resets, mSpan{t, t})
}

// noteEvent runs f, which tells the loop something, and notes the span it
// took: the driving goroutine may be preempted half way.
func (w *modelWorld) noteEvent(f func()) {
	from := time.Now()
	f()
	to := time.Now()
	w.mu.Lock()
	w.resets = append(w.resets, mSpan{from, to})
	w.mu.Unlock()
}

func (w *modelWorld) violate(format string, args ...any) {
	w.violations = append(w.violations, fmt.Sprintf(format, args...))
}

func copyDomain(name string, d *mDomain) reconcile.Domain {
	return reconcile.Domain{Name: name, State: d.state, Hostdevs: slices.Clone(d.hostdevs)}
}

func (w *modelWorld) ListDomains(ctx context.Context) ([]reconcile.Domain, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.down {
		return nil, fmt.Errorf("list domains: %w", errOffline)
	}
	var out []reconcile.Domain
	for n, d := range w.domains {
		out = append(out, copyDomain(n, d))
	}
	w.noteResetLocked()
	w.domLists = append(w.domLists, time.Now())
	return out, nil
}

func (w *modelWorld) Domain(ctx context.Context, name string) (reconcile.Domain, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.down {
		return reconcile.Domain{}, fmt.Errorf("read %s: %w", name, errOffline)
	}
	if w.flaky[name] > 0 {
		w.flaky[name]--
		return reconcile.Domain{}, fmt.Errorf("read %s: %w", name, errFlaky)
	}
	d, ok := w.domains[name]
	if !ok {
		return reconcile.Domain{}, fmt.Errorf("domain %s: %w", name, errNoDom)
	}
	return copyDomain(name, d), nil
}

func (w *modelWorld) List(ctx context.Context) ([]reconcile.Device, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]reconcile.Device, 0, len(w.devices))
	for _, d := range w.devices {
		out = append(out, d)
	}
	w.noteResetLocked()
	w.devLists = append(w.devLists, time.Now())
	return out, nil
}

func (w *modelWorld) presentLocked(k reconcile.DeviceKey) bool {
	for _, d := range w.devices {
		if d.Key() == k {
			return true
		}
	}
	return false
}

// holderLocked returns the active domain with a hostdev on k, if any.
func (w *modelWorld) holderLocked(k reconcile.DeviceKey) (string, bool) {
	for _, n := range mDomainNames {
		d := w.domains[n]
		if !d.state.Active() {
			continue
		}
		for _, h := range d.hostdevs {
			if hk, ok := h.Key(); ok && hk == k {
				return n, true
			}
		}
	}
	return "", false
}

// eventLocked decides whether libvirt's event for the loop's own change of
// domain reaches the loop; the caller sends it after unlocking.
func (w *modelWorld) eventLocked(domain string) func() {
	if w.rnd.Float64() < w.lossP {
		return nil
	}
	w.noteResetLocked()
	ctl := w.ctl
	// The loop's own attaches and detaches come back as device-added and
	// device-removed, which the daemon passes on as such.
	return func() { ctl.DomainDevicesChanged(domain) }
}

func (w *modelWorld) record(c mCall, err error) {
	c.err = fmt.Sprint(err)
	c.outcome = mOK
	if err != nil {
		switch failure.ClassOf(err) {
		case failure.Permanent:
			c.outcome = mWait
		case failure.DomainGone:
			c.outcome = mGone
			// The loop re-reads the domain, and that may rightly let
			// any permanent failure try again.
			w.noteResetLocked()
		default:
			c.outcome = mRetry
		}
	}
	w.calls = append(w.calls, c)
	w.lastCall = c.real
}

func (w *modelWorld) Attach(ctx context.Context, domain string, key reconcile.DeviceKey) error {
	w.mu.Lock()
	c := mCall{at: w.loopNow(), real: time.Now(), kind: reconcile.Attach, domain: domain, key: key, alias: key.Alias()}
	if dv, ok := w.ever[key]; ok && (dv.IsHub() || dv.ID() == "dead:beef") {
		w.violate("attach of %s (%s class %s) to %s: hubs and excluded devices are never attached", key, dv.ID(), dv.Class, domain)
	}
	var ev func()
	err := func() error {
		if w.down {
			return fmt.Errorf("attach %s to %s: %w", key, domain, errOffline)
		}
		if w.failAtt[key] > 0 {
			w.failAtt[key]--
			// Half of them a full USB controller, tried again at
			// once when the domain's devices change.
			if w.rnd.IntN(2) == 0 {
				return fmt.Errorf("attach %s to %s: %w", key, domain, errFull)
			}
			return fmt.Errorf("attach %s to %s: %w", key, domain, errFlaky)
		}
		if h, ok := w.permAtt[key]; ok {
			return fmt.Errorf("attach %s to %s: in use by %s: %w", key, domain, h, errBusy)
		}
		d, ok := w.domains[domain]
		if !ok || !d.state.Active() {
			return fmt.Errorf("attach %s to %s: %w", key, domain, errNoDom)
		}
		if !w.presentLocked(key) {
			return fmt.Errorf("attach %s to %s: %w", key, domain, errMissing)
		}
		if h, ok := w.holderLocked(key); ok {
			return fmt.Errorf("attach %s to %s: usb device is in use by domain %s: %w", key, domain, h, errBusy)
		}
		d.hostdevs = append(d.hostdevs, reconcile.Hostdev{Alias: key.Alias(), Bus: key.Bus, Dev: key.Dev})
		ev = w.eventLocked(domain)
		if w.ambigAtt[key] > 0 {
			// Done, but the answer was lost (a timeout).
			w.ambigAtt[key]--
			return fmt.Errorf("attach %s to %s: %w (the attach happened)", key, domain, errFlaky)
		}
		return nil
	}()
	w.record(c, err)
	w.mu.Unlock()
	if ev != nil {
		ev()
	}
	return err
}

func (w *modelWorld) Detach(ctx context.Context, domain, alias string) error {
	w.mu.Lock()
	c := mCall{at: w.loopNow(), real: time.Now(), kind: reconcile.Detach, domain: domain, alias: alias}
	if !strings.HasPrefix(alias, reconcile.AliasPrefix) {
		w.violate("detach of %s from %s: not our hostdev", alias, domain)
	} else {
		fmt.Sscanf(strings.TrimPrefix(alias, reconcile.AliasPrefix), "%d-%d", &c.key.Bus, &c.key.Dev)
	}
	var ev func()
	err := func() error {
		if w.down {
			return fmt.Errorf("detach %s from %s: %w", alias, domain, errOffline)
		}
		if w.failDet[alias] > 0 {
			w.failDet[alias]--
			return fmt.Errorf("detach %s from %s: %w", alias, domain, errFlaky)
		}
		d, ok := w.domains[domain]
		if !ok || !d.state.Active() {
			return fmt.Errorf("detach %s from %s: %w", alias, domain, errNoDom)
		}
		if w.slowDet[domain] && slices.ContainsFunc(d.hostdevs, func(h reconcile.Hostdev) bool { return h.Alias == alias }) {
			w.detaching = append(w.detaching, hostdevKey{domain, alias})
			return nil // accepted; gone at qemuDone
		}
		n := len(d.hostdevs)
		d.hostdevs = slices.DeleteFunc(d.hostdevs, func(h reconcile.Hostdev) bool { return h.Alias == alias })
		if len(d.hostdevs) != n {
			ev = w.eventLocked(domain)
		}
		return nil // a hostdev already gone counts as detached
	}()
	w.record(c, err)
	w.mu.Unlock()
	if ev != nil {
		ev()
	}
	return err
}

// observed is the true world, as Plan takes it.
func (w *modelWorld) observed() reconcile.Observed {
	w.mu.Lock()
	defer w.mu.Unlock()
	var obs reconcile.Observed
	for _, d := range w.devices {
		obs.Devices = append(obs.Devices, d)
	}
	sort.Slice(obs.Devices, func(i, j int) bool { return obs.Devices[i].Key().Less(obs.Devices[j].Key()) })
	for _, n := range mDomainNames {
		obs.Domains = append(obs.Domains, copyDomain(n, w.domains[n]))
	}
	return obs
}

// model is one sequence: the world, the loop, and the steps taken.
type model struct {
	r     *rand.Rand // the step generator; used by the driving goroutine only
	w     *modelWorld
	c     *Controller
	rules reconcile.Rules
	steps []string
	nstep int
}

func (m *model) logf(format string, args ...any) {
	m.steps = append(m.steps, fmt.Sprintf("%3d ", len(m.steps))+fmt.Sprintf(format, args...))
}

// deliver sends an event to the loop, or loses it, or sends it twice. A
// domain event cannot arrive while libvirt is disconnected.
func (m *model) deliver(domainEvent bool, f func()) string {
	m.w.mu.Lock()
	down := m.w.down
	m.w.mu.Unlock()
	if domainEvent && down {
		return " (no event: disconnected)"
	}
	if m.r.Float64() < m.w.lossP {
		return " (event lost)"
	}
	m.w.noteEvent(f)
	if m.r.IntN(10) == 0 {
		m.w.noteEvent(f)
		return " (event twice)"
	}
	return ""
}

func (m *model) reliably(f func()) { m.w.noteEvent(f) }

func portBus(port string) int {
	if strings.HasPrefix(port, "2-") {
		return 2
	}
	return 1
}

func (m *model) newDevice(port string, k mKind) reconcile.Device {
	w := m.w
	w.mu.Lock()
	defer w.mu.Unlock()
	bus := portBus(port)
	d := reconcile.Device{Bus: bus, Dev: w.nextDev[bus], Vendor: k.vendor, Product: k.product, Port: port,
		Class: k.class, InterfaceClasses: k.ifaces, DevPath: fmt.Sprintf("/devices/pci0000:00/usb%d/%s", bus, port)}
	w.nextDev[bus]++
	if len(k.serials) > 0 {
		d.Serial = k.serials[m.r.IntN(len(k.serials))]
	}
	w.ever[d.Key()] = d
	return d
}

func (m *model) randKind() mKind {
	k := mKinds[m.r.IntN(len(mKinds))]
	if k.class == "09" && m.r.IntN(2) == 0 { // hubs less often
		k = mKinds[0]
	}
	return k
}

// setup builds the initial world: the hub, some devices, domains in random
// states, maybe hostdevs of ours left by an earlier run, and random rules.
func (m *model) setup() {
	w := m.w
	hub := m.newDevice(mHubPort, mKind{"05e3", "0610", "09", []string{"09"}, nil})
	w.devices[mHubPort] = hub
	for _, p := range mPorts {
		if m.r.IntN(2) == 0 {
			w.devices[p] = m.newDevice(p, m.randKind())
		}
	}
	for _, n := range mDomainNames {
		d := &mDomain{state: reconcile.StateShutoff}
		if n == "lab" {
			d.persistent = []reconcile.Hostdev{personHostdev}
		}
		if m.r.IntN(10) < 6 {
			d.state = reconcile.StateRunning
			d.hostdevs = slices.Clone(d.persistent)
		}
		w.domains[n] = d
	}
	// Left by an earlier run: ours on a present device, and ours on a
	// device that is gone.
	if m.r.IntN(3) == 0 {
		for _, p := range m.r.Perm(len(mPorts)) {
			dv, ok := w.devices[mPorts[p]]
			if !ok || dv.IsHub() {
				continue
			}
			n := mDomainNames[m.r.IntN(len(mDomainNames))]
			if d := w.domains[n]; d.state.Active() {
				d.hostdevs = append(d.hostdevs, reconcile.Hostdev{Alias: dv.Key().Alias(), Bus: dv.Bus, Dev: dv.Dev})
			}
			break
		}
	}
	if m.r.IntN(4) == 0 {
		n := mDomainNames[m.r.IntN(len(mDomainNames))]
		gone := reconcile.DeviceKey{Bus: 2, Dev: 200}
		if d := w.domains[n]; d.state.Active() {
			d.hostdevs = append(d.hostdevs, reconcile.Hostdev{Alias: gone.Alias(), Bus: gone.Bus, Dev: gone.Dev})
		}
	}
	m.rules = randRules(m.r)
	var st []string
	for _, n := range mDomainNames {
		d := w.domains[n]
		st = append(st, fmt.Sprintf("%s=%s%v", n, d.state, d.hostdevs))
	}
	var devs []string
	for _, p := range append([]string{mHubPort}, mPorts...) {
		if d, ok := w.devices[p]; ok {
			devs = append(devs, fmt.Sprintf("%s:%s@%s", d.Key(), d.ID(), p))
		}
	}
	m.logf("start: event loss %.0f%%; devices %s; domains %s; rules%s", w.lossP*100, strings.Join(devs, " "), strings.Join(st, " "), describeRules(m.rules))
}

func (m *model) occupied() []string {
	var out []string
	for _, p := range mPorts {
		if _, ok := m.w.devices[p]; ok {
			out = append(out, p)
		}
	}
	return out
}

func (m *model) domainsWhere(f func(*mDomain) bool) []string {
	var out []string
	for _, n := range mDomainNames {
		if f(m.w.domains[n]) {
			out = append(out, n)
		}
	}
	return out
}

func pick[T any](r *rand.Rand, xs []T) T { return xs[r.IntN(len(xs))] }

type mStep struct {
	weight int
	run    func(m *model) bool // false: not possible now
}

// slowDetach: from now, detaches from one domain finish only at the next
// qemuDone.
func (m *model) slowDetach() bool {
	ds := m.domainsWhere(func(d *mDomain) bool { return d.state.Active() })
	if len(ds) == 0 {
		return false
	}
	n := pick(m.r, ds)
	m.w.mu.Lock()
	m.w.slowDet[n] = true
	m.w.mu.Unlock()
	m.logf("detaches from %s finish late", n)
	return true
}

// qemuDone finishes the detaches accepted so far, each with its
// device-removed event (which may be lost).
func (m *model) qemuDone() bool {
	m.w.mu.Lock()
	if len(m.w.detaching) == 0 {
		m.w.mu.Unlock()
		return false
	}
	evs := m.w.finishDetachesLocked()
	m.w.mu.Unlock()
	for _, ev := range evs {
		ev()
	}
	m.logf("QEMU finishes the detaches")
	return true
}

// finishDetachesLocked removes the hostdevs of accepted detaches and
// returns their events to send after unlocking.
func (w *modelWorld) finishDetachesLocked() []func() {
	var evs []func()
	for _, k := range w.detaching {
		d := w.domains[k.domain]
		n := len(d.hostdevs)
		d.hostdevs = slices.DeleteFunc(d.hostdevs, func(h reconcile.Hostdev) bool { return h.Alias == k.alias })
		if len(d.hostdevs) != n {
			if ev := w.eventLocked(k.domain); ev != nil {
				evs = append(evs, ev)
			}
		}
	}
	w.detaching = nil
	return evs
}

var mSteps = []mStep{
	{14, (*model).plug},
	{10, (*model).unplug},
	{8, (*model).replug},
	{8, (*model).start},
	{7, (*model).stop},
	{3, (*model).pause},
	{4, (*model).personAttach},
	{3, (*model).personDetach},
	{5, (*model).failAttach},
	{3, (*model).failAttachPermanent},
	{3, (*model).clearPermanent},
	{2, (*model).ambiguousAttach},
	{4, (*model).failDetach},
	{2, (*model).flakyRead},
	{3, (*model).drop},
	{4, (*model).reconnect},
	{6, (*model).reload},
	{4, (*model).spurious},
	{2, (*model).devicesLost},
	{6, (*model).pauseTest},
	{4, (*model).slowDetach},
	{6, (*model).qemuDone},
}

var mTotalWeight = func() int {
	n := 0
	for _, s := range mSteps {
		n += s.weight
	}
	return n
}()

func (m *model) step() {
	for {
		x := m.r.IntN(mTotalWeight)
		for _, s := range mSteps {
			if x < s.weight {
				if s.run(m) {
					m.nstep++
					return
				}
				break
			}
			x -= s.weight
		}
	}
}

func (m *model) plug() bool {
	var free []string
	for _, p := range mPorts {
		if _, ok := m.w.devices[p]; !ok {
			free = append(free, p)
		}
	}
	if len(free) == 0 {
		return false
	}
	p := pick(m.r, free)
	d := m.newDevice(p, m.randKind())
	m.w.mu.Lock()
	m.w.devices[p] = d
	m.w.mu.Unlock()
	m.logf("plug %s %s as %s%s", p, d.ID(), d.Key(), m.deliver(false, func() { m.c.DeviceAdded(d) }))
	return true
}

func (m *model) unplugPort(p string) string {
	m.w.mu.Lock()
	d := m.w.devices[p]
	delete(m.w.devices, p)
	m.w.mu.Unlock()
	gone := reconcile.Device{Bus: d.Bus, Dev: d.Dev, DevPath: d.DevPath}
	return fmt.Sprintf("unplug %s %s%s", p, d.Key(), m.deliver(false, func() { m.c.DeviceRemoved(gone) }))
}

func (m *model) unplug() bool {
	occ := m.occupied()
	if len(occ) == 0 {
		return false
	}
	m.logf("%s", m.unplugPort(pick(m.r, occ)))
	return true
}

// replug: the same device, unplugged and plugged again into the same port,
// comes back with a new device number.
func (m *model) replug() bool {
	occ := m.occupied()
	if len(occ) == 0 {
		return false
	}
	p := pick(m.r, occ)
	old := m.w.devices[p]
	s := m.unplugPort(p)
	d := m.newDevice(p, mKind{old.Vendor, old.Product, old.Class, old.InterfaceClasses, nil})
	d.Serial = old.Serial
	m.w.mu.Lock()
	m.w.ever[d.Key()] = d
	m.w.devices[p] = d
	m.w.mu.Unlock()
	m.logf("re%s; back as %s%s", s, d.Key(), m.deliver(false, func() { m.c.DeviceAdded(d) }))
	return true
}

func (m *model) setState(n string, s reconcile.DomainState) {
	m.w.mu.Lock()
	defer m.w.mu.Unlock()
	d := m.w.domains[n]
	was := d.state.Active()
	d.state = s
	switch {
	case !s.Active():
		d.hostdevs = nil // the live devices go with QEMU
	case !was:
		d.hostdevs = slices.Clone(d.persistent)
	}
}

func (m *model) start() bool {
	ds := m.domainsWhere(func(d *mDomain) bool { return !d.state.Active() })
	if len(ds) == 0 {
		return false
	}
	n := pick(m.r, ds)
	m.setState(n, reconcile.StateRunning)
	m.logf("start %s%s", n, m.deliver(true, func() { m.c.DomainChanged(n) }))
	return true
}

func (m *model) stop() bool {
	ds := m.domainsWhere(func(d *mDomain) bool { return d.state.Active() })
	if len(ds) == 0 {
		return false
	}
	n := pick(m.r, ds)
	s := pick(m.r, []reconcile.DomainState{reconcile.StateShutoff, reconcile.StateShutoff, reconcile.StateCrashed})
	m.setState(n, s)
	m.logf("%s → %s%s", n, s, m.deliver(true, func() { m.c.DomainChanged(n) }))
	return true
}

func (m *model) pause() bool {
	ds := m.domainsWhere(func(d *mDomain) bool { return d.state.Active() })
	if len(ds) == 0 {
		return false
	}
	n := pick(m.r, ds)
	s := reconcile.StatePaused
	if m.w.domains[n].state == s {
		s = reconcile.StateRunning
	}
	m.setState(n, s)
	m.logf("%s → %s%s", n, s, m.deliver(true, func() { m.c.DomainChanged(n) }))
	return true
}

// personAttach: a person attaches a free device by hand (virsh), with an
// alias of their own.
func (m *model) personAttach() bool {
	w := m.w
	w.mu.Lock()
	if w.down {
		w.mu.Unlock()
		return false
	}
	var free []reconcile.Device
	for _, p := range mPorts {
		if d, ok := w.devices[p]; ok {
			if _, held := w.holderLocked(d.Key()); !held {
				free = append(free, d)
			}
		}
	}
	ds := m.domainsWhere(func(d *mDomain) bool { return d.state.Active() })
	if len(free) == 0 || len(ds) == 0 {
		w.mu.Unlock()
		return false
	}
	d, n := pick(m.r, free), pick(m.r, ds)
	w.personN++
	h := reconcile.Hostdev{Alias: fmt.Sprintf("hostdev%d", w.personN), Bus: d.Bus, Dev: d.Dev}
	w.domains[n].hostdevs = append(w.domains[n].hostdevs, h)
	w.mu.Unlock()
	m.logf("a person attaches %s (%s) to %s as %s%s", d.Key(), d.ID(), n, h.Alias, m.deliver(true, func() { m.c.DomainChanged(n) }))
	return true
}

func (m *model) personDetach() bool {
	w := m.w
	w.mu.Lock()
	type ref struct {
		dom   string
		alias string
	}
	var hs []ref
	for _, n := range mDomainNames {
		for _, h := range w.domains[n].hostdevs {
			if !h.Owned() && h.Alias != personHostdev.Alias {
				hs = append(hs, ref{n, h.Alias})
			}
		}
	}
	if w.down || len(hs) == 0 {
		w.mu.Unlock()
		return false
	}
	x := pick(m.r, hs)
	d := w.domains[x.dom]
	d.hostdevs = slices.DeleteFunc(d.hostdevs, func(h reconcile.Hostdev) bool { return h.Alias == x.alias })
	w.mu.Unlock()
	m.logf("a person detaches %s from %s%s", x.alias, x.dom, m.deliver(true, func() { m.c.DomainChanged(x.dom) }))
	return true
}

// someKey is a present device, or now and then one that is gone.
func (m *model) someKey() (reconcile.DeviceKey, bool) {
	occ := m.occupied()
	if len(occ) == 0 {
		return reconcile.DeviceKey{}, false
	}
	return m.w.devices[pick(m.r, occ)].Key(), true
}

func (m *model) failAttach() bool {
	k, ok := m.someKey()
	if !ok {
		return false
	}
	n := 1 + m.r.IntN(3)
	m.w.mu.Lock()
	m.w.failAtt[k] += n
	m.w.mu.Unlock()
	m.logf("the next %d attaches of %s fail (transient)", n, k)
	return true
}

func (m *model) failAttachPermanent() bool {
	k, ok := m.someKey()
	if !ok {
		return false
	}
	h := pick(m.r, mDomainNames)
	m.w.mu.Lock()
	m.w.permAtt[k] = h
	m.w.mu.Unlock()
	m.logf("attaches of %s fail busy (held through %s) until cleared", k, h)
	return true
}

// clearPermanent ends an injected permanent failure, and the change that
// ended it is announced: a permanent failure waits for one.
func (m *model) clearPermanent() bool {
	w := m.w
	w.mu.Lock()
	var ks []reconcile.DeviceKey
	for k := range w.permAtt {
		ks = append(ks, k)
	}
	if len(ks) == 0 {
		w.mu.Unlock()
		return false
	}
	slices.SortFunc(ks, func(a, b reconcile.DeviceKey) int { return a.Bus*1000 + a.Dev - b.Bus*1000 - b.Dev })
	k := pick(m.r, ks)
	h := w.permAtt[k]
	delete(w.permAtt, k)
	w.mu.Unlock()
	m.reliably(func() { m.c.DomainChanged(h) })
	m.logf("%s lets go of %s; event for %s", h, k, h)
	return true
}

func (m *model) ambiguousAttach() bool {
	k, ok := m.someKey()
	if !ok {
		return false
	}
	m.w.mu.Lock()
	m.w.ambigAtt[k]++
	m.w.mu.Unlock()
	m.logf("the next attach of %s happens but reports a transient error", k)
	return true
}

func (m *model) failDetach() bool {
	w := m.w
	w.mu.Lock()
	var as []string
	for _, n := range mDomainNames {
		for _, h := range w.domains[n].hostdevs {
			if h.Owned() {
				as = append(as, h.Alias)
			}
		}
	}
	w.mu.Unlock()
	if len(as) == 0 {
		k, ok := m.someKey()
		if !ok {
			return false
		}
		as = append(as, k.Alias())
	}
	a := pick(m.r, as)
	n := 1 + m.r.IntN(3)
	w.mu.Lock()
	w.failDet[a] += n
	w.mu.Unlock()
	m.logf("the next %d detaches of %s fail (transient)", n, a)
	return true
}

func (m *model) flakyRead() bool {
	n := pick(m.r, mDomainNames)
	k := 1 + m.r.IntN(3)
	m.w.mu.Lock()
	m.w.flaky[n] += k
	m.w.mu.Unlock()
	m.logf("the next %d reads of %s fail (transient)", k, n)
	return true
}

// drop: libvirtd goes away; every call fails until reconnect. Sometimes an
// event arrived just before, and the loop has not read the domain yet.
func (m *model) drop() bool {
	m.w.mu.Lock()
	down := m.w.down
	m.w.mu.Unlock()
	if down {
		return false
	}
	s := ""
	if m.r.IntN(2) == 0 {
		n := pick(m.r, mDomainNames)
		m.reliably(func() { m.c.DomainChanged(n) })
		s = "; just before, an event for " + n
	}
	m.w.mu.Lock()
	m.w.down = true
	m.w.mu.Unlock()
	if m.r.IntN(10) < 7 {
		m.reliably(func() { m.c.HypervisorDisconnected(errOffline) })
	} else {
		s += "; the loop is not told"
	}
	m.logf("libvirt connection drops%s", s)
	return true
}

func (m *model) reconnect() bool {
	m.w.mu.Lock()
	down := m.w.down
	m.w.down = false
	m.w.mu.Unlock()
	if !down {
		return false
	}
	m.reliably(m.c.HypervisorConnected)
	m.logf("libvirt reconnects")
	return true
}

func (m *model) reload() bool {
	m.rules = randRules(m.r)
	rs := m.rules
	m.reliably(func() { m.c.SetRules(rs, ConfigStatus{Files: []string{"model.hcl"}}) })
	m.logf("reload:%s", describeRules(rs))
	return true
}

// spurious: an event that says nothing new (a duplicate, or a domain that
// does not exist).
func (m *model) spurious() bool {
	if occ := m.occupied(); len(occ) > 0 && m.r.IntN(2) == 0 {
		d := m.w.devices[pick(m.r, occ)]
		m.reliably(func() { m.c.DeviceAdded(d) })
		m.logf("duplicate add event for %s", d.Key())
		return true
	}
	n := pick(m.r, append(slices.Clone(mDomainNames), "old-vm"))
	m.w.mu.Lock()
	down := m.w.down
	m.w.mu.Unlock()
	if down {
		return false
	}
	m.reliably(func() { m.c.DomainChanged(n) })
	m.logf("spurious event for %s", n)
	return true
}

func (m *model) devicesLost() bool {
	m.reliably(m.c.DevicesLost)
	m.logf("udev monitor overflow: devices lost")
	return true
}

func (m *model) pauseTest() bool {
	d := time.Duration(m.r.IntN(4000)) * time.Microsecond
	time.Sleep(d)
	m.logf("wait %v", d)
	return true
}

// finish stops every fault and announces what ended a permanent one. Lost
// events are not sent again: the periodic resync must repair them.
func (m *model) finish() {
	w := m.w
	w.mu.Lock()
	down := w.down
	w.down = false
	var holders []string
	for _, h := range w.permAtt {
		holders = append(holders, h)
	}
	sort.Strings(holders)
	w.failAtt = map[reconcile.DeviceKey]int{}
	w.ambigAtt = map[reconcile.DeviceKey]int{}
	w.permAtt = map[reconcile.DeviceKey]string{}
	w.failDet = map[string]int{}
	w.flaky = map[string]int{}
	w.slowDet = map[string]bool{}
	late := len(w.detaching) > 0
	var doms []string
	for _, k := range w.detaching {
		doms = append(doms, k.domain)
	}
	w.finishDetachesLocked() // their events go reliably below
	w.mu.Unlock()
	sort.Strings(doms)
	for _, n := range slices.Compact(doms) {
		m.reliably(func() { m.c.DomainDevicesChanged(n) })
	}
	if late {
		m.logf("end: QEMU finishes the detaches")
	}
	if down {
		m.reliably(m.c.HypervisorConnected)
	}
	for _, h := range slices.Compact(holders) {
		m.reliably(func() { m.c.DomainChanged(h) })
	}
	m.logf("end: faults stop (reconnect %v, events for %v)", down, slices.Compact(holders))
}

// runModel runs one sequence and returns what went wrong ("" for nothing)
// and the steps.
func runModel(seed uint64) (string, []string) {
	r := rand.New(rand.NewPCG(seed, 0x6d6f64656c))
	lossP := pick(r, []float64{0, 0.1, 0.3, 0.6})
	m := &model{r: r, w: newModelWorld(seed, lossP)}
	m.setup()
	var logBuf bytes.Buffer
	var log *slog.Logger // nil: discarded
	if *modelLog {
		log = slog.New(slog.NewTextHandler(&logBuf, nil))
	}
	m.c = New(Options{Log: log, Hypervisor: m.w, Devices: m.w, Resync: mResync,
		BackoffMin: mBackoffMin, BackoffMax: mBackoffMax, Now: m.w.now}, m.rules, ConfigStatus{Files: []string{"model.hcl"}})
	m.w.ctl = m.c
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	begin := time.Now()
	go func() { done <- m.c.Run(ctx) }()
	m.reliably(m.c.HypervisorConnected)

	n := 5 + r.IntN(21)
	for range n {
		m.step()
		if r.IntN(2) == 0 {
			runtime.Gosched()
		}
	}
	m.finish()
	end := time.Now()

	// Wait until the world is what Plan wants and the loop is quiet: two
	// resyncs (each re-lists everything, and retries what is due) began
	// after the faults stopped and after the last call's longest backoff,
	// and made no call. Counted in resyncs, not in wall time: on a busy
	// machine the loop's timers may fire late.
	deadline := end.Add(mSettle)
	var converged bool
	for time.Now().Before(deadline) {
		time.Sleep(2 * time.Millisecond)
		m.w.mu.Lock()
		since := m.w.lastCall.Add(mBackoffMax * 11 / 10)
		if since.Before(end) {
			since = end
		}
		// A resync lists devices and domains concurrently, in either
		// order: it began after since only if both lists did.
		after := func(ts []time.Time) int {
			n := 0
			for _, t := range ts {
				if !t.Before(since) {
					n++
				}
			}
			return n
		}
		resyncs := min(after(m.w.devLists), after(m.w.domLists))
		m.w.mu.Unlock()
		if resyncs < 2 {
			continue
		}
		if len(reconcile.Plan(m.rules, m.w.observed(), nil).Actions) == 0 {
			converged = true
			break
		}
	}
	cancel()
	<-done
	msg := m.check(converged, begin)
	if msg != "" && *modelLog {
		msg += "\nlog:\n" + logBuf.String()
	}
	return msg, m.steps
}

// attachedBetween reports whether a call tried to attach alias to domain
// between a and b: one that reported a failure may have happened.
func attachedBetween(calls []mCall, domain, alias string, a, b time.Time) bool {
	for _, c := range calls {
		if c.kind == reconcile.Attach && c.domain == domain && c.alias == alias && c.real.After(a) && c.real.Before(b) {
			return true
		}
	}
	return false
}

// check verifies the end state and the history of calls.
func (m *model) check(converged bool, begin time.Time) string {
	w := m.w
	var errs []string
	fail := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }

	obs := w.observed()
	res := reconcile.Plan(m.rules, obs, nil)
	if !converged || len(res.Actions) > 0 {
		fail("not converged after %v: Plan of the final world still wants %v", mSettle, res.Actions)
	}
	// Our hostdevs on each running domain are exactly what Plan places.
	want := map[string][]string{}
	for _, p := range res.Placements {
		if p.Domain != "" {
			want[p.Domain] = append(want[p.Domain], p.Device.Key().Alias())
		}
	}
	held := map[reconcile.DeviceKey]string{}
	for _, d := range obs.Domains {
		if !d.State.Active() {
			if len(d.Hostdevs) > 0 {
				fail("stopped domain %s has hostdevs %v", d.Name, d.Hostdevs)
			}
			continue
		}
		var ours []string
		for _, h := range d.Hostdevs {
			if h.Owned() {
				ours = append(ours, h.Alias)
			}
			if k, ok := h.Key(); ok {
				if o, dup := held[k]; dup {
					fail("device %s is on two hostdevs: %s and %s/%s", k, o, d.Name, h.Alias)
				}
				held[k] = d.Name + "/" + h.Alias
			}
		}
		sort.Strings(ours)
		sort.Strings(want[d.Name])
		if !slices.Equal(ours, want[d.Name]) {
			fail("%s has our hostdevs %v, Plan places %v", d.Name, ours, want[d.Name])
		}
	}
	if d := w.domains["lab"]; d.state.Active() && !slices.Contains(d.hostdevs, personHostdev) {
		fail("lab lost the person's hostdev %s", personHostdev.Alias)
	}

	// The loop sees the world as it is, and has nothing left to do.
	st := m.c.Status()
	if converged && len(st.Pending) > 0 {
		fail("status still has pending actions %+v", st.Pending)
	}
	seen, _ := m.c.pub.world()
	if converged && !sameWorld(seen, obs) {
		fail("the loop's view differs from the world:\n  loop  %v\n  world %v", worldString(seen), worldString(obs))
	}

	w.mu.Lock()
	defer w.mu.Unlock()
	errs = append(errs, w.violations...)

	// No hot loop. Between two calls of one action, the first of which
	// failed, either something happened that may rightly end the wait (an
	// event, a re-list, a domain found gone: w.resets), or the second
	// waited at least the backoff owed (for a retryable error; a
	// permanent one waits for a change).
	type actKey struct {
		kind   reconcile.ActionKind
		domain string
		key    reconcile.DeviceKey
	}
	byAct := map[actKey][]mCall{}
	var order []actKey
	for _, c := range w.calls {
		k := actKey{c.kind, c.domain, c.key}
		if _, ok := byAct[k]; !ok {
			order = append(order, k)
		}
		byAct[k] = append(byAct[k], c)
	}
	resetBetween := func(a, b time.Time) bool {
		for _, r := range w.resets {
			if !r.to.Before(a) && !r.from.After(b) {
				return true
			}
		}
		return false
	}
	const maxReports = 3
	reports := 0
	for _, k := range order {
		cs := byAct[k]
		okCount := 0
		streak := 0 // failures in a row since the last reset, as far as we can tell
		for i, c := range cs {
			if c.outcome == mOK {
				okCount++
			}
			if i > 0 {
				prev := cs[i-1]
				// An event is taken at the start of a sync, and the
				// previous call was in an earlier sync than this one:
				// look back to the call before.
				lo := begin
				if i >= 2 {
					lo = cs[i-2].real
				}
				reset := resetBetween(lo, c.real)
				if prev.outcome != mOK && !reset && reports < maxReports {
					switch prev.outcome {
					case mWait:
						reports++
						fail("hot loop: %s %s %s retried %v after a permanent error (%s) with nothing changed", k.kind, k.domain, k.key, c.at.Sub(prev.at), prev.err)
					case mRetry:
						owed := mBackoffMax
						if streak < 10 {
							owed = min(mBackoffMin<<(streak-1), mBackoffMax)
						}
						if gap := c.at.Sub(prev.at); gap < owed*89/100 {
							reports++
							fail("hot loop: %s %s %s retried %v after failure %d in a row (%s); backoff owed ≥ %v", k.kind, k.domain, k.key, gap, streak, prev.err, owed*9/10)
						}
					}
				}
				if reset || prev.outcome == mOK {
					streak = 0
				}
			}
			if c.outcome == mOK {
				streak = 0
			} else {
				streak++
			}
		}
		// A success puts the hostdev there; another success needs it to
		// have gone, which takes a step.
		if k.kind == reconcile.Attach && okCount > 1+m.nstep {
			fail("%d successful attaches of %s to %s in %d steps", okCount, k.key, k.domain, m.nstep)
		}
		// A detach libvirt accepted is not asked again before an attach
		// of that device to that domain: the hostdev is on its way out
		// (issue 13 item 7 saw 155 detaches for 87 attaches).
		if k.kind == reconcile.Detach {
			for i := 1; i < len(cs); i++ {
				if cs[i].outcome == mOK && cs[i-1].outcome == mOK && cs[i].alias == cs[i-1].alias && !attachedBetween(w.calls, k.domain, cs[i].alias, cs[i-1].real, cs[i].real) && reports < maxReports {
					reports++
					fail("detach %s from %s asked twice with no attach between", cs[i].alias, k.domain)
				}
			}
		}
	}
	if len(errs) > 0 {
		errs = append(errs, "calls (ms since start by the loop's clock; * an event, a re-list or a domain found gone):")
		rs := slices.Clone(w.resets)
		sort.Slice(rs, func(i, j int) bool { return rs[i].from.Before(rs[j].from) })
		ri := 0
		for _, c := range w.calls {
			for ri < len(rs) && rs[ri].from.Before(c.real) {
				errs = append(errs, fmt.Sprintf("  %8.3f * (until %.3f)", float64(rs[ri].from.Sub(begin))/1e6, float64(rs[ri].to.Sub(begin))/1e6))
				ri++
			}
			errs = append(errs, fmt.Sprintf("  %8.3f %s %s %s: %s", float64(c.at.Sub(begin))/1e6, c.kind, c.domain, c.alias, c.err))
		}
	}
	return strings.Join(errs, "\n")
}

func worldString(o reconcile.Observed) string {
	var b strings.Builder
	var keys []string
	for _, d := range o.Devices {
		keys = append(keys, d.Key().String())
	}
	sort.Strings(keys)
	fmt.Fprintf(&b, "devices %v;", keys)
	for _, d := range o.Domains {
		hs := slices.Clone(d.Hostdevs)
		sort.Slice(hs, func(i, j int) bool { return hs[i].Alias < hs[j].Alias })
		fmt.Fprintf(&b, " %s=%s%v", d.Name, d.State, hs)
	}
	return b.String()
}

func sameWorld(a, b reconcile.Observed) bool { return worldString(a) == worldString(b) }

func formatFailure(seed uint64, msg string, steps []string) string {
	return fmt.Sprintf("model sequence seed %d failed:\n%s\nsteps:\n  %s\nreplay: go test ./controller -run TestModel -model.seed=%d -v",
		seed, msg, strings.Join(steps, "\n  "), seed)
}

func TestModel(t *testing.T) {
	if *modelSeed != 0 && *modelRepeat <= 1 {
		msg, steps := runModel(*modelSeed)
		t.Logf("seed %d steps:\n  %s", *modelSeed, strings.Join(steps, "\n  "))
		if msg != "" {
			t.Fatal(formatFailure(*modelSeed, msg, steps))
		}
		return
	}
	n := *modelN
	if *modelSeed != 0 {
		// The same sequence, many times at once: timing-dependent
		// failures show under load.
		n = *modelRepeat
	}
	if testing.Short() {
		n = min(n, 200)
	}
	base := rand.Uint64()>>1 + 1
	start := time.Now()
	var (
		next    atomic.Int64
		failed  atomic.Bool
		mu      sync.Mutex
		reports []string
		ran     atomic.Int64
		wg      sync.WaitGroup
	)
	for range mWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !failed.Load() {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				seed := base + uint64(i)
				if *modelSeed != 0 {
					seed = *modelSeed
				}
				msg, steps := runModel(seed)
				ran.Add(1)
				if msg != "" {
					failed.Store(true)
					mu.Lock()
					reports = append(reports, formatFailure(seed, msg, steps))
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("%d model sequences (seeds %d…) in %v", ran.Load(), base, time.Since(start).Round(time.Millisecond))
	for _, r := range reports {
		t.Error(r)
	}
}
