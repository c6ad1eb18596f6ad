// Package testhost boots a real-kernel test host: Debian's own kernel
// (linux-image-amd64) under QEMU, with the machine's own / as its root
// (9p, read-only, a tmpfs overlay on top), so every installed package and
// library is there, and a real USB stack: a qemu-xhci controller whose
// devices tests hot-plug over QMP, and configfs gadgets on dummy_hcd with
// any identity. See /work/shared/notes/real-kernel.md for what was verified.
//
// # Use
//
//	h, err := testhost.Boot(ctx, testhost.Options{Log: log})
//	defer h.Close()
//	res, err := h.Run(ctx, "uname", "-r")         // Result{Stdout, Stderr, Exit}
//	out, err := h.Sh(ctx, "udevadm settle; lsusb") // error (with stderr) on exit != 0
//	p, err := h.Start(ctx, "usbctld", "/run/testhost/bin/usbctld", "--config", ...)
//	p.Signal(ctx, syscall.SIGKILL); p.Wait(ctx); p.Log()
//	hostDir, inside := h.SharedDir()              // a writable share, e.g. for binaries
//	h.SetupLibvirt(ctx)                            // udevd, virtlogd, libvirtd as Debian ships them
//	h.Plug(ctx, testhost.EmulatedDevice{ID: "kbd", Driver: "usb-kbd"}) // QMP device_add on xhci.0
//	h.Unplug(ctx, "kbd")                           // device_del, waits for DEVICE_DELETED
//	g, err := h.Gadget(ctx, testhost.GadgetSpec{Name: "g1", Vendor: "1d6b", Product: "0104", Serial: "X"})
//	g.Reenumerate(ctx, "df11"); g.Remove(ctx)
//	n, err := testhost.NewNetwork("", log)         // a private segment; defer n.Close()
//	a, err := testhost.Boot(ctx, testhost.Options{Network: n}) // a.IP(): 10.77.0.1, the next 10.77.0.2
//
// One boot serves a whole suite (a boot costs seconds, every command inside
// 0.3–1.3 s under TCG): boot in TestMain, share the *Host. Its methods are
// safe for concurrent use.
//
// # Inside
//
// The agent (./agent, built by Boot with CGO_ENABLED=0 into the share) is
// the control channel: JSON lines (package wire) over the virtio-serial
// port wire.PortName. With Init "agent" (the default) it is PID 1 and reaps
// every orphan; nothing else runs until a test starts it (SetupLibvirt
// starts udevd and libvirtd). With Init "systemd", systemd is PID 1 and the
// agent is its unit testhost-agent.service; SetupLibvirt then starts the
// Debian units.
//
// The share is mounted at /run/testhost (SharedDir); background processes
// log to /run/testhost/logs/NAME.log, readable from outside while they run.
// /tmp and /run are tmpfs inside; the rest of / is the machine's own, with
// writes going to the overlay and gone at Close.
//
// # Instances
//
// Every file and socket of an instance lives in its own temporary
// directory (under Options.Dir), so test hosts run side by side; Close
// kills QEMU and removes the directory. A test host that does not come up
// is an error carrying the console log's tail, never a skip.
//
// Test hosts booted with the same Options.Network (NewNetwork) share a
// private Ethernet segment, each with a static address (Host.IP): e.g.
// USB/IP from one to the other (e2e/usbip). The segment is a hub in the
// test process on unix datagram sockets; the host's own network is not
// touched, and Network.Close removes it.
//
// # Acceleration
//
// TCG (-accel tcg,thread=multi) by default. On the machines this was built
// on, /dev/kvm opens and QMP query-kvm says enabled, but a Linux guest
// under -accel kvm hangs before its first console byte (real-kernel.md:
// tried -cpu qemu64, max, host, Skylake-Server). Measured again with this
// package on 2026-12-02: Options{Accel: "kvm", BootTimeout: 30s} gave an
// empty console.log after 30 s, and QEMU warned "host doesn't support
// requested feature: CPUID.01H:ECX.pni" (KVM here does not even offer
// SSE3), while TCG reaches the agent in 12–14 s. Probing KVM on every boot
// would cost its whole timeout each time a hang is the answer, so nothing
// probes: Options.Accel "kvm" (or USBCTL_TESTHOST_ACCEL=kvm) is there for
// a machine where it works.
package testhost

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/usbctl/usbctl/internal/testhost/wire"
)

