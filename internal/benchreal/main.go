// Command benchreal is the real-stack benchmark's program inside the
// real-kernel test host (issue 12 part 5). e2e/kernel's TestBench boots the
// test host, starts libvirtd and the guest, makes a gadget, and runs this
// inside as one long-lived process, since every command inside costs
// 0.3–1.3 s under TCG. It prints its samples as JSON on stdout; TestBench
// makes the table.
//
// Phase "plugs": the gadget (a configfs gadget on dummy_hcd) is bound and
// unbound by writing its UDC file, so the kernel sees a real plug and
// unplug, each bind with a new devnum. Three ways, interleaved round-robin
// per plug (usbctld, floor, virsh, usbctld, ...):
//
//   - usbctld: the real usbctld, started by this program for the round
//     with a rule that wants the gadget, and stopped after it;
//   - floor: usbctld is not running; this program, which holds an open
//     libvirt connection with the domain looked up, calls
//     AttachDeviceFlags with the XML usbctld sends as soon as its own udev
//     monitor has the add, and DetachDeviceAlias on the remove;
//   - virsh: usbctld is not running; a new `virsh attach-device --live`
//     process per add (the detach is the floor's, and not counted).
//
// Every time runs from the udev add (or remove) event as this program's
// udev monitor receives it (the same libudev monitor, on the "udev"
// netlink group, that usbctld uses: the kernel's uevent after udevd has
// processed it) to libvirt's device-added (device-removed) event for the
// alias ua-usbctl-BBB-DDD, as this program's own libvirt connection
// receives it: one process, one clock.
//
// One usbctld runs for the whole phase, as a daemon does, but it is frozen
// (SIGSTOP) during the floor and virsh rounds: then nothing else on the
// test host reacts to the uevent while the floor or virsh is timed, so the
// floor is the best this stack can do, and usbctld is compared with it
// honestly. For those rounds the gadget carries a product id no rule
// wants (-other-product), so what usbctld reads of them when it is thawed
// (SIGCONT) before its own round is nothing to act on; it is given time to
// catch up (its sync count steady, nothing pending) before the plug.
// Stopping and starting usbctld instead would time, in every usbctld
// round, the first plug of a fresh process (under TCG, code never run
// before is translated on first use); for the same reason a first round
// of all three is a warm-up and not counted.
//
// Phase "start": the guest -domain is shut off and -devices devices that
// usbctld's config gives it are present; usbctld runs throughout. Each
// start is timed from just before virDomainCreate to the device-added
// event of the last of its devices, then the guest is destroyed.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"libvirt.org/go/libvirt"

	"github.com/usbctl/usbctl/controller/api"
	"github.com/usbctl/usbctl/internal/benchkit"
	"github.com/usbctl/usbctl/reconcile"
	"github.com/usbctl/usbctl/udevsrc"
	"github.com/usbctl/usbctl/virt"
)

// Modes of the plug phase, in the order they are interleaved.
var modes = []string{ModeUsbctld, ModeFloor, ModeVirsh}

// Mode names, as they appear in Result.
const (
	ModeUsbctld = "usbctld"
	ModeFloor   = "floor"
	ModeVirsh   = "virsh"
)

type options struct {
	phase        string
	uri          string
	domain       string
	usbctld      string
	args         string // usbctld's arguments, space-separated (paths without spaces)
	sock         string
	log          string
	gadget       string // configfs directory of the gadget
	product      string // its product id in usbctld's rounds (a rule wants it)
	otherProduct string // and in the floor's and virsh's (no rule wants it)
	udc          string
	bus          int
	plugs        int
	devices      int
	starts       int
	settle       time.Duration
	dir          string
}

