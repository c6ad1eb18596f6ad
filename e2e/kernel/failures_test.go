//go:build testhost

package kernel

// The failures only a real stack shows (issue 12, part 3): each scenario
// asserts what the user sees (live XML, QEMU's info usb, usbctl status)
// and that usbctld did not loop (its attach attempts, counted in its log).

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/usbctl/usbctl/internal/testhost"
)

// failDaemon is a usbctld whose state survives a restart: every start
// uses the same socket, runtime and state directories.
type failDaemon struct {
	name, sock, run string
	starts          int
	p               *testhost.Proc
}

// newFailDaemon writes config to the share and starts usbctld on it (see
// start).
func newFailDaemon(ctx context.Context, t *testing.T, name, config string) *failDaemon {
	t.Helper()
	share, _ := host.SharedDir()
	if err := os.WriteFile(filepath.Join(share, name+".hcl"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	run := "/run/usbctl-" + name
	d := &failDaemon{name: name, sock: run + "/usbctl.sock", run: run}
	t.Cleanup(func() {
		if d.p != nil {
			d.stop(context.Background(), t)
		}
		if t.Failed() {
			d.dumpLogs(t)
		}
	})
	d.start(ctx, t)
	return d
}

// start starts usbctld and returns once its first complete sync is done.
func (d *failDaemon) start(ctx context.Context, t *testing.T) {
	t.Helper()
	d.starts++
	p, err := host.Start(ctx, d.logName(d.starts), bin+"/usbctld", "--config", testhost.Inside+"/"+d.name+".hcl",
		"--socket", d.sock, "--runtime-dir", d.run+"/run", "--state-dir", d.run+"/state", "--log-level", "debug")
	if err != nil {
		t.Fatal(err)
	}
	d.p = p
	if _, err := host.ShEnv(ctx, []string{"SOCK=" + d.sock}, `
for i in $(seq 150); do
	`+bin+`/usbctl --socket "$SOCK" status --json 2>/dev/null | grep -q '"ready": *true' && exit 0
	sleep 0.2
done
echo "usbctld not ready after 30 s" >&2; exit 1`); err != nil {
		t.Fatalf("%v", err)
	}
}

// stop sends SIGTERM (usbctld leaves its devices attached) and waits.
func (d *failDaemon) stop(ctx context.Context, t *testing.T) {
	t.Helper()
	if _, err := d.p.Stop(ctx, 10*time.Second); err != nil {
		t.Error(err)
	}
	d.p = nil
}

func (d *failDaemon) logName(n int) string { return fmt.Sprintf("usbctld-%s-%d", d.name, n) }

// log is what every start of usbctld wrote so far.
func (d *failDaemon) log(t *testing.T) string {
	t.Helper()
	share, _ := host.SharedDir()
	var b strings.Builder
	for n := 1; n <= d.starts; n++ {
		s, err := os.ReadFile(filepath.Join(share, "logs", d.logName(n)+".log"))
		if err != nil {
			t.Error(err)
		}
		b.Write(s)
	}
	return b.String()
}

func (d *failDaemon) dumpLogs(t *testing.T) {
	t.Logf("usbctld log:\n%s", lastLines(d.log(t), 80))
	if out, err := host.ShEnv(context.Background(), []string{"SOCK=" + d.sock}, bin+`/usbctl --socket "$SOCK" status`); err == nil {
		t.Logf("usbctl status:\n%s", out)
	}
}

// status is `usbctl status --json` (pending actions are under "pending",
// left out when there are none).
func (d *failDaemon) status(ctx context.Context, t *testing.T) string {
	t.Helper()
	out, err := host.ShEnv(ctx, []string{"SOCK=" + d.sock}, bin+`/usbctl --socket "$SOCK" status --json`)
	if err != nil {
		t.Fatalf("usbctl status: %v", err)
	}
	return out
}

// attachAttempts counts usbctld's attach calls for alias in its log: the
// successes ("msg=attach") and the failures ("msg=\"attach failed\"").
func attachAttempts(log, alias string) (ok, failed int) {
	for _, l := range strings.Split(log, "\n") {
		if !strings.Contains(l, "alias="+alias) {
			continue
		}
		switch {
		case strings.Contains(l, "msg=attach "):
			ok++
		case strings.Contains(l, `msg="attach failed"`):
			failed++
		}
	}
	return ok, failed
}

// usbctlHostdevs returns the usbctl aliases in dom's live XML and in
// QEMU's info usb, each sorted as virsh printed them.
func usbctlHostdevs(ctx context.Context, t *testing.T, dom string) (xml, qemu []string) {
	t.Helper()
	out, err := host.ShEnv(ctx, []string{"DOM=" + dom}, `
virsh dumpxml "$DOM" | grep -o "<alias name='ua-usbctl-[^']*'/>" | sed "s/.*name='\([^']*\)'.*/X \1/"
virsh qemu-monitor-command --hmp "$DOM" 'info usb' | grep -o 'ID: ua-usbctl-[^ ,]*' | sed 's/ID: /Q /'
true`)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) != 2 {
			continue
		}
		if f[0] == "X" {
			xml = append(xml, f[1])
		} else {
			qemu = append(qemu, f[1])
		}
	}
	return xml, qemu
}

// waitOnly polls until alias is dom's only usbctl hostdev, in the live XML
// and in info usb, and fails with what virsh showed last.
func waitOnly(ctx context.Context, t *testing.T, dom, alias string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		xml, qemu := usbctlHostdevs(ctx, t, dom)
		if len(xml) == 1 && xml[0] == alias && len(qemu) == 1 && qemu[0] == alias {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("want only %s in %s: live XML has %q, info usb has %q", alias, dom, xml, qemu)
		}
		time.Sleep(time.Second)
	}
}

