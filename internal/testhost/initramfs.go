package testhost

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// initModules are what the initramfs needs to reach the root: the PCI
// transport, the control port, 9p and the overlay. Everything else is
// loaded after switch_root from the real /lib/modules.
var initModules = []string{"virtio_pci", "virtio_console", "9pnet_virtio", "9p", "overlay"}

// moduleFiles lists the .ko files of mods in load order, without
// repeats, as modprobe resolves them for kernel version ver.
func moduleFiles(ver string, mods []string) ([]string, error) {
	var files []string
	seen := map[string]bool{}
	for _, m := range mods {
		// One module per call: modprobe takes the words after the first
		// as its parameters.
		out, err := exec.Command("modprobe", "-S", ver, "--show-depends", m).CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("modprobe --show-depends %s for kernel %s: %w: %s", m, ver, err, bytes.TrimSpace(out))
		}
		sc := bufio.NewScanner(bytes.NewReader(out))
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) < 2 || f[0] != "insmod" {
				continue // builtin
			}
			if !strings.HasSuffix(f[1], ".ko") {
				return nil, fmt.Errorf("module %s is %s: busybox insmod takes uncompressed .ko only", m, f[1])
			}
			if !seen[f[1]] {
				seen[f[1]] = true
				files = append(files, f[1])
			}
		}
	}
	return files, nil
}

// initScript is the initramfs's /init: load the modules, build the root
// (the machine's own / read-only over 9p, a tmpfs overlay on it), mount the
// instance's writable share at /run/testhost, and hand over to the agent
// or to systemd. Any failure prints and powers off, so Boot sees QEMU exit
// with the reason at the end of the console log.
const initScript = `#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
fail() { echo "testhost init: $*"; sleep 1; poweroff -f; }
mkdir -p /proc /sys /dev /lower /upper /newroot
mount -t proc proc /proc
mount -t devtmpfs devtmpfs /dev
for m in $(cat /modules); do insmod "$m" || fail "insmod $m"; done
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144,cache=loose hostroot /lower || fail "mount the root share"
mount -t tmpfs -o mode=0755 upper /upper || fail "tmpfs upper"
mkdir -p /upper/up /upper/work
mount -t overlay -o lowerdir=/lower,upperdir=/upper/up,workdir=/upper/work overlay /newroot || fail "overlay"
mount -t tmpfs -o mode=1777 tmpfs /newroot/tmp || fail "tmpfs /tmp"
mount -t tmpfs -o mode=0755 tmpfs /newroot/run || fail "tmpfs /run"
mkdir -p /newroot/run/testhost
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,cache=mmap work /newroot/run/testhost || fail "mount the work share"
mode=agent
for a in $(cat /proc/cmdline); do case "$a" in testhost.init=*) mode="${a#testhost.init=}";; esac; done
if [ "$mode" = systemd ]; then
	sh /run/testhost-systemd.sh /newroot || fail "systemd setup"
	mount --move /dev /newroot/dev
	mount --move /proc /newroot/proc
	exec switch_root /newroot /lib/systemd/systemd
fi
mount --move /dev /newroot/dev
mount --move /proc /newroot/proc
mount -t sysfs sysfs /newroot/sys
mkdir -p /newroot/dev/pts /newroot/dev/shm
mount -t devpts -o gid=5,mode=620,ptmxmode=000 devpts /newroot/dev/pts
mount -t tmpfs -o mode=1777 tmpfs /newroot/dev/shm
mount -t cgroup2 cgroup2 /newroot/sys/fs/cgroup
mount -t configfs configfs /newroot/sys/kernel/config
mount -t debugfs debugfs /newroot/sys/kernel/debug
ln -sf /proc/self/fd /newroot/dev/fd
hostname testhost
# No udev yet to load drivers by modalias: the USB controller's, so
# devices plugged over QMP enumerate from the start.
chroot /newroot /sbin/modprobe xhci_pci
exec switch_root /newroot /run/testhost/agent agent
`

