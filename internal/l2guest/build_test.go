package l2guest

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"

	"libvirt.org/go/libvirtxml"
)

type cpioEntry struct {
	mode, rmajor, rminor uint64
	data                 string
}

// readCpio parses a newc archive independently of the writer.
func readCpio(t *testing.T, b []byte) (map[string]cpioEntry, []string) {
	t.Helper()
	ents := map[string]cpioEntry{}
	var order []string
	for off := 0; ; {
		h := string(b[off : off+110])
		if h[:6] != "070701" {
			t.Fatalf("offset %d: magic %q", off, h[:6])
		}
		field := func(i int) uint64 {
			v, err := strconv.ParseUint(h[6+8*i:14+8*i], 16, 32)
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
		nameLen, size := int(field(11)), int(field(6))
		name := string(b[off+110 : off+110+nameLen-1])
		data := (off + 110 + nameLen + 3) &^ 3
		if name == "TRAILER!!!" {
			return ents, order
		}
		ents[name] = cpioEntry{mode: field(1), rmajor: field(9), rminor: field(10), data: string(b[data : data+size])}
		order = append(order, name)
		off = (data + size + 3) &^ 3
	}
}

func TestBuildInitramfs(t *testing.T) {
	ver, _, err := InstalledKernel()
	if err != nil {
		t.Fatal(err)
	}
	path, err := BuildInitramfs(context.Background(), t.TempDir(), ver)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ents, order := readCpio(t, b)
	if e := ents["init"]; e.mode != 0o100755 || !strings.HasPrefix(e.data, "#!/bin/sh\n") {
		t.Errorf("init: mode %o, start %q", e.mode, e.data[:min(10, len(e.data))])
	}
	if e := ents["dev/console"]; e.mode != 0o020600 || e.rmajor != 5 || e.rminor != 1 {
		t.Errorf("dev/console: %+v, want char 5:1", e)
	}
	if e := ents["bin/sh"]; e.mode&0o170000 != 0o120000 || e.data != "busybox" {
		t.Errorf("bin/sh: %+v, want a link to busybox", e)
	}
	mods := strings.Fields(ents["etc/modules.order"].data)
	want := []string{"usb-common.ko", "usbcore.ko", "xhci-hcd.ko", "xhci-pci.ko"}
	if strings.Join(mods, " ") != strings.Join(want, " ") {
		t.Errorf("module order %v, want %v", mods, want)
	}
	for _, m := range mods {
		if !strings.HasPrefix(ents["lib/modules/"+m].data, "\x7fELF") {
			t.Errorf("module %s missing or not ELF", m)
		}
	}
	// Directories before what is in them: the kernel does not create parents.
	seen := map[string]bool{}
	for _, n := range order {
		if i := strings.LastIndex(n, "/"); i > 0 && !seen[n[:i]] {
			t.Errorf("%s comes before its directory", n)
		}
		seen[n] = true
	}
}

func TestBzPayloadRejectsNonKernels(t *testing.T) {
	if _, err := bzPayload(make([]byte, 4096)); err == nil {
		t.Error("zeros accepted as a bzImage")
	}
	if _, err := bzPayload([]byte("short")); err == nil {
		t.Error("a short file accepted as a bzImage")
	}
}

func TestDomainXML(t *testing.T) {
	s, err := DomainXML(Options{Name: "l2", Kernel: "/var/lib/libvirt/images/vmlinux", Initrd: "/var/lib/libvirt/images/l2.cpio", ConsoleLog: "/var/lib/libvirt/images/l2.log"})
	if err != nil {
		t.Fatal(err)
	}
	var d libvirtxml.Domain
	if err := d.Unmarshal(s); err != nil {
		t.Fatal(err)
	}
	if d.Type != "qemu" || d.OS.Type.Machine != "q35" || d.Memory.Value != 128 || d.Memory.Unit != "MiB" {
		t.Errorf("domain %s: want TCG q35 with 128 MiB", s)
	}
	if d.OS.Kernel == "" || d.OS.Initrd == "" || d.OS.Cmdline != Cmdline {
		t.Errorf("os %+v: want direct kernel boot with %q", d.OS, Cmdline)
	}
	dv := d.Devices
	if dv.Emulator != "/usr/bin/qemu-system-x86_64" || len(dv.Disks) != 0 || len(dv.Interfaces) != 0 {
		t.Errorf("devices %s: want QEMU, no disk, no network", s)
	}
	if len(dv.Controllers) != 1 || dv.Controllers[0].Model != "qemu-xhci" || *dv.Controllers[0].USB.Port != 8 {
		t.Errorf("controllers %s: want one 8-port qemu-xhci", s)
	}
	if len(dv.Serials) != 1 || dv.Serials[0].Source.File.Path != "/var/lib/libvirt/images/l2.log" {
		t.Errorf("serials %s: want the console to the log file", s)
	}
}
