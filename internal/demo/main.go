//go:build umockdev

// Command demo shows usbctl on a machine with no USB hardware and no
// libvirt set up: it starts the sandbox (a real libvirtd, small QEMU guests,
// fake USB devices through umockdev), runs the real usbctld with an example
// config, then plugs and unplugs devices and starts and stops guests,
// printing `usbctl status` after each step; then it moves devices by hand
// (usbctl move, detach --for, release) and shows what `usbctl events`
// printed all along. make demo builds and runs it
// through scripts/umockdev-exec; make sandbox runs it with -hold, which
// starts the sandbox and waits, for experiments by hand.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/usbctl/usbctl/internal/sandbox"
	"github.com/usbctl/usbctl/internal/umockdev"
)

const demoConfig = `# The demo's config: two VMs, a host keyboard no VM may take.
domain "gaming" {
  priority = 10
  # The wireless keyboard/mouse receiver and a gamepad.
  device "receiver" { ids = ["046d:c52b"] }
  device "gamepad"  { ids = ["045e:028e"] }
}

domain "work" {
  # This YubiKey, by serial, wherever it is plugged in.
  device "yubikey" { serial = "7654321" }
  # Everything plugged into the desk hub on port 1-4.
  device "desk-hub" { port = "1-4.*" }
}

# The host's own keyboard never leaves the host.
exclude "host-keyboard" {
  ids = ["04d9:0006"]
}
`

type demo struct {
	sb      *sandbox.Sandbox
	dir     string
	bin     string
	sock    string
	usbctld *sandbox.Usbctld
	out     io.Writer
	step    int
	events  *eventsFollower
}

// eventsFollower is `usbctl events` running beside the demo.
type eventsFollower struct {
	cmd *exec.Cmd
	mu  sync.Mutex
	out strings.Builder
}

func (e *eventsFollower) Write(p []byte) (int, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.out.Write(p)
}

func (e *eventsFollower) text() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.out.String()
}

