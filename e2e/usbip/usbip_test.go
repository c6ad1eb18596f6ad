//go:build testhost

// Package usbip checks USB/IP between two real-kernel test hosts side by
// side (internal/testhost) on one private network (testhost.Network): a
// gadget made on host A is exported by A's usbipd (usbip-host), attached
// on host B (vhci-hcd), seen in B's own sysfs with the gadget's identity,
// detached, and back on A with its ordinary driver. The kernel's modules
// and Debian's usbip tools, nothing emulated: the ground a device that
// follows its VM to another host stands on.
//
//	make test-usbip   (go test -tags testhost ./e2e/usbip/, as root)
package usbip

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/usbctl/usbctl/internal/stats"
	"github.com/usbctl/usbctl/internal/testhost"
)

// rounds of export, attach, detach and unexport on the same gadget: the
// latency's median is over them.
const rounds = 5

// gadget is the device that travels from A to B.
var gadget = testhost.GadgetSpec{Name: "roam", Vendor: "1d6b", Product: "0104", Serial: "USBIP-A-0001", Manufacturer: "usbctl", ProductName: "Roaming board"}

// vhciDevices prints, one per line, every USB device (not a root hub) on
// a vhci_hcd bus: sysfs name, vendor, product, serial, its real path.
const vhciDevices = `
vhci() {
	for d in /sys/bus/usb/devices/*-*; do
		case "${d##*/}" in *:*) continue;; esac
		p=$(readlink -f "$d")
		case "$p" in */vhci_hcd.*) ;; *) continue;; esac
		printf '%s\t%s\t%s\t%s\t%s\n' "${d##*/}" "$(cat "$d/idVendor")" "$(cat "$d/idProduct")" "$(cat "$d/serial" 2>/dev/null)" "$p"
	done
}
`

// attachScript attaches $BUSID from $REMOTE and waits for a device on
// vhci_hcd; it prints the nanoseconds from the attach command to the
// device in sysfs, then vhciDevices' lines. A device there before the
// attach is an error: the test must see this one arrive.
const attachScript = vhciDevices + `
if [ -n "$(vhci)" ]; then echo "a device on vhci_hcd before the attach:"; vhci; exit 1; fi >&2
t0=$(date +%s%N)
usbip attach -r "$REMOTE" -b "$BUSID"
for i in $(seq 600); do
	out=$(vhci)
	if [ -n "$out" ]; then
		echo $(( $(date +%s%N) - t0 ))
		printf '%s\n' "$out"
		exit 0
	fi
	sleep 0.02
done
echo "no device on vhci_hcd 12 s after usbip attach -r $REMOTE -b $BUSID" >&2
exit 1
`

// detachScript prints usbip port, detaches every imported port and
// waits for vhci_hcd to have no device left.
const detachScript = vhciDevices + `
usbip port
ports=$(usbip port | sed -n 's/^Port \([0-9][0-9]*\):.*/\1/p')
[ -n "$ports" ] || { echo "usbip port lists no imported port" >&2; exit 1; }
for p in $ports; do usbip detach -p "$p" >&2; done
for i in $(seq 600); do
	[ -z "$(vhci)" ] && exit 0
	sleep 0.02
done
echo "still on vhci_hcd 12 s after usbip detach:" >&2; vhci >&2
exit 1
`

// deviceOnA prints the exported device's driver, identity and usbip
// status ("-" where it has none: not bound to usbip-host).
const deviceOnA = `
d=/sys/bus/usb/devices/$BUSID
drv=$(basename "$(readlink "$d/driver")")
st=$(cat "$d/usbip_status" 2>/dev/null || echo -)
printf '%s %s %s %s %s\n' "$drv" "$(cat "$d/idVendor")" "$(cat "$d/idProduct")" "$(cat "$d/serial")" "$st"
`

// usbip-host's usbip_status values (drivers/usb/usbip/usbip_common.h).
const (
	statusAvailable = "1"
	statusUsed      = "2"
)

