//go:build umockdev

// Command bench measures usbctld on the sandbox (issue "Performance"): a
// real libvirtd, small TCG guests and fake USB devices (internal/sandbox),
// and the real usbctld binary. make bench runs it through
// scripts/umockdev-exec (scripts/bench.sh) after the go test benchmarks,
// whose output it folds into its one table.
//
// It measures, in one run:
//
//   - plug-to-attach latency, one guest running, three ways interleaved
//     round-robin per plug so that load falls on all three alike, each plug
//     a fresh device number, unplug and detach awaited between plugs; every
//     time runs from just before sandbox.Plug to libvirt's device-added
//     event, seen by a connection of this process of its own:
//     (a) usbctld attaches it (a device its config wants);
//     (b) the floor: this process calls AttachDeviceFlags on a connection
//     it holds open, as soon as Plug returns (no udev delivery at all);
//     (c) the old way: a new `virsh attach-device --live` process per add.
//     usbctld runs throughout; (b) and (c) use devices with an id no rule
//     wants, and an alias that is not usbctl's (ua-bench-BBB-DDD), so
//     usbctld leaves them alone;
//   - idle cost of usbctld: rules for 10 domains, those 10 running, 50 fake
//     devices present and none attached, no events: CPU seconds, context
//     switches and RSS over the window;
//   - start-up: process start to "ready: first sync complete" with 0 and 50
//     domains defined, with a breakdown and the costs it is made of.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"libvirt.org/go/libvirt"

	"github.com/usbctl/usbctl/internal/sandbox"
	"github.com/usbctl/usbctl/internal/stats"
	"github.com/usbctl/usbctl/internal/umockdev"
	"github.com/usbctl/usbctl/reconcile"
	"github.com/usbctl/usbctl/udevsrc"
	"github.com/usbctl/usbctl/virt"
)

type options struct {
	bin     string
	plugs   int
	idle    time.Duration
	starts  int
	domains int
	running int
	devices int
	settle  time.Duration
	gobench string
	smoke   bool
	verbose bool
	logs    string
}

func main() {
	var o options
	flag.StringVar(&o.bin, "bin", "bin", "directory with the usbctld binary (go build -o bin/ ./cmd/...)")
	flag.IntVar(&o.plugs, "plugs", 100, "plugs per mode (a, b, c), interleaved; at most 200")
	flag.DurationVar(&o.idle, "idle", 60*time.Second, "idle window")
	flag.IntVar(&o.starts, "starts", 5, "start-ups per condition")
	flag.IntVar(&o.domains, "domains", 50, "domains defined for the start-up measurement")
	flag.IntVar(&o.running, "running", 10, "domains with rules, all running during the idle window")
	flag.IntVar(&o.devices, "devices", 50, "fake devices present (no rule wants them), bus 2")
	flag.DurationVar(&o.settle, "settle", 300*time.Millisecond, "pause after each detach, so usbctld and QEMU are quiet before the next plug")
	flag.StringVar(&o.gobench, "gobench", "", "output of go test -bench to include in the table")
	flag.BoolVar(&o.smoke, "smoke", false, "check that everything works, quickly: 3 plugs per mode, 5 s idle, 1 start-up each")
	flag.BoolVar(&o.verbose, "v", false, "print every plug")
	flag.StringVar(&o.logs, "logs", "", "copy the logs of every usbctld and of libvirtd into this directory at the end")
	flag.Parse()
	if o.smoke {
		set := map[string]bool{}
		flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
		if !set["plugs"] {
			o.plugs = 3
		}
		if !set["idle"] {
			o.idle = 5 * time.Second
		}
		if !set["starts"] {
			o.starts = 1
		}
		if !set["settle"] {
			o.settle = 200 * time.Millisecond
		}
	}
	if o.plugs < 1 || o.plugs > 200 {
		fatalf("-plugs must be 1..200")
	}
	if o.running < 1 || o.running > o.domains {
		fatalf("-running must be 1..-domains")
	}
	if o.devices < 0 || o.devices > 126 {
		fatalf("-devices must be 0..126")
	}
	t := &table{}
	err := run(o, t)
	if o.gobench != "" {
		if gerr := addGoBench(t, o.gobench); gerr != nil && err == nil {
			err = gerr
		}
	}
	t.print(os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func fatalf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", a...)
	os.Exit(2)
}

var begin = time.Now()

func logf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "bench: %5.1fs "+format+"\n", append([]any{time.Since(begin).Seconds()}, a...)...)
}

// bench is one run: the sandbox, the event watcher, the work directory.
type bench struct {
	o       options
	ctx     context.Context
	sb      *sandbox.Sandbox
	dir     string
	usbctld string
	cfg     string
	w       *watcher
	starts  int // usbctld processes started, for file names
}