// Options of Boot. The zero value is a usable test host.
type Options struct {
	// Dir is where the instance's own temporary directory is made
	// (default os.TempDir()). Keep it short: QEMU's unix sockets live there.
	Dir string
	// MemMiB and CPUs of the test host (default 2048 and 2).
	MemMiB, CPUs int
	// Init is "agent" (default: the agent is PID 1) or "systemd".
	Init string
	// Accel is "tcg" or "kvm" (default $USBCTL_TESTHOST_ACCEL, else
	// tcg); see the package doc.
	Accel string
	// UDCs is how many dummy_hcd controllers Gadget may use (default 4):
	// one gadget each, each its own USB bus inside.
	UDCs int
	// Agent is a prebuilt agent binary; default: Boot builds
	// ./agent with the go tool, which needs this module as the working
	// directory or above it.
	Agent string
	// BootTimeout bounds the boot up to the agent's hello (default 3 min:
	// TCG on a loaded 2-core machine).
	BootTimeout time.Duration
	// Network, when set, puts the test host on that private segment with
	// the next free address (Host.IP), configured before Boot returns:
	// test hosts booted with the same Network reach each other over
	// TCP/IP, and nothing else. nil: no NIC at all.
	Network *Network
	Log     *slog.Logger
}

// Host is a booted test host.
type Host struct {
	log   *slog.Logger
	dir   string // the instance's directory, removed by Close
	share string // its writable share, /run/testhost inside
	opts  Options

	qemu     *exec.Cmd
	qemuDone chan struct{} // closed when QEMU has exited
	qemuErr  error

	ag   *agentConn
	qmp  *qmpConn
	port *port // on Options.Network; nil without one

	gmu      sync.Mutex      // gadget creation: one free UDC at a time
	gadgets  map[string]bool // names in use
	gloaded  bool
	closeMu  sync.Mutex
	closed   bool
	closeErr error
}

// Inside is where the shared directory is mounted in the test host.
const Inside = "/run/testhost"

