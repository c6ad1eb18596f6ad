//go:build testhost

package kernel

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

// TestSpeedMismatch: a full-speed device and a guest whose only USB
// controller is an EHCI without UHCI companions. QEMU refuses it (libvirt
// says only "failed to open host usb device"; the reason, "speed
// mismatch", is in the domain's QEMU log). usbctl must say why and what to
// do, try once rather than loop, and attach the device once the domain has
// a controller that takes it.
//
// (A high-speed device into a UHCI-only guest is not refused by QEMU 7.2
// unless it has isochronous endpoints or interrupt endpoints over 64
// bytes: it passes as full speed, so that is not the case tried here.)
func TestSpeedMismatch(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	const dom = "l2e"
	defineGuest(ctx, t, dom, testhost.GuestXML(dom, `<controller type='usb' model='ehci'/>`))
	d := startDaemon(ctx, t, "speed", `
libvirt {
  uri = "qemu:///system"
}

domain "`+dom+`" {
  device "slow" {
    vendor  = "1d6b"
    product = "0120"
    serial  = "TH-SPEED-1"
  }
}
`)
	g, _ := gadget(ctx, t, testhost.GadgetSpec{Name: "speed", Vendor: "1d6b", Product: "0120", Serial: "TH-SPEED-1", MaxSpeed: "full-speed"})
	alias := fmt.Sprintf("ua-usbctl-%03d-%03d", g.Bus, g.Dev)
	if sp, err := host.Sh(ctx, "cat /sys/bus/usb/devices/"+g.Port+"/speed"); err != nil || strings.TrimSpace(sp) != "12" {
		t.Fatalf("gadget %s speed %q (%v): want 12 (full speed)", g.Port, sp, err)
	}

	// What the user sees: the attach pending, permanent, with why and the fix.
	var st string
	for i := 0; ; i++ {
		st = d.statusJSON(ctx, t)
		if strings.Contains(st, alias) && strings.Contains(st, `"permanent": true`) && strings.Contains(st, "take high speed only") {
			break
		}
		if i == 30 {
			d.dumpLogs(t)
			t.Fatalf("want %s pending, permanent, explained by its speed in usbctl status:\n%s", alias, st)
		}
		time.Sleep(time.Second)
	}
	for _, want := range []string{"failed to open host usb device", "full speed (12 Mb/s)", "(ehci)", "qemu-xhci"} {
		if !strings.Contains(st, want) {
			t.Errorf("usbctl status --json does not say %q:\n%s", want, st)
		}
	}
	if out, err := host.ShEnv(ctx, []string{"SOCK=" + d.sock}, bin+`/usbctl --socket "$SOCK" status`); err != nil {
		t.Error(err)
	} else {
		t.Logf("usbctl status (human):\n%s", out)
		if !strings.Contains(out, "take high speed only") || !strings.Contains(out, "qemu-xhci") {
			t.Errorf("usbctl status does not show why and the fix:\n%s", out)
		}
	}
	// The reason usbctl gives is QEMU's own.
	if qlog, err := host.Sh(ctx, "cat /var/log/libvirt/qemu/"+dom+".log"); err != nil || !strings.Contains(qlog, "speed mismatch") {
		t.Errorf("the domain's QEMU log does not say speed mismatch (%v):\n%s", err, lastLines(qlog, 10))
	}

	// It waits for a change: one attempt, and no retries while nothing
	// changes. The gadget's udev "bind", which follows its "add" while
	// that attempt runs, shows the same device and is no change.
	time.Sleep(2 * time.Second)
	_, failed := attachAttempts(d.log(t), alias)
	if failed != 1 {
		t.Errorf("attach attempts for %s after the plug: %d failed; want 1", alias, failed)
	}
	time.Sleep(10 * time.Second)
	_, later := attachAttempts(d.log(t), alias)
	t.Logf("attach attempts for %s with the EHCI-only guest: %d failed after the plug, %d after %v more", alias, failed, later, 10*time.Second)
	if later != failed {
		t.Errorf("attach attempts for %s: %d, then %d %v later with nothing changed; want none (permanent: wait for a change)", alias, failed, later, 10*time.Second)
	}
	if xml, qemu := usbctlHostdevs(ctx, t, dom); len(xml)+len(qemu) != 0 {
		t.Errorf("refused device shows in %s: live XML %q, info usb %q", dom, xml, qemu)
	}

	// The fix the status gives: a qemu-xhci controller, applied at the
	// domain's next start. Then the device is attached, once.
	share, inside := host.SharedDir()
	if err := os.WriteFile(filepath.Join(share, dom+"-xhci.xml"), []byte(testhost.GuestXML(dom, `<controller type='usb' model='qemu-xhci' ports='4'/>`)), 0o644); err != nil {
		t.Fatal(err)
	}
	// The same domain (its uuid kept), another controller.
	if _, err := host.ShEnv(ctx, []string{"DOM=" + dom, "XML=" + inside + "/" + dom + "-xhci.xml"}, `
set -e
u=$(virsh domuuid "$DOM")
sed "s|<name>$DOM</name>|<name>$DOM</name><uuid>$u</uuid>|" "$XML" > "$XML.uuid"
virsh -q destroy "$DOM"
virsh -q define "$XML.uuid"
virsh -q start "$DOM"`); err != nil {
		t.Fatal(err)
	}
	waitOnly(ctx, t, dom, alias, 30*time.Second)
	ok, failedAfter := attachAttempts(d.log(t), alias)
	t.Logf("attach attempts for %s after the fix: %d ok, %d failed", alias, ok, failedAfter)
	if ok != 1 || failedAfter != later {
		t.Errorf("attach attempts for %s: %d ok, %d failed (%d before the fix); want 1 ok and no new failure", alias, ok, failedAfter, later)
	}
	st = d.statusJSON(ctx, t)
	if strings.Contains(st, `"permanent": true`) {
		t.Errorf("still pending after the fix:\n%s", st)
	}
}
