//go:build umockdev

package virt

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"libvirt.org/go/libvirt"

	"github.com/usbctl/usbctl/failure"
	"github.com/usbctl/usbctl/internal/sandbox"
	"github.com/usbctl/usbctl/internal/umockdev"
	"github.com/usbctl/usbctl/reconcile"
)

// The libvirt tier: the adapter against a real libvirtd and real QEMU
// guests, checked through an independent client (virsh). make test-libvirt
// runs it through scripts/umockdev-exec.

type events struct {
	mu  sync.Mutex
	evs []Event
}

func (e *events) add(ev Event) { e.mu.Lock(); e.evs = append(e.evs, ev); e.mu.Unlock() }

// wait returns the first event (from the start) that satisfies f.
func (e *events) wait(t *testing.T, what string, f func(Event) bool) Event {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		e.mu.Lock()
		for i, ev := range e.evs {
			if f(ev) {
				e.evs = e.evs[i+1:]
				e.mu.Unlock()
				return ev
			}
		}
		e.mu.Unlock()
		time.Sleep(10 * time.Millisecond)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	t.Fatalf("no %s event within 30s; events: %+v", what, e.evs)
	return Event{}
}

func lifecycle(dom, detail string) func(Event) bool {
	return func(ev Event) bool {
		return ev.Kind == EventLifecycle && ev.Domain == dom && strings.Contains(strings.ToLower(ev.Detail), strings.ToLower(detail))
	}
}