func main() {
	var o options
	flag.StringVar(&o.phase, "phase", "plugs", "plugs or start")
	flag.StringVar(&o.uri, "uri", "qemu:///system", "libvirt URI")
	flag.StringVar(&o.domain, "domain", "", "the guest (running for plugs, shut off for start)")
	flag.StringVar(&o.usbctld, "usbctld", "", "usbctld binary")
	flag.StringVar(&o.args, "usbctld-args", "", "usbctld's arguments, space-separated")
	flag.StringVar(&o.sock, "socket", "", "usbctld's control socket (one of its arguments too)")
	flag.StringVar(&o.log, "usbctld-log", "", "file every usbctld started here appends its log to")
	flag.StringVar(&o.gadget, "gadget", "", "plugs: the gadget's configfs directory (bound or not)")
	flag.StringVar(&o.product, "product", "", "plugs: the gadget's product id (4 hex digits) in usbctld's rounds: a rule wants it")
	flag.StringVar(&o.otherProduct, "other-product", "", "plugs: its product id in the floor's and virsh's rounds: no rule wants it")
	flag.StringVar(&o.udc, "udc", "", "plugs: the UDC to bind it to (dummy_udc.N)")
	flag.IntVar(&o.bus, "bus", 0, "plugs: the USB bus number of that UDC's dummy_hcd")
	flag.IntVar(&o.plugs, "plugs", 20, "plugs: plugs per mode")
	flag.IntVar(&o.devices, "devices", 8, "start: devices usbctld attaches at each start")
	flag.IntVar(&o.starts, "starts", 3, "start: guest starts")
	flag.DurationVar(&o.settle, "settle", 300*time.Millisecond, "pause after each round, so the test host is quiet before the next")
	flag.StringVar(&o.dir, "dir", "/tmp", "scratch directory (virsh's XML files)")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	r, err := run(ctx, log, o)
	if r != nil {
		if jerr := json.NewEncoder(os.Stdout).Encode(r); jerr != nil && err == nil {
			err = jerr
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchreal:", err)
		os.Exit(1)
	}
}

// bench is one run: the two event sources and the floor's connection.
type bench struct {
	o    options
	log  *slog.Logger
	lv   *benchkit.Watcher
	ud   *udevWatcher
	conn *libvirt.Connect
	dom  *libvirt.Domain
}

func run(ctx context.Context, log *slog.Logger, o options) (*benchkit.Result, error) {
	if o.domain == "" || o.usbctld == "" || o.sock == "" {
		return nil, errors.New("-domain, -usbctld and -socket are needed")
	}
	b := &bench{o: o, log: log}
	var err error
	if b.lv, err = benchkit.NewWatcher(ctx, o.uri); err != nil {
		return nil, err
	}
	defer b.lv.Close()
	if b.ud, err = newUdevWatcher(ctx, log); err != nil {
		return nil, err
	}
	// The floor's connection: opened and the domain looked up once,
	// before, as a daemon would hold them.
	if b.conn, err = libvirt.NewConnect(o.uri); err != nil {
		return nil, fmt.Errorf("connect %s: %w", o.uri, err)
	}
	defer b.conn.Close()
	if b.dom, err = b.conn.LookupDomainByName(o.domain); err != nil {
		return nil, fmt.Errorf("domain %s: %w", o.domain, err)
	}
	defer b.dom.Free()
	r := &benchkit.Result{}
	switch o.phase {
	case "plugs":
		err = b.plugs(ctx, r)
	case "start":
		err = b.startPhase(ctx, r)
	default:
		err = fmt.Errorf("-phase %q: want plugs or start", o.phase)
	}
	if n := b.lv.Dropped.Load() + b.ud.dropped.Load(); n > 0 && err == nil {
		err = fmt.Errorf("the event watchers dropped %d events: the figures are not to be trusted", n)
	}
	return r, err
}

// daemon is a usbctld this program started.
type daemon struct {
	cmd  *exec.Cmd
	done chan error
}

// startUsbctld starts usbctld and returns once its status says ready
// (its first complete sync).
func (b *bench) startUsbctld(ctx context.Context) (*daemon, error) {
	lf, err := os.OpenFile(b.o.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer lf.Close()
	cmd := exec.Command(b.o.usbctld, strings.Fields(b.o.args)...)
	cmd.Stdout, cmd.Stderr = lf, lf
	// Never outlive this program.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start usbctld: %w", err)
	}
	d := &daemon{cmd: cmd, done: make(chan error, 1)}
	go func() { d.done <- cmd.Wait() }()
	c := &api.Client{Socket: b.o.sock}
	deadline := time.Now().Add(60 * time.Second)
	for {
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		st, err := c.Status(sctx)
		cancel()
		if err == nil && st.Ready {
			return d, nil
		}
		select {
		case err := <-d.done:
			return nil, fmt.Errorf("usbctld exited before it was ready: %v (log: %s)", err, b.o.log)
		case <-ctx.Done():
			b.stopUsbctld(d)
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			b.stopUsbctld(d)
			return nil, fmt.Errorf("usbctld not ready after 60 s (last status error: %v; log: %s)", err, b.o.log)
		}
	}
}

// stopUsbctld ends it with SIGTERM (SIGKILL after 10 s) and waits.
func (b *bench) stopUsbctld(d *daemon) error {
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-d.done:
		return err
	case <-time.After(10 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.done
		return errors.New("usbctld did not stop within 10 s of SIGTERM")
	}
}

// bind plugs the gadget in (the kernel enumerates it) or, with udc "",
// pulls it out.
func (b *bench) bind(udc string) error {
	if udc == "" {
		udc = "\n"
	}
	if err := os.WriteFile(filepath.Join(b.o.gadget, "UDC"), []byte(udc), 0o644); err != nil {
		return fmt.Errorf("gadget %s: %w", b.o.gadget, err)
	}
	return nil
}

func (b *bench) plugs(ctx context.Context, r *benchkit.Result) error {
	if b.o.gadget == "" || b.o.udc == "" || b.o.bus < 1 || b.o.product == "" || b.o.otherProduct == "" {
		return errors.New("phase plugs needs -gadget, -udc, -bus, -product and -other-product")
	}
	// Start unplugged.
	cur, err := os.ReadFile(filepath.Join(b.o.gadget, "UDC"))
	if err != nil {
		return fmt.Errorf("gadget %s: %w", b.o.gadget, err)
	}
	if strings.TrimSpace(string(cur)) != "" {
		b.ud.drain()
		if err := b.bind(""); err != nil {
			return err
		}
		if _, _, err := b.ud.wait(ctx, udevsrc.ActionRemove, b.o.bus, 0); err != nil {
			return fmt.Errorf("initial unplug: %w", err)
		}
	}
	d, err := b.startUsbctld(ctx)
	if err != nil {
		return err
	}
	defer func() {
		_ = d.cmd.Process.Signal(syscall.SIGCONT)
		b.stopUsbctld(d)
	}()
	cpu0, err := readCPU()
	if err != nil {
		return err
	}
	frozen := false
	// Round 0 is a warm-up, not counted: under TCG, code a process has
	// never run is translated on first use, and a daemon that has been
	// running for a while has run its attach path before (the first
	// plug of a fresh usbctld took 211 ms where the others took ~90).
	for i := range b.o.plugs + 1 {
		for _, m := range modes {
			product := b.o.otherProduct
			if m == ModeUsbctld {
				product = b.o.product
				if frozen {
					if err := d.cmd.Process.Signal(syscall.SIGCONT); err != nil {
						return err
					}
					frozen = false
				}
				if err := b.quiet(ctx); err != nil {
					return err
				}
			} else if !frozen {
				if err := d.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
					return err
				}
				frozen = true
			}
			if err := os.WriteFile(filepath.Join(b.o.gadget, "idProduct"), []byte("0x"+product), 0o644); err != nil {
				return fmt.Errorf("gadget %s: %w", b.o.gadget, err)
			}
			s, err := b.plugOnce(ctx, m, d.cmd.Process.Pid)
			if err != nil {
				return fmt.Errorf("plug %d (%s): %w", i, m, err)
			}
			b.log.Info("plug", "n", i, "mode", m, "dev", s.Dev, "add", s.Add, "remove", s.Remove,
				"usbctld_run", s.Run, "usbctld_wait", s.Wait, "warm_up", i == 0)
			if i > 0 {
				r.Samples = append(r.Samples, s)
			}
		}
	}
	cpu1, err := readCPU()
	if err != nil {
		return err
	}
	r.Notes = append(r.Notes, fmt.Sprintf("test host CPUs busy during the plug phase: %.0f%% of %d (the L2 guest's QEMU and everything else)",
		100*cpu1.busyShare(cpu0), cpu1.cpus))
	// usbctld must have ended healthy, with nothing it still wants to do.
	if err := d.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		return err
	}
	return b.quiet(ctx)
}