func run(o options, t *table) error {
	if os.Getenv("LD_PRELOAD") == "" || os.Geteuid() != 0 {
		return errors.New("run me as root through scripts/umockdev-exec (make bench does)")
	}
	bin, _ := filepath.Abs(o.bin)
	b := &bench{o: o, usbctld: filepath.Join(bin, "usbctld")}
	if _, err := os.Stat(b.usbctld); err != nil {
		return fmt.Errorf("%s: %w (go build -o bin/ ./cmd/...)", b.usbctld, err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	b.ctx = ctx
	dir, err := os.MkdirTemp("", "usbctl-bench-")
	if err != nil {
		return err
	}
	b.dir = dir
	// The work directory is on umockdev-exec's tmpfs, which goes when the
	// run ends: -logs copies what is worth keeping first (after sb.Close,
	// deferred below, so libvirtd's log is complete).
	defer os.RemoveAll(dir)
	if o.logs != "" {
		defer copyLogs(dir, o.logs)
	}
	sbLog, err := os.Create(filepath.Join(dir, "sandbox.log"))
	if err != nil {
		return err
	}
	defer sbLog.Close()

	t0 := time.Now()
	logf("starting the sandbox")
	sb, err := sandbox.Start(ctx, sandbox.Options{Dir: filepath.Join(dir, "sandbox"), Log: sbLog})
	if err != nil {
		return err
	}
	b.sb = sb
	defer sb.Close()
	if b.w, err = newWatcher(ctx, sb.URI()); err != nil {
		return err
	}
	defer b.w.conn.Close()
	b.cfg = filepath.Join(dir, "usbctl.hcl")
	if err := os.WriteFile(b.cfg, []byte(rulesConfig(o.running)), 0o644); err != nil {
		return err
	}

	// Whatever was measured goes into the table, even if a later phase
	// fails.
	var (
		lat           *latencies
		idle          *idleResult
		s0, s50, s50r *startupSet
		costs         *startupCosts
	)
	defer func() {
		if lat != nil {
			lat.addRows(t)
		}
		if idle != nil {
			idle.addRows(t, o)
		}
		var sets []any
		for _, s := range []*startupSet{s0, s50, s50r} {
			if s != nil {
				sets = append(sets, s)
			}
		}
		if costs != nil {
			sets = append(sets, costs)
		}
		if len(sets) > 0 {
			addStartupRows(t, o, sets...)
		}
		t.note("sandbox run: %v in all", time.Since(t0).Round(time.Second))
	}()

	// The devices no rule wants, present for every measurement below.
	if err := b.plugIdleDevices(); err != nil {
		return err
	}

	// Start-up with no domain defined.
	logf("start-up, 0 domains defined (%d×)", o.starts)
	s0, err = b.startups(0, 0)
	if err != nil {
		return err
	}
	for i := range o.domains {
		if err := sb.DefineGuest(vmName(i), sandbox.GuestOptions{}); err != nil {
			return err
		}
	}
	logf("start-up, %d domains defined, none running (%d×)", o.domains, o.starts)
	s50, err = b.startups(o.domains, 0)
	if err != nil {
		return err
	}

	// Plug-to-attach, one guest running.
	if err := sb.StartGuest(vmName(0)); err != nil {
		return err
	}
	logf("latency: %d plugs per mode, interleaved a, b, c", o.plugs)
	lat, err = b.latency()
	if err != nil {
		return err
	}

	// Idle, all ruled domains running.
	for i := 1; i < o.running; i++ {
		if err := sb.StartGuest(vmName(i)); err != nil {
			return err
		}
	}
	logf("idle: %v, %d domains running, %d devices present", o.idle, o.running, o.devices)
	idle, err = b.idleCost()
	if err != nil {
		return err
	}

	logf("start-up, %d domains defined, %d running (%d×)", o.domains, o.running, o.starts)
	s50r, err = b.startups(o.domains, o.running)
	if err != nil {
		return err
	}
	costs, err = b.startupCosts()
	return err
}

func copyLogs(dir, to string) {
	if err := os.MkdirAll(to, 0o755); err != nil {
		logf("logs: %v", err)
		return
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	files = append(files, filepath.Join(dir, "sandbox", "log", "libvirtd.log"))
	for _, f := range files {
		if b, err := os.ReadFile(f); err == nil {
			_ = os.WriteFile(filepath.Join(to, filepath.Base(f)), b, 0o644)
		}
	}
	logf("logs copied to %s", to)
}

func vmName(i int) string { return fmt.Sprintf("vm%02d", i) }

// Device ids: (a) devices are wanted by vm00; (b) and (c) devices and the
// idle devices by nobody.
const (
	wantedVendor, wantedProduct = "046d", "c52b"
	floorVendor, floorProduct   = "1209", "0001"
	idleVendor, idleProduct     = "1209", "0002"
)

// rulesConfig is n domains' worth of rules: every kind of criterion, none
// of which matches the devices of (b), (c) or the idle set.
func rulesConfig(n int) string {
	var s strings.Builder
	s.WriteString("# usbctl bench: rules of " + strconv.Itoa(n) + " domains.\n")
	for i := range n {
		fmt.Fprintf(&s, "domain %q {\n  priority = %d\n", vmName(i), 10-i%3)
		if i == 0 {
			fmt.Fprintf(&s, "  device \"receiver\" { ids = [\"%s:%s\"] }\n", wantedVendor, wantedProduct)
		}
		fmt.Fprintf(&s, "  device \"dfu\"      { ids = [\"0483:57%02d\", \"0483:df%02d\"] }\n", i, i)
		fmt.Fprintf(&s, "  device \"asus\"     { ids = [\"0b05:*\"] }\n")
		fmt.Fprintf(&s, "  device \"key\"      { serial = \"BENCH-%02d\" }\n", i)
		fmt.Fprintf(&s, "  device \"desk-hub\" { port = \"3-%d.*\" }\n", i+1)
		fmt.Fprintf(&s, "  device \"webcams\"  { class = \"video\" }\n")
		s.WriteString("}\n\n")
	}
	s.WriteString("exclude \"host-keyboard\" {\n  ids = [\"04d9:0006\"]\n}\n")
	return s.String()
}

func (b *bench) plugIdleDevices() error {
	if b.o.devices == 0 {
		return nil
	}
	if err := b.sb.Plug(umockdev.RootHub(2)); err != nil {
		return err
	}
	for i := range b.o.devices {
		d := umockdev.USBDevice{Bus: 2, Dev: 2 + i, Port: fmt.Sprintf("2-%d", 1+i),
			Vendor: idleVendor, Product: idleProduct, Serial: fmt.Sprintf("IDLE%03d", i),
			Manufacturer: "usbctl bench", ProductName: "Idle device", Interfaces: []string{"ff0000"}}
		if err := b.sb.Plug(d); err != nil {
			return err
		}
	}
	return nil
}

// ---------------------------------------------------------------------------
// libvirt events, as an independent client sees them.

type timedEvent struct {
	at time.Time
	ev virt.Event
}

type watcher struct {
	conn    *virt.Conn
	ch      chan timedEvent
	total   atomic.Int64
	dropped atomic.Int64
}

func newWatcher(ctx context.Context, uri string) (*watcher, error) {
	w := &watcher{ch: make(chan timedEvent, 4096)}
	conn, err := virt.New(virt.Options{URI: uri, ReconnectMin: 50 * time.Millisecond, ReconnectMax: 500 * time.Millisecond})
	if err != nil {
		return nil, err
	}
	w.conn = conn
	conn.Start(ctx, func(ev virt.Event) {
		at := time.Now()
		w.total.Add(1)
		select {
		case w.ch <- timedEvent{at, ev}:
		default:
			w.dropped.Add(1)
		}
	})
	if _, err := w.wait(ctx, 30*time.Second, func(ev virt.Event) bool { return ev.Kind == virt.EventConnected }); err != nil {
		conn.Close()
		return nil, fmt.Errorf("event watcher: %w", err)
	}
	return w, nil
}

// drain drops the events received so far.
func (w *watcher) drain() {
	for {
		select {
		case <-w.ch:
		default:
			return
		}
	}
}

// wait returns the arrival time of the first event that satisfies f,
// dropping the others.
func (w *watcher) wait(ctx context.Context, timeout time.Duration, f func(virt.Event) bool) (time.Time, error) {
	tm := time.NewTimer(timeout)
	defer tm.Stop()
	for {
		select {
		case te := <-w.ch:
			if f(te.ev) {
				return te.at, nil
			}
		case <-tm.C:
			return time.Time{}, fmt.Errorf("no such event within %v", timeout)
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		}
	}
}

func deviceEvent(kind virt.EventKind, dom, alias string) func(virt.Event) bool {
	return func(ev virt.Event) bool { return ev.Kind == kind && ev.Domain == dom && ev.Alias == alias }
}

// ---------------------------------------------------------------------------
// usbctld processes.

func (b *bench) startDaemon() (*sandbox.Usbctld, error) { return b.startDaemonEnv(true) }

// startDaemonEnv starts usbctld; without the preload it sees no fake
// devices (and this machine has no USB of its own).
func (b *bench) startDaemonEnv(preload bool) (*sandbox.Usbctld, error) {
	b.starts++
	return b.sb.StartUsbctld(sandbox.UsbctldOptions{Bin: b.usbctld, Dir: b.dir, NoDevices: !preload,
		Socket: filepath.Join(b.dir, fmt.Sprintf("usbctl-%d.sock", b.starts)),
		Log:    filepath.Join(b.dir, fmt.Sprintf("usbctld-%d.log", b.starts)),
		Args:   []string{"--config", b.cfg}})
}

// diagnose is what a failure report needs: usbctld's status, then its log
// with the stacks of every goroutine (SIGQUIT makes it print them and
// exit).
func diagnose(ctx context.Context, d *sandbox.Usbctld) string {
	var s strings.Builder
	sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	st, err := d.Client().Status(sctx)
	cancel()
	if err != nil {
		fmt.Fprintf(&s, "usbctld status: %v\n", err)
	} else {
		j, _ := json.MarshalIndent(struct {
			Syncs   uint64
			Last    time.Time
			Pending any
			Domains any
		}{st.Syncs, st.LastSync, st.Pending, st.Domains}, "", "  ")
		fmt.Fprintf(&s, "usbctld status (now %s): %s\n", time.Now().Format(time.RFC3339Nano), j)
	}
	_ = d.Cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-d.Exited():
	case <-time.After(5 * time.Second):
	}
	fmt.Fprintf(&s, "usbctld log (ends with its goroutines, SIGQUIT):\n%s", d.LogText())
	return s.String()
}

// ---------------------------------------------------------------------------
// (a), (b), (c): plug to device-added.

type mode struct {
	key, name string
	vendor    string
	product   string
}

var modes = []mode{
	{"a", "usbctld", wantedVendor, wantedProduct},
	{"b", "floor: AttachDeviceFlags on an open connection", floorVendor, floorProduct},
	{"c", "old way: virsh attach-device per add", floorVendor, floorProduct},
}

type latencies struct {
	by    map[string][]time.Duration // from the add (uevent sent)
	from0 map[string][]time.Duration // from before sandbox.Plug
	plug  []time.Duration            // sandbox.Plug alone, every mode
	run   map[string][]time.Duration // usbctld CPU in the plug window
	wait  map[string][]time.Duration // usbctld run-queue wait in the window
	plugs int
	extra []string // notes
}

func (b *bench) latency() (*latencies, error) {
	ctx := b.ctx
	dom := vmName(0)
	d, err := b.startDaemon()
	if err != nil {
		return nil, err
	}
	defer d.Stop(syscall.SIGTERM)
	if err := d.WaitReady(ctx, 30*time.Second); err != nil {
		return nil, err
	}
	// (b)'s connection: opened and the domain looked up once, before.
	conn, err := libvirt.NewConnect(b.sb.URI())
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ldom, err := conn.LookupDomainByName(dom)
	if err != nil {
		return nil, err
	}
	defer ldom.Free()

	res := &latencies{by: map[string][]time.Duration{}, from0: map[string][]time.Duration{}, run: map[string][]time.Duration{},
		wait: map[string][]time.Duration{}, plugs: b.o.plugs}
	load0 := loadAvg()
	defer func() {
		res.extra = append(res.extra, fmt.Sprintf("load average (1 min) at the start and end of the plug series: %s, %s (2 cores)", load0, loadAvg()))
	}()
	pid := d.Cmd.Process.Pid
	n := 0
	for i := range b.o.plugs {
		for _, m := range modes {
			// Device numbers 2..127 of bus 1, reused after 126 plugs
			// as the kernel does: each device is gone (unplugged,
			// its hostdev removed) before the next plug.
			num := 2 + n%126
			n++
			dev := umockdev.USBDevice{Bus: 1, Dev: num, Port: fmt.Sprintf("1-%d", num),
				Vendor: m.vendor, Product: m.product, Manufacturer: "usbctl bench",
				ProductName: "Device " + m.key, Interfaces: []string{"030101"}}
			p, err := b.plugOnce(ctx, m, dev, dom, ldom, pid)
			if err != nil {
				return nil, fmt.Errorf("plug %d, mode (%s): %w\n%s", i+1, m.key, err, diagnose(ctx, d))
			}
			if b.o.verbose {
				logf("  plug %2d (%s) %s: %v (usbctld on CPU %v, waiting for CPU %v)", i+1, m.key, dev.DevNode(),
					p.lat.Round(10*time.Microsecond), p.run.Round(time.Microsecond), p.wait.Round(time.Microsecond))
			}
			res.by[m.key] = append(res.by[m.key], p.lat)
			res.from0[m.key] = append(res.from0[m.key], p.lat0)
			res.run[m.key] = append(res.run[m.key], p.run)
			res.plug = append(res.plug, p.plug)
			res.wait[m.key] = append(res.wait[m.key], p.wait)
		}
	}
	// usbctld must have placed only its own devices, and be healthy.
	st, err := d.Client().Status(ctx)
	if err != nil {
		return nil, err
	}
	if len(st.Pending) > 0 {
		res.extra = append(res.extra, fmt.Sprintf("usbctld ended the latency run with %d pending actions", len(st.Pending)))
	}
	// One attach per (a) plug, none of (b)'s or (c)'s devices.
	if n := strings.Count(d.LogText(), "msg=attach "); n != b.o.plugs {
		res.extra = append(res.extra, fmt.Sprintf("usbctld logged %d attaches for %d plugs of (a)", n, b.o.plugs))
	}
	if n := b.w.dropped.Load(); n > 0 {
		return nil, fmt.Errorf("event watcher dropped %d events", n)
	}
	return res, nil
}

// loadAvg is the 1-minute load average: other work on the machine slows
// the two-hop path (a) more than (b), so the table says how busy it was.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}

func benchAlias(k reconcile.DeviceKey) string {
	return strings.Replace(k.Alias(), reconcile.AliasPrefix, "ua-bench-", 1)
}

type plugSample struct {
	lat       time.Duration // the add (uevent sent) to device-added
	lat0      time.Duration // from before sandbox.Plug to device-added
	plug      time.Duration // sandbox.Plug itself
	run, wait time.Duration // usbctld on CPU, and runnable but waiting, meanwhile
}

// plugOnce plugs dev, has it attached the way m says, and returns the time
// from the add to the device-added event (and from just before the plug),
// with what usbctld
// (pid) did meanwhile by its threads' schedstat (read outside the timed
// span); then it unplugs the device and waits until the hostdev is gone.
func (b *bench) plugOnce(ctx context.Context, m mode, dev umockdev.USBDevice, dom string, ldom *libvirt.Domain, pid int) (plugSample, error) {
	var p plugSample
	key := reconcile.DeviceKey{Bus: dev.Bus, Dev: dev.Dev}
	alias := key.Alias()
	doc, err := virt.HostdevXML(key)
	if err != nil {
		return p, err
	}
	if m.key != "a" {
		// The same XML usbctld sends, with an alias usbctld does not
		// own, so it never touches these.
		alias = benchAlias(key)
		doc = strings.Replace(doc, key.Alias(), alias, 1)
	}
	xmlFile := filepath.Join(b.dir, "hostdev.xml")
	if m.key == "c" {
		if err := os.WriteFile(xmlFile, []byte(doc), 0o644); err != nil {
			return p, err
		}
	}
	b.w.drain()

	before, err := sampleProc(pid)
	if err != nil {
		return p, err
	}
	t0 := time.Now()
	if err := b.sb.Plug(dev); err != nil {
		return p, err
	}
	// umockdev sends the add uevent last, after creating the fake sysfs
	// files (what the kernel does before its uevent on a real host):
	// Plug's return is the add, within microseconds, and before usbctld
	// has it (its receive comes ~80 µs later, measured with a trace).
	added := time.Now()
	p.plug = added.Sub(t0)
	switch m.key {
	case "b":
		if err := ldom.AttachDeviceFlags(doc, libvirt.DOMAIN_DEVICE_MODIFY_LIVE); err != nil {
			return p, fmt.Errorf("attach: %w", err)
		}
	case "c":
		cmd := exec.Command("virsh", "-q", "-c", b.sb.URI(), "attach-device", dom, xmlFile, "--live")
		cmd.Env = sandbox.CleanEnv()
		if out, err := cmd.CombinedOutput(); err != nil {
			return p, fmt.Errorf("virsh attach-device: %v: %s", err, out)
		}
	}
	at, err := b.w.wait(ctx, 20*time.Second, deviceEvent(virt.EventDeviceAdded, dom, alias))
	if err != nil {
		return p, fmt.Errorf("device-added %s: %w", alias, err)
	}
	p.lat, p.lat0 = at.Sub(added), at.Sub(t0)
	after, err := sampleProc(pid)
	if err != nil {
		return p, err
	}
	p.run, p.wait = time.Duration(after.runNS-before.runNS), time.Duration(after.waitNS-before.waitNS)

	// Unplug; usbctld detaches its own, this process the others.
	if err := b.sb.Unplug(dev); err != nil {
		return p, err
	}
	if m.key != "a" {
		if err := ldom.DetachDeviceAlias(alias, libvirt.DOMAIN_DEVICE_MODIFY_LIVE); err != nil {
			return p, fmt.Errorf("detach %s: %w", alias, err)
		}
	}
	if _, err := b.w.wait(ctx, 20*time.Second, deviceEvent(virt.EventDeviceRemoved, dom, alias)); err != nil {
		return p, fmt.Errorf("device-removed %s: %w", alias, err)
	}
	select {
	case <-time.After(b.o.settle):
	case <-ctx.Done():
		return p, ctx.Err()
	}
	return p, nil
}

func (l *latencies) addRows(t *table) {
	t.section("add (uevent sent) → device-added, 1 guest running (%d plugs each, interleaved a,b,c)", l.plugs)
	med := map[string]time.Duration{}
	for _, m := range modes {
		xs := slices.Clone(l.by[m.key])
		slices.Sort(xs)
		med[m.key] = stats.Percentile(xs, 0.50)
		t.row(fmt.Sprintf("(%s) %s: median", m.key, m.name), fmtDur(med[m.key]), "", "")
		t.row(fmt.Sprintf("(%s) p95", m.key), fmtDur(stats.Percentile(xs, 0.95)), "", "")
	}
	if med["b"] > 0 {
		r := float64(med["a"]) / float64(med["b"])
		t.row("(a)/(b) medians: usbctld over the floor", fmt.Sprintf("%.3f", r), "≤ 1.10", okIf(r <= 1.10))
		t.row("(a)−(b) medians: usbctld's own cost incl. udev", fmtDur(med["a"]-med["b"]), "", "")
	}
	if med["a"] > 0 {
		r := float64(med["c"]) / float64(med["a"])
		t.row("(c)/(a) medians: old way over usbctld", fmt.Sprintf("%.2f", r), "≥ 3", okIf(r >= 3))
	}
	if med["b"] > 0 {
		t.row("(c)/(b) medians: the most (c)/(a) can be here", fmt.Sprintf("%.2f", float64(med["c"])/float64(med["b"])), "", "")
	}
	plug := slices.Clone(l.plug)
	slices.Sort(plug)
	t.row("sandbox.Plug alone (umockdev creates the fake sysfs, then the uevent), median", fmtDur(stats.Percentile(plug, 0.5)), "", "")
	// The same plugs timed from before sandbox.Plug: umockdev's ~1 ms of
	// writing fake sysfs files, which on a real host the kernel does
	// before its uevent, is added to all three and pulls the ratios
	// towards 1. Shown so the choice of start is visible.
	m0 := map[string]time.Duration{}
	for _, m := range modes {
		xs := slices.Clone(l.from0[m.key])
		slices.Sort(xs)
		m0[m.key] = stats.Percentile(xs, 0.50)
	}
	t.row("timed from before sandbox.Plug instead: (a) / (b) / (c) medians", fmtDur(m0["a"])+" / "+fmtDur(m0["b"])+" / "+fmtDur(m0["c"]), "", "")
	if m0["b"] > 0 && m0["a"] > 0 {
		t.row("  (a)/(b), (c)/(a) timed so", fmt.Sprintf("%.3f, %.2f", float64(m0["a"])/float64(m0["b"]), float64(m0["c"])/float64(m0["a"])), "", "")
	}
	for _, m := range modes {
		run, wait := slices.Clone(l.run[m.key]), slices.Clone(l.wait[m.key])
		slices.Sort(run)
		slices.Sort(wait)
		t.row(fmt.Sprintf("(%s) usbctld on CPU / waiting for CPU in the window, medians", m.key),
			fmtDur(stats.Percentile(run, 0.5))+" / "+fmtDur(stats.Percentile(wait, 0.5)), "", "")
	}
	for _, e := range l.extra {
		t.note("%s", e)
	}
}

// ---------------------------------------------------------------------------
// Idle cost.

// procSample is what /proc says about a process at one moment.
type procSample struct {
	at        time.Time
	ticks     int64 // utime+stime of the whole process, clock ticks
	runNS     int64 // sum of the threads' schedstat run time
	waitNS    int64 // sum of the threads' schedstat run-queue wait
	vol, invo int64 // context switches, summed over threads
	mainVol   int64 // context switches of the main thread only
	mainInvo  int64
	threads   int
	rssKiB    int64
	anonKiB   int64
	fileKiB   int64
	pssKiB    int64
}

const clkTck = 100 // USER_HZ on Linux/amd64

func sampleProc(pid int) (procSample, error) {
	s := procSample{at: time.Now()}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, err
	}
	// Fields after the parenthesised comm: state is field 3; utime 14,
	// stime 15.
	rest := string(b)
	if i := strings.LastIndexByte(rest, ')'); i >= 0 {
		rest = rest[i+2:]
	}
	f := strings.Fields(rest)
	if len(f) < 13 {
		return s, fmt.Errorf("/proc/%d/stat: short", pid)
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	s.ticks = ut + st
	status := func(path string) (vol, invo, rss int64) {
		f, err := os.Open(path)
		if err != nil {
			return
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			k, v, ok := strings.Cut(sc.Text(), ":")
			if !ok {
				continue
			}
			n, _ := strconv.ParseInt(strings.Fields(v + " 0")[0], 10, 64)
			switch k {
			case "voluntary_ctxt_switches":
				vol = n
			case "nonvoluntary_ctxt_switches":
				invo = n
			case "VmRSS":
				rss = n
			}
		}
		return
	}
	s.mainVol, s.mainInvo, s.rssKiB = status(fmt.Sprintf("/proc/%d/status", pid))
	s.anonKiB, s.fileKiB = rssParts(pid)
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid)); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == "Pss:" {
				s.pssKiB, _ = strconv.ParseInt(f[1], 10, 64)
			}
		}
	}
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*", pid))
	s.threads = len(tasks)
	for _, t := range tasks {
		v, i, _ := status(t + "/status")
		s.vol += v
		s.invo += i
		if b, err := os.ReadFile(t + "/schedstat"); err == nil {
			if f := strings.Fields(string(b)); len(f) > 1 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				s.runNS += n
				n, _ = strconv.ParseInt(f[1], 10, 64)
				s.waitNS += n
			}
		}
	}
	return s, nil
}