// Boot starts a test host and returns once its agent answers. On failure
// nothing is left behind and the error ends with the console log's tail.
func Boot(ctx context.Context, o Options) (_ *Host, err error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.MemMiB == 0 {
		o.MemMiB = 2048
	}
	if o.CPUs == 0 {
		o.CPUs = 2
	}
	if o.Init == "" {
		o.Init = "agent"
	}
	if o.Init != "agent" && o.Init != "systemd" {
		return nil, fmt.Errorf("test host: init %q: want agent or systemd", o.Init)
	}
	if o.Accel == "" {
		o.Accel = os.Getenv("USBCTL_TESTHOST_ACCEL")
	}
	if o.Accel == "" {
		o.Accel = "tcg"
	}
	if o.Accel != "tcg" && o.Accel != "kvm" {
		return nil, fmt.Errorf("test host: accel %q: want tcg or kvm", o.Accel)
	}
	if o.UDCs == 0 {
		o.UDCs = 4
	}
	if o.BootTimeout == 0 {
		o.BootTimeout = 3 * time.Minute
	}
	start := time.Now()
	dir, err := os.MkdirTemp(o.Dir, "testhost-")
	if err != nil {
		return nil, fmt.Errorf("test host: %w", err)
	}
	h := &Host{log: o.Log, dir: dir, share: filepath.Join(dir, "share"), opts: o, gadgets: map[string]bool{}}
	defer func() {
		if err != nil {
			h.Close()
		}
	}()
	if err := os.MkdirAll(filepath.Join(h.share, "logs"), 0o755); err != nil {
		return nil, fmt.Errorf("test host: %w", err)
	}
	ver, err := kernelVersion()
	if err != nil {
		return nil, fmt.Errorf("test host: %w", err)
	}
	if err := h.installAgent(ctx); err != nil {
		return nil, err
	}
	if o.Network != nil {
		if h.port, err = o.Network.join(); err != nil {
			return nil, fmt.Errorf("test host: %w", err)
		}
	}
	initrd := filepath.Join(dir, "initramfs.cpio")
	if err := writeInitramfs(initrd, ver, "/bin/busybox"); err != nil {
		return nil, fmt.Errorf("test host: %w", err)
	}
	if err := h.startQEMU(ver, initrd); err != nil {
		return nil, err
	}
	bootCtx, cancel := context.WithTimeout(ctx, o.BootTimeout)
	defer cancel()
	if h.qmp, err = dialQMP(bootCtx, h.log, filepath.Join(dir, "qmp.sock"), h.qemuDone); err != nil {
		return nil, h.bootError(err)
	}
	if h.ag, err = dialAgent(bootCtx, h.log, filepath.Join(dir, "agent.sock"), h.qemuDone); err != nil {
		return nil, h.bootError(err)
	}
	select {
	case mode := <-h.ag.hello:
		h.log.Info("test host up", "dir", dir, "kernel", ver, "init", mode, "accel", o.Accel, "took", time.Since(start).Round(time.Millisecond))
	case <-h.qemuDone:
		return nil, h.bootError(fmt.Errorf("qemu exited before the agent answered: %v", h.qemuErr))
	case <-bootCtx.Done():
		return nil, h.bootError(fmt.Errorf("no answer from the agent within %v: %w", o.BootTimeout, bootCtx.Err()))
	}
	if h.port != nil {
		if err := h.setupNetwork(bootCtx); err != nil {
			return nil, err
		}
		h.log.Info("test host on network", "dir", dir, "ip", h.port.addr, "took", time.Since(start).Round(time.Millisecond))
	}
	return h, nil
}

func (h *Host) installAgent(ctx context.Context) error {
	dst := filepath.Join(h.share, "agent")
	if h.opts.Agent != "" {
		b, err := os.ReadFile(h.opts.Agent)
		if err != nil {
			return fmt.Errorf("test host agent: %w", err)
		}
		if err := os.WriteFile(dst, b, 0o755); err != nil {
			return fmt.Errorf("test host agent: %w", err)
		}
		return nil
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-o", dst, "github.com/usbctl/usbctl/internal/testhost/agent")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("test host: build the agent: %w: %s", err, bytes.TrimSpace(out))
	}
	return nil
}

