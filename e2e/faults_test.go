//go:build umockdev

package e2e

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Real faults in the middle of an attach. "The middle" cannot be hit on
// purpose from outside, so each fault is thrown at several delays after
// the plug, from before usbctld has seen the device to after libvirt has
// answered; whatever the moment, the guest must end in the desired state,
// with one hostdev per device, and usbctld must say what happened.

var faultDelays = []time.Duration{0, 2 * time.Millisecond, 6 * time.Millisecond}

// converged waits until dom holds exactly the aliases want (virsh) and
// status has nothing pending.
func (w *world) converged(dom string, want ...string) {
	w.t.Helper()
	w.eventually(fmt.Sprintf("%s holds exactly %v, nothing pending", dom, want), 30*time.Second, func() bool {
		got := w.aliases(dom)
		if len(got) != len(want) {
			return false
		}
		for i := range want {
			if got[i] != want[i] {
				return false
			}
		}
		st := w.status()
		return st.Hypervisor.Connected && len(st.Pending) == 0
	})
}

func TestFaultLibvirtdKilledMidAttach(t *testing.T) {
	w := oneGuestRunning(t)
	for i, delay := range faultDelays {
		d := usb(2+i, "1-1", "046d", "c52b", "")
		w.plug(d)
		time.Sleep(delay)
		if err := w.sb.KillLibvirtd(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
		if err := w.sb.StartLibvirtd(t.Context()); err != nil {
			t.Fatal(err)
		}
		w.converged("g1", alias(d))
		w.unplug(d)
		w.converged("g1")
	}
	log := w.d.LogText()
	if !strings.Contains(log, "libvirt connection lost") && !strings.Contains(log, "connect to libvirt") {
		t.Fatalf("usbctld did not log the lost connection:\n%s", log)
	}
	// When the kill lands between QEMU's device_add and libvirt's record
	// of it, QEMU keeps an orphan that only the monitor can remove.
	t.Logf("orphaned QEMU devices recovered: %d of %d kills", strings.Count(log, "lost track"), len(faultDelays))
}

func TestFaultQEMUKilledMidAttach(t *testing.T) {
	w := oneGuestRunning(t)
	for i, delay := range faultDelays {
		d := usb(2+i, "1-1", "046d", "c52b", "")
		w.plug(d)
		time.Sleep(delay)
		if err := w.sb.KillQEMU("g1"); err != nil {
			t.Fatal(err)
		}
		w.eventually("status shows g1 stopped and the device waiting", 20*time.Second, func() bool {
			why, ok := unassigned(w.status(), d.Bus, d.Dev)
			return ok && strings.Contains(why, "not running")
		})
		w.start("g1")
		w.converged("g1", alias(d))
		w.unplug(d)
		w.converged("g1")
	}
}

func TestFaultUnplugBeforeAttach(t *testing.T) {
	w := oneGuestRunning(t)
	for i, delay := range append([]time.Duration{0, 500 * time.Microsecond}, faultDelays...) {
		d := usb(2+i, "1-1", "046d", "c52b", "")
		w.plug(d)
		time.Sleep(delay)
		w.unplug(d)
		w.converged("g1")
		if _, ok := unassigned(w.status(), d.Bus, d.Dev); ok {
			t.Fatalf("an unplugged device is still listed")
		}
	}
	// The loop still works afterwards.
	d := usb(20, "1-1", "046d", "c52b", "")
	w.plugTimed("g1", d)
}

func TestFaultDaemonKilledMidSync(t *testing.T) {
	w := newWorld(t, "g1")
	w.writeConfig(oneGuest)
	w.start("g1")
	for round, delay := range faultDelays {
		w.startDaemon()
		for j := 0; j < 4; j++ {
			w.plug(usb(2+round*4+j, fmt.Sprintf("1-%d", 1+round*4+j), "046d", "c52b", ""))
		}
		time.Sleep(delay)
		w.killDaemon(syscall.SIGKILL)
		w.startDaemon()
		// Each device once: virsh would show a duplicate alias twice.
		var all []string
		for j := 0; j < 4; j++ {
			all = append(all, fmt.Sprintf("ua-usbctl-001-%03d", 2+round*4+j))
		}
		w.converged("g1", all...)
		// The guest's xHCI has 4 ports: free them for the next round.
		for j := 0; j < 4; j++ {
			w.unplug(usb(2+round*4+j, fmt.Sprintf("1-%d", 1+round*4+j), "046d", "c52b", ""))
		}
		w.converged("g1")
		w.killDaemon(syscall.SIGTERM)
	}
}

// libvirtd hangs (SIGSTOP) while a device is plugged: usbctl status keeps
// answering at once, the hung call ends when keepalive declares the
// connection dead, status says so, and once libvirtd goes on the device is
// attached.
func TestFaultLibvirtdHangs(t *testing.T) {
	w := oneGuestRunning(t)
	if err := w.sb.SignalLibvirtd(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := true
	defer func() {
		if stopped {
			w.sb.SignalLibvirtd(syscall.SIGCONT)
		}
	}()
	d := usb(2, "1-1", "046d", "c52b", "")
	w.plug(d)
	var slowest time.Duration
	sawDown := false
	deadline := time.Now().Add(45 * time.Second)
	for time.Now().Before(deadline) && !sawDown {
		t0 := time.Now()
		st := w.status()
		slowest = max(slowest, time.Since(t0))
		sawDown = !st.Hypervisor.Connected
		time.Sleep(100 * time.Millisecond)
	}
	if !sawDown {
		t.Fatal("status never showed the hung libvirtd as disconnected")
	}
	if slowest > time.Second {
		t.Fatalf("status took %v while libvirtd hung; it must never wait for libvirt", slowest)
	}
	t.Logf("status answered in at most %v while libvirtd hung", slowest.Round(time.Millisecond))
	if err := w.sb.SignalLibvirtd(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	stopped = false
	w.converged("g1", alias(d))
}
