//go:build umockdev

package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// installHook puts usbctl's qemu hook where the sandbox's libvirtd looks
// for it, as make install and the .deb put it in /etc/libvirt/hooks/qemu.d,
// with the world's config. Every call is logged to hook.log.
func (w *world) installHook() string {
	w.t.Helper()
	log := filepath.Join(w.dir, "hook.log")
	if err := os.MkdirAll(w.sb.HookDir(), 0o755); err != nil {
		w.t.Fatal(err)
	}
	script := "#!/bin/sh\necho \"$*\" >>'" + log + "'\nexec '" + bins.usbctl + "' hook --config '" + w.cfg + "' -- \"$@\"\n"
	if err := os.WriteFile(filepath.Join(w.sb.HookDir(), "usbctl"), []byte(script), 0o755); err != nil {
		w.t.Fatal(err)
	}
	return log
}

func (w *world) restartLibvirtd() {
	w.t.Helper()
	if err := w.sb.StopLibvirtd(); err != nil {
		w.t.Fatal(err)
	}
	if err := w.sb.StartLibvirtd(context.Background()); err != nil {
		w.t.Fatal(err)
	}
}

func (w *world) virsh(args ...string) (string, error) { return w.sb.Virsh(args...) }

// A guest saved while usbctl had a device in it, the device replugged
// meanwhile (a new device number): libvirt failed to start it again, "Did
// not find USB device bus:1 device:5", until the saved state was thrown
// away. With usbctl's hook in libvirt's hooks directory (and libvirtd
// restarted, since it finds hooks at its start), the start succeeds with
// the device at its new number, for managedsave and for save/restore; a
// device that is not back fails the start with a message saying what to do.
func TestHookSavedGuestReplugged(t *testing.T) {
	w := newWorld(t, "g1")
	w.writeConfig(oneGuest)
	log := w.installHook() // libvirtd is running: it does not see the hook yet
	w.start("g1")
	w.startDaemon()
	d5 := usb(5, "1-1", "046d", "c52b", "")
	w.plugTimed("g1", d5)

	// managedsave, replug: the bug, while libvirtd has not noticed the hook.
	if out, err := w.virsh("managedsave", "g1"); err != nil {
		t.Fatalf("managedsave: %v %s", err, out)
	}
	w.unplug(d5)
	d6 := usb(6, "1-1", "046d", "c52b", "")
	w.plug(d6)
	_, err := w.virsh("start", "g1")
	if err == nil || !strings.Contains(err.Error(), "Did not find USB device bus:1 device:5") {
		t.Fatalf("without the hook, start should fail as reported; got %v", err)
	}
	if b, _ := os.ReadFile(log); len(b) != 0 {
		t.Fatalf("libvirtd ran a hook added after its start:\n%s", b)
	}
	t.Log("without the hook: " + err.Error())

	// libvirtd restarted: it runs the hook, and the same saved guest starts.
	w.restartLibvirtd()
	if out, err := w.virsh("start", "g1"); err != nil {
		t.Fatalf("start of the saved guest with the hook: %v %s\nhook log:\n%s", err, out, readFile(log))
	}
	if !strings.Contains(readFile(log), "g1 restore begin -") {
		t.Fatalf("the hook was not called for the restore:\n%s", readFile(log))
	}
	w.waitAttached("g1", alias(d6))
	if w.has("g1", alias(d5)) {
		t.Fatal("the old hostdev is still there")
	}
	w.eventually("usbctld shows the replugged device in g1, nothing failing", 20*time.Second, func() bool {
		st := w.status()
		ds, _ := domainStatus(st, "g1")
		return len(ds.Attached) == 1 && ds.Attached[0].Alias == alias(d6) && len(st.Pending) == 0
	})
	if out, err := w.virsh("qemu-monitor-command", "g1", "--hmp", "info usb"); err != nil || !strings.Contains(out, "ID: "+alias(d6)) {
		t.Fatalf("QEMU does not have the device: %v\n%s", err, out)
	}

	// save and restore, replugged again.
	img := filepath.Join(w.dir, "g1.save")
	if out, err := w.virsh("save", "g1", img); err != nil {
		t.Fatalf("save: %v %s", err, out)
	}
	w.unplug(d6)
	d7 := usb(7, "1-1", "046d", "c52b", "")
	w.plug(d7)
	if out, err := w.virsh("restore", img); err != nil {
		t.Fatalf("restore: %v %s\nhook log:\n%s", err, out, readFile(log))
	}
	w.waitAttached("g1", alias(d7))
	w.eventually("usbctld shows the device of the restore", 20*time.Second, func() bool {
		st := w.status()
		ds, _ := domainStatus(st, "g1")
		return len(ds.Attached) == 1 && ds.Attached[0].Alias == alias(d7) && len(st.Pending) == 0
	})

	// Saved, and the device not back: the start fails with the hook's
	// words, and succeeds once the device is plugged in again.
	if out, err := w.virsh("managedsave", "g1"); err != nil {
		t.Fatalf("managedsave: %v %s", err, out)
	}
	w.unplug(d7)
	_, err = w.virsh("start", "g1")
	if err == nil || !strings.Contains(err.Error(), "cannot restore g1") || !strings.Contains(err.Error(), "virsh managedsave-remove g1") {
		t.Fatalf("start without the device: %v", err)
	}
	t.Log("device not back: " + err.Error())
	d8 := usb(8, "1-1", "046d", "c52b", "")
	w.plug(d8)
	if out, err := w.virsh("start", "g1"); err != nil {
		t.Fatalf("start once the device is back: %v %s", err, out)
	}
	w.waitAttached("g1", alias(d8))
}

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}
