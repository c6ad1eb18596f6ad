//go:build umockdev

package sandbox

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Auth is how the sandbox's libvirtd lets clients in.
type Auth int

const (
	// AuthRoot: the socket is root's alone (0770, group root) and asks
	// nothing more. What the other tests use.
	AuthRoot Auth = iota
	// AuthPolkit: as Debian 12 ships libvirtd. Its libvirtd.socket is
	// SocketMode=0666 (unix_sock_group is ignored under socket
	// activation) and auth_unix_rw defaults to polkit: anyone may
	// connect, polkit decides. The sandbox runs a system bus and polkitd
	// of its own, which read the machine's polkit rules, among them
	// libvirt-daemon-system's 60-libvirt.rules: members of the group
	// libvirt may manage.
	AuthPolkit
	// AuthSocketGroup: libvirtd.conf's other way, for a libvirtd started
	// without socket activation: unix_sock_group = Options.SocketGroup,
	// the socket 0770, auth_unix_rw = "none".
	AuthSocketGroup
)

// debianPolkitRule is the rule AuthPolkit relies on; it must be the
// machine's own, as libvirt-daemon-system installs it.
const debianPolkitRule = "/usr/share/polkit-1/rules.d/60-libvirt.rules"

func (s *Sandbox) libvirtdConf() string {
	conf := `# usbctl sandbox: local socket, logs to files.
listen_tls = 0
listen_tcp = 0
log_outputs = "2:file:/var/log/libvirt/libvirtd.log"
keepalive_interval = 5
`
	switch s.auth {
	case AuthPolkit:
		conf += `# As Debian 12's libvirtd.socket (SocketMode=0666) and libvirtd's default
# with polkit: anyone connects, polkit decides.
unix_sock_group = "root"
unix_sock_ro_perms = "0777"
unix_sock_rw_perms = "0777"
auth_unix_ro = "polkit"
auth_unix_rw = "polkit"
`
	case AuthSocketGroup:
		conf += fmt.Sprintf(`# The socket's group decides.
unix_sock_group = %q
unix_sock_ro_perms = "0770"
unix_sock_rw_perms = "0770"
auth_unix_ro = "none"
auth_unix_rw = "none"
`, s.socketGroup)
	default:
		conf += `unix_sock_group = "root"
unix_sock_ro_perms = "0777"
unix_sock_rw_perms = "0770"
auth_unix_ro = "none"
auth_unix_rw = "none"
`
	}
	return conf
}

// busConf is a system bus of the sandbox's own: the stock default policy
// (no one owns a name or calls a method unless a policy file allows it)
// plus the machine's policy files, polkit's among them.
const busConf = `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=%s</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Peer"/>
  </policy>
  <includedir>/usr/share/dbus-1/system.d</includedir>
</busconfig>
`

// busAddress is the sandbox's system bus, for DBUS_SYSTEM_BUS_ADDRESS.
func (s *Sandbox) busAddress() string { return "unix:path=" + s.path("dbus", "system_bus_socket") }

// startPolkit starts the sandbox's system bus and polkitd on it, and
// returns when polkitd owns its name.
func (s *Sandbox) startPolkit() error {
	for _, f := range []string{"dbus-daemon", "dbus-send", "/usr/lib/polkit-1/polkitd", debianPolkitRule} {
		if _, err := exec.LookPath(f); err != nil && !fileExists(f) {
			return fmt.Errorf("sandbox: %s not found: run make deps (scripts/deps.sh installs dbus, polkitd and libvirt-daemon-system)", f)
		}
	}
	if err := os.MkdirAll(s.path("dbus"), 0o755); err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	// polkitd runs as its own user and must reach the bus's socket.
	if err := os.Chmod(s.dir, 0o711); err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	conf := s.path("dbus", "bus.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(busConf, s.path("dbus", "system_bus_socket"))), 0o644); err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	bus := exec.Command("dbus-daemon", "--config-file="+conf, "--nofork", "--nopidfile")
	polkit := exec.Command("/usr/lib/polkit-1/polkitd", "--no-debug")
	for _, c := range []*exec.Cmd{bus, polkit} {
		c.Env = append(CleanEnv(), "DBUS_SYSTEM_BUS_ADDRESS="+s.busAddress())
		c.Stdout, c.Stderr = s.log, s.log
		c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	}
	if err := bus.Start(); err != nil {
		return fmt.Errorf("sandbox: start dbus-daemon: %w", err)
	}
	s.bus = bus
	if err := s.waitBus("org.freedesktop.DBus"); err != nil {
		return err
	}
	// polkitd drops to its own user (polkitd) by itself.
	if err := polkit.Start(); err != nil {
		return fmt.Errorf("sandbox: start polkitd: %w", err)
	}
	s.polkit = polkit
	return s.waitBus("org.freedesktop.PolicyKit1")
}

// waitBus waits until name has an owner on the sandbox's bus.
func (s *Sandbox) waitBus(name string) error {
	deadline := time.Now().Add(20 * time.Second)
	for {
		cmd := exec.Command("dbus-send", "--system", "--print-reply", "--dest=org.freedesktop.DBus", "/", "org.freedesktop.DBus.NameHasOwner", "string:"+name)
		cmd.Env = append(CleanEnv(), "DBUS_SYSTEM_BUS_ADDRESS="+s.busAddress())
		out, err := cmd.CombinedOutput()
		if err == nil && strings.Contains(string(out), "boolean true") {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("sandbox: %s not on the sandbox's system bus within 20 s: %v %s", name, err, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stopPolkit stops polkitd and the bus, in that order.
func (s *Sandbox) stopPolkit() {
	for _, c := range []*exec.Cmd{s.polkit, s.bus} {
		if c == nil || c.Process == nil {
			continue
		}
		_ = c.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = c.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = c.Process.Kill()
			<-done
		}
	}
	s.polkit, s.bus = nil, nil
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// AllowUser lets a process of another uid than root use the sandbox as a
// usbctld would: reach libvirtd's socket (whose own mode and auth then
// decide), and see the fake devices through the preload, which binds a
// socket of its own in the testbed's root for udev events. Nothing else of
// the sandbox becomes writable.
func (s *Sandbox) AllowUser() error {
	// Search only: names inside are not listed.
	for _, d := range []string{s.dir, s.path("run")} {
		if err := os.Chmod(d, 0o711); err != nil {
			return fmt.Errorf("sandbox: %w", err)
		}
	}
	// Like /tmp: anyone may add a socket, only its owner removes it.
	root := s.tb.Root()
	if err := os.Chmod(root, 0o1777); err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	return filepath.WalkDir(filepath.Join(root, "sys"), func(p string, d os.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.IsDir() {
			return os.Chmod(p, 0o755)
		}
		return nil
	})
}
