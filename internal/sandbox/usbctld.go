//go:build umockdev

package sandbox

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/usbctl/usbctl/controller/api"
)

// UsbctldOptions say how to run a usbctld against the sandbox.
type UsbctldOptions struct {
	Bin    string // the usbctld binary
	Socket string // control socket path
	Log    string // file its output is appended to
	Dir    string // working directory ("" for the caller's)
	// Args come after --uri and --socket: at least --config.
	Args []string
	// NoDevices runs it without the umockdev preload: it then sees no
	// fake devices (and these machines have no USB of their own).
	NoDevices bool
}

// Usbctld is a usbctld process run against the sandbox, as the e2e suite,
// the demo and the bench run it: the fake devices reach it through libudev
// (the preload and the testbed dir in its environment), nothing else.
type Usbctld struct {
	Cmd     *exec.Cmd
	Socket  string
	LogPath string
	Started time.Time // just before the process started
	exited  chan struct{}
}

// StartUsbctld starts usbctld on the sandbox's libvirtd. It does not wait
// for readiness (WaitReady does).
func (s *Sandbox) StartUsbctld(o UsbctldOptions) (*Usbctld, error) {
	f, err := os.OpenFile(o.Log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(o.Bin, append([]string{"--uri", s.URI(), "--socket", o.Socket}, o.Args...)...)
	cmd.Env = CleanEnv()
	if !o.NoDevices {
		cmd.Env = append(cmd.Env, s.Env()...)
	}
	cmd.Dir = o.Dir
	cmd.Stdout, cmd.Stderr = f, f
	// A caller that dies without stopping it must not leave it running.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	u := &Usbctld{Cmd: cmd, Socket: o.Socket, LogPath: o.Log, exited: make(chan struct{})}
	u.Started = time.Now()
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, err
	}
	go func() { _ = cmd.Wait(); f.Close(); close(u.exited) }()
	return u, nil
}

// Exited is closed when the process has exited.
func (u *Usbctld) Exited() <-chan struct{} { return u.exited }

// Client talks to it over its control socket.
func (u *Usbctld) Client() *api.Client { return &api.Client{Socket: u.Socket} }

// LogText is its output so far.
func (u *Usbctld) LogText() string {
	b, _ := os.ReadFile(u.LogPath)
	return string(b)
}

// WaitReady polls its status until the first complete sync; it fails at
// once if the process exits, and after timeout.
func (u *Usbctld) WaitReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		st, err := u.Client().Status(ctx)
		if err == nil && st.Ready {
			return nil
		}
		select {
		case <-u.exited:
			return fmt.Errorf("usbctld exited at start: %v\n%s", u.Cmd.ProcessState, u.LogText())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("usbctld not ready within %v (%v):\n%s", timeout, err, u.LogText())
		}
	}
}

// Stop sends sig and waits for the exit; after 20 s it kills.
func (u *Usbctld) Stop(sig syscall.Signal) {
	_ = u.Cmd.Process.Signal(sig)
	select {
	case <-u.exited:
	case <-time.After(20 * time.Second):
		_ = u.Cmd.Process.Kill()
		<-u.exited
	}
}
