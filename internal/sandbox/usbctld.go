//go:build umockdev

package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"strconv"
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
	// User runs it as this user, with the user's groups from the user
	// database, as systemd's User= does; "" runs it as root. The sandbox
	// must allow it (AllowUser).
	User string
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
	if o.User != "" {
		cred, err := credential(o.User)
		if err != nil {
			f.Close()
			return nil, err
		}
		cmd.SysProcAttr.Credential = cred
	}
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

// credential is name's uid, primary gid and every group the user database
// gives it, as initgroups(3) (and so systemd's User=) sets them.
func credential(name string) (*syscall.Credential, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("sandbox: user %s: %w", name, err)
	}
	ids, err := u.GroupIds()
	if err != nil {
		return nil, fmt.Errorf("sandbox: groups of %s: %w", name, err)
	}
	c := &syscall.Credential{}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("sandbox: user %s: %w", name, err)
	}
	c.Uid, c.Gid = uint32(uid), uint32(gid)
	for _, id := range ids {
		g, err := strconv.ParseUint(id, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("sandbox: groups of %s: %w", name, err)
		}
		c.Groups = append(c.Groups, uint32(g))
	}
	return c, nil
}