// rssParts is RssAnon and RssFile of /proc/PID/status, in KiB.
func rssParts(pid int) (anon, file int64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return
	}
	for _, l := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(l, ":")
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, _ := strconv.ParseInt(f[0], 10, 64)
		switch k {
		case "RssAnon":
			anon = n
		case "RssFile":
			file = n
		}
	}
	return
}

type idleResult struct {
	window        time.Duration
	before, after procSample
	syncs         uint64
	events        int64
	running, devs int
	attached      int
	qemuTicks     int64
	qemuN         int
	plain         procSample // usbctld without the umockdev preload
	maps          string     // the largest mappings by RSS
	// Files mapped only because of the umockdev preload (mapped by the
	// daemon under it, not by the same daemon without it), and their
	// resident KiB in the daemon under it.
	preloadOnly    []string
	preloadOnlyKiB int64
}

// smapsRSS is the resident KiB of each mapping of pid, from
// /proc/PID/smaps, with its path ("" for anonymous memory, "[heap]" and
// the like for the kernel's named ones).
func smapsRSS(pid int) ([]mapping, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		return nil, err
	}
	var out []mapping
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		switch {
		case len(f) >= 5 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":"):
			m := mapping{}
			if len(f) >= 6 {
				m.path = f[5]
			}
			out = append(out, m)
		case len(out) > 0 && len(f) >= 2 && f[0] == "Rss:":
			v, _ := strconv.ParseInt(f[1], 10, 64)
			out[len(out)-1].rssKiB += v
		}
	}
	return out, nil
}