// systemdScript prepares the new root for systemd (argument: its path):
// the agent as a unit started at boot, what cannot work in the test host
// masked, and Debian's policy-rc.d (which exits 101, "do not start
// services") hidden so dpkg -i of a service starts it.
const systemdScript = `set -e
R="$1"
mkdir -p "$R/etc/systemd/system/multi-user.target.wants"
cat > "$R/etc/systemd/system/testhost-agent.service" <<'UNIT'
[Unit]
Description=usbctl test host agent
DefaultDependencies=no
After=systemd-udevd.service

[Service]
ExecStart=/run/testhost/agent systemd
Restart=always
KillMode=process

[Install]
WantedBy=multi-user.target
UNIT
ln -sf ../testhost-agent.service "$R/etc/systemd/system/multi-user.target.wants/testhost-agent.service"
for u in getty@tty1.service serial-getty@ttyS0.service systemd-remount-fs.service systemd-firstboot.service \
	systemd-networkd.service systemd-resolved.service systemd-timesyncd.service networking.service \
	apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer man-db.timer \
	dev-hugepages.mount dev-mqueue.mount tmp.mount; do
	ln -sf /dev/null "$R/etc/systemd/system/$u"
done
rm -f "$R/usr/sbin/policy-rc.d"
: > "$R/etc/fstab"
echo testhost > "$R/etc/hostname"
`

// writeInitramfs writes a newc cpio at dst: busybox as /bin/busybox, the
// .ko files of initModules at their own paths, /modules (their load order)
// and the scripts.
func writeInitramfs(dst, kernelVersion, busybox string) error {
	mods, err := moduleFiles(kernelVersion, initModules)
	if err != nil {
		return err
	}
	f, err := os.Create(dst)
	if err != nil {
		return fmt.Errorf("initramfs %s: %w", dst, err)
	}
	defer f.Close()
	w := newCpio(f)
	bb, err := os.ReadFile(busybox)
	if err != nil {
		return fmt.Errorf("initramfs: %w (install busybox-static)", err)
	}
	w.file("bin/busybox", 0o755, bb)
	w.file("init", 0o755, []byte(initScript))
	w.file("run/testhost-systemd.sh", 0o755, []byte(systemdScript))
	w.file("modules", 0o644, []byte(strings.Join(mods, "\n")+"\n"))
	for _, m := range mods {
		b, err := os.ReadFile(m)
		if err != nil {
			return fmt.Errorf("initramfs: %w", err)
		}
		w.file(strings.TrimPrefix(m, "/"), 0o644, b)
	}
	if err := w.close(); err != nil {
		return fmt.Errorf("initramfs %s: %w", dst, err)
	}
	return f.Close()
}

// cpio writes the newc ("070701") format the kernel unpacks. Directories
// are made explicitly, parents first: the kernel's unpacker does not.
type cpio struct {
	w    *bufio.Writer
	ino  int
	dirs map[string]bool
	err  error
}

func newCpio(w *os.File) *cpio { return &cpio{w: bufio.NewWriter(w), ino: 1, dirs: map[string]bool{}} }

func (c *cpio) entry(name string, mode uint32, data []byte) {
	if c.err != nil {
		return
	}
	nlink := 1
	if mode&0o170000 == 0o040000 {
		nlink = 2
	}
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		c.ino, mode, 0, 0, nlink, 0, len(data), 0, 0, 0, 0, len(name)+1, 0)
	c.ino++
	buf := append([]byte(hdr), name...)
	buf = append(buf, 0)
	buf = pad4(buf)
	if _, err := c.w.Write(buf); err != nil {
		c.err = err
		return
	}
	if _, err := c.w.Write(data); err != nil {
		c.err = err
		return
	}
	if n := len(data) % 4; n != 0 {
		_, c.err = c.w.Write(make([]byte, 4-n))
	}
}

func pad4(b []byte) []byte {
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func (c *cpio) mkdirAll(dir string) {
	if dir == "." || dir == "/" || dir == "" || c.dirs[dir] {
		return
	}
	c.mkdirAll(path.Dir(dir))
	c.dirs[dir] = true
	c.entry(dir, 0o040755, nil)
}

func (c *cpio) file(name string, perm uint32, data []byte) {
	c.mkdirAll(path.Dir(name))
	c.entry(name, 0o100000|perm, data)
}

func (c *cpio) close() error {
	c.entry("TRAILER!!!", 0, nil)
	if c.err != nil {
		return c.err
	}
	return c.w.Flush()
}

// kernelVersion picks the newest kernel that has both /boot/vmlinuz-VER
// and /lib/modules/VER.
func kernelVersion() (string, error) {
	vms, _ := filepath.Glob("/boot/vmlinuz-*")
	var vers []string
	for _, v := range vms {
		ver := strings.TrimPrefix(filepath.Base(v), "vmlinuz-")
		if st, err := os.Stat(filepath.Join("/lib/modules", ver)); err == nil && st.IsDir() {
			vers = append(vers, ver)
		}
	}
	if len(vers) == 0 {
		return "", fmt.Errorf("no kernel with modules in /boot and /lib/modules (install linux-image-amd64: make deps)")
	}
	sort.Strings(vers)
	return vers[len(vers)-1], nil
}