func (h *Host) startQEMU(ver, initrd string) error {
	d := h.dir
	accel := "tcg,thread=multi"
	if h.opts.Accel == "kvm" {
		accel = "kvm"
	}
	args := []string{
		"-name", "testhost",
		"-accel", accel,
		"-machine", "q35",
		"-m", fmt.Sprint(h.opts.MemMiB),
		"-smp", fmt.Sprint(h.opts.CPUs),
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-kernel", "/boot/vmlinuz-" + ver,
		"-initrd", initrd,
		"-append", "console=ttyS0 panic=-1 rdinit=/init loglevel=4 testhost.init=" + h.opts.Init,
		"-chardev", "file,id=con,path=" + filepath.Join(d, "console.log"),
		"-serial", "chardev:con",
		"-qmp", "unix:" + filepath.Join(d, "qmp.sock") + ",server=on,wait=off",
		"-fsdev", "local,id=root,path=/,security_model=passthrough,readonly=on,multidevs=remap",
		"-device", "virtio-9p-pci,fsdev=root,mount_tag=hostroot",
		"-fsdev", "local,id=work,path=" + h.share + ",security_model=passthrough,multidevs=remap",
		"-device", "virtio-9p-pci,fsdev=work,mount_tag=work",
		"-device", "virtio-serial-pci,id=vser",
		"-chardev", "socket,id=agent,path=" + filepath.Join(d, "agent.sock") + ",server=on,wait=off",
		"-device", "virtserialport,bus=vser.0,chardev=agent,name=" + wire.PortName,
		// 8 USB 2 and 8 USB 3 root ports for hot-plugged devices.
		"-device", "qemu-xhci,id=xhci,p2=8,p3=8",
		"-device", "virtio-rng-pci",
	}
	if h.port != nil {
		args = append(args, h.port.qemuArgs()...)
	}
	qlog, err := os.Create(filepath.Join(d, "qemu.log"))
	if err != nil {
		return fmt.Errorf("test host: %w", err)
	}
	cmd := exec.Command("qemu-system-x86_64", args...)
	cmd.Stdout, cmd.Stderr = qlog, qlog
	// QEMU dies with the test process, even when that one is SIGKILLed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		qlog.Close()
		return fmt.Errorf("test host: start qemu: %w", err)
	}
	h.qemu = cmd
	h.qemuDone = make(chan struct{})
	go func() {
		h.qemuErr = cmd.Wait()
		qlog.Close()
		close(h.qemuDone)
	}()
	h.log.Debug("qemu started", "pid", cmd.Process.Pid, "dir", d)
	return nil
}

// bootError adds the tails of the console and QEMU's own log.
func (h *Host) bootError(err error) error {
	return fmt.Errorf("test host did not boot: %w\n--- console (last lines of %s):\n%s--- qemu:\n%s",
		err, filepath.Join(h.dir, "console.log"), tail(filepath.Join(h.dir, "console.log"), 40), tail(filepath.Join(h.dir, "qemu.log"), 10))
}

// ConsoleTail returns the last n lines of the test host's console.
func (h *Host) ConsoleTail(n int) string { return tail(filepath.Join(h.dir, "console.log"), n) }

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(" + err.Error() + ")\n"
	}
	lines := strings.SplitAfter(string(b), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "")
}

// Close stops QEMU and removes the instance's directory. Safe to call more
// than once.
func (h *Host) Close() error {
	h.closeMu.Lock()
	defer h.closeMu.Unlock()
	if h.closed {
		return h.closeErr
	}
	h.closed = true
	var errs []error
	if h.qemu != nil && h.qemu.Process != nil {
		// Nothing inside needs a clean shutdown: its root is a tmpfs
		// overlay and the share is written through.
		_ = h.qemu.Process.Signal(syscall.SIGTERM)
		select {
		case <-h.qemuDone:
		case <-time.After(5 * time.Second):
			_ = h.qemu.Process.Kill()
			<-h.qemuDone
		}
	}
	if h.ag != nil {
		h.ag.close()
	}
	if h.qmp != nil {
		h.qmp.close()
	}
	if h.port != nil {
		h.port.leave()
	}
	if err := os.RemoveAll(h.dir); err != nil {
		errs = append(errs, fmt.Errorf("test host: remove %s: %w", h.dir, err))
	}
	h.closeErr = errors.Join(errs...)
	return h.closeErr
}

// SharedDir is the writable share: its path here and inside the test host.
func (h *Host) SharedDir() (host, inside string) { return h.share, Inside }

// Dir is the instance's directory (console.log, qemu.log, the sockets).
func (h *Host) Dir() string { return h.dir }

// Result of a command run inside.
type Result struct {
	Stdout, Stderr []byte
	// Exit is the exit status, 128+N when signal N ended it.
	Exit int
}

// Cmd is a command to run inside, with more than its argv.
type Cmd struct {
	Argv  []string
	Env   []string // added to the agent's (PATH, HOME=/root, LANG=C.UTF-8)
	Dir   string
	Stdin []byte
}