type mapping struct {
	path   string
	rssKiB int64
}

// fileMappings is the resident KiB of each file pid maps, by path.
func fileMappings(pid int) (map[string]int64, error) {
	ms, err := smapsRSS(pid)
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for _, m := range ms {
		if strings.HasPrefix(m.path, "/") {
			out[m.path] += m.rssKiB
		}
	}
	return out, nil
}

// topMappings lists the n largest mappings of pid by resident size, files
// by name and anonymous memory (heap, stacks) as one "[anon]".
func topMappings(pid, n int) string {
	ms, err := smapsRSS(pid)
	if err != nil {
		return ""
	}
	rss := map[string]int64{}
	for _, m := range ms {
		name := "[anon]"
		if strings.HasPrefix(m.path, "/") {
			name = filepath.Base(m.path)
		}
		rss[name] += m.rssKiB
	}
	type kv struct {
		k string
		v int64
	}
	var all []kv
	for k, v := range rss {
		all = append(all, kv{k, v})
	}
	slices.SortFunc(all, func(a, b kv) int { return int(b.v - a.v) })
	var out []string
	for i, x := range all {
		if i == n {
			break
		}
		out = append(out, fmt.Sprintf("%s %.1f", x.k, float64(x.v)/1024))
	}
	return strings.Join(out, ", ") + " MiB"
}

