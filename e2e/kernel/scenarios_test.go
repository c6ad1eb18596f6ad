//go:build testhost

package kernel

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/usbctl/usbctl/internal/testhost"
)

// The scenarios of issue 12 part 2: the real usbctld against the real
// kernel, udev and libvirtd, in the situations that break a naive daemon
// (re-enumeration, its own crash, the guest's death, identical devices,
// hostile strings). Every test shares the suite's one test host and guest
// and leaves the guest running with no usbctl hostdev.

// liveAliases returns the aliases of the usbctl hostdevs in the guest's
// live XML, parsed (not grepped, so an injected element would show as
// one more hostdev, or as XML that does not parse).
func liveAliases(ctx context.Context, t *testing.T) []string {
	t.Helper()
	res, err := host.Run(ctx, "virsh", "dumpxml", guest)
	if err != nil || res.Exit != 0 {
		t.Fatalf("virsh dumpxml %s: %v %s", guest, err, res.Stderr)
	}
	var dom struct {
		Hostdevs []struct {
			Alias struct {
				Name string `xml:"name,attr"`
			} `xml:"alias"`
		} `xml:"devices>hostdev"`
	}
	if err := xml.Unmarshal(res.Stdout, &dom); err != nil {
		t.Fatalf("live XML of %s does not parse: %v\n%s", guest, err, res.Stdout)
	}
	var out []string
	for _, h := range dom.Hostdevs {
		if strings.HasPrefix(h.Alias.Name, "ua-usbctl-") {
			out = append(out, h.Alias.Name)
		}
	}
	return out
}

// daemonStatus is the part of `usbctl status --json` the scenarios read.
type daemonStatus struct {
	Ready   bool `json:"ready"`
	Domains []struct {
		Name     string `json:"name"`
		State    string `json:"state"`
		Attached []struct {
			Alias   string `json:"alias"`
			Adopted bool   `json:"adopted"`
			Device  *struct {
				Serial       string `json:"serial"`
				Product      string `json:"product"`
				Manufacturer string `json:"manufacturer"`
			} `json:"device"`
		} `json:"attached"`
	} `json:"domains"`
	// HeldOnHost: devices attached while a host program held them.
	HeldOnHost []struct {
		Key struct {
			Bus int `json:"bus"`
			Dev int `json:"dev"`
		} `json:"key"`
		Domain     string   `json:"domain"`
		Alias      string   `json:"alias"`
		Interfaces []string `json:"interfaces"`
		Warning    string   `json:"warning"`
		Fix        string   `json:"fix"`
	} `json:"held_on_host"`
}

func (d *daemon) status(ctx context.Context, t *testing.T) daemonStatus {
	t.Helper()
	out := d.statusJSON(ctx, t)
	var st daemonStatus
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("usbctl status --json: %v\n%s", err, out)
	}
	return st
}

// guestStatus returns the guest's state and attached aliases as usbctld
// reports them.
func (st daemonStatus) guest() (state string, aliases []string, adopted []bool) {
	for _, dom := range st.Domains {
		if dom.Name == guest {
			for _, a := range dom.Attached {
				aliases = append(aliases, a.Alias)
				adopted = append(adopted, a.Adopted)
			}
			return dom.State, aliases, adopted
		}
	}
	return "", nil, nil
}

// logCount counts usbctld's log lines with msg=MSG (slog text: an action
// is logged as msg=attach / msg=detach, a failure as msg="attach failed").
func logCount(t *testing.T, p *testhost.Proc, msg string) int {
	t.Helper()
	b, err := p.Log()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, " msg="+msg+" ") {
			n++
		}
	}
	return n
}

func gadgetAlias(g *testhost.Gadget) string {
	return fmt.Sprintf("ua-usbctl-%03d-%03d", g.Bus, g.Dev)
}

// removeAtEnd removes the gadget when the test ends (before the daemon
// stops: cleanups run last-in first-out, and the gadget is made after
// the daemon).
func removeAtEnd(t *testing.T, g *testhost.Gadget) {
	t.Cleanup(func() {
		if err := g.Remove(context.Background()); err != nil {
			t.Error(err)
		}
	})
}