func main() {
	bin := flag.String("bin", "bin", "directory with the usbctl and usbctld binaries")
	hold := flag.Bool("hold", false, "start the sandbox with a guest, print how to use it, and wait for ^C")
	flag.Parse()
	if err := run(*bin, *hold); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(bin string, hold bool) error {
	if os.Getenv("LD_PRELOAD") == "" {
		return errors.New("run me through scripts/umockdev-exec (make demo does)")
	}
	bin, _ = filepath.Abs(bin)
	// Piped into head or a closed pager, keep going and clean up rather
	// than die on SIGPIPE with the sandbox still up.
	signal.Ignore(syscall.SIGPIPE)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	dir, err := os.MkdirTemp("", "usbctl-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	d := &demo{dir: dir, bin: bin, sock: filepath.Join(dir, "usbctl.sock"), out: os.Stdout}
	fmt.Println("== starting the sandbox: a real libvirtd in its own mount namespace, fake USB bus 1")
	t0 := time.Now()
	sb, err := sandbox.Start(ctx, sandbox.Options{Dir: filepath.Join(dir, "sandbox")})
	if err != nil {
		return err
	}
	d.sb = sb
	defer func() {
		d.stopDaemon()
		fmt.Println("== cleaning up: guests destroyed, libvirtd stopped, fake devices removed")
		sb.Close()
	}()
	fmt.Printf("   libvirtd up in %v at %s\n", time.Since(t0).Round(time.Millisecond), sb.URI())
	for _, g := range []string{"gaming", "work"} {
		if err := sb.DefineGuest(g, sandbox.GuestOptions{}); err != nil {
			return err
		}
	}
	if hold {
		return d.hold(ctx)
	}
	return d.story(ctx)
}

func (d *demo) hold(ctx context.Context) error {
	fmt.Printf(`
The sandbox is up with guests "gaming" and "work" defined (not started).
In another shell (as root):
  virsh -c '%s' list --all
This process owns the fake devices; it stays until ^C.
`, d.sb.URI())
	<-ctx.Done()
	return nil
}

func dev(n int, port, id, serial, mfr, name string, ifaces ...string) umockdev.USBDevice {
	v, p, _ := strings.Cut(id, ":")
	return umockdev.USBDevice{Bus: 1, Dev: n, Port: port, Vendor: v, Product: p, Serial: serial, Manufacturer: mfr, ProductName: name, Interfaces: ifaces}
}

func (d *demo) story(ctx context.Context) error {
	keyboard := dev(2, "1-2", "04d9:0006", "", "Holtek", "USB Keyboard", "030101")
	receiver := dev(3, "1-1", "046d:c52b", "", "Logitech", "USB Receiver", "030101", "030102")
	hub := umockdev.USBDevice{Bus: 1, Dev: 4, Port: "1-4", Vendor: "05e3", Product: "0610", Class: "09", Manufacturer: "GenesysLogic", ProductName: "USB2.0 Hub", Interfaces: []string{"090000"}}
	yubi := dev(5, "1-4.1", "1050:0407", "7654321", "Yubico", "YubiKey OTP+FIDO+CCID", "030101", "0b0000")
	stick := dev(6, "1-4.2", "0781:5567", "4C530001", "SanDisk", "Cruzer Blade", "080650")

	// Relative to the daemon's directory, so rules read "usbctl.hcl:5".
	cfg := "usbctl.hcl"
	if err := os.WriteFile(filepath.Join(d.dir, cfg), []byte(demoConfig), 0o644); err != nil {
		return err
	}
	d.say("The config, usbctl.hcl:\n\n%s", indent(demoConfig))
	if out, err := d.cli(false, "check", filepath.Join(d.dir, cfg)); err != nil {
		return fmt.Errorf("usbctl check: %v\n%s", err, out)
	}

	d.plug(keyboard)
	if err := d.startDaemon(cfg); err != nil {
		return err
	}
	d.followEvents()
	d.status("usbctld is running. Both VMs are shut off; the host keyboard is plugged in and excluded.")

	d.must(d.sb.StartGuest("gaming"))
	d.plug(receiver)
	d.settle("gaming", 1)
	d.status("Started VM gaming, then plugged the Logitech receiver: it went to gaming.")

	d.plug(hub)
	d.plug(yubi)
	d.plug(stick)
	time.Sleep(300 * time.Millisecond)
	d.status("Plugged a desk hub on port 1-4 with a YubiKey and a USB stick: work wants them, but work is not running.")

	d.must(d.sb.StartGuest("work"))
	d.settle("work", 2)
	d.status("Started VM work: the YubiKey and the stick behind the hub followed it; the hub itself stays on the host.")

	d.must(d.sb.Unplug(stick))
	d.settle("work", 1)
	d.status("Unplugged the USB stick: detached from work.")

	d.must(d.sb.DestroyGuest("gaming"))
	time.Sleep(500 * time.Millisecond)
	d.status("Shut VM gaming down: its receiver is back on the host, waiting for gaming.")

	d.must(d.sb.StartGuest("gaming"))
	d.settle("gaming", 1)
	d.status("Started VM gaming again: the receiver followed it.")

	// Hands on the wheel: what a person asks at runtime is desired state.
	d.run("move", "logitech", "work")
	d.settle("work", 2)
	d.status("usbctl move logitech work: the receiver went to work, whatever the rules say, until it is unplugged.")

	d.run("detach", "yubikey", "--for", "2s")
	d.settle("work", 1)
	d.status("usbctl detach yubikey --for 2s: the YubiKey is back on the host for two seconds...")
	d.settle("work", 2)
	d.status("...and then back in work, where its rule puts it.")

	d.run("release", "1-1")
	d.settle("gaming", 1)
	d.status("usbctl release 1-1 (the receiver, by port): the rules decide again, and it went back to gaming.")

	d.say("$ usbctl events — what it printed while all that happened:\n\n%s", indent(d.events.text()))

	d.say("virsh (an independent client) agrees — USB hostdevs in the live XML:")
	for _, g := range []string{"gaming", "work"} {
		x, _ := d.sb.Virsh("dumpxml", g)
		fmt.Fprintf(d.out, "   %-7s %s\n", g, strings.Join(regexp.MustCompile(`ua-usbctl-\d+-\d+`).FindAllString(x, -1), " "))
	}
	fmt.Fprintln(d.out)
	d.say("usbctl devices — the host's USB tree as udev shows it:")
	out, _ := d.cli(true, "devices")
	fmt.Fprintln(d.out, indent(out))
	d.say("Done. Stopping usbctld leaves devices attached (a restart must not disturb guests); usbctld --release-on-stop gives them back.")
	return nil
}

// followEvents starts `usbctl events` beside the demo.
func (d *demo) followEvents() {
	e := &eventsFollower{}
	e.cmd = exec.Command(filepath.Join(d.bin, "usbctl"), "--socket", d.sock, "events")
	e.cmd.Env = sandbox.CleanEnv()
	e.cmd.Stdout, e.cmd.Stderr = e, e
	e.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	d.must(e.cmd.Start())
	d.events = e
	time.Sleep(100 * time.Millisecond) // connected before the first step
}

// run runs a usbctl command, printing it and what it said.
func (d *demo) run(args ...string) {
	d.say("$ usbctl %s", strings.Join(args, " "))
	out, err := d.cli(false, args...)
	fmt.Fprintln(d.out, indent(out))
	if err != nil {
		d.must(fmt.Errorf("usbctl %s: %v", strings.Join(args, " "), err))
	}
}

func (d *demo) must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		d.stopDaemon()
		d.sb.Close()
		os.Exit(1)
	}
}

