//go:build testhost

// Package kernel runs the real usbctld and usbctl inside a real-kernel test
// host (internal/testhost): Debian's kernel with its USB stack, real
// systemd-udevd, real libvirtd as Debian configures it (QEMU as
// libvirt-qemu, DAC, namespaces) and an L2 guest under TCG; devices are
// QEMU-emulated hardware plugged over QMP and configfs gadgets. Results
// are asserted with virsh: the live XML and QEMU's own "info usb".
//
//	make test-kernel   (go test -tags testhost ./e2e/kernel/, as root)
//
// One test host serves the whole suite: TestMain boots it, starts
// libvirtd and the guest, and every test shares them (commands inside
// cost 0.3–1.3 s each under TCG: keep steps few, poll inside).
package kernel

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/usbctl/usbctl/internal/testhost"
)

// host is the suite's test host, booted by TestMain.
var host *testhost.Host

// bin is where usbctld and usbctl are inside.
const bin = testhost.Inside + "/bin"

// guest is the L2 domain every test attaches to.
const guest = "l2"

// guestXML: the suite's guest, with an xHCI of 8 ports.
var guestXML = testhost.GuestXML(guest, `<controller type='usb' model='qemu-xhci' ports='8'/>`)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "kernel: must run as root (QEMU's 9p passthrough of /): make test-kernel")
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	t0 := time.Now()
	h, err := testhost.Boot(ctx, testhost.Options{Log: log})
	if err != nil {
		fmt.Fprintln(os.Stderr, "kernel:", err)
		return 1
	}
	defer h.Close()
	tBoot := time.Since(t0)
	share, _ := h.SharedDir()
	build := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(share, "bin")+"/", "../../cmd/usbctld", "../../cmd/usbctl", "../../internal/testhost/cmd/usbfshold")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "kernel: build usbctld and usbctl:", err)
		return 1
	}
	t1 := time.Now()
	if err := h.SetupLibvirt(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "kernel:", err)
		return 1
	}
	tLibvirt := time.Since(t1)
	if err := os.WriteFile(filepath.Join(share, guest+".xml"), []byte(guestXML), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "kernel:", err)
		return 1
	}
	t2 := time.Now()
	if _, err := h.Sh(ctx, "virsh -q define "+testhost.Inside+"/"+guest+".xml && virsh -q start "+guest); err != nil {
		fmt.Fprintln(os.Stderr, "kernel: guest:", err)
		return 1
	}
	tGuest := time.Since(t2)
	host = h
	t3 := time.Now()
	code := m.Run()
	fmt.Printf("kernel: boot %v, SetupLibvirt %v, guest start %v, tests %v\n",
		tBoot.Round(100*time.Millisecond), tLibvirt.Round(100*time.Millisecond), tGuest.Round(100*time.Millisecond), time.Since(t3).Round(100*time.Millisecond))
	return code
}

// daemon is a usbctld running inside on its own socket and directories,
// whose state survives a restart: every start (launch) uses the same
// socket, runtime and state directories, and logs to a file of its own.
type daemon struct {
	p      *testhost.Proc
	name   string
	sock   string
	run    string // /run/usbctl-NAME: the runtime and state directories
	config string // the config's path inside
	gen    int    // how many times it was started
}

