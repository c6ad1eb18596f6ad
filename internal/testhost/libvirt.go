package testhost

import (
	"context"
	"fmt"
	"time"
)

// setupLibvirtAgent starts udev and libvirt by hand (agent mode: no
// systemd), as Debian's units would: udevd and a coldplug first, so
// /dev/bus/usb and the uevents are real; the libvirt-qemu user Debian's
// postinst would have made (this root lacks it: "Failed to parse
// user/group 'libvirt-qemu'"); then virtlogd and libvirtd with the
// packaged /etc/libvirt (QEMU as libvirt-qemu, DAC, mount namespaces).
const setupLibvirtAgent = `
getent group libvirt-qemu >/dev/null || groupadd -r libvirt-qemu
id libvirt-qemu >/dev/null 2>&1 || useradd -r -g libvirt-qemu -G kvm -d /var/lib/libvirt -s /usr/sbin/nologin libvirt-qemu
mkdir -p /run/libvirt /var/lib/libvirt/qemu /var/cache/libvirt/qemu /var/log/libvirt/qemu /run/udev
`

// SetupLibvirt starts systemd-udevd (and a coldplug), virtlogd and libvirtd
// inside and returns once libvirtd's socket answers. In agent mode they are
// background processes (logs/udevd.log, virtlogd.log, libvirtd.log in the
// share); in systemd mode, Debian's own units.
func (h *Host) SetupLibvirt(ctx context.Context) error {
	// libvirtd probes every qemu-system-* it finds before its socket
	// answers, about 8 s each under TCG; the guests here are all x86_64,
	// so the i386 emulator is hidden (in the overlay only).
	if _, err := h.Sh(ctx, "rm -f /usr/bin/qemu-system-i386"); err != nil {
		return fmt.Errorf("test host: setup libvirt: %w", err)
	}
	if h.opts.Init == "systemd" {
		if _, err := h.Sh(ctx, "systemctl start systemd-udevd.service virtlogd.socket libvirtd.service && udevadm trigger --action=add && udevadm settle"); err != nil {
			return fmt.Errorf("test host: setup libvirt: %w", err)
		}
	} else {
		if _, err := h.Start(ctx, "udevd", "/lib/systemd/systemd-udevd"); err != nil {
			return fmt.Errorf("test host: setup libvirt: %w", err)
		}
		if _, err := h.Sh(ctx, setupLibvirtAgent+`
for i in $(seq 100); do [ -e /run/udev/control ] && break; sleep 0.05; done
udevadm trigger --action=add
udevadm settle`); err != nil {
			return fmt.Errorf("test host: setup libvirt: %w", err)
		}
		if _, err := h.Start(ctx, "virtlogd", "virtlogd"); err != nil {
			return fmt.Errorf("test host: setup libvirt: %w", err)
		}
		if _, err := h.Start(ctx, "libvirtd", "libvirtd"); err != nil {
			return fmt.Errorf("test host: setup libvirt: %w", err)
		}
	}
	// One exec that polls inside: cheaper than a round trip per try.
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if _, err := h.Sh(wctx, `for i in $(seq 600); do virsh -c qemu:///system version >/dev/null 2>&1 && exit 0; sleep 0.2; done; virsh -c qemu:///system version`); err != nil {
		return fmt.Errorf("test host: libvirtd did not answer: %w (see %s/logs/libvirtd.log)", err, h.share)
	}
	return nil
}
