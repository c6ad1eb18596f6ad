// Package l2guest is a tiny Linux guest for real-kernel tests: booted with
// the test host's own kernel and an initramfs of busybox and the kernel's USB
// modules, it reports on its serial console, from its own sysfs, which USB
// devices it sees. A test attaches a device to the guest and waits for the
// report, so it proves the device reached the guest (and left it), not only
// that libvirt or QEMU said so.
package l2guest

import (
	"bufio"
	"bytes"
	"context"
	_ "embed"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

//go:embed init.sh
var initScript []byte

// guestModules are the kernel modules the guest needs for its xHCI
// controller; modprobe adds their dependencies (usbcore, usb-common) in load
// order. EHCI and storage are left out: every module costs boot time under
// nested TCG, and a device's identity is in sysfs without a class driver.
const guestModules = "xhci_pci"

// Busybox is the static busybox the guest's /init runs on.
const Busybox = "/bin/busybox"

// applets are the busybox commands init.sh calls by name.
const applets = "sh mount insmod hexdump sleep"

// BuildInitramfs writes the guest's initramfs (an uncompressed cpio newc
// archive: decompressing costs more under TCG than loading the larger file)
// into dir and returns its path. The modules come from
// /lib/modules/kernelVersion, the kernel the guest will boot.
func BuildInitramfs(ctx context.Context, dir, kernelVersion string) (string, error) {
	mods, err := moduleFiles(ctx, kernelVersion)
	if err != nil {
		return "", err
	}
	bb, err := os.ReadFile(Busybox)
	if err != nil {
		return "", fmt.Errorf("read busybox for the l2 guest: %w", err)
	}
	var buf bytes.Buffer
	w := newCpio(&buf)
	for _, d := range []string{"bin", "dev", "etc", "lib", "lib/modules", "proc", "sys"} {
		w.dir(d)
	}
	// The kernel opens /dev/console for init's stdio before init can mount
	// devtmpfs, so the node must be in the archive.
	w.charDev("dev/console", 5, 1)
	w.file("bin/busybox", 0o755, bb)
	for _, a := range strings.Fields(applets) {
		w.symlink("bin/"+a, "busybox")
	}
	w.file("init", 0o755, initScript)
	var order strings.Builder
	for _, m := range mods {
		data, err := os.ReadFile(m)
		if err != nil {
			return "", fmt.Errorf("read module %s for the l2 guest: %w", m, err)
		}
		base := filepath.Base(m)
		w.file("lib/modules/"+base, 0o644, data)
		order.WriteString(base + "\n")
	}
	w.file("etc/modules.order", 0o644, []byte(order.String()))
	w.trailer()
	path := filepath.Join(dir, "l2guest-"+kernelVersion+".cpio")
	// 0644: inside the test host libvirt's QEMU runs as libvirt-qemu and
	// must read it.
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		return "", fmt.Errorf("write l2 guest initramfs: %w", err)
	}
	return path, nil
}

// moduleFiles lists the .ko files for guestModules in load order, as modprobe
// resolves them for kernelVersion. Compressed modules are refused: busybox's
// insmod in the guest loads plain .ko files, and Debian's are plain.
func moduleFiles(ctx context.Context, kernelVersion string) ([]string, error) {
	args := append([]string{"-S", kernelVersion, "-a", "--show-depends"}, strings.Fields(guestModules)...)
	out, err := exec.CommandContext(ctx, "modprobe", args...).Output()
	if err != nil {
		return nil, fmt.Errorf("resolve l2 guest modules for kernel %s: %w", kernelVersion, exitDetail(err))
	}
	var files []string
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 0:
		case f[0] == "builtin":
			// Built into this kernel: nothing to load.
		case f[0] == "insmod" && len(f) >= 2:
			if !strings.HasSuffix(f[1], ".ko") {
				return nil, fmt.Errorf("l2 guest module %s for kernel %s is compressed", f[1], kernelVersion)
			}
			if !seen[f[1]] {
				seen[f[1]] = true
				files = append(files, f[1])
			}
		default:
			return nil, fmt.Errorf("resolve l2 guest modules for kernel %s: unexpected modprobe line %q", kernelVersion, sc.Text())
		}
	}
	return files, nil
}

func exitDetail(err error) error {
	if ee, ok := err.(*exec.ExitError); ok && len(ee.Stderr) > 0 {
		return fmt.Errorf("%w: %s", err, bytes.TrimSpace(ee.Stderr))
	}
	return err
}