func wantAliases(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("%s: usbctl hostdevs %q, want %q", what, got, want)
	}
}

// TestDFUReenumeration: a board that re-enumerates on the same port with
// another product id (DFU) and a new devnum ends with exactly one hostdev,
// the new one, and the old one is detached once at most.
func TestDFUReenumeration(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	d := startDaemon(ctx, t, "dfu", `
libvirt {
  uri = "qemu:///system"
}

domain "`+guest+`" {
  device "board" {
    ids = ["1d6b:5740", "1d6b:df11"]
  }
}
`)
	g, err := host.Gadget(ctx, testhost.GadgetSpec{Name: "dfu", Vendor: "1d6b", Product: "5740", ProductName: "testhost vcp"})
	if err != nil {
		t.Fatal(err)
	}
	removeAtEnd(t, g)
	before := gadgetAlias(g)
	waitHostdev(ctx, t, before, true)
	start := time.Now()
	if err := g.Reenumerate(ctx, "df11"); err != nil {
		t.Fatal(err)
	}
	after := gadgetAlias(g)
	if after == before {
		t.Fatalf("re-enumeration kept devnum %d", g.Dev)
	}
	waitHostdev(ctx, t, after, true)
	waitHostdev(ctx, t, before, false)
	t.Logf("%s -> %s (%s) attached %v after re-enumeration", before, after, g.Port, time.Since(start).Round(time.Millisecond))
	wantAliases(t, "live XML", liveAliases(ctx, t), after)
	_, st, _ := d.status(ctx, t).guest()
	wantAliases(t, "usbctl status", st, after)
	if n := logCount(t, d.p, "attach"); n != 2 {
		t.Errorf("usbctld logged %d attaches, want 2 (5740, then df11)", n)
	}
	if n := logCount(t, d.p, "detach"); n > 1 {
		t.Errorf("usbctld logged %d detaches of the vanished %s, want at most 1", n, before)
	}
	if n := logCount(t, d.p, `"detach failed"`) + logCount(t, d.p, `"attach failed"`); n != 0 {
		t.Errorf("usbctld logged %d failed actions", n)
	}
}

