//go:build umockdev

// Package e2e runs the real usbctld binary against a real libvirtd and real
// QEMU guests with fake USB devices (internal/sandbox), and checks what the
// guests hold through an independent client: virsh. make test-e2e runs it
// through scripts/umockdev-exec.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/usbctl/usbctl/controller"
	"github.com/usbctl/usbctl/internal/promtest"
	"github.com/usbctl/usbctl/internal/sandbox"
	"github.com/usbctl/usbctl/internal/umockdev"
	"github.com/usbctl/usbctl/virt"
)

// bins holds the binaries under test, built once by TestMain.
var bins struct{ usbctld, usbctl string }

// latencies collects plug-to-attached times over all scenarios.
var latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func TestMain(m *testing.M) {
	if os.Getenv("LD_PRELOAD") == "" || os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "e2e: must run as root under the umockdev preload: make test-e2e (scripts/umockdev-exec)")
		os.Exit(1)
	}
	dir, err := os.MkdirTemp("", "usbctl-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// Build without the preload: the go tool does not need fake devices.
	build := exec.Command("go", "build", "-o", dir+"/", "../cmd/usbctld", "../cmd/usbctl")
	build.Env = sandbox.CleanEnv()
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: build usbctld and usbctl:", err)
		os.Exit(1)
	}
	bins.usbctld, bins.usbctl = filepath.Join(dir, "usbctld"), filepath.Join(dir, "usbctl")
	// Unprivileged daemons run the binary from here too.
	if err := os.Chmod(dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	latencies.mu.Lock()
	if n := len(latencies.d); n > 0 {
		d := slices.Clone(latencies.d)
		slices.Sort(d)
		fmt.Printf("e2e: plug-to-attached over %d plugs: median %v, p95 %v, max %v\n", n, d[n/2].Round(100*time.Microsecond), d[(n*95)/100].Round(100*time.Microsecond), d[n-1].Round(100*time.Microsecond))
	}
	latencies.mu.Unlock()
	os.RemoveAll(dir)
	os.Exit(code)
}

// world is one scenario's sandbox, guests, daemon and event watcher.
type world struct {
	t   *testing.T
	sb  *sandbox.Sandbox
	dir string
	cfg string // config file of the daemon

	evMu sync.Mutex
	evs  []timedEvent
	conn *virt.Conn

	d *sandbox.Usbctld
}

type timedEvent struct {
	at time.Time
	ev virt.Event
}

// newWorld starts a sandbox with guests defined (not started) and a libvirt
// event watcher; everything is torn down when the test ends.
func newWorld(t *testing.T, guests ...string) *world {
	t.Helper()
	return newWorldWith(t, sandbox.Options{}, guests...)
}

