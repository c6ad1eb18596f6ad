// Package notifytest gives tests a real session bus (dbus-daemon
// --session on a socket of their own) and a desktop notification server
// of their own on it, which records what it is asked to show and clicks
// actions as a person would. The agent's unit test and the e2e suite use
// it.
package notifytest

import (
	"bufio"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
)

// D-Bus names of the freedesktop notification service.
const (
	BusName = "org.freedesktop.Notifications"
	Path    = dbus.ObjectPath("/org/freedesktop/Notifications")
	Iface   = "org.freedesktop.Notifications"
)

// SessionBus starts a real dbus-daemon with the session configuration on a
// socket in a temporary directory and returns its address; it is killed
// when the test ends.
func SessionBus(t testing.TB) string {
	t.Helper()
	addr := "unix:path=" + filepath.Join(t.TempDir(), "bus")
	cmd := exec.Command("dbus-daemon", "--session", "--nofork", "--nopidfile", "--address="+addr, "--print-address=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("dbus-daemon (Debian package dbus-daemon; make deps installs it): %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("dbus-daemon printed no address: %v", err)
	}
	return strings.TrimSpace(line)
}

// Connect opens a connection to the bus at addr, closed when the test ends.
func Connect(t testing.TB, addr string) *dbus.Conn {
	t.Helper()
	c, err := dbus.Connect(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Note is one Notify call the server received.
type Note struct {
	ID            uint32
	Summary, Body string
	Actions       []string
	Hints         map[string]dbus.Variant
	Timeout       int32
}

// Server is a notification server owning org.freedesktop.Notifications.
type Server struct {
	conn   *dbus.Conn
	mu     sync.Mutex
	notes  []Note
	closed []uint32
	next   uint32
	got    chan Note
}

// NewServer starts one on the bus at addr.
func NewServer(t testing.TB, addr string) *Server {
	t.Helper()
	s := &Server{conn: Connect(t, addr), got: make(chan Note, 64)}
	if err := s.conn.Export(notifications{s}, Path, Iface); err != nil {
		t.Fatal(err)
	}
	reply, err := s.conn.RequestName(BusName, dbus.NameFlagDoNotQueue)
	if err != nil || reply != dbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("own %s: %v %v", BusName, reply, err)
	}
	return s
}

// notifications holds the exported methods, so that the Server's own
// methods are not on the bus.
type notifications struct{ s *Server }

func (n notifications) GetCapabilities() ([]string, *dbus.Error) {
	return []string{"actions", "body", "body-markup"}, nil
}

func (n notifications) GetServerInformation() (string, string, string, string, *dbus.Error) {
	return "usbctl-test", "usbctl", "1", "1.2", nil
}

func (n notifications) Notify(app string, replaces uint32, icon, summary, body string, actions []string, hints map[string]dbus.Variant, timeout int32) (uint32, *dbus.Error) {
	s := n.s
	s.mu.Lock()
	s.next++
	note := Note{ID: s.next, Summary: summary, Body: body, Actions: actions, Hints: hints, Timeout: timeout}
	s.notes = append(s.notes, note)
	s.mu.Unlock()
	s.got <- note
	return note.ID, nil
}

func (n notifications) CloseNotification(id uint32) *dbus.Error {
	s := n.s
	s.mu.Lock()
	s.closed = append(s.closed, id)
	s.mu.Unlock()
	_ = s.conn.Emit(Path, Iface+".NotificationClosed", id, uint32(3))
	return nil
}

// Click invokes an action of a notification, as a person clicking its
// button; the server then closes it, as real ones do.
func (s *Server) Click(t testing.TB, id uint32, action string) {
	t.Helper()
	if err := s.conn.Emit(Path, Iface+".ActionInvoked", id, action); err != nil {
		t.Fatal(err)
	}
	_ = s.conn.Emit(Path, Iface+".NotificationClosed", id, uint32(2))
}

// Closed reports whether the notification was closed by its sender.
func (s *Server) Closed(id uint32) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.closed {
		if c == id {
			return true
		}
	}
	return false
}

// Wait returns the next notification shown, failing the test after
// timeout.
func (s *Server) Wait(t testing.TB, timeout time.Duration) Note {
	t.Helper()
	select {
	case n := <-s.got:
		return n
	case <-time.After(timeout):
		t.Fatalf("no notification within %v", timeout)
	}
	return Note{}
}
