//go:build umockdev

// Package sandbox runs a real libvirtd with the QEMU driver and real TCG
// guests that accept fake USB devices from a umockdev testbed, on a machine
// with no USB at all. libvirtd runs in a private mount namespace where its
// config, state and socket live in the sandbox directory and /sys/bus is a
// directory of symlinks into the testbed (libvirt reads USB devices with
// plain opendir/read, and cannot run under the umockdev preload). QEMU runs
// under the preload through a wrapper named as the guest's emulator, so it
// opens /dev/bus/usb/BBB/DDD in the testbed.
//
// The testbed lives in the process that calls Start: it must outlive the
// guests. That process must run as root, in its own network namespace with
// net.unix.max_dgram_qlen raised (scripts/umockdev-exec sets all that up).
package sandbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/usbctl/usbctl/internal/atomicfile"
	"github.com/usbctl/usbctl/internal/umockdev"
)

// Options configure a sandbox.
type Options struct {
	// Dir holds config, state, sockets and logs; a temporary directory if
	// empty. It is removed by Close only if it was temporary.
	Dir string
	// CacheDir keeps libvirt's QEMU capability cache across sandboxes: the
	// first libvirtd start probes QEMU for several seconds, later ones do
	// not. Defaults to $XDG_CACHE_HOME or ~/.cache, /usbctl-sandbox.
	CacheDir string
	// Log receives libvirtd's stderr; nil discards it.
	Log io.Writer
	// Auth is how libvirtd lets clients in; AuthRoot by default.
	Auth Auth
	// SocketGroup is the socket's group for AuthSocketGroup. It must exist
	// when Start is called: libvirtd sees a copy of /etc/group made then.
	SocketGroup string
}

// Sandbox is a running libvirtd with a fake-USB testbed.
type Sandbox struct {
	dir, cache  string
	ownDir      bool
	log         io.Writer
	tb          *umockdev.Testbed
	wrapper     string
	auth        Auth
	socketGroup string
	bus, polkit *exec.Cmd // AuthPolkit's system bus and polkitd

	mu       sync.Mutex
	libvirtd *exec.Cmd
	exited   chan struct{}
}