// TestReplugWhileDaemonStopped: the device is attached, usbctld stops
// (SIGTERM leaves it attached), the device is unplugged and plugged again
// on the same port (a new devnum) before usbctld starts again. The hostdev
// of the old bus/dev is stale (its source gone); usbctld must remove it and
// attach the device's current one, without a "in use by driver QEMU" wedge.
func TestReplugWhileDaemonStopped(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	d := newFailDaemon(ctx, t, "replug", `
libvirt {
  uri = "qemu:///system"
}

domain "`+guest+`" {
  device "tablet" {
    vendor  = "0627"
    product = "0001"
  }
}
`)
	dev := testhost.EmulatedDevice{ID: "tab1", Driver: "usb-tablet", Port: "3"}
	if err := host.Plug(ctx, dev); err != nil {
		t.Fatal(err)
	}
	old := waitDevice(ctx, t, "0627", "0001")
	waitHostdev(ctx, t, old, true)

	d.stop(ctx, t)
	if err := host.Unplug(ctx, dev.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := host.Sh(ctx, `for i in $(seq 100); do
	ls /sys/bus/usb/devices/*/idVendor >/dev/null 2>&1 || exit 0
	grep -q 0627 /sys/bus/usb/devices/*/idVendor || exit 0
	sleep 0.1
done; echo "tablet still in sysfs" >&2; exit 1`); err != nil {
		t.Fatal(err)
	}
	xml, qemu := usbctlHostdevs(ctx, t, guest)
	t.Logf("usbctld stopped, device unplugged: live XML has %q, info usb has %q", xml, qemu)
	if err := host.Plug(ctx, dev); err != nil {
		t.Fatal(err)
	}
	cur := waitDevice(ctx, t, "0627", "0001")
	if cur == old {
		t.Fatalf("replug kept the bus/dev %s: the scenario needs a new devnum", cur)
	}
	xml, qemu = usbctlHostdevs(ctx, t, guest)
	t.Logf("replugged as %s: live XML has %q, info usb has %q", cur, xml, qemu)

	start := time.Now()
	d.start(ctx, t)
	waitOnly(ctx, t, guest, cur, 30*time.Second)
	t.Logf("usbctld restarted: only %s attached %v after its start", cur, time.Since(start).Round(time.Millisecond))

	log := d.log(t)
	if strings.Contains(log, "in use by driver") {
		t.Errorf("usbctld's log shows the wedge:\n%s", grepLines(log, "in use by driver"))
	}
	ok, failed := attachAttempts(log, cur)
	t.Logf("attach attempts for %s: %d ok, %d failed", cur, ok, failed)
	if ok != 1 || failed > 1 {
		t.Errorf("attach attempts for %s: %d ok, %d failed; want one success and at most one failure", cur, ok, failed)
	}
	if st := d.status(ctx, t); strings.Contains(st, `"pending"`) || !strings.Contains(st, cur) {
		t.Errorf("usbctl status, want %s attached and nothing pending:\n%s", cur, st)
	}
	if err := host.Unplug(ctx, dev.ID); err != nil {
		t.Fatal(err)
	}
	waitHostdev(ctx, t, cur, false)
}

// TestReenumerateWhileAttached: an attached gadget resets on the same port
// with the same vendor:product:serial and a new devnum (unbind and bind of
// its UDC): the hostdev of the old devnum goes, the new one is attached.
func TestReenumerateWhileAttached(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	d := newFailDaemon(ctx, t, "reenum", `
libvirt {
  uri = "qemu:///system"
}

domain "`+guest+`" {
  device "board" {
    vendor  = "1d6b"
    product = "0104"
    serial  = "TH-REENUM-1"
  }
}
`)
	g, err := host.Gadget(ctx, testhost.GadgetSpec{Name: "reenum", Vendor: "1d6b", Product: "0104", Serial: "TH-REENUM-1", ProductName: "testhost board"})
	if err != nil {
		t.Fatal(err)
	}
	old := fmt.Sprintf("ua-usbctl-%03d-%03d", g.Bus, g.Dev)
	waitHostdev(ctx, t, old, true)

	start := time.Now()
	if err := g.Reenumerate(ctx, "0104"); err != nil {
		t.Fatal(err)
	}
	cur := fmt.Sprintf("ua-usbctl-%03d-%03d", g.Bus, g.Dev)
	if cur == old {
		t.Fatalf("re-enumeration kept %s", cur)
	}
	waitOnly(ctx, t, guest, cur, 30*time.Second)
	t.Logf("re-enumerated %s → %s: only the new one attached %v after the rebind", old, cur, time.Since(start).Round(time.Millisecond))

	log := d.log(t)
	ok, failed := attachAttempts(log, cur)
	t.Logf("attach attempts for %s: %d ok, %d failed", cur, ok, failed)
	if ok != 1 || failed > 1 {
		t.Errorf("attach attempts for %s: %d ok, %d failed; want one success and at most one failure", cur, ok, failed)
	}
	if strings.Contains(log, "in use by driver") {
		t.Errorf("usbctld's log shows the wedge:\n%s", grepLines(log, "in use by driver"))
	}
	if st := d.status(ctx, t); strings.Contains(st, `"pending"`) {
		t.Errorf("usbctl status, want nothing pending:\n%s", st)
	}
	if err := g.Remove(ctx); err != nil {
		t.Fatal(err)
	}
	waitHostdev(ctx, t, cur, false)
}

// grepLines returns the lines of s that contain sub.
func grepLines(s, sub string) string {
	var b strings.Builder
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}