func TestUSBIP(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("must run as root (QEMU's 9p passthrough of /): make test-usbip")
	}
	tStart := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))

	// One agent build for both hosts: two go builds side by side would
	// only slow the two boots down.
	agent := filepath.Join(t.TempDir(), "agent")
	build := exec.CommandContext(ctx, "go", "build", "-o", agent, "github.com/usbctl/usbctl/internal/testhost/agent")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the agent: %v: %s", err, out)
	}

	n, err := testhost.NewNetwork("", log)
	if err != nil {
		t.Fatal(err)
	}
	netDir := n.Dir()
	defer func() {
		if err := n.Close(); err != nil {
			t.Error(err)
		}
		if _, err := os.Stat(netDir); !os.IsNotExist(err) {
			t.Errorf("the network left %s behind", netDir)
		}
	}()

	// Both boot at once: side by side is the point.
	var hosts [2]*testhost.Host
	var boots [2]time.Duration
	var errs [2]error
	var wg sync.WaitGroup
	t0 := time.Now()
	for i := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			hosts[i], errs[i] = testhost.Boot(ctx, testhost.Options{Network: n, Agent: agent, Log: log.With("host", "AB"[i:i+1])})
			boots[i] = time.Since(t0)
		}()
	}
	wg.Wait()
	for i, h := range hosts {
		if h == nil {
			continue
		}
		dir := h.Dir()
		defer func() {
			if err := h.Close(); err != nil {
				t.Error(err)
			}
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Errorf("host %c: Close left %s behind", "AB"[i], dir)
			}
		}()
	}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("host %c: %v", "AB"[i], err)
		}
	}
	a, b := hosts[0], hosts[1]
	t.Logf("boot side by side (to the agent and the network up): A %v, B %v", boots[0].Round(time.Millisecond), boots[1].Round(time.Millisecond))
	if a.IP() == b.IP() || !n.Prefix().Contains(a.IP()) || !n.Prefix().Contains(b.IP()) {
		t.Fatalf("addresses A %s, B %s: want two in %s", a.IP(), b.IP(), n.Prefix())
	}

	// The network: B reaches A, by A's address only.
	if out, err := b.ShEnv(ctx, []string{"A=" + a.IP().String()}, `busybox ping -c 1 -W 10 "$A"`); err != nil {
		t.Fatalf("B pings A (%s): %v\n%s", a.IP(), err, out)
	}

	// The kernel's USB/IP: the exporting half on A, the importing half on
	// B, and Debian's tools (the machine's /usr/sbin/usbip, usbipd).
	if _, err := a.Sh(ctx, "modprobe usbip-host && grep -qw usbip_host /proc/modules && grep -qw usbip_core /proc/modules"); err != nil {
		t.Fatalf("A: usbip-host: %v", err)
	}
	if _, err := b.Sh(ctx, "modprobe vhci-hcd && grep -qw vhci_hcd /proc/modules && ls -d /sys/devices/platform/vhci_hcd.0"); err != nil {
		t.Fatalf("B: vhci-hcd: %v", err)
	}
	usbipd, err := a.Start(ctx, "usbipd", "usbipd", "-4")
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if _, err := usbipd.Stop(ctx, 5*time.Second); err != nil {
			t.Error(err)
		}
	}()
	if _, err := a.Sh(ctx, `for i in $(seq 250); do ss -Hltn 'sport = :3240' | grep -q . && exit 0; sleep 0.04; done; echo "usbipd not listening on 3240" >&2; exit 1`); err != nil {
		log, _ := usbipd.Log()
		t.Fatalf("A: usbipd: %v\n%s", err, log)
	}

	g, err := a.Gadget(ctx, gadget)
	if err != nil {
		t.Fatal(err)
	}
	env := []string{"BUSID=" + g.Port, "REMOTE=" + a.IP().String()}
	identity := func(status string) string {
		return fmt.Sprintf("%s %s %s %s", gadget.Vendor, gadget.Product, gadget.Serial, status)
	}
	onA := func(t *testing.T, wantDriver, wantStatus string) {
		t.Helper()
		out, err := a.ShEnv(ctx, env, deviceOnA)
		if err != nil {
			t.Fatalf("A: %v", err)
		}
		if want := wantDriver + " " + identity(wantStatus); strings.TrimSpace(out) != want {
			t.Fatalf("A's %s: %q, want %q (driver, vendor, product, serial, usbip_status)", g.Port, strings.TrimSpace(out), want)
		}
	}
	onA(t, "usb", "-")

	var e2e, inB []time.Duration
	for r := range rounds {
		t.Run(fmt.Sprintf("round%d", r+1), func(t *testing.T) {
			t0 := time.Now()
			// steps: how long each part of the round took, for the log.
			var steps []string
			last := t0
			step := func(name string) {
				steps = append(steps, name+" "+time.Since(last).Round(time.Millisecond).String())
				last = time.Now()
			}
			defer func() { t.Logf("round steps: %s", strings.Join(steps, ", ")) }()
			if out, err := a.ShEnv(ctx, env, `usbip bind -b "$BUSID"`); err != nil {
				t.Fatalf("A: usbip bind: %v\n%s", err, out)
			}
			out, err := b.ShEnv(ctx, env, attachScript)
			took := time.Since(t0)
			step("bind+attach")
			if err != nil {
				log, _ := usbipd.Log()
				t.Fatalf("B: attach: %v\n%s\nusbipd on A:\n%s", err, out, log)
			}
			lines := strings.Split(strings.TrimSpace(out), "\n")
			ns, err := strconv.ParseInt(lines[0], 10, 64)
			if err != nil {
				t.Fatalf("B: attach: %q", out)
			}
			// Exactly the gadget, from B's own sysfs, on B's vhci_hcd.
			if len(lines) != 2 {
				t.Fatalf("B: want one device on vhci_hcd, have:\n%s", strings.Join(lines[1:], "\n"))
			}
			f := strings.Split(lines[1], "\t")
			if len(f) != 5 || f[1] != gadget.Vendor || f[2] != gadget.Product || f[3] != gadget.Serial || !strings.Contains(f[4], "/vhci_hcd.0/") {
				t.Fatalf("B: on vhci_hcd %q, want %s:%s serial %q", lines[1], gadget.Vendor, gadget.Product, gadget.Serial)
			}
			e2e, inB = append(e2e, took), append(inB, time.Duration(ns))
			t.Logf("B: %s %s:%s %q at %s; bind on A to visible on B %v (attach to sysfs inside B %v)",
				f[0], f[1], f[2], f[3], f[4], took.Round(time.Millisecond), time.Duration(ns).Round(time.Millisecond))
			// A exported it and B holds it.
			onA(t, "usbip-host", statusUsed)
			step("check A")

			out, err = b.Sh(ctx, detachScript)
			if err != nil {
				t.Fatalf("B: detach: %v\n%s", err, out)
			}
			step("detach")
			if want := "usbip://" + a.IP().String() + ":3240/" + g.Port; !strings.Contains(out, want) {
				t.Errorf("B: usbip port before the detach does not show %s:\n%s", want, out)
			}
			// Gone from B (detachScript waited for that); on A again
			// available for export, then back with its ordinary driver.
			if _, err := a.Sh(ctx, `for i in $(seq 250); do [ "$(cat /sys/bus/usb/devices/`+g.Port+`/usbip_status)" = `+statusAvailable+` ] && exit 0; sleep 0.04; done; exit 1`); err != nil {
				t.Errorf("A: usbip_status not back to available after B's detach: %v", err)
			}
			onA(t, "usbip-host", statusAvailable)
			step("A available")
			if out, err := a.ShEnv(ctx, env, `usbip unbind -b "$BUSID"`); err != nil {
				t.Fatalf("A: usbip unbind: %v\n%s", err, out)
			}
			if _, err := a.Sh(ctx, `for i in $(seq 250); do [ "$(basename "$(readlink /sys/bus/usb/devices/`+g.Port+`/driver)")" = usb ] && exit 0; sleep 0.04; done; exit 1`); err != nil {
				t.Errorf("A: %s not back on the usb driver after unbind: %v", g.Port, err)
			}
			onA(t, "usb", "-")
			step("unbind")
		})
		if t.Failed() {
			break
		}
	}
	if err := g.Remove(ctx); err != nil {
		t.Error(err)
	}
	if len(e2e) == 0 {
		return
	}
	slices.Sort(e2e)
	slices.Sort(inB)
	t.Logf("export to visible on B, %d rounds: median %v (min %v, max %v); attach to sysfs inside B: median %v",
		len(e2e), stats.Percentile(e2e, 0.5).Round(time.Millisecond), e2e[0].Round(time.Millisecond), e2e[len(e2e)-1].Round(time.Millisecond), stats.Percentile(inB, 0.5).Round(time.Millisecond))
	t.Logf("total: %v", time.Since(tStart).Round(time.Millisecond))
}