// quiet is how long a fresh usbctld is left alone before it is measured:
// its start-up work (first syncs, a GC) must be over.
func (b *bench) quiet() time.Duration {
	if b.o.smoke {
		return time.Second
	}
	return 3 * time.Second
}

// evictBinary drops usbctld's file pages from the page cache, so that it
// is read from disk as a daemon started at boot is. Just linked, its page
// cache is laid out as the linker wrote it, and the same binary then maps
// 0.3–1 MiB more (measured: 8.4–9.1 vs 8.1 MiB resident for the binary),
// varying from build to build.
func (b *bench) evictBinary() error {
	f, err := os.Open(b.usbctld)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.Fdatasync(int(f.Fd())); err != nil {
		return fmt.Errorf("evict %s: %w", b.usbctld, err)
	}
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		return fmt.Errorf("evict %s: %w", b.usbctld, err)
	}
	return nil
}

// startQuiet starts usbctld read from disk (evictBinary) and returns it
// once it is ready and its start-up work (the first syncs, a GC) is over.
func (b *bench) startQuiet(preload bool) (*sandbox.Usbctld, error) {
	if err := b.evictBinary(); err != nil {
		return nil, err
	}
	d, err := b.startDaemonEnv(preload)
	if err != nil {
		return nil, err
	}
	if err := d.WaitReady(b.ctx, 30*time.Second); err != nil {
		d.Stop(syscall.SIGTERM)
		return nil, err
	}
	select {
	case <-time.After(b.quiet()):
		return d, nil
	case <-b.ctx.Done():
		d.Stop(syscall.SIGTERM)
		return nil, b.ctx.Err()
	}
}