// startDaemon writes config to the share and starts usbctld on it, and
// returns once its first complete sync is done. Cleanup stops whichever
// usbctld the daemon runs last, and shows every start's log if the test
// failed.
func startDaemon(ctx context.Context, t *testing.T, name, config string) *daemon {
	t.Helper()
	share, inside := host.SharedDir()
	if err := os.WriteFile(filepath.Join(share, name+".hcl"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	run := "/run/usbctl-" + name
	d := &daemon{name: name, sock: run + "/usbctl.sock", run: run, config: inside + "/" + name + ".hcl"}
	t.Cleanup(func() {
		if d.p != nil {
			d.stop(context.Background(), t)
		}
		if t.Failed() {
			d.dumpLogs(t)
		}
	})
	d.launch(ctx, t)
	return d
}

// launch starts usbctld (again, on the same state) and waits for its
// first complete sync.
func (d *daemon) launch(ctx context.Context, t *testing.T) {
	t.Helper()
	d.gen++
	p, err := host.Start(ctx, d.logName(d.gen), bin+"/usbctld", "--config", d.config,
		"--socket", d.sock, "--runtime-dir", d.run+"/run", "--state-dir", d.run+"/state", "--log-level", "debug")
	if err != nil {
		t.Fatal(err)
	}
	d.p = p
	if _, err := host.ShEnv(ctx, []string{"SOCK=" + d.sock}, `
for i in $(seq 300); do
	`+bin+`/usbctl --socket "$SOCK" status --json 2>/dev/null | grep -q '"ready": *true' && exit 0
	sleep 0.1
done
echo "usbctld not ready after 30 s" >&2; exit 1`); err != nil {
		b, _ := p.Log()
		t.Fatalf("%v\nusbctld log:\n%s", err, lastLines(string(b), 40))
	}
}

// stop sends SIGTERM (usbctld leaves its devices attached) and waits.
func (d *daemon) stop(ctx context.Context, t *testing.T) {
	t.Helper()
	if _, err := d.p.Stop(ctx, 10*time.Second); err != nil {
		t.Error(err)
	}
	d.p = nil
}

// logName is the log of start n: usbctld-NAME, then usbctld-NAME-2, ...
func (d *daemon) logName(n int) string {
	if n == 1 {
		return "usbctld-" + d.name
	}
	return fmt.Sprintf("usbctld-%s-%d", d.name, n)
}

// log is what every start of usbctld wrote so far (logCount reads the
// running one's only).
func (d *daemon) log(t *testing.T) string {
	t.Helper()
	share, _ := host.SharedDir()
	var b strings.Builder
	for n := 1; n <= d.gen; n++ {
		s, err := os.ReadFile(filepath.Join(share, "logs", d.logName(n)+".log"))
		if err != nil {
			t.Error(err)
		}
		b.Write(s)
	}
	return b.String()
}

func (d *daemon) dumpLogs(t *testing.T) {
	t.Logf("usbctld log:\n%s", lastLines(d.log(t), 80))
	if out, err := host.ShEnv(context.Background(), []string{"SOCK=" + d.sock}, bin+`/usbctl --socket "$SOCK" status`); err == nil {
		t.Logf("usbctl status:\n%s", out)
	}
}

// ctl runs usbctl on the daemon's socket and fails the test if it fails.
func (d *daemon) ctl(ctx context.Context, t *testing.T, args ...string) {
	t.Helper()
	res, err := host.Run(ctx, append([]string{bin + "/usbctl", "--socket", d.sock}, args...)...)
	if err != nil || res.Exit != 0 {
		t.Fatalf("usbctl %s: %v %s%s", strings.Join(args, " "), err, res.Stdout, res.Stderr)
	}
}

// statusJSON is `usbctl status --json` as it printed it (pending actions
// are under "pending", left out when there are none); status decodes the
// part the scenarios read.
func (d *daemon) statusJSON(ctx context.Context, t *testing.T) string {
	t.Helper()
	out, err := host.ShEnv(ctx, []string{"SOCK=" + d.sock}, bin+`/usbctl --socket "$SOCK" status --json`)
	if err != nil {
		t.Fatalf("usbctl status: %v", err)
	}
	return out
}

func lastLines(s string, n int) string {
	l := strings.SplitAfter(s, "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "")
}

// waitHostdev polls inside until the hostdev alias is in the guest's live
// XML and in QEMU's info usb (want) or in neither (!want), and returns
// what virsh showed last.
func waitHostdev(ctx context.Context, t *testing.T, alias string, want bool) {
	t.Helper()
	w := "1"
	if !want {
		w = ""
	}
	out, err := host.ShEnv(ctx, []string{"A=" + alias, "WANT=" + w, "DOM=" + guest}, `
for i in $(seq 150); do
	x=; u=
	virsh dumpxml "$DOM" | grep -q "<alias name='$A'/>" && x=1
	virsh qemu-monitor-command --hmp "$DOM" 'info usb' | grep -qw "ID: $A" && u=1
	if [ -n "$WANT" ] && [ -n "$x" ] && [ -n "$u" ]; then exit 0; fi
	if [ -z "$WANT" ] && [ -z "$x" ] && [ -z "$u" ]; then exit 0; fi
	sleep 0.2
done
echo "live XML has $A: ${x:-no}; info usb has it: ${u:-no}" >&2
virsh qemu-monitor-command --hmp "$DOM" 'info usb' >&2
virsh dumpxml "$DOM" | grep -A8 '<hostdev' >&2
exit 1`)
	if err != nil {
		t.Fatalf("hostdev %s (want attached: %v): %v %s", alias, want, err, out)
	}
}

// waitDevice polls inside for the USB device with vendor:product (and
// serial, if given) and returns its libvirt alias, ua-usbctl-BBB-DDD.
func waitDevice(ctx context.Context, t *testing.T, vendor, product string) string {
	t.Helper()
	out, err := host.ShEnv(ctx, []string{"V=" + vendor, "P=" + product}, `
for i in $(seq 100); do
	for d in /sys/bus/usb/devices/*; do
		[ -e "$d/idVendor" ] || continue
		if [ "$(cat "$d/idVendor")" = "$V" ] && [ "$(cat "$d/idProduct")" = "$P" ]; then
			printf 'ua-usbctl-%03d-%03d\n' "$(cat "$d/busnum")" "$(cat "$d/devnum")"
			exit 0
		fi
	done
	sleep 0.1
done
echo "no $V:$P in /sys/bus/usb/devices" >&2; exit 1`)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

// TestPlugUnplug: a device a rule names is attached to the running guest
// when it appears and detached when it goes, for an emulated keyboard
// (QMP device_add/device_del on the test host's xHCI) and for a gadget
// with a serial (dummy_hcd bind/unbind).
func TestPlugUnplug(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	startDaemon(ctx, t, "plug", `
libvirt {
  uri = "qemu:///system"
}

domain "`+guest+`" {
  device "keyboard" {
    vendor  = "0627"
    product = "0001"
  }
  device "board" {
    vendor  = "1d6b"
    product = "0104"
    serial  = "TH-0104-1"
  }
}
`)

	t.Run("emulated", func(t *testing.T) {
		start := time.Now()
		if err := host.Plug(ctx, testhost.EmulatedDevice{ID: "kbd1", Driver: "usb-kbd"}); err != nil {
			t.Fatal(err)
		}
		alias := waitDevice(ctx, t, "0627", "0001")
		waitHostdev(ctx, t, alias, true)
		t.Logf("usb-kbd %s attached %v after device_add", alias, time.Since(start).Round(time.Millisecond))
		start = time.Now()
		if err := host.Unplug(ctx, "kbd1"); err != nil {
			t.Fatal(err)
		}
		waitHostdev(ctx, t, alias, false)
		t.Logf("usb-kbd %s detached %v after device_del", alias, time.Since(start).Round(time.Millisecond))
	})

	t.Run("gadget", func(t *testing.T) {
		start := time.Now()
		g, err := host.Gadget(ctx, testhost.GadgetSpec{Name: "plug", Vendor: "1d6b", Product: "0104", Serial: "TH-0104-1", ProductName: "testhost board"})
		if err != nil {
			t.Fatal(err)
		}
		alias := fmt.Sprintf("ua-usbctl-%03d-%03d", g.Bus, g.Dev)
		waitHostdev(ctx, t, alias, true)
		t.Logf("gadget %s (%s) attached %v after bind", alias, g.Port, time.Since(start).Round(time.Millisecond))
		start = time.Now()
		if err := g.Remove(ctx); err != nil {
			t.Fatal(err)
		}
		waitHostdev(ctx, t, alias, false)
		t.Logf("gadget %s detached %v after unbind", alias, time.Since(start).Round(time.Millisecond))
	})
}