// quiet waits until usbctld has caught up: ready, nothing pending, and
// its sync count the same over -settle.
func (b *bench) quiet(ctx context.Context) error {
	c := &api.Client{Socket: b.o.sock}
	var last uint64
	deadline := time.Now().Add(30 * time.Second)
	for n := 0; ; n++ {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		st, err := c.Status(sctx)
		cancel()
		if err != nil {
			return fmt.Errorf("usbctld status: %w", err)
		}
		if n > 0 && st.Ready && len(st.Pending) == 0 && st.Syncs == last {
			return nil
		}
		last = st.Syncs
		if time.Now().After(deadline) {
			return fmt.Errorf("usbctld not quiet after 30 s: ready %v, %d pending, %d syncs", st.Ready, len(st.Pending), st.Syncs)
		}
		select {
		case <-time.After(b.o.settle):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// plugOnce plugs the gadget, has it attached the way m says, unplugs it,
// has it detached, and returns the times, with what usbctld (pid) did
// on and off CPU in the attach window (its threads' schedstat, read
// outside the timed span).
func (b *bench) plugOnce(ctx context.Context, m string, pid int) (benchkit.Sample, error) {
	s := benchkit.Sample{Mode: m}
	b.lv.Drain()
	b.ud.drain()
	before, err := schedstat(pid)
	if err != nil {
		return s, err
	}
	if err := b.bind(b.o.udc); err != nil {
		return s, err
	}
	added, dev, err := b.ud.wait(ctx, udevsrc.ActionAdd, b.o.bus, 0)
	if err != nil {
		return s, fmt.Errorf("udev add: %w", err)
	}
	s.Dev = dev
	key := reconcile.DeviceKey{Bus: b.o.bus, Dev: dev}
	alias := key.Alias()
	doc, err := virt.HostdevXML(key)
	if err != nil {
		return s, err
	}
	switch m {
	case ModeFloor:
		if err := b.dom.AttachDeviceFlags(doc, libvirt.DOMAIN_DEVICE_MODIFY_LIVE); err != nil {
			return s, fmt.Errorf("attach %s: %w", alias, err)
		}
	case ModeVirsh:
		f := filepath.Join(b.o.dir, alias+".xml")
		if err := os.WriteFile(f, []byte(doc), 0o644); err != nil {
			return s, err
		}
		out, err := exec.CommandContext(ctx, "virsh", "-q", "-c", b.o.uri, "attach-device", b.o.domain, f, "--live").CombinedOutput()
		os.Remove(f)
		if err != nil {
			return s, fmt.Errorf("virsh attach-device %s: %v: %s", alias, err, out)
		}
	}
	at, err := b.lv.Wait(ctx, 30*time.Second, benchkit.DeviceEvent(virt.EventDeviceAdded, b.o.domain, alias))
	if err != nil {
		return s, fmt.Errorf("device-added %s: %w", alias, err)
	}
	s.Add = at.Sub(added)
	after, err := schedstat(pid)
	if err != nil {
		return s, err
	}
	s.Run, s.Wait = after.run-before.run, after.wait-before.wait

	b.ud.drain()
	if err := b.bind(""); err != nil {
		return s, err
	}
	removed, _, err := b.ud.wait(ctx, udevsrc.ActionRemove, b.o.bus, dev)
	if err != nil {
		return s, fmt.Errorf("udev remove: %w", err)
	}
	if m != ModeUsbctld {
		if err := b.dom.DetachDeviceAlias(alias, libvirt.DOMAIN_DEVICE_MODIFY_LIVE); err != nil {
			return s, fmt.Errorf("detach %s: %w", alias, err)
		}
	}
	gone, err := b.lv.Wait(ctx, 30*time.Second, benchkit.DeviceEvent(virt.EventDeviceRemoved, b.o.domain, alias))
	if err != nil {
		return s, fmt.Errorf("device-removed %s: %w", alias, err)
	}
	if m != ModeVirsh {
		s.Remove = gone.Sub(removed)
	}
	select {
	case <-time.After(b.o.settle):
	case <-ctx.Done():
		return s, ctx.Err()
	}
	return s, nil
}

func (b *bench) startPhase(ctx context.Context, r *benchkit.Result) error {
	d, err := b.startUsbctld(ctx)
	if err != nil {
		return err
	}
	defer b.stopUsbctld(d)
	for i := range b.o.starts {
		st, err := b.startOnce(ctx)
		if err != nil {
			return fmt.Errorf("start %d: %w", i+1, err)
		}
		b.log.Info("start", "n", i+1, "create", st.Create, "first", st.First, "all", st.All)
		r.Starts = append(r.Starts, st)
	}
	return nil
}

func (b *bench) startOnce(ctx context.Context) (benchkit.Start, error) {
	var st benchkit.Start
	b.lv.Drain()
	t0 := time.Now()
	if err := b.dom.Create(); err != nil {
		return st, fmt.Errorf("start %s: %w", b.o.domain, err)
	}
	st.Create = time.Since(t0)
	seen := map[string]bool{}
	for len(seen) < b.o.devices {
		var alias string
		at, err := b.lv.Wait(ctx, 60*time.Second, func(ev virt.Event) bool {
			alias = ev.Alias
			return ev.Kind == virt.EventDeviceAdded && ev.Domain == b.o.domain &&
				strings.HasPrefix(ev.Alias, reconcile.AliasPrefix) && !seen[ev.Alias]
		})
		if err != nil {
			return st, fmt.Errorf("%d of %d devices attached: %w", len(seen), b.o.devices, err)
		}
		if len(seen) == 0 {
			st.First = at.Sub(t0)
		}
		st.All = at.Sub(t0)
		seen[alias] = true
		st.Aliases = append(st.Aliases, alias)
	}
	if err := b.dom.Destroy(); err != nil {
		return st, fmt.Errorf("destroy %s: %w", b.o.domain, err)
	}
	if _, err := b.lv.Wait(ctx, 30*time.Second, func(ev virt.Event) bool {
		return ev.Kind == virt.EventLifecycle && ev.Domain == b.o.domain && strings.Contains(ev.Detail, `event="stopped"`)
	}); err != nil {
		return st, fmt.Errorf("%s stopped: %w", b.o.domain, err)
	}
	select {
	case <-time.After(b.o.settle):
	case <-ctx.Done():
		return st, ctx.Err()
	}
	return st, nil
}