// Start creates the testbed (with the root hub of bus 1), the fake /sys/bus
// and starts libvirtd; it returns when libvirtd answers.
func Start(ctx context.Context, opt Options) (*Sandbox, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("sandbox: must run as root (mount namespaces, libvirtd)")
	}
	for _, bin := range []string{"libvirtd", "virsh", "qemu-system-x86_64", "unshare", "taskset"} {
		if _, err := exec.LookPath(bin); err != nil {
			return nil, fmt.Errorf("sandbox: %s not found: run make deps (scripts/deps.sh)", bin)
		}
	}
	if opt.Auth == AuthSocketGroup && opt.SocketGroup == "" {
		return nil, errors.New("sandbox: AuthSocketGroup needs a SocketGroup")
	}
	s := &Sandbox{dir: opt.Dir, cache: opt.CacheDir, log: opt.Log, auth: opt.Auth, socketGroup: opt.SocketGroup}
	if s.log == nil {
		s.log = io.Discard
	}
	if s.dir == "" {
		d, err := os.MkdirTemp("", "usbctl-sandbox-")
		if err != nil {
			return nil, fmt.Errorf("sandbox dir: %w", err)
		}
		s.dir, s.ownDir = d, true
	}
	if s.cache == "" {
		base := os.Getenv("XDG_CACHE_HOME")
		if base == "" {
			home, _ := os.UserHomeDir()
			base = filepath.Join(home, ".cache")
		}
		s.cache = filepath.Join(base, "usbctl-sandbox", "libvirt-cache")
	}
	tb, err := umockdev.New()
	if err != nil {
		s.cleanupDir()
		return nil, err
	}
	s.tb = tb
	if err := s.setup(); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.Plug(umockdev.RootHub(1)); err != nil {
		s.Close()
		return nil, err
	}
	if s.auth == AuthPolkit {
		if err := s.startPolkit(); err != nil {
			s.Close()
			return nil, err
		}
	}
	if err := s.StartLibvirtd(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func (s *Sandbox) path(p ...string) string { return filepath.Join(append([]string{s.dir}, p...)...) }

// Dir is the sandbox directory.
func (s *Sandbox) Dir() string { return s.dir }

// Testbed is the umockdev testbed that the fake devices live in.
func (s *Sandbox) Testbed() *umockdev.Testbed { return s.tb }

// URI is the libvirt URI of the sandbox's libvirtd.
func (s *Sandbox) URI() string {
	return "qemu+unix:///system?socket=" + s.path("run", "libvirt-sock")
}

// HookDir is where libvirtd looks for qemu hooks: its
// /etc/libvirt/hooks/qemu.d. libvirtd finds the hooks there when it
// starts; restart it (StopLibvirtd, StartLibvirtd) after adding one.
func (s *Sandbox) HookDir() string { return s.path("etc", "libvirt", "hooks", "qemu.d") }

// Env is what a process needs in its environment to see the fake devices
// through libudev (usbctld under test).
func (s *Sandbox) Env() []string {
	return []string{"UMOCKDEV_DIR=" + s.tb.Root(), "LD_PRELOAD=libumockdev-preload.so.0"}
}

const qemuConf = `# usbctl sandbox: QEMU as root, no security driver, no cgroups,
# no namespaces, logs without virtlogd.
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
namespaces = []
cgroup_controllers = []
stdio_handler = "file"
`

func (s *Sandbox) setup() error {
	for _, d := range []string{"etc/libvirt/qemu", "run", "lib/qemu", "log/qemu", "sysbus/usb/devices", "images"} {
		if err := os.MkdirAll(s.path(d), 0o755); err != nil {
			return fmt.Errorf("sandbox: %w", err)
		}
	}
	if err := os.MkdirAll(s.cache, 0o755); err != nil {
		return fmt.Errorf("sandbox cache: %w", err)
	}
	files := map[string]string{
		"etc/libvirt/libvirtd.conf": s.libvirtdConf(),
		"etc/libvirt/qemu.conf":     qemuConf,
	}
	for name, content := range files {
		if err := os.WriteFile(s.path(name), []byte(content), 0o644); err != nil {
			return fmt.Errorf("sandbox: %w", err)
		}
	}
	if err := writeWrapper(s.cache); err != nil {
		return err
	}
	s.wrapper = nsWrapper
	// QEMU sees the testbed through a directory of its own that links to
	// the testbed's sys, dev and ioctl trees. The preload puts each
	// process's uevent socket at $UMOCKDEV_DIR/event<fd>: in the shared
	// root, QEMU's (libusb opens one at the first hotplug) took over
	// usbctld's whenever their fd numbers matched, and usbctld heard no
	// uevent after that. It is under run/, which libvirtd's namespace
	// (and so QEMU's) has at /run/libvirt: the wrapper names it by that
	// path, the same in every sandbox.
	qdir := s.path("run", "usbctl-umockdev")
	if err := os.MkdirAll(qdir, 0o755); err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	for _, sub := range []string{"sys", "dev", "ioctl"} {
		target := filepath.Join(s.tb.Root(), sub)
		if err := os.MkdirAll(target, 0o755); err != nil {
			return fmt.Errorf("sandbox: %w", err)
		}
		if err := os.Symlink(target, filepath.Join(qdir, sub)); err != nil && !os.IsExist(err) {
			return fmt.Errorf("sandbox: %w", err)
		}
	}
	// libvirtd insists that the qemu user and group exist even when it
	// runs QEMU as root; give its namespace copies of passwd and group
	// with them added, rather than changing the host.
	for _, f := range []struct{ name, line string }{
		{"passwd", "libvirt-qemu:x:64055:64055:usbctl sandbox:/nonexistent:/usr/sbin/nologin\n"},
		{"group", "libvirt-qemu:x:64055:\nkvm:x:64056:\n"},
	} {
		b, err := os.ReadFile("/etc/" + f.name)
		if err != nil {
			return fmt.Errorf("sandbox: %w", err)
		}
		if !bytes.Contains(b, []byte("\nlibvirt-qemu:")) && !bytes.HasPrefix(b, []byte("libvirt-qemu:")) {
			b = append(b, f.line...)
		}
		if err := os.WriteFile(s.path(f.name), b, 0o644); err != nil {
			return fmt.Errorf("sandbox: %w", err)
		}
	}
	return writeBootSector(s.path("images", "poweroff.img"))
}

// nsWrapper is the guests' emulator as libvirtd and QEMU see it, in
// libvirtd's namespace (the cache directory is at /var/cache/libvirt
// there), and nsUmockdev the testbed directory the wrapper points QEMU at
// (the sandbox's run/usbctl-umockdev). Both paths are the same in every
// sandbox: libvirt keys its capability cache by the emulator's path and
// ctime, and a wrapper of each sandbox's own cost a ~4 s probe of QEMU in
// every sandbox's first define (one cache file per test, 37 in a run of
// the e2e suite).
const (
	nsWrapper  = "/var/cache/libvirt/usbctl-qemu-wrapper"
	nsUmockdev = "/run/libvirt/usbctl-umockdev"
)

// writeWrapper writes the emulator wrapper into the cache directory unless
// it is there already with the same content: rewriting it would change its
// ctime and so make libvirt probe QEMU again. The content names QEMU's
// size and ctime, so an upgraded QEMU gets a new wrapper and a new probe.
func writeWrapper(cache string) error {
	const qemu = "/usr/bin/qemu-system-x86_64"
	fi, err := os.Stat(qemu)
	if err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	st, _ := fi.Sys().(*syscall.Stat_t)
	var ctime int64
	if st != nil {
		ctime = st.Ctim.Sec
	}
	// QEMU under the preload, except for libvirt's capability probes
	// (-machine none): probing under the preload makes libvirt re-probe
	// on every lookup.
	script := fmt.Sprintf(`#!/bin/sh
# usbctl sandbox: QEMU under the umockdev preload (%s: %d bytes, ctime %d)
case " $* " in
*" -machine none,"*) exec %s "$@" ;;
esac
export UMOCKDEV_DIR=%s
export LD_PRELOAD=libumockdev-preload.so.0
exec %s "$@"
`, qemu, fi.Size(), ctime, qemu, nsUmockdev, qemu)
	path := filepath.Join(cache, filepath.Base(nsWrapper))
	if b, err := os.ReadFile(path); err == nil && string(b) == script {
		return nil
	}
	// Atomic: sandboxes of other processes (go test runs packages in
	// parallel) may exec it meanwhile.
	if err := atomicfile.Write(path, []byte(script), 0o755); err != nil {
		return fmt.Errorf("sandbox: emulator wrapper: %w", err)
	}
	return nil
}

// bootMarker is what the power-off guest's boot sector writes to its
// serial port when it starts running: the firmware is done by then.
const bootMarker = "@@"

// writeBootSector writes a disk whose boot sector writes bootMarker to COM1
// and then, with interrupts off, counts 5 changes of the RTC's seconds
// before it powers the machine off through ACPI (SLP_EN written to
// PM1a_CNT at 0x604 on q35): a guest that shuts itself down, without an OS.
// Interrupts stay off so no firmware code runs while it waits: SeaBIOS's
// timer-driven USB polling wedged on a hotplugged fake device, and BIOS
// waits (INT 15h) ran late on a loaded machine.
func writeBootSector(path string) error {
	code := []byte{
		0xFA,             // 00 cli
		0xBA, 0xF8, 0x03, // 01 mov dx, 0x3F8 (COM1)
		0xB0, '@', // 04 mov al, '@'
		0xEE,             // 06 out dx, al
		0xEE,             // 07 out dx, al
		0xB9, 0x05, 0x00, // 08 mov cx, 5 (seconds)
		0xE8, 0x17, 0x00, // 0B call rtcsec (0x25)
		0x88, 0xC3, // 0E mov bl, al
		0xE8, 0x12, 0x00, // 10 wait: call rtcsec
		0x38, 0xD8, // 13 cmp al, bl
		0x74, 0xF9, // 15 je wait
		0x88, 0xC3, // 17 mov bl, al
		0xE2, 0xF5, // 19 loop wait
		0xBA, 0x04, 0x06, // 1B mov dx, 0x604
		0xB8, 0x00, 0x20, // 1E mov ax, 0x2000
		0xEF,       // 21 out dx, ax
		0xF4,       // 22 hlt
		0xEB, 0xFD, // 23 jmp 0x22
		0xB0, 0x00, // 25 rtcsec: mov al, 0 (RTC seconds)
		0xE6, 0x70, // 27 out 0x70, al
		0xE4, 0x71, // 29 in al, 0x71
		0xC3, // 2B ret
	}
	img := make([]byte, 1<<20)
	copy(img, code)
	img[510], img[511] = 0x55, 0xAA
	return os.WriteFile(path, img, 0o644)
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// CleanEnv is the environment without the umockdev preload: libvirtd dies
// under it, and virsh, the go tool and usbctl do not need it.
func CleanEnv() []string {
	var out []string
	for _, e := range os.Environ() {
		if strings.HasPrefix(e, "LD_PRELOAD=") || strings.HasPrefix(e, "UMOCKDEV_DIR=") {
			continue
		}
		out = append(out, e)
	}
	return out
}

// StartLibvirtd starts libvirtd in its own mount namespace and waits until
// it answers.
func (s *Sandbox) StartLibvirtd(ctx context.Context) error {
	s.mu.Lock()
	if s.libvirtd != nil {
		s.mu.Unlock()
		return errors.New("sandbox: libvirtd already running")
	}
	os.Remove(s.path("run", "libvirt-sock"))
	os.Remove(s.path("run", "libvirtd.pid"))
	script := `set -e
mount --bind "$D/sysbus" /sys/bus
mkdir -p /run/libvirt /var/lib/libvirt /var/log/libvirt /var/cache/libvirt /etc/libvirt
mount --bind "$D/etc/libvirt" /etc/libvirt
mount --bind "$D/run" /run/libvirt
mount --bind "$D/lib" /var/lib/libvirt
mount --bind "$D/log" /var/log/libvirt
mount --bind "$CACHE" /var/cache/libvirt
mount --bind "$D/passwd" /etc/passwd
mount --bind "$D/group" /etc/group
# One CPU, always the same: where KVM is usable libvirt keeps its QEMU
# capability cache only while the host's CPUID is identical, and it reads
# CPUID on whatever CPU its thread runs on; leaf 1 EBX and leaf 11 EDX carry
# the CPU's APIC id (measured here: 00020800 on cpu0, 01020800 on cpu1), so
# about half of all starts threw the cache away ("host cpuid changed") and
# probed QEMU again (a start took ~12 s instead of 0.2 s). QEMU is not held to it: libvirt gives each
# guest all host CPUs.
cpu=$(taskset -pc $$ | sed 's/.*: *//; s/[-,].*//')
exec taskset -c "$cpu" libvirtd -f /etc/libvirt/libvirtd.conf -p /run/libvirt/libvirtd.pid
`
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script)
	cmd.Env = append(CleanEnv(), "D="+s.dir, "CACHE="+s.cache)
	if s.auth == AuthPolkit {
		cmd.Env = append(cmd.Env, "DBUS_SYSTEM_BUS_ADDRESS="+s.busAddress())
	}
	cmd.Stdout, cmd.Stderr = s.log, s.log
	// Its own process group, so a ^C to the test does not reach it
	// before Close can shut things down in order.
	// Pdeathsig: a test or demo that dies without Close must not leave
	// libvirtd running.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		s.mu.Unlock()
		return fmt.Errorf("sandbox: start libvirtd: %w", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	s.libvirtd, s.exited = cmd, exited
	s.mu.Unlock()

	deadline := time.Now().Add(90 * time.Second)
	for {
		if _, err := s.Virsh("version"); err == nil {
			return nil
		}
		select {
		case <-exited:
			s.mu.Lock()
			s.libvirtd = nil
			s.mu.Unlock()
			return fmt.Errorf("sandbox: libvirtd exited at start; see %s", s.path("log", "libvirtd.log"))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return errors.New("sandbox: libvirtd did not answer within 90 s")
		}
	}
}

// KillLibvirtd kills libvirtd with SIGKILL, as a crash would. Guests keep
// running.
func (s *Sandbox) KillLibvirtd() error { return s.stopLibvirtd(syscall.SIGKILL) }

// SignalLibvirtd sends sig to libvirtd: SIGSTOP makes it hang as a stuck
// daemon would, SIGCONT lets it go on.
func (s *Sandbox) SignalLibvirtd(sig syscall.Signal) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.libvirtd == nil {
		return errors.New("sandbox: libvirtd is not running")
	}
	return s.libvirtd.Process.Signal(sig)
}

// StopLibvirtd stops libvirtd with SIGTERM and waits for it.
func (s *Sandbox) StopLibvirtd() error { return s.stopLibvirtd(syscall.SIGTERM) }

func (s *Sandbox) stopLibvirtd(sig syscall.Signal) error {
	s.mu.Lock()
	cmd, exited := s.libvirtd, s.exited
	s.libvirtd = nil
	s.mu.Unlock()
	if cmd == nil {
		return nil
	}
	_ = cmd.Process.Signal(sig)
	_ = cmd.Process.Signal(syscall.SIGCONT) // in case it was stopped
	select {
	case <-exited:
	case <-time.After(15 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
	}
	return nil
}

// Virsh runs virsh against the sandbox: the independent client of tests.
func (s *Sandbox) Virsh(args ...string) (string, error) {
	cmd := exec.Command("virsh", append([]string{"-q", "-c", s.URI()}, args...)...)
	cmd.Env = CleanEnv()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("virsh %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// LibvirtdLog is libvirtd's log so far (info and above, every start of
// this sandbox): what libvirt itself saw, for tests to count.
func (s *Sandbox) LibvirtdLog() string {
	b, _ := os.ReadFile(s.path("log", "libvirtd.log"))
	return string(b)
}

// GuestOptions shape a test guest.
type GuestOptions struct {
	// PowerOff boots a disk that powers the guest off 5 s after its boot
	// sector starts (see WaitBootSector).
	PowerOff bool
	// NoUSB gives the guest no USB controller (model='none'): libvirt
	// then refuses every USB hotplug into it.
	NoUSB bool
}

// DefineGuest defines a small TCG guest (q35, 128 MiB, no disk unless
// PowerOff, an xHCI controller) whose emulator runs under the preload.
func (s *Sandbox) DefineGuest(name string, opt GuestOptions) error {
	disk := ""
	if opt.PowerOff {
		disk = fmt.Sprintf(`<disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='%s'/><target dev='sda' bus='sata'/></disk>
    <serial type='file'><source path='%s'/><target port='0'/></serial>`, s.path("images", "poweroff.img"), s.serialPath(name))
	}
	usbModel := "qemu-xhci"
	if opt.NoUSB {
		usbModel = "none"
	}
	x := fmt.Sprintf(`<domain type='qemu'>
  <name>%s</name>
  <memory unit='MiB'>128</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='q35'>hvm</type><boot dev='hd'/></os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <devices>
    <emulator>%s</emulator>
    %s
    <controller type='usb' model='%s'/>
    <memballoon model='none'/>
  </devices>
</domain>`, name, s.wrapper, disk, usbModel)
	f := s.path(name + ".xml")
	if err := os.WriteFile(f, []byte(x), 0o644); err != nil {
		return err
	}
	_, err := s.Virsh("define", f)
	return err
}

func (s *Sandbox) serialPath(name string) string { return s.path("log", name+".serial") }

// WaitBootSector waits until a PowerOff guest's boot sector runs (it then
// powers off 5 s later). Firmware is done with USB by then: SeaBIOS stalls
// for many seconds on a fake device it finds while it scans.
func (s *Sandbox) WaitBootSector(ctx context.Context, name string) error {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(s.serialPath(name)); err == nil && bytes.Contains(b, []byte(bootMarker)) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return fmt.Errorf("sandbox: guest %s: boot sector did not run within 60 s", name)
}

// StartGuest starts a defined guest. The serial log of a PowerOff guest is
// removed first, so WaitBootSector sees only this boot.
func (s *Sandbox) StartGuest(name string) error {
	os.Remove(s.serialPath(name))
	_, err := s.Virsh("start", name)
	return err
}

// DestroyGuest stops a guest at once (virsh destroy).
func (s *Sandbox) DestroyGuest(name string) error { _, err := s.Virsh("destroy", name); return err }

// QEMUPid returns the pid of a running guest's QEMU.
func (s *Sandbox) QEMUPid(name string) (int, error) {
	b, err := os.ReadFile(s.path("run", "qemu", name+".pid"))
	if err != nil {
		return 0, fmt.Errorf("sandbox: pid of %s: %w", name, err)
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// KillQEMU kills a guest's QEMU with SIGKILL: a crash, as libvirt sees it
// (Stopped Failed).
func (s *Sandbox) KillQEMU(name string) error {
	pid, err := s.QEMUPid(name)
	if err != nil {
		return err
	}
	return syscall.Kill(pid, syscall.SIGKILL)
}

// Plug adds a fake device: its /sys/bus/usb/devices link first (libvirt
// must find it when the add event makes usbctl attach it), then the
// testbed device with its add uevent, then the ioctl answers QEMU needs.
// Parent hubs must be plugged first.
func (s *Sandbox) Plug(d umockdev.USBDevice) error {
	link := s.path("sysbus", "usb", "devices", d.SysName())
	_ = os.Remove(link)
	if err := os.Symlink(filepath.Join(s.tb.SysDir(), d.DevPath()), link); err != nil {
		return fmt.Errorf("sandbox: plug %s: %w", d.SysName(), err)
	}
	if err := s.tb.LoadIoctl(d.DevNode(), d.IoctlScript()); err != nil {
		return err
	}
	return s.tb.AddFromString(d.Record())
}

// Unplug removes a fake device: the remove uevent, the testbed device,
// then its /sys/bus link.
func (s *Sandbox) Unplug(d umockdev.USBDevice) error {
	s.tb.Remove(d.DevPath())
	if err := os.Remove(s.path("sysbus", "usb", "devices", d.SysName())); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("sandbox: unplug %s: %w", d.SysName(), err)
	}
	return nil
}

// Close destroys every guest, stops libvirtd, kills any QEMU left, and
// removes the testbed (and the directory if it was temporary). It leaves no
// process behind.
func (s *Sandbox) Close() error {
	if out, err := s.Virsh("list", "--name"); err == nil {
		for _, n := range strings.Fields(out) {
			_, _ = s.Virsh("destroy", n)
		}
	}
	_ = s.StopLibvirtd()
	s.stopPolkit()
	// QEMU that outlived libvirtd (after a KillLibvirtd).
	pids, _ := filepath.Glob(s.path("run", "qemu", "*.pid"))
	for _, p := range pids {
		if b, err := os.ReadFile(p); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	if s.tb != nil {
		s.tb.Close()
	}
	s.cleanupDir()
	return nil
}

func (s *Sandbox) cleanupDir() {
	if s.ownDir {
		os.RemoveAll(s.dir)
	}
}