// newWorldWith is newWorld on a sandbox started with opt (its Log is the
// world's).
func newWorldWith(t *testing.T, opt sandbox.Options, guests ...string) *world {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	var sbLog bytes.Buffer
	opt.Log = &sbLog
	sb, err := sandbox.Start(ctx, opt)
	if err != nil {
		t.Fatalf("sandbox: %v\n%s", err, sbLog.String())
	}
	w := &world{t: t, sb: sb, dir: dir, cfg: filepath.Join(dir, "usbctl.hcl")}
	t.Cleanup(func() {
		if w.d != nil {
			w.d.Stop(syscall.SIGTERM)
			if t.Failed() {
				t.Logf("usbctld log:\n%s", w.d.LogText())
			}
		}
		w.conn.Close()
		sb.Close()
		if out, err := exec.Command("pgrep", "-af", sb.Dir()).Output(); err == nil && len(out) > 0 {
			t.Errorf("processes left after the scenario: %s", out)
		}
	})
	w.conn, err = virt.New(virt.Options{URI: sb.URI(), ReconnectMin: 50 * time.Millisecond, ReconnectMax: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	w.conn.Start(ctx, func(ev virt.Event) {
		w.evMu.Lock()
		w.evs = append(w.evs, timedEvent{time.Now(), ev})
		w.evMu.Unlock()
	})
	for _, g := range guests {
		if err := sb.DefineGuest(g, sandbox.GuestOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	w.waitEvent("watcher connected", time.Time{}, func(ev virt.Event) bool { return ev.Kind == virt.EventConnected })
	return w
}

func (w *world) writeConfig(hcl string) {
	w.t.Helper()
	if err := os.WriteFile(w.cfg, []byte(hcl), 0o644); err != nil {
		w.t.Fatal(err)
	}
}

// waitEvent waits for an event after since that satisfies f, and returns
// when it arrived.
func (w *world) waitEvent(what string, since time.Time, f func(virt.Event) bool) time.Time {
	w.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		w.evMu.Lock()
		for _, te := range w.evs {
			if !te.at.Before(since) && f(te.ev) {
				w.evMu.Unlock()
				return te.at
			}
		}
		w.evMu.Unlock()
		time.Sleep(5 * time.Millisecond)
	}
	w.t.Fatalf("no %s event within 30 s", what)
	return time.Time{}
}

// countEvents counts events after since that satisfy f.
func (w *world) countEvents(since time.Time, f func(virt.Event) bool) int {
	w.evMu.Lock()
	defer w.evMu.Unlock()
	n := 0
	for _, te := range w.evs {
		if !te.at.Before(since) && f(te.ev) {
			n++
		}
	}
	return n
}

func added(dom, alias string) func(virt.Event) bool {
	return func(ev virt.Event) bool {
		return ev.Kind == virt.EventDeviceAdded && ev.Domain == dom && ev.Alias == alias
	}
}

func (w *world) start(dom string) {
	w.t.Helper()
	if err := w.sb.StartGuest(dom); err != nil {
		w.t.Fatal(err)
	}
}

func (w *world) destroy(dom string) {
	w.t.Helper()
	if err := w.sb.DestroyGuest(dom); err != nil {
		w.t.Fatal(err)
	}
}

func (w *world) plug(d umockdev.USBDevice) {
	w.t.Helper()
	if err := w.sb.Plug(d); err != nil {
		w.t.Fatal(err)
	}
}

func (w *world) unplug(d umockdev.USBDevice) {
	w.t.Helper()
	if err := w.sb.Unplug(d); err != nil {
		w.t.Fatal(err)
	}
}

// liveXML is the domain's live XML as virsh (an independent client) shows it.
func (w *world) liveXML(dom string) string {
	w.t.Helper()
	out, err := w.sb.Virsh("dumpxml", dom)
	if err != nil {
		w.t.Fatal(err)
	}
	return out
}

var hostdevRE = regexp.MustCompile(`(?s)<hostdev mode='subsystem' type='usb'.*?</hostdev>`)

// hostdevs is the USB hostdev elements of the domain's live XML, sorted.
func (w *world) hostdevs(dom string) []string {
	hs := hostdevRE.FindAllString(w.liveXML(dom), -1)
	sort.Strings(hs)
	return hs
}

// aliases is the aliases of the domain's USB hostdevs, by virsh.
func (w *world) aliases(dom string) []string {
	var out []string
	for _, h := range w.hostdevs(dom) {
		if m := regexp.MustCompile(`<alias name='([^']*)'/>`).FindStringSubmatch(h); m != nil {
			out = append(out, m[1])
		}
	}
	return out
}

func (w *world) has(dom, alias string) bool { return slices.Contains(w.aliases(dom), alias) }

// eventually polls cond every 20 ms until it holds or timeout passes.
func (w *world) eventually(what string, timeout time.Duration, cond func() bool) {
	w.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			st := ""
			if w.d != nil {
				st = w.cli("status")
			}
			w.t.Fatalf("not within %v: %s\nusbctl status:\n%s", timeout, what, st)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitAttached waits until virsh shows alias in dom.
func (w *world) waitAttached(dom, alias string) {
	w.t.Helper()
	w.eventually(fmt.Sprintf("%s in %s", alias, dom), 20*time.Second, func() bool { return w.has(dom, alias) })
}

// waitDetached waits until virsh shows alias nowhere in dom.
func (w *world) waitDetached(dom, alias string) {
	w.t.Helper()
	w.eventually(fmt.Sprintf("%s gone from %s", alias, dom), 20*time.Second, func() bool { return !w.has(dom, alias) })
}

// plugTimed plugs d and returns the time from the plug to libvirt's
// device-added event for its alias in dom; it is recorded for the suite's
// median.
func (w *world) plugTimed(dom string, d umockdev.USBDevice) time.Duration {
	w.t.Helper()
	alias := fmt.Sprintf("ua-usbctl-%03d-%03d", d.Bus, d.Dev)
	t0 := time.Now()
	w.plug(d)
	at := w.waitEvent("device-added "+alias, t0, added(dom, alias))
	lat := at.Sub(t0)
	latencies.mu.Lock()
	latencies.d = append(latencies.d, lat)
	latencies.mu.Unlock()
	w.waitAttached(dom, alias)
	return lat
}

// startDaemon runs usbctld on the world's config and waits for its first
// complete sync.
func (w *world) startDaemon(extra ...string) {
	w.t.Helper()
	w.startDaemonAt(filepath.Join(w.dir, "usbctl.sock"), extra...)
}

// startDaemonAt is startDaemon with the control socket at sock.
func (w *world) startDaemonAt(sock string, extra ...string) {
	w.t.Helper()
	w.startDaemonWith(sandbox.UsbctldOptions{Socket: sock, Args: append([]string{"--config", w.cfg}, extra...)})
}

// startDaemonWith starts usbctld as o says (Bin and Log filled in, debug
// logging added) and waits for its first complete sync.
func (w *world) startDaemonWith(o sandbox.UsbctldOptions) {
	w.t.Helper()
	if w.d != nil {
		w.t.Fatal("a daemon is already running")
	}
	o.Bin, o.Log = bins.usbctld, filepath.Join(w.dir, "usbctld.log")
	// The lock of the URI next to the socket: in the scenario's own
	// directory, or in one a daemon run as another user can write.
	o.Args = append(o.Args, "--log-level", "debug", "--runtime-dir", filepath.Join(filepath.Dir(o.Socket), "run"))
	if o.User == "" {
		// Runtime assignments go to the scenario's own state directory,
		// shared by the daemons it starts one after the other.
		o.Args = append(o.Args, "--state-dir", filepath.Join(w.dir, "state"))
	}
	d, err := w.sb.StartUsbctld(o)
	if err != nil {
		w.t.Fatal(err)
	}
	w.d = d
	if err := d.WaitReady(context.Background(), 30*time.Second); err != nil {
		w.d = nil
		w.t.Fatal(err)
	}
}

// runtimeDir is the --runtime-dir (the per-URI lock) of a daemon with its
// socket in the scenario's directory, rather than the host's /run/usbctl.
func (w *world) runtimeDir() string { return filepath.Join(w.dir, "run") }

// killDaemon stops usbctld with sig and forgets it.
func (w *world) killDaemon(sig syscall.Signal) {
	w.t.Helper()
	w.d.Stop(sig)
	w.d = nil
}

func (w *world) status() controller.Status {
	w.t.Helper()
	st, err := w.d.Client().Status(context.Background())
	if err != nil {
		w.t.Fatal(err)
	}
	return st
}

// cli runs the usbctl binary against the daemon and returns its output.
func (w *world) cli(args ...string) string {
	out, _ := w.cliCode(args...)
	return out
}

func (w *world) cliCode(args ...string) (string, int) {
	cmd := exec.Command(bins.usbctl, append([]string{"--socket", w.d.Socket}, args...)...)
	cmd.Env = sandbox.CleanEnv()
	out, code, err := runCode(cmd)
	if err != nil {
		w.t.Fatalf("usbctl %v: %v\n%s", args, err, out)
	}
	return out, code
}

// runCode runs cmd and returns its output and exit status; err is set only
// when it could not run at all.
func runCode(cmd *exec.Cmd) (string, int, error) {
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return string(out), ee.ExitCode(), nil
	}
	return string(out), 0, err
}

func domainStatus(st controller.Status, name string) (controller.DomainStatus, bool) {
	for _, d := range st.Domains {
		if d.Name == name {
			return d, true
		}
	}
	return controller.DomainStatus{}, false
}

func unassigned(st controller.Status, bus, dev int) (string, bool) {
	for _, p := range st.Unassigned {
		if p.Device.Bus == bus && p.Device.Dev == dev {
			return p.Reason, true
		}
	}
	return "", false
}

// usb is a fake device on bus 1.
func usb(dev int, port, vendor, product, serial string) umockdev.USBDevice {
	return umockdev.USBDevice{Bus: 1, Dev: dev, Port: port, Vendor: vendor, Product: product, Serial: serial,
		Manufacturer: "usbctl e2e", ProductName: "Device " + port, Interfaces: []string{"030101"}}
}

func alias(d umockdev.USBDevice) string { return fmt.Sprintf("ua-usbctl-%03d-%03d", d.Bus, d.Dev) }

func (w *world) writeFile(path, content string) {
	w.t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		w.t.Fatal(err)
	}
}

// metric scrapes GET /metrics on the daemon's control socket, parses it
// with Prometheus' own parser and returns the value of the series of name
// whose labels include labels.
func (w *world) metric(name string, labels map[string]string) float64 {
	w.t.Helper()
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", w.d.Socket)
	}}}
	resp, err := hc.Get("http://usbctld/metrics")
	if err != nil {
		w.t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		w.t.Fatalf("metrics do not parse: %v", err)
	}
	v, ok := promtest.Value(fams, name, labels)
	if !ok {
		w.t.Fatalf("no %s%v", name, labels)
	}
	return v
}