func (b *bench) idleCost() (*idleResult, error) {
	ctx := b.ctx
	d, err := b.startQuiet(true)
	if err != nil {
		return nil, err
	}
	defer d.Stop(syscall.SIGTERM)
	st0, err := d.Client().Status(ctx)
	if err != nil {
		return nil, err
	}
	r := &idleResult{window: b.o.idle, devs: len(st0.Unassigned)}
	for _, ds := range st0.Domains {
		if ds.State == reconcile.StateRunning {
			r.running++
		}
		r.attached += len(ds.Attached) + len(ds.Foreign)
	}
	if r.running != b.o.running || r.attached != 0 {
		return nil, fmt.Errorf("idle set-up: %d domains running (want %d), %d hostdevs attached (want 0)", r.running, b.o.running, r.attached)
	}
	qemuTicks := func() int64 {
		var sum int64
		r.qemuN = 0
		for i := range b.o.running {
			if pid, err := b.sb.QEMUPid(vmName(i)); err == nil {
				if s, err := sampleProc(pid); err == nil {
					sum += s.ticks
					r.qemuN++
				}
			}
		}
		return sum
	}
	pid := d.Cmd.Process.Pid
	ev0 := b.w.total.Load()
	q0 := qemuTicks()
	if r.before, err = sampleProc(pid); err != nil {
		return nil, err
	}
	select {
	case <-time.After(b.o.idle):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if r.after, err = sampleProc(pid); err != nil {
		return nil, err
	}
	r.maps = topMappings(pid, 6)
	underPreload, err := fileMappings(pid)
	if err != nil {
		return nil, err
	}
	r.qemuTicks = qemuTicks() - q0
	r.events = b.w.total.Load() - ev0
	st1, err := d.Client().Status(ctx)
	if err != nil {
		return nil, err
	}
	r.syncs = st1.Syncs - st0.Syncs
	d.Stop(syscall.SIGTERM)

	// The same daemon without the umockdev preload, for its memory.
	plain, err := b.startQuiet(false)
	if err != nil {
		return nil, err
	}
	defer plain.Stop(syscall.SIGTERM)
	if r.plain, err = sampleProc(plain.Cmd.Process.Pid); err != nil {
		return nil, err
	}
	plainMaps, err := fileMappings(plain.Cmd.Process.Pid)
	if err != nil {
		return nil, err
	}
	for path, kib := range underPreload {
		if _, ok := plainMaps[path]; !ok {
			r.preloadOnly = append(r.preloadOnly, filepath.Base(path))
			r.preloadOnlyKiB += kib
		}
	}
	slices.Sort(r.preloadOnly)
	return r, nil
}

func (r *idleResult) addRows(t *table, o options) {
	win := r.after.at.Sub(r.before.at)
	perMin := func(x float64) float64 { return x * float64(time.Minute) / float64(win) }
	t.section("idle usbctld, %v: rules of %d domains, %d running, %d devices present, 0 attached", win.Round(time.Second), o.running, r.running, r.devs)
	cpu := float64(r.after.ticks-r.before.ticks) / clkTck
	cpuMin := perMin(cpu)
	t.row("CPU, utime+stime (/proc/PID/stat)", fmt.Sprintf("%.3f s/min", cpuMin), "< 0.05 s/min", ratioOK(cpuMin, 0.05, cpuMin < 0.05))
	run := float64(r.after.runNS-r.before.runNS) / 1e9
	t.row("CPU, threads' schedstat run time (ns precision)", fmt.Sprintf("%.4f s/min", perMin(run)), "", "")
	sw := (r.after.vol + r.after.invo) - (r.before.vol + r.before.invo)
	t.row("wakeups: context switches, all threads", fmt.Sprintf("%d (%.0f/min)", sw, perMin(float64(sw))), "", "")
	msw := (r.after.mainVol + r.after.mainInvo) - (r.before.mainVol + r.before.mainInvo)
	t.row("wakeups: context switches, main thread", fmt.Sprintf("%d", msw), "", "")
	mib := func(k int64) float64 { return float64(k) / 1024 }
	// The umockdev preload is the sandbox's, not usbctld's: its own
	// libraries (glib, gio, ... mapped by no usbctld outside the sandbox)
	// come off; what it allocates on the heap for the fake devices cannot
	// be told apart and stays in, so this is an upper bound.
	host := mib(r.after.rssKiB - r.preloadOnlyKiB)
	t.row("RSS as on a host: VmRSS minus the umockdev preload's own libraries", fmt.Sprintf("%.1f MiB", host), "< 30 MiB", ratioOK(host, 30, host < 30))
	t.row("  VmRSS under the preload / the preload's libraries in it", fmt.Sprintf("%.1f / %.1f MiB", mib(r.after.rssKiB), mib(r.preloadOnlyKiB)), "", "")
	t.row("  of which RssAnon (private) / RssFile (binary, shared libs)", fmt.Sprintf("%.1f / %.1f MiB", mib(r.after.anonKiB), mib(r.after.fileKiB)), "", "")
	t.row("  PSS (shared pages split among the processes mapping them)", fmt.Sprintf("%.1f MiB", mib(r.after.pssKiB)), "", "")
	t.row("RSS without the umockdev preload (no devices), anon / file", fmt.Sprintf("%.1f MiB (%.1f / %.1f)", mib(r.plain.rssKiB), mib(r.plain.anonKiB), mib(r.plain.fileKiB)), "", "")
	if r.maps != "" {
		t.note("idle usbctld RSS by mapping: %s", r.maps)
	}
	if len(r.preloadOnly) > 0 {
		t.note("files only the umockdev preload maps (%.1f MiB resident): %s", mib(r.preloadOnlyKiB), strings.Join(r.preloadOnly, ", "))
	}
	t.note("idle: %d threads; %d syncs and %d libvirt events in the window; %d idle TCG guests used %.1f%% of a core",
		r.after.threads, r.syncs, r.events, r.qemuN, 100*float64(r.qemuTicks)/clkTck/win.Seconds())
}

// ---------------------------------------------------------------------------
// Start-up.

type startup struct {
	ready, started, connected time.Duration // from process start, by its log
	lastSync                  time.Duration // LastSyncDuration once ready
	syncs                     uint64
}

// missing marks a log line that did not appear.
const missing = time.Duration(-1 << 63)

type startupSet struct {
	defined, running int
	runs             []startup
}

func (b *bench) startups(defined, running int) (*startupSet, error) {
	set := &startupSet{defined: defined, running: running}
	for range b.o.starts {
		s, err := b.startupOnce()
		if err != nil {
			return nil, err
		}
		set.runs = append(set.runs, s)
	}
	return set, nil
}

// startupOnce starts usbctld and reads from its log when it started, when
// it connected to libvirt and when its first complete sync was done. The
// log is polled every millisecond: reading a small file disturbs the
// daemon less than polling its socket would.
func (b *bench) startupOnce() (startup, error) {
	var s startup
	d, err := b.startDaemon()
	if err != nil {
		return s, err
	}
	defer d.Stop(syscall.SIGTERM)
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(d.LogText(), "ready: first sync complete") {
		select {
		case <-d.Exited():
			return s, fmt.Errorf("usbctld exited at start:\n%s", d.LogText())
		case <-b.ctx.Done():
			return s, b.ctx.Err()
		case <-time.After(time.Millisecond):
		}
		if time.Now().After(deadline) {
			return s, fmt.Errorf("usbctld not ready within 30 s:\n%s", d.LogText())
		}
	}
	stamps := logTimes(d.LogText())
	at := func(msg string) time.Duration {
		t, ok := stamps[msg]
		if !ok {
			return missing
		}
		return t.Sub(d.Started)
	}
	s.started, s.connected, s.ready = at("usbctld started"), at("connected to libvirt"), at("ready: first sync complete")
	st, err := d.Client().Status(b.ctx)
	if err != nil {
		return s, err
	}
	s.lastSync, s.syncs = st.LastSyncDuration, st.Syncs
	return s, nil
}

// logTimes maps each message of a slog text log to the time of its first
// occurrence.
func logTimes(text string) map[string]time.Time {
	out := map[string]time.Time{}
	for _, line := range strings.Split(text, "\n") {
		ts, ok := field(line, "time")
		if !ok {
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil {
			continue
		}
		msg, _ := field(line, "msg")
		if _, seen := out[msg]; !seen {
			out[msg] = t
		}
	}
	return out
}

// field is the value of key in a slog text line (quoted or not).
func field(line, key string) (string, bool) {
	i := strings.Index(line, key+"=")
	if i < 0 || (i > 0 && line[i-1] != ' ') {
		return "", false
	}
	v := line[i+len(key)+1:]
	if strings.HasPrefix(v, `"`) {
		if q, err := strconv.QuotedPrefix(v); err == nil {
			u, _ := strconv.Unquote(q)
			return u, true
		}
	}
	if j := strings.IndexByte(v, ' '); j >= 0 {
		v = v[:j]
	}
	return v, true
}

// median formats the median of f over the runs; "n/a" if a run lacks it.
func (s *startupSet) median(f func(startup) time.Duration) string {
	var xs []time.Duration
	for _, r := range s.runs {
		x := f(r)
		if x == missing {
			return "n/a"
		}
		xs = append(xs, x)
	}
	slices.Sort(xs)
	return fmtDur(stats.Percentile(xs, 0.5))
}

// startupCosts are the pieces a start-up is made of, timed from this
// process against the same libvirtd and testbed.
type startupCosts struct {
	virshList   time.Duration // virsh list --all: a whole client process
	virshVer    time.Duration // virsh version: exec + connect, no listing
	connect     time.Duration // libvirt.NewConnect + Close, in process
	listDomains time.Duration // virt.ListDomainsAt: connect + what usbctld's sync reads
	udevList    time.Duration // udevsrc List: the device enumeration
	execHelp    time.Duration // usbctld -h: exec, dynamic linking, runtime init
	n           int
}

func (b *bench) startupCosts() (*startupCosts, error) {
	n := max(b.o.starts, 3)
	c := &startupCosts{n: n}
	med := func(f func() error) (time.Duration, error) {
		var xs []time.Duration
		for range n {
			t0 := time.Now()
			if err := f(); err != nil {
				return 0, err
			}
			xs = append(xs, time.Since(t0))
		}
		slices.Sort(xs)
		return stats.Percentile(xs, 0.5), nil
	}
	var err error
	virsh := func(args ...string) func() error {
		return func() error {
			cmd := exec.Command("virsh", append([]string{"-q", "-c", b.sb.URI()}, args...)...)
			cmd.Env = sandbox.CleanEnv()
			if out, err := cmd.CombinedOutput(); err != nil {
				return fmt.Errorf("virsh %v: %v: %s", args, err, out)
			}
			return nil
		}
	}
	if c.virshList, err = med(virsh("list", "--all")); err != nil {
		return nil, err
	}
	if c.virshVer, err = med(virsh("version")); err != nil {
		return nil, err
	}
	if c.connect, err = med(func() error {
		conn, err := libvirt.NewConnect(b.sb.URI())
		if err != nil {
			return err
		}
		_, err = conn.Close()
		return err
	}); err != nil {
		return nil, err
	}
	if c.listDomains, err = med(func() error {
		ds, err := virt.ListDomainsAt(context.Background(), b.sb.URI())
		if err == nil && len(ds) != b.o.domains {
			err = fmt.Errorf("listed %d domains, want %d", len(ds), b.o.domains)
		}
		return err
	}); err != nil {
		return nil, err
	}
	src := udevsrc.New(slog.New(slog.DiscardHandler))
	if c.udevList, err = med(func() error {
		devs, err := src.List(b.ctx)
		if err == nil && len(devs) < b.o.devices {
			err = fmt.Errorf("udev listed %d devices, want ≥ %d", len(devs), b.o.devices)
		}
		return err
	}); err != nil {
		return nil, err
	}
	if c.execHelp, err = med(func() error {
		cmd := exec.Command(b.usbctld, "-h")
		cmd.Env = append(sandbox.CleanEnv(), b.sb.Env()...)
		_ = cmd.Run() // exits 0 or 2 after printing usage
		return nil
	}); err != nil {
		return nil, err
	}
	return c, nil
}

func addStartupRows(t *table, o options, sets ...any) {
	var ss []*startupSet
	var costs *startupCosts
	for _, x := range sets {
		switch v := x.(type) {
		case *startupSet:
			ss = append(ss, v)
		case *startupCosts:
			costs = v
		}
	}
	t.section("start-up: process start → \"ready: first sync complete\" (median of %d, from usbctld's log)", o.starts)
	for _, s := range ss {
		what := fmt.Sprintf("%d domains defined", s.defined)
		if s.defined > 0 {
			what += fmt.Sprintf(", %d running", s.running)
		}
		t.row("ready, "+what, s.median(func(r startup) time.Duration { return r.ready }), "", "")
		t.row("  log \"usbctld started\" at", s.median(func(r startup) time.Duration { return r.started }), "", "")
		t.row("  log \"connected to libvirt\" at", s.median(func(r startup) time.Duration { return r.connected }), "", "")
		var syncs []int
		for _, r := range s.runs {
			syncs = append(syncs, int(r.syncs))
		}
		slices.Sort(syncs)
		t.row("  syncs by then; the last one took", fmt.Sprintf("%d; %s", syncs[(len(syncs)-1)/2],
			s.median(func(r startup) time.Duration { return r.lastSync })), "", "")
	}
	if costs != nil {
		t.row(fmt.Sprintf("cost: virsh list --all (%d domains)", o.domains), fmtDur(costs.virshList), "", "")
		t.row("cost: virsh version (exec + connect only)", fmtDur(costs.virshVer), "", "")
		t.row("cost: usbctld -h (exec + runtime init)", fmtDur(costs.execHelp), "", "")
		t.row("cost: libvirt connect + close, in process", fmtDur(costs.connect), "", "")
		t.row(fmt.Sprintf("cost: list %d domains + live XML, in process", o.domains), fmtDur(costs.listDomains), "", "")
		t.row(fmt.Sprintf("cost: udev enumerate (%d devices)", o.devices+1), fmtDur(costs.udevList), "", "")
	}
}

// ---------------------------------------------------------------------------
// The table.

type table struct {
	rows  [][4]string
	notes []string
}

func (t *table) section(format string, a ...any) {
	t.rows = append(t.rows, [4]string{"## " + fmt.Sprintf(format, a...)})
}

func (t *table) row(figure, value, target, ok string) {
	if target == "" {
		target = "—"
	}
	if ok == "" {
		ok = "—"
	}
	t.rows = append(t.rows, [4]string{figure, value, target, ok})
}

func (t *table) note(format string, a ...any) { t.notes = append(t.notes, fmt.Sprintf(format, a...)) }

func okIf(b bool) string {
	if b {
		return "ok"
	}
	return "MISSED"
}

func ratioOK(v, target float64, ok bool) string {
	return fmt.Sprintf("%.2f× %s", v/target, okIf(ok))
}

func width(s string) int { return len([]rune(s)) }

func pad(s string, n int) string { return s + strings.Repeat(" ", max(0, n-width(s))) }

func (t *table) print(w io.Writer) {
	hdr := [4]string{"figure", "value", "target", "ratio/ok"}
	wd := [4]int{}
	for _, r := range append([][4]string{hdr}, t.rows...) {
		if strings.HasPrefix(r[0], "## ") {
			continue
		}
		for i, c := range r {
			wd[i] = max(wd[i], width(c))
		}
	}
	line := func(r [4]string) {
		fmt.Fprintf(w, "%s  %s  %s  %s\n", pad(r[0], wd[0]), pad(r[1], wd[1]), pad(r[2], wd[2]), r[3])
	}
	fmt.Fprintln(w)
	line(hdr)
	line([4]string{strings.Repeat("-", wd[0]), strings.Repeat("-", wd[1]), strings.Repeat("-", wd[2]), strings.Repeat("-", wd[3])})
	for _, r := range t.rows {
		if strings.HasPrefix(r[0], "## ") {
			fmt.Fprintln(w, r[0][3:])
			continue
		}
		line(r)
	}
	for _, n := range t.notes {
		fmt.Fprintln(w, "note:", n)
	}
}

func fmtDur(d time.Duration) string {
	switch {
	case d < 0:
		return "−" + fmtDur(-d)
	case d < time.Microsecond:
		return fmt.Sprintf("%d ns", d.Nanoseconds())
	case d < time.Millisecond:
		return fmt.Sprintf("%.1f µs", float64(d)/1e3)
	case d < time.Second:
		return fmt.Sprintf("%.2f ms", float64(d)/1e6)
	}
	return fmt.Sprintf("%.3f s", d.Seconds())
}