func (d *demo) plug(u umockdev.USBDevice) { d.must(d.sb.Plug(u)) }

// settle waits until dom holds n of our hostdevs (virsh), at most 20 s.
func (d *demo) settle(dom string, n int) {
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		x, err := d.sb.Virsh("dumpxml", dom)
		if err == nil && strings.Count(x, "<alias name='ua-usbctl-") == n {
			time.Sleep(100 * time.Millisecond)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	d.must(fmt.Errorf("%s did not reach %d usbctl devices within 20 s", dom, n))
}

func (d *demo) say(format string, a ...any) {
	fmt.Fprintf(d.out, "\n== "+format+"\n", a...)
}

func (d *demo) status(what string) {
	d.step++
	d.say("step %d: %s\n\n$ usbctl status", d.step, what)
	out, err := d.cli(false, "status")
	fmt.Fprintln(d.out, indent(out))
	if err != nil {
		d.must(fmt.Errorf("usbctl status: %v", err))
	}
}

// cli runs usbctl; withDevices gives it the fake devices (usbctl devices
// reads udev itself).
func (d *demo) cli(withDevices bool, args ...string) (string, error) {
	cmd := exec.Command(filepath.Join(d.bin, "usbctl"), append([]string{"--socket", d.sock}, args...)...)
	cmd.Env = sandbox.CleanEnv()
	if withDevices {
		cmd.Env = append(cmd.Env, d.sb.Env()...)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (d *demo) startDaemon(cfg string) error {
	u, err := d.sb.StartUsbctld(sandbox.UsbctldOptions{Bin: filepath.Join(d.bin, "usbctld"), Socket: d.sock,
		Log: filepath.Join(d.dir, "usbctld.log"), Dir: d.dir, Args: []string{"--config", cfg, "--state-dir", filepath.Join(d.dir, "state")}})
	if err != nil {
		return err
	}
	d.usbctld = u
	return u.WaitReady(context.Background(), 30*time.Second)
}

func (d *demo) stopDaemon() {
	if d.events != nil {
		_ = d.events.cmd.Process.Signal(syscall.SIGTERM)
		_ = d.events.cmd.Wait()
		d.events = nil
	}
	if d.usbctld != nil {
		d.usbctld.Stop(syscall.SIGTERM)
		d.usbctld = nil
	}
}

func indent(s string) string {
	s = strings.TrimRight(s, "\n")
	return "   " + strings.ReplaceAll(s, "\n", "\n   ")
}