// TestDaemonKilledAdopts: usbctld killed with SIGKILL while a device is
// attached, then started again on the same state, adopts the hostdev it
// finds instead of attaching a second one.
func TestDaemonKilledAdopts(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	d := startDaemon(ctx, t, "adopt", `
libvirt {
  uri = "qemu:///system"
}

domain "`+guest+`" {
  device "board" {
    vendor  = "1d6b"
    product = "0105"
    serial  = "TH-ADOPT"
  }
}
`)
	g, err := host.Gadget(ctx, testhost.GadgetSpec{Name: "adopt", Vendor: "1d6b", Product: "0105", Serial: "TH-ADOPT"})
	if err != nil {
		t.Fatal(err)
	}
	removeAtEnd(t, g)
	alias := gadgetAlias(g)
	waitHostdev(ctx, t, alias, true)
	first := d.p
	if err := first.Signal(ctx, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if code, err := first.Wait(ctx); err != nil || code != 128+int(syscall.SIGKILL) {
		t.Fatalf("usbctld after SIGKILL: exit %d, %v", code, err)
	}
	if n := logCount(t, first, "attach"); n != 1 {
		t.Errorf("first usbctld logged %d attaches, want 1", n)
	}
	start := time.Now()
	d.launch(ctx, t)
	t.Logf("usbctld ready again %v after SIGKILL", time.Since(start).Round(time.Millisecond))
	waitHostdev(ctx, t, alias, true)
	wantAliases(t, "live XML after restart", liveAliases(ctx, t), alias)
	_, st, adopted := d.status(ctx, t).guest()
	wantAliases(t, "usbctl status after restart", st, alias)
	if len(adopted) == 1 && !adopted[0] {
		t.Errorf("usbctl status: %s not marked adopted", alias)
	}
	if n := logCount(t, d.p, "attach"); n != 0 {
		t.Errorf("restarted usbctld logged %d attaches, want 0 (adopted)", n)
	}
	if n := logCount(t, d.p, "detach"); n != 0 {
		t.Errorf("restarted usbctld logged %d detaches, want 0", n)
	}
}

// guestPID returns the PID of the guest's QEMU, from libvirt's pid file.
func guestPID(ctx context.Context, t *testing.T) int {
	t.Helper()
	out, err := host.Sh(ctx, "cat /run/libvirt/qemu/"+guest+".pid")
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil {
		t.Fatalf("pid file of %s: %v", guest, err)
	}
	return pid
}

// waitState polls usbctl status until usbctld reports the guest in state.
func (d *daemon) waitState(ctx context.Context, t *testing.T, state string) {
	t.Helper()
	if _, err := host.ShEnv(ctx, []string{"SOCK=" + d.sock, "DOM=" + guest, "STATE=" + state}, `
for i in $(seq 100); do
	`+bin+`/usbctl --socket "$SOCK" status --json | tr -d '\n\t' | grep -Eq "\"name\": *\"$DOM\", *\"state\": *\"$STATE\"" && exit 0
	sleep 0.2
done
echo "usbctld does not report $DOM $STATE:" >&2
`+bin+`/usbctl --socket "$SOCK" status >&2
exit 1`); err != nil {
		t.Fatal(err)
	}
}

// TestGuestDestroyedCrashedRestarted: the hostdev goes with the guest on
// virsh destroy and on a crash (QEMU killed with SIGKILL), usbctld sees
// the guest shut off, and attaches the device again each time the guest
// starts.
func TestGuestDestroyedCrashedRestarted(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	t.Cleanup(func() {
		// Leave the guest running for the tests after this one.
		host.Sh(context.Background(), "virsh domstate "+guest+" | grep -q running || virsh -q start "+guest)
	})
	d := startDaemon(ctx, t, "life", `
libvirt {
  uri = "qemu:///system"
}

domain "`+guest+`" {
  device "board" {
    vendor  = "1d6b"
    product = "0106"
    serial  = "TH-LIFE"
  }
}
`)
	g, err := host.Gadget(ctx, testhost.GadgetSpec{Name: "life", Vendor: "1d6b", Product: "0106", Serial: "TH-LIFE"})
	if err != nil {
		t.Fatal(err)
	}
	removeAtEnd(t, g)
	alias := gadgetAlias(g)
	waitHostdev(ctx, t, alias, true)

	if _, err := host.Sh(ctx, "virsh -q destroy "+guest); err != nil {
		t.Fatal(err)
	}
	d.waitState(ctx, t, "shut off")
	wantAliases(t, "inactive XML after destroy", liveAliases(ctx, t))
	start := time.Now()
	if _, err := host.Sh(ctx, "virsh -q start "+guest); err != nil {
		t.Fatal(err)
	}
	waitHostdev(ctx, t, alias, true)
	t.Logf("%s attached again %v after virsh start (destroyed)", alias, time.Since(start).Round(time.Millisecond))

	pid := guestPID(ctx, t)
	if _, err := host.Run(ctx, "kill", "-9", strconv.Itoa(pid)); err != nil {
		t.Fatal(err)
	}
	d.waitState(ctx, t, "shut off")
	wantAliases(t, "XML after the crash", liveAliases(ctx, t))
	start = time.Now()
	if _, err := host.Sh(ctx, "virsh -q start "+guest); err != nil {
		t.Fatal(err)
	}
	waitHostdev(ctx, t, alias, true)
	t.Logf("%s attached again %v after virsh start (crashed)", alias, time.Since(start).Round(time.Millisecond))
	wantAliases(t, "live XML at the end", liveAliases(ctx, t), alias)
	if n := logCount(t, d.p, "attach"); n != 3 {
		t.Errorf("usbctld logged %d attaches, want 3 (one per guest start)", n)
	}
	if n := logCount(t, d.p, `"attach failed"`); n != 0 {
		t.Errorf("usbctld logged %d failed attaches", n)
	}
	// Nothing holds the gadget on the host: the claim reads around each
	// attach at the guest's start (SeaBIOS scanning its ports) must not
	// take QEMU's own claims for another program's.
	if n := logCount(t, d.p, `"device held on the host"`); n != 0 {
		t.Errorf("usbctld warned %d times of a device held on the host; nothing held it", n)
	}
}

// TestIdenticalDevicesByPort: two devices with the same vendor:product and
// no serial, on different ports; a rule with a port takes only its own.
func TestIdenticalDevicesByPort(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	var gs []*testhost.Gadget
	for _, name := range []string{"twin1", "twin2"} {
		g, err := host.Gadget(ctx, testhost.GadgetSpec{Name: name, Vendor: "1d6b", Product: "0107"})
		if err != nil {
			t.Fatal(err)
		}
		gs = append(gs, g)
	}
	if gs[0].Port == gs[1].Port {
		t.Fatalf("both gadgets on port %s", gs[0].Port)
	}
	d := startDaemon(ctx, t, "twins", `
libvirt {
  uri = "qemu:///system"
}

domain "`+guest+`" {
  device "second" {
    vendor  = "1d6b"
    product = "0107"
    port    = "`+gs[1].Port+`"
  }
}
`)
	for _, g := range gs {
		removeAtEnd(t, g)
	}
	want := gadgetAlias(gs[1])
	waitHostdev(ctx, t, want, true)
	wantAliases(t, "live XML", liveAliases(ctx, t), want)
	_, st, _ := d.status(ctx, t).guest()
	wantAliases(t, "usbctl status", st, want)
	if n := logCount(t, d.p, "attach"); n != 1 {
		t.Errorf("usbctld logged %d attaches, want 1", n)
	}
}

// TestHostileStrings: a device whose string descriptors hold quotes, XML
// markup and newlines is matched by its serial and attached; the live XML
// gains no element, and usbctl shows the strings without raw control
// characters.
func TestHostileStrings(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	const serial = `S'"<>&</hostdev><x/>`
	spec := testhost.GadgetSpec{
		Name: "hostile", Vendor: "1d6b", Product: "0108", Serial: serial,
		Manufacturer: "M'\"<>&\nINJECTED-LINE</hostdev>",
		ProductName:  "P</source></hostdev><hostdev mode='subsystem' type='usb'>\n'\"&amp;",
	}
	// strconv.Quote writes \" and \\ escapes, which HCL reads the same way;
	// the serial has no $ or %, HCL's template introducers.
	d := startDaemon(ctx, t, "hostile", `
libvirt {
  uri = "qemu:///system"
}

domain "`+guest+`" {
  device "hostile" {
    vendor  = "1d6b"
    product = "0108"
    serial  = `+strconv.Quote(serial)+`
  }
}
`)
	g, err := host.Gadget(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	removeAtEnd(t, g)
	alias := gadgetAlias(g)
	waitHostdev(ctx, t, alias, true)
	wantAliases(t, "live XML", liveAliases(ctx, t), alias)
	res, err := host.Run(ctx, "virsh", "dumpxml", guest)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(res.Stdout), "<hostdev "); n != 1 {
		t.Errorf("live XML has %d <hostdev> elements, want 1", n)
	}
	st := d.status(ctx, t)
	_, aliases, _ := st.guest()
	wantAliases(t, "usbctl status", aliases, alias)
	for _, dom := range st.Domains {
		for _, a := range dom.Attached {
			if a.Device != nil && a.Device.Serial != serial {
				t.Errorf("usbctl status --json: serial %q, want %q", a.Device.Serial, serial)
			}
		}
	}
	for _, argv := range [][]string{{"status"}, {"devices"}} {
		res, err := host.Run(ctx, append([]string{bin + "/usbctl", "--socket", d.sock}, argv...)...)
		if err != nil || res.Exit != 0 {
			t.Fatalf("usbctl %s: %v %s", argv[0], err, res.Stderr)
		}
		for _, l := range strings.Split(string(res.Stdout), "\n") {
			if strings.HasPrefix(strings.TrimSpace(l), "INJECTED-LINE") {
				t.Errorf("usbctl %s printed the manufacturer's newline raw:\n%s", argv[0], res.Stdout)
			}
		}
		t.Logf("usbctl %s:\n%s", argv[0], res.Stdout)
	}
}

// TestHandAttachedUntouched: a hostdev an administrator attached by hand
// (virsh attach-device, no ua-usbctl alias) for a device no rule wants is
// never detached by usbctld, not at its first sync nor after a reload.
func TestHandAttachedUntouched(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	g, err := host.Gadget(ctx, testhost.GadgetSpec{Name: "hand", Vendor: "1d6b", Product: "0109", Serial: "TH-HAND"})
	if err != nil {
		t.Fatal(err)
	}
	removeAtEnd(t, g)
	share, inside := host.SharedDir()
	hostdev := fmt.Sprintf(`<hostdev mode='subsystem' type='usb' managed='no'><source><address bus='%d' device='%d'/></source></hostdev>`, g.Bus, g.Dev)
	if err := os.WriteFile(filepath.Join(share, "hand.xml"), []byte(hostdev), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := host.Sh(ctx, "virsh -q attach-device "+guest+" "+inside+"/hand.xml --live"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := host.Sh(context.Background(), "virsh -q detach-device "+guest+" "+inside+"/hand.xml --live"); err != nil {
			t.Error(err)
		}
	})
	d := startDaemon(ctx, t, "hand", `
libvirt {
  uri = "qemu:///system"
}

domain "`+guest+`" {
  device "other" {
    vendor  = "1d6b"
    product = "01ff"
  }
}
`)
	// handHeld checks the hand-made hostdev is still in the live XML.
	handHeld := func(when string) {
		t.Helper()
		res, err := host.Run(ctx, "virsh", "dumpxml", guest)
		if err != nil {
			t.Fatal(err)
		}
		addr := fmt.Sprintf("<address bus='%d' device='%d'/>", g.Bus, g.Dev)
		if !strings.Contains(string(res.Stdout), addr) {
			t.Errorf("%s: the hand-attached hostdev (%s) is gone from the live XML", when, addr)
		}
	}
	handHeld("after usbctld's first sync")
	if err := d.p.Signal(ctx, syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	// The reload and the sync after it: wait for the log to say so, once.
	if _, err := host.ShEnv(ctx, []string{"LOG=" + strings.Replace(d.p.LogPath, share, inside, 1)}, `
for i in $(seq 100); do grep -q 'reload requested' "$LOG" && break; sleep 0.1; done
sleep 2`); err != nil {
		t.Fatal(err)
	}
	handHeld("after a reload")
	wantAliases(t, "usbctl hostdevs", liveAliases(ctx, t))
	if n := logCount(t, d.p, "detach") + logCount(t, d.p, "attach"); n != 0 {
		t.Errorf("usbctld logged %d attaches/detaches, want 0", n)
	}
}

// TestHubPort: a keyboard behind an emulated hub is attached by a port
// rule for the hub's downstream ports; the hub itself stays on the host.
func TestHubPort(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	d := startDaemon(ctx, t, "hub", `
libvirt {
  uri = "qemu:///system"
}

domain "`+guest+`" {
  device "behind-hub" {
    port = "1-2.*"
  }
}
`)
	if err := host.Plug(ctx, testhost.EmulatedDevice{ID: "hub1", Driver: "usb-hub", Port: "2"}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := host.Unplug(context.Background(), "hub1"); err != nil {
			t.Error(err)
		}
	})
	if err := host.Plug(ctx, testhost.EmulatedDevice{ID: "hubkbd", Driver: "usb-kbd", Port: "2.1"}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := host.Unplug(context.Background(), "hubkbd"); err != nil {
			t.Error(err)
		}
	})
	alias := waitDevice(ctx, t, "0627", "0001")
	waitHostdev(ctx, t, alias, true)
	wantAliases(t, "live XML", liveAliases(ctx, t), alias)
	out, err := host.Sh(ctx, "cat /sys/bus/usb/devices/1-2.1/devnum /sys/bus/usb/devices/1-2/bDeviceClass")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(out)
	if len(f) != 2 || f[1] != "09" {
		t.Fatalf("sysfs: 1-2.1 devnum and 1-2 class: %q, want a hub (09) on 1-2", f)
	}
	if dev, _ := strconv.Atoi(f[0]); alias != fmt.Sprintf("ua-usbctl-001-%03d", dev) {
		t.Errorf("attached %s, but the keyboard behind the hub is 001:%03d", alias, dev)
	}
	if n := logCount(t, d.p, "attach"); n != 1 {
		t.Errorf("usbctld logged %d attaches, want 1 (the keyboard only)", n)
	}
}