// Run runs argv inside and returns its output and exit status. The error
// is for what kept it from running (not found, the test host gone, ctx),
// not for a non-zero exit.
func (h *Host) Run(ctx context.Context, argv ...string) (Result, error) {
	return h.Exec(ctx, Cmd{Argv: argv})
}

// Exec is Run with an environment, a directory and stdin.
func (h *Host) Exec(ctx context.Context, c Cmd) (Result, error) {
	resp, err := h.ag.call(ctx, wire.Request{Op: wire.OpRun, Argv: c.Argv, Env: c.Env, Dir: c.Dir, Stdin: c.Stdin}, true)
	if err != nil {
		return Result{}, fmt.Errorf("test host: run %q: %w", c.Argv, err)
	}
	return Result{Stdout: resp.Stdout, Stderr: resp.Stderr, Exit: resp.Exit}, nil
}

// Sh runs script with sh -e inside and returns its stdout; a non-zero exit
// is an error with the exit status and stderr.
func (h *Host) Sh(ctx context.Context, script string) (string, error) {
	return h.ShEnv(ctx, nil, script)
}

// ShEnv is Sh with variables added to the environment: the way to pass
// strings (hostile ones included) without quoting them into the script.
func (h *Host) ShEnv(ctx context.Context, env []string, script string) (string, error) {
	res, err := h.Exec(ctx, Cmd{Argv: []string{"/bin/sh", "-ec", script}, Env: env})
	if err != nil {
		return "", err
	}
	if res.Exit != 0 {
		return string(res.Stdout), fmt.Errorf("test host: sh exited %d: %s\nscript:\n%s", res.Exit, bytes.TrimSpace(res.Stderr), script)
	}
	return string(res.Stdout), nil
}

// Proc is a background process inside.
type Proc struct {
	h    *Host
	Name string
	PID  int
	// LogPath is its stdout and stderr, here (LogPath) and inside
	// (/run/testhost/logs/NAME.log).
	LogPath string
}

// Start starts argv in the background inside, in its own process group,
// with stdout and stderr appended to logs/NAME.log in the share.
func (h *Host) Start(ctx context.Context, name string, argv ...string) (*Proc, error) {
	return h.StartCmd(ctx, name, Cmd{Argv: argv})
}

// StartCmd is Start with an environment and a directory (Stdin is not used).
func (h *Host) StartCmd(ctx context.Context, name string, c Cmd) (*Proc, error) {
	if name == "" || strings.ContainsAny(name, "/ ") {
		return nil, fmt.Errorf("test host: start %q: want a name without / or spaces", name)
	}
	resp, err := h.ag.call(ctx, wire.Request{Op: wire.OpStart, Argv: c.Argv, Env: c.Env, Dir: c.Dir, Log: Inside + "/logs/" + name + ".log"}, false)
	if err != nil {
		return nil, fmt.Errorf("test host: start %s %q: %w", name, c.Argv, err)
	}
	return &Proc{h: h, Name: name, PID: resp.PID, LogPath: filepath.Join(h.share, "logs", name+".log")}, nil
}

// Signal sends sig to the process.
func (p *Proc) Signal(ctx context.Context, sig syscall.Signal) error {
	if _, err := p.h.ag.call(ctx, wire.Request{Op: wire.OpSignal, PID: p.PID, Signal: int(sig)}, false); err != nil {
		return fmt.Errorf("test host: signal %v to %s (pid %d): %w", sig, p.Name, p.PID, err)
	}
	return nil
}

// Wait waits for the process to end and returns its exit status (128+N
// for signal N).
func (p *Proc) Wait(ctx context.Context) (int, error) {
	resp, err := p.h.ag.call(ctx, wire.Request{Op: wire.OpWait, PID: p.PID}, false)
	if err != nil {
		return 0, fmt.Errorf("test host: wait for %s (pid %d): %w", p.Name, p.PID, err)
	}
	return resp.Exit, nil
}

