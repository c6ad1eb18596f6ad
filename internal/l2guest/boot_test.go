package l2guest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestBootAttachDetach boots the guest with plain QEMU (TCG, no libvirt, no
// root needed), hot-plugs devices into its xHCI controller over QMP and
// checks the guest's own report: each device arrives with its identity and
// serial, and one leaves after device_del while the other stays.
func TestBootAttachDetach(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ver, vmlinuz, err := InstalledKernel()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	initrd, err := BuildInitramfs(ctx, dir, ver)
	if err != nil {
		t.Fatal(err)
	}
	kernel, err := ExtractKernel(ctx, dir, vmlinuz)
	if err != nil {
		t.Fatal(err)
	}
	stick := filepath.Join(dir, "stick.img")
	if err := os.WriteFile(stick, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "console.log")
	sock := filepath.Join(dir, "qmp.sock")
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64",
		"-accel", "tcg,thread=multi", "-machine", "q35", "-m", "128",
		"-nodefaults", "-no-user-config", "-display", "none",
		"-kernel", kernel, "-initrd", initrd, "-append", Cmdline,
		"-chardev", "file,id=con,path="+logPath, "-serial", "chardev:con",
		"-device", "qemu-xhci,id=xhci",
		"-drive", "if=none,id=stick,format=raw,file="+stick,
		"-qmp", "unix:"+sock+",server=on,wait=off")
	cmd.Stderr = os.Stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	q, err := dialQMP(sock, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	w := NewWatcher(logPath)
	rep, err := w.WaitReady(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("boot to first report: %v (guest uptime at ready %ss)", time.Since(start).Round(time.Millisecond), rep.Uptime)
	if len(rep.Devices) != 0 {
		t.Fatalf("guest sees devices before any attach: %v", rep.Devices)
	}

	// Spaces, quotes, a percent sign, a newline, a tab and the report's own
	// marker: none may split or forge a report line.
	serial := "x y \"USBCTL-L2 devices\" %41\n\tz"
	for _, dev := range []map[string]any{
		{"driver": "usb-kbd", "id": "kbd", "bus": "xhci.0"},
		{"driver": "usb-storage", "id": "stor", "bus": "xhci.0", "drive": "stick", "serial": serial},
	} {
		t0 := time.Now()
		if _, err := q.run("device_add", dev); err != nil {
			t.Fatal(err)
		}
		vid, pid := uint16(0x0627), uint16(0x0001)
		if dev["driver"] == "usb-storage" {
			vid, pid = 0x46f4, 0x0001
		}
		// Listed first, then configured by the guest's usbcore (nothing
		// holds these on the host side): wait for both.
		rep, err := w.WaitFor(ctx, func(devs []Device) bool { d, ok := Find(devs, vid, pid); return ok && d.Configured() })
		if err != nil {
			t.Fatal(err)
		}
		if d, _ := Find(rep.Devices, vid, pid); !d.State || d.Config != 1 || d.Interfaces != 1 {
			t.Errorf("guest reports %v, want configuration 1 with its one interface", d)
		}
		t.Logf("%s: device_add to guest report: %v", dev["driver"], time.Since(t0).Round(time.Millisecond))
	}
	devs := w.Report().Devices
	if len(devs) != 2 {
		t.Fatalf("guest sees %v, want the keyboard and the stick", devs)
	}
	if d, _ := Find(devs, 0x46f4, 0x0001); !d.HasSerial || d.Serial != serial {
		t.Errorf("guest reports the stick as %v, want serial %q", d, serial)
	}

	t0 := time.Now()
	if _, err := q.run("device_del", map[string]any{"id": "kbd"}); err != nil {
		t.Fatal(err)
	}
	rep, err = w.WaitFor(ctx, func(devs []Device) bool { _, ok := Find(devs, 0x0627, 0x0001); return !ok })
	devs = rep.Devices
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("usb-kbd: device_del to guest report: %v", time.Since(t0).Round(time.Millisecond))
	if _, ok := Find(devs, 0x46f4, 0x0001); !ok || len(devs) != 1 {
		t.Errorf("after unplugging the keyboard the guest sees %v, want only the stick", devs)
	}
}
