//go:build testhost

package kernel

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/usbctl/usbctl/internal/testhost"
)

// holdInterface starts usbfshold on interface n of g: a host program that
// claims it through usbfs, as libusb does. It returns once the kernel
// shows the interface's driver as usbfs.
func holdInterface(ctx context.Context, t *testing.T, g *testhost.Gadget, name string, n int) *testhost.Proc {
	t.Helper()
	node := fmt.Sprintf("/dev/bus/usb/%03d/%03d", g.Bus, g.Dev)
	p, err := host.Start(ctx, name, bin+"/usbfshold", node, fmt.Sprint(n))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = p.Stop(context.Background(), 5*time.Second) })
	iface := fmt.Sprintf("%s:1.%d", g.Port, n)
	if _, err := host.ShEnv(ctx, []string{"I=/sys/bus/usb/devices/" + iface, "LOG=" + testhost.Inside + "/logs/" + name + ".log"}, `
for i in $(seq 100); do
	grep -q claimed "$LOG" 2>/dev/null && [ "$(basename "$(readlink "$I/driver")")" = usbfs ] && exit 0
	sleep 0.1
done
echo "interface $I: driver $(readlink "$I/driver"); usbfshold says: $(cat "$LOG")" >&2
exit 1`); err != nil {
		t.Fatalf("hold %s: %v", iface, err)
	}
	return p
}

// waitHeld polls usbctl status until the device is shown held on the host
// with interface iface (want) or not shown at all (!want).
func (d *daemon) waitHeld(ctx context.Context, t *testing.T, g *testhost.Gadget, iface string, want bool, within time.Duration) daemonStatus {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		st := d.status(ctx, t)
		found := false
		for _, h := range st.HeldOnHost {
			if h.Key.Bus == g.Bus && h.Key.Dev == g.Dev {
				found = strings.Join(h.Interfaces, " ") == iface
			}
		}
		if found == want {
			return st
		}
		if time.Now().After(deadline) {
			b, _ := d.p.Log()
			t.Fatalf("after %v: want %03d:%03d held on the host (%s): %v; status shows %+v\nusbctld log:\n%s",
				within, g.Bus, g.Dev, iface, want, st.HeldOnHost, lastLines(string(b), 30))
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// TestUsbfsHolder: a device a host program holds (one interface claimed
// through usbfs, as a smartcard daemon or a flashing tool does) is
// attached as the rules say — libvirt and QEMU accept it without a word,
// and the guest then cannot configure it — and usbctl status warns, with
// the program's device node to look for and how to give the guest a fresh
// start. The kernel sends no uevent for a usbfs claim, so usbctl reads
// sysfs at each attach and, while a warning stands, every 5 s. Both ways
// in are tried: a device held before usbctld starts (coldplug), and one
// held while usbctld runs, attached by usbctl release.
func TestUsbfsHolder(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	g, _ := gadget(ctx, t, testhost.GadgetSpec{Name: "held", Vendor: "1d6b", Product: "0130", Serial: "TH-HELD-1"})
	alias := gadgetAlias(g)
	key := fmt.Sprintf("%03d:%03d", g.Bus, g.Dev)
	iface := g.Port + ":1.0"
	holder := holdInterface(ctx, t, g, "usbfshold-1", 0)

	d := startDaemon(ctx, t, "held", `
libvirt {
  uri = "qemu:///system"
}

domain "`+guest+`" {
  device "held" {
    vendor  = "1d6b"
    product = "0130"
    serial  = "TH-HELD-1"
  }
}
`)
	// Attached, as the rule says: libvirt says nothing of the claim.
	waitHostdev(ctx, t, alias, true)
	st := d.waitHeld(ctx, t, g, iface, true, 10*time.Second)
	h := st.HeldOnHost[0]
	if h.Domain != guest || h.Alias != alias {
		t.Errorf("held on host: %+v, want domain %s alias %s", h, guest, alias)
	}
	if !strings.Contains(h.Warning, "may not be able to use") || !strings.Contains(h.Warning, iface) {
		t.Errorf("warning %q: want the interface and what it means", h.Warning)
	}
	for _, want := range []string{"fuser -v /dev/bus/usb/" + strings.Replace(key, ":", "/", 1), "usbctl detach " + key, "usbctl release " + key} {
		if !strings.Contains(h.Fix, want) {
			t.Errorf("fix %q does not say %q", h.Fix, want)
		}
	}
	// The fix's command names the program.
	node := "/dev/bus/usb/" + strings.Replace(key, ":", "/", 1)
	if out, err := host.Sh(ctx, "fuser -v "+node+" 2>&1"); err != nil || !strings.Contains(out, "usbfshold") {
		t.Errorf("fuser -v %s does not name the holder (%v):\n%s", node, err, out)
	} else {
		t.Logf("fuser -v %s:\n%s", node, out)
	}
	out, err := host.ShEnv(ctx, []string{"SOCK=" + d.sock}, bin+`/usbctl --socket "$SOCK" status`)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("usbctl status (human):\n%s", out)
	for _, want := range []string{"HELD ON THE HOST", iface, "warning: ", "fix:     stop the program"} {
		if !strings.Contains(out, want) {
			t.Errorf("usbctl status does not show %q", want)
		}
	}

	// No loop: one attach, and the recheck (5 s) keeps the warning while
	// the program holds on, attaching nothing more.
	time.Sleep(6 * time.Second)
	d.waitHeld(ctx, t, g, iface, true, time.Second)
	if n := logCount(t, d.p, "attach"); n != 1 {
		t.Errorf("%d attaches of a held device; want 1", n)
	}

	// The program lets go: the warning ends within a recheck, the device
	// stays where it is.
	if _, err := holder.Stop(ctx, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	d.waitHeld(ctx, t, g, iface, false, 12*time.Second)
	if logCount(t, d.p, `"device no longer held on the host"`) != 1 {
		t.Errorf("usbctld did not log the release once")
	}
	waitHostdev(ctx, t, alias, true)

	// While usbctld runs: the device back on the host (usbctl detach), a
	// program claims it there, and usbctl release gives it to the guest
	// again: attached, and warned of, as at start-up.
	d.ctl(ctx, t, "detach", key)
	waitHostdev(ctx, t, alias, false)
	holder2 := holdInterface(ctx, t, g, "usbfshold-2", 0)
	d.ctl(ctx, t, "release", key)
	waitHostdev(ctx, t, alias, true)
	d.waitHeld(ctx, t, g, iface, true, 10*time.Second)
	if n := logCount(t, d.p, "attach"); n != 2 {
		t.Errorf("%d attaches; want 2 (start-up, release)", n)
	}
	if _, err := holder2.Stop(ctx, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	d.waitHeld(ctx, t, g, iface, false, 12*time.Second)

	// What each read of the claims cost, as usbctld logged it.
	b, _ := d.p.Log()
	t.Logf("usbfs claim reads:\n%s", grepLines(string(b), "usbfs claims read"))

	// The test leaves the guest without the device.
	d.ctl(ctx, t, "detach", key)
	waitHostdev(ctx, t, alias, false)
}