// Stop sends SIGTERM, and SIGKILL if it has not ended after grace.
func (p *Proc) Stop(ctx context.Context, grace time.Duration) (int, error) {
	if err := p.Signal(ctx, syscall.SIGTERM); err != nil {
		return 0, err
	}
	wctx, cancel := context.WithTimeout(ctx, grace)
	defer cancel()
	code, err := p.Wait(wctx)
	if err == nil {
		return code, nil
	}
	if err := p.Signal(ctx, syscall.SIGKILL); err != nil {
		return 0, err
	}
	return p.Wait(ctx)
}

// Log returns what the process wrote so far.
func (p *Proc) Log() ([]byte, error) { return os.ReadFile(p.LogPath) }

// agentConn is the host side of the control channel.
type agentConn struct {
	log   *slog.Logger
	conn  net.Conn
	hello chan string
	wmu   sync.Mutex
	calls calls[wire.Response]
}

// dialUnix connects to a QEMU server socket, which appears a moment after
// QEMU starts.
func dialUnix(ctx context.Context, path string, qemuDone <-chan struct{}) (net.Conn, error) {
	for {
		c, err := net.Dial("unix", path)
		if err == nil {
			return c, nil
		}
		select {
		case <-qemuDone:
			return nil, fmt.Errorf("qemu exited before %s was there", path)
		case <-ctx.Done():
			return nil, fmt.Errorf("connect %s: %w", path, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func dialAgent(ctx context.Context, log *slog.Logger, path string, qemuDone <-chan struct{}) (*agentConn, error) {
	c, err := dialUnix(ctx, path, qemuDone)
	if err != nil {
		return nil, err
	}
	a := &agentConn{log: log, conn: c, hello: make(chan string, 1)}
	go a.read()
	return a, nil
}

func (a *agentConn) read() {
	r := bufio.NewReaderSize(a.conn, 1<<20)
	var err error
	for {
		var line []byte
		line, err = r.ReadBytes('\n')
		if err != nil {
			break
		}
		var resp wire.Response
		if jerr := json.Unmarshal(line, &resp); jerr != nil {
			a.log.Warn("test host agent: bad line", "line", string(line), "err", jerr)
			continue
		}
		if resp.ID == 0 {
			select {
			case a.hello <- resp.Hello:
			default:
			}
			continue
		}
		a.calls.deliver(resp.ID, resp)
	}
	if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
		err = errors.New("the test host's agent channel closed (QEMU gone?)")
	}
	a.calls.fail(err)
}

// call sends req and waits for its answer. For an OpRun (cancel true) a
// done ctx kills the process inside.
func (a *agentConn) call(ctx context.Context, req wire.Request, cancel bool) (wire.Response, error) {
	id, ch, err := a.calls.add()
	if err != nil {
		return wire.Response{}, err
	}
	req.ID = id
	if err := a.send(req); err != nil {
		a.calls.drop(id)
		return wire.Response{}, err
	}
	select {
	case resp, ok := <-ch:
		if !ok {
			return wire.Response{}, a.calls.failure()
		}
		if resp.Err != "" {
			return resp, errors.New(resp.Err)
		}
		return resp, nil
	case <-ctx.Done():
		a.calls.drop(id)
		if cancel {
			// Its answer has an ID nobody waits for: dropped.
			_ = a.send(wire.Request{ID: a.calls.newID(), Op: wire.OpCancel, Ref: id})
		}
		return wire.Response{}, ctx.Err()
	}
}

func (a *agentConn) send(req wire.Request) error {
	b, err := json.Marshal(req)
	if err != nil {
		return err
	}
	a.wmu.Lock()
	defer a.wmu.Unlock()
	_, err = a.conn.Write(append(b, '\n'))
	return err
}

func (a *agentConn) close() { a.conn.Close() }
