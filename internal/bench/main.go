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
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/usbctl/usbctl/internal/benchkit"
	"github.com/usbctl/usbctl/internal/sandbox"
	"github.com/usbctl/usbctl/internal/umockdev"
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
	t.Print(os.Stdout)
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
	w       *benchkit.Watcher
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
	if b.w, err = benchkit.NewWatcher(ctx, sb.URI()); err != nil {
		return err
	}
	defer b.w.Close()
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
		var sets []*startupSet
		for _, s := range []*startupSet{s0, s50, s50r} {
			if s != nil {
				sets = append(sets, s)
			}
		}
		if len(sets) > 0 || costs != nil {
			addStartupRows(t, o, sets, costs)
		}
		t.Note("sandbox run: %v in all", time.Since(t0).Round(time.Second))
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