func TestAgainstLibvirtd(t *testing.T) {
	if os.Getenv("LD_PRELOAD") == "" {
		t.Fatal("not under the umockdev preload: run through scripts/umockdev-exec (make test-libvirt)")
	}
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	start := time.Now()
	sb, err := sandbox.Start(ctx, sandbox.Options{Log: os.Stderr})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		sb.Close()
		if out, err := exec.Command("pgrep", "-f", sb.Dir()).Output(); err == nil && len(out) > 0 {
			t.Errorf("processes left after Close: %s", out)
		}
	}()
	t.Logf("sandbox up in %v", time.Since(start))

	var evs events
	conn, err := New(Options{URI: sb.URI(), Log: log, KeepaliveInterval: time.Second, KeepaliveCount: 2, ReconnectMin: 100 * time.Millisecond, ReconnectMax: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.Start(ctx, evs.add)
	evs.wait(t, "connected", func(ev Event) bool { return ev.Kind == EventConnected })

	for _, g := range []string{"g1", "g2"} {
		if err := sb.DefineGuest(g, sandbox.GuestOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	dev := umockdev.USBDevice{Bus: 1, Dev: 2, Port: "1-1", Vendor: "046d", Product: "c52b", ProductName: "Receiver", Interfaces: []string{"030101"}}
	if err := sb.Plug(dev); err != nil {
		t.Fatal(err)
	}
	key := reconcile.DeviceKey{Bus: 1, Dev: 2}

	t.Run("attach to a shut-off domain", func(t *testing.T) {
		err := conn.Attach(ctx, "g1", key)
		if !errors.Is(err, ErrDomainNotRunning) {
			t.Fatalf("got %v, want ErrDomainNotRunning", err)
		}
	})
	t.Run("unknown domain", func(t *testing.T) {
		if _, err := conn.Domain(ctx, "nope"); !errors.Is(err, ErrDomainNotFound) {
			t.Fatalf("got %v, want ErrDomainNotFound", err)
		}
	})

	if err := sb.StartGuest("g1"); err != nil {
		t.Fatal(err)
	}
	evs.wait(t, "g1 started", lifecycle("g1", "Started"))

	t.Run("attach and detach", func(t *testing.T) {
		if err := conn.Attach(ctx, "g1", key); err != nil {
			t.Fatal(err)
		}
		evs.wait(t, "device-added", func(ev Event) bool { return ev.Kind == EventDeviceAdded && ev.Alias == "ua-usbctl-001-002" })
		xml, err := sb.Virsh("dumpxml", "g1")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(xml, "<alias name='ua-usbctl-001-002'/>") || !strings.Contains(xml, "<address bus='1' device='2'/>") {
			t.Fatalf("live XML lacks our hostdev:\n%s", xml)
		}
		usb, err := sb.Virsh("qemu-monitor-command", "g1", "--hmp", "info usb")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(usb, "ua-usbctl-001-002") {
			t.Fatalf("QEMU info usb lacks the device:\n%s", usb)
		}
		d, err := conn.Domain(ctx, "g1")
		if err != nil || d.State != reconcile.StateRunning || len(d.Hostdevs) != 1 || d.Hostdevs[0] != (reconcile.Hostdev{Alias: "ua-usbctl-001-002", Bus: 1, Dev: 2}) {
			t.Fatalf("Domain = %+v, %v", d, err)
		}

		if err := conn.Detach(ctx, "g1", "ua-usbctl-001-002"); err != nil {
			t.Fatal(err)
		}
		evs.wait(t, "device-removed", func(ev Event) bool { return ev.Kind == EventDeviceRemoved && ev.Alias == "ua-usbctl-001-002" })
		xml, _ = sb.Virsh("dumpxml", "g1")
		if strings.Contains(xml, "ua-usbctl-001-002") {
			t.Fatalf("hostdev still in live XML after detach:\n%s", xml)
		}
		// Detaching what is gone is done, not an error.
		if err := conn.Detach(ctx, "g1", "ua-usbctl-001-002"); err != nil {
			t.Fatalf("second detach: %v", err)
		}
	})

	// QEMU has a device under our alias that libvirt does not know (what
	// a libvirtd killed mid-attach leaves). Attach removes it and says so,
	// without attaching under the same id at once: libvirt would take the
	// late DEVICE_DELETED of the orphan for the new hostdev's and drop it.
	t.Run("orphan in QEMU", func(t *testing.T) {
		if _, err := sb.Virsh("qemu-monitor-command", "g1", "--hmp", "device_add usb-host,hostdevice=/dev/bus/usb/001/002,id=ua-usbctl-001-002"); err != nil {
			t.Fatal(err)
		}
		err := conn.Attach(ctx, "g1", key)
		if !errors.Is(err, ErrOrphanRemoved) || failure.ClassOf(err) != failure.Transient || !strings.HasPrefix(err.Error(), "attach ua-usbctl-001-002 to g1: ") {
			t.Fatalf("got %v, want a transient ErrOrphanRemoved", err)
		}
		// Attach returned once QEMU had deleted it.
		if usb, _ := sb.Virsh("qemu-monitor-command", "g1", "--hmp", "info usb"); strings.Contains(usb, "ua-usbctl-001-002") {
			t.Fatalf("QEMU still lists the orphan after Attach returned:\n%s", usb)
		}
		if err := conn.Attach(ctx, "g1", key); err != nil {
			t.Fatalf("attach after the orphan went: %v", err)
		}
		evs.wait(t, "device-added", func(ev Event) bool { return ev.Kind == EventDeviceAdded && ev.Alias == "ua-usbctl-001-002" })
		time.Sleep(500 * time.Millisecond) // libvirt handled every DEVICE_DELETED by now
		if xml, _ := sb.Virsh("dumpxml", "g1"); !strings.Contains(xml, "<alias name='ua-usbctl-001-002'/>") {
			t.Fatalf("libvirt dropped the new hostdev:\n%s", xml)
		}
		if err := conn.Detach(ctx, "g1", "ua-usbctl-001-002"); err != nil {
			t.Fatal(err)
		}
		evs.wait(t, "device-removed", func(ev Event) bool { return ev.Kind == EventDeviceRemoved && ev.Alias == "ua-usbctl-001-002" })
	})

	t.Run("domain without a USB controller", func(t *testing.T) {
		if err := sb.DefineGuest("nousb", sandbox.GuestOptions{NoUSB: true}); err != nil {
			t.Fatal(err)
		}
		if err := sb.StartGuest("nousb"); err != nil {
			t.Fatal(err)
		}
		defer sb.DestroyGuest("nousb")
		err := conn.Attach(ctx, "nousb", key)
		if !errors.Is(err, ErrNoUSBBus) || failure.ClassOf(err) != failure.Permanent || !strings.Contains(failure.FixOf(err), "<controller type='usb'") {
			t.Fatalf("got %v, want a permanent ErrNoUSBBus whose fix adds a controller", err)
		}
	})

	t.Run("attach an absent device", func(t *testing.T) {
		err := conn.Attach(ctx, "g1", reconcile.DeviceKey{Bus: 1, Dev: 9})
		if !errors.Is(err, ErrDeviceMissing) {
			t.Fatalf("got %v, want ErrDeviceMissing", err)
		}
	})

	t.Run("device held by another domain", func(t *testing.T) {
		if err := sb.StartGuest("g2"); err != nil {
			t.Fatal(err)
		}
		defer sb.DestroyGuest("g2")
		if err := conn.Attach(ctx, "g2", key); err != nil {
			t.Fatal(err)
		}
		defer conn.Detach(ctx, "g2", key.Alias())
		err := conn.Attach(ctx, "g1", key)
		if !errors.Is(err, ErrDeviceBusy) {
			t.Fatalf("got %v, want ErrDeviceBusy", err)
		}
		var iu *InUseError
		if !errors.As(err, &iu) || iu.Domain != "g2" || failure.ClassOf(err) != failure.Permanent {
			t.Fatalf("got %v, want a permanent InUseError naming g2", err)
		}
	})

	// qemu-xhci has 4 ports by default (g1 has nothing else on them).
	t.Run("no free usb ports", func(t *testing.T) {
		var plugged []umockdev.USBDevice
		var attached []reconcile.DeviceKey
		defer func() {
			for _, k := range attached {
				if err := conn.Detach(ctx, "g1", k.Alias()); err != nil {
					t.Error(err)
				}
			}
			for _, d := range plugged {
				sb.Unplug(d)
			}
		}()
		for i := 3; i <= 8; i++ {
			d := umockdev.USBDevice{Bus: 1, Dev: i, Port: fmt.Sprintf("1-%d", i-1), Vendor: "1d6b", Product: fmt.Sprintf("00%02d", i), Interfaces: []string{"030101"}}
			if err := sb.Plug(d); err != nil {
				t.Fatal(err)
			}
			plugged = append(plugged, d)
			k := reconcile.DeviceKey{Bus: d.Bus, Dev: d.Dev}
			err := conn.Attach(ctx, "g1", k)
			if err == nil {
				attached = append(attached, k)
				continue
			}
			if !errors.Is(err, ErrNoFreePort) || failure.ClassOf(err) != failure.Transient || !strings.Contains(err.Error(), "ports='15'") {
				t.Fatalf("attach #%d: got %v, want a transient ErrNoFreePort that says how to add ports", len(attached)+1, err)
			}
			return
		}
		t.Fatalf("attached %d devices to a 4-port controller", len(attached))
	})

	t.Run("ctx done before the call", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if err := conn.Attach(cctx, "g1", key); !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v, want context.Canceled", err)
		}
		if _, err := conn.ListDomains(cctx); !errors.Is(err, context.Canceled) {
			t.Fatalf("ListDomains: got %v, want context.Canceled", err)
		}
		if xml, _ := sb.Virsh("dumpxml", "g1"); strings.Contains(xml, key.Alias()) {
			t.Fatalf("attached although ctx was done:\n%s", xml)
		}
	})

	// Another job holds g1 (a monitor command to a stopped QEMU): libvirt
	// waits 30 s for the state change lock, then fails. ctx cannot cut
	// that wait short (libvirt has no way to cancel a call), as the
	// Hypervisor interface says.
	t.Run("domain busy: state change lock", func(t *testing.T) {
		pid, err := sb.QEMUPid("g1")
		if err != nil {
			t.Fatal(err)
		}
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		holder := exec.Command("virsh", "-q", "-c", sb.URI(), "qemu-monitor-command", "g1", "--hmp", "info usb")
		holder.Env = sandbox.CleanEnv()
		if err := holder.Start(); err != nil {
			syscall.Kill(pid, syscall.SIGCONT)
			t.Fatal(err)
		}
		defer func() {
			syscall.Kill(pid, syscall.SIGCONT)
			holder.Wait()
		}()
		time.Sleep(time.Second) // the holder has the job
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		t0 := time.Now()
		err = conn.Attach(cctx, "g1", key)
		took := time.Since(t0)
		if !errors.Is(err, ErrDomainBusy) || failure.ClassOf(err) != failure.Transient || !strings.Contains(err.Error(), "cannot acquire state change lock") {
			t.Fatalf("got %v, want a transient ErrDomainBusy", err)
		}
		if took < 20*time.Second {
			t.Errorf("the call returned after %v: libvirt's lock wait is 30 s, so the ctx deadline did cut it (update the Hypervisor doc)", took)
		}
		t.Logf("state change lock: failed after %v, ctx deadline 2 s", took)
	})

	// Attaches reuse a cached domain handle: a domain undefined and
	// defined again under the same name must still be found.
	t.Run("domain redefined under the same name", func(t *testing.T) {
		if err := conn.Attach(ctx, "g2", key); !errors.Is(err, ErrDomainNotRunning) {
			t.Fatalf("attach to shut-off g2: %v, want ErrDomainNotRunning (and a cached handle)", err)
		}
		if _, err := sb.Virsh("undefine", "g2"); err != nil {
			t.Fatal(err)
		}
		if err := sb.DefineGuest("g2", sandbox.GuestOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := sb.StartGuest("g2"); err != nil {
			t.Fatal(err)
		}
		defer sb.DestroyGuest("g2")
		if err := conn.Attach(ctx, "g2", key); err != nil {
			t.Fatalf("attach to the redefined g2: %v", err)
		}
		if err := conn.Detach(ctx, "g2", key.Alias()); err != nil {
			t.Fatal(err)
		}
		evs.wait(t, "device-removed from g2", func(ev Event) bool { return ev.Kind == EventDeviceRemoved && ev.Domain == "g2" })
	})

	t.Run("list domains", func(t *testing.T) {
		ds, err := conn.ListDomains(ctx)
		if err != nil {
			t.Fatal(err)
		}
		states := map[string]reconcile.DomainState{}
		for _, d := range ds {
			states[d.Name] = d.State
		}
		if states["g1"] != reconcile.StateRunning || states["g2"] != reconcile.StateShutoff {
			t.Fatalf("states = %v", states)
		}
	})

	t.Run("lifecycle events", func(t *testing.T) {
		if err := sb.DestroyGuest("g1"); err != nil {
			t.Fatal(err)
		}
		evs.wait(t, "destroyed", lifecycle("g1", "Destroyed"))
		if err := sb.StartGuest("g1"); err != nil {
			t.Fatal(err)
		}
		evs.wait(t, "started", lifecycle("g1", "Started"))
		if err := sb.KillQEMU("g1"); err != nil {
			t.Fatal(err)
		}
		evs.wait(t, "crashed (Stopped Failed)", lifecycle("g1", "Failed"))

		if err := sb.DefineGuest("off", sandbox.GuestOptions{PowerOff: true}); err != nil {
			t.Fatal(err)
		}
		if err := sb.StartGuest("off"); err != nil {
			t.Fatal(err)
		}
		// Firmware is slow under TCG on a busy machine; the power-off
		// comes 5 s after the boot sector starts.
		if err := sb.WaitBootSector(ctx, "off"); err != nil {
			t.Fatal(err)
		}
		evs.wait(t, "powered itself off (Stopped Shutdown)", lifecycle("off", "Shutdown"))
	})

	t.Run("libvirtd killed and restarted", func(t *testing.T) {
		raw, err := libvirt.NewConnect(sb.URI())
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		if err := sb.KillLibvirtd(); err != nil {
			t.Fatal(err)
		}
		// What a connection opened before the kill says, classified
		// as our own Conn would see it before its close callback runs.
		if _, err := raw.ListAllDomains(0); !errors.Is(classify(err, "list"), ErrConnection) {
			t.Errorf("first call on a dead connection: %v, want ErrConnection", err)
		}
		if _, err := raw.ListAllDomains(0); !errors.Is(classify(err, "list"), ErrConnection) {
			t.Errorf("second call on a dead connection: %v, want ErrConnection", err)
		}
		if _, err := ListDomainsAt(ctx, sb.URI()); !errors.Is(err, ErrConnection) {
			t.Errorf("connect while libvirtd is down: %v, want ErrConnection", err)
		}
		evs.wait(t, "disconnected", func(ev Event) bool { return ev.Kind == EventDisconnected })
		if _, err := conn.ListDomains(ctx); !errors.Is(err, ErrConnection) {
			t.Fatalf("ListDomains while libvirtd is down: %v, want ErrConnection", err)
		}
		if err := sb.StartLibvirtd(ctx); err != nil {
			t.Fatal(err)
		}
		evs.wait(t, "reconnected", func(ev Event) bool { return ev.Kind == EventConnected })
		// Events flow again on the new connection.
		if err := sb.StartGuest("g1"); err != nil {
			t.Fatal(err)
		}
		evs.wait(t, "started after reconnect", lifecycle("g1", "Started"))
		if err := conn.Attach(ctx, "g1", key); err != nil {
			t.Fatalf("attach after reconnect: %v", err)
		}
		if err := conn.Detach(ctx, "g1", key.Alias()); err != nil {
			t.Fatal(err)
		}
	})
	t.Logf("libvirt tier took %v", time.Since(start))
}