// TestLibvirtdRestarted: libvirtd killed and started again (as
// SetupLibvirt starts it, a background process) while a device is
// attached: usbctld reconnects, keeps the one hostdev, and attaches a
// device plugged after the restart. Last in the file: the tests after it
// need libvirtd back.
func TestLibvirtdRestarted(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	d := startDaemon(ctx, t, "lvd", `
libvirt {
  uri = "qemu:///system"
}

domain "`+guest+`" {
  device "board" {
    vendor  = "1d6b"
    product = "010a"
    serial  = "TH-LVD-1"
  }
  device "late" {
    vendor  = "1d6b"
    product = "010b"
    serial  = "TH-LVD-2"
  }
}
`)
	g1, err := host.Gadget(ctx, testhost.GadgetSpec{Name: "lvd1", Vendor: "1d6b", Product: "010a", Serial: "TH-LVD-1"})
	if err != nil {
		t.Fatal(err)
	}
	removeAtEnd(t, g1)
	a1 := gadgetAlias(g1)
	waitHostdev(ctx, t, a1, true)
	// libvirtd writes its pid file; kill exactly that process.
	if _, err := host.Sh(ctx, `
pid=$(cat /run/libvirtd.pid)
kill -9 "$pid"
for i in $(seq 100); do kill -0 "$pid" 2>/dev/null || exit 0; sleep 0.1; done
echo "libvirtd $pid still alive" >&2; exit 1`); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := host.Start(ctx, "libvirtd-restarted", "libvirtd"); err != nil {
		t.Fatal(err)
	}
	if _, err := host.ShEnv(ctx, []string{"SOCK=" + d.sock}, `
for i in $(seq 300); do
	virsh -c qemu:///system version >/dev/null 2>&1 && break; sleep 0.2
done
for i in $(seq 150); do
	`+bin+`/usbctl --socket "$SOCK" status | grep -q 'qemu:///system connected' && exit 0; sleep 0.2
done
echo "usbctld did not reconnect:" >&2; `+bin+`/usbctl --socket "$SOCK" status >&2; exit 1`); err != nil {
		t.Fatal(err)
	}
	t.Logf("libvirtd back and usbctld reconnected %v after the kill", time.Since(start).Round(time.Millisecond))
	waitHostdev(ctx, t, a1, true)
	wantAliases(t, "live XML after the restart", liveAliases(ctx, t), a1)
	g2, err := host.Gadget(ctx, testhost.GadgetSpec{Name: "lvd2", Vendor: "1d6b", Product: "010b", Serial: "TH-LVD-2"})
	if err != nil {
		t.Fatal(err)
	}
	removeAtEnd(t, g2)
	a2 := gadgetAlias(g2)
	waitHostdev(ctx, t, a2, true)
	got := liveAliases(ctx, t)
	if len(got) != 2 {
		t.Errorf("live XML: usbctl hostdevs %q, want %s and %s", got, a1, a2)
	}
	if n := logCount(t, d.p, "attach"); n != 2 {
		t.Errorf("usbctld logged %d attaches, want 2 (one per device)", n)
	}
}
