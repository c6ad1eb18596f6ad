package agent

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
)

// sessionBus starts a real dbus-daemon with the session configuration on a
// socket of the test's own, and returns its address.
func sessionBus(t *testing.T) string {
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

func connect(t *testing.T, addr string) *dbus.Conn {
	t.Helper()
	c, err := dbus.Connect(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// note is one Notify call the server received.
type note struct {
	id            uint32
	summary, body string
	actions       []string
	hints         map[string]dbus.Variant
	timeout       int32
}

// notifServer is a notification server of the test's own, owning
// org.freedesktop.Notifications on the bus: it records what it is asked to
// show and can click an action, as a person would.
type notifServer struct {
	conn   *dbus.Conn
	mu     sync.Mutex
	notes  []note
	closed []uint32
	next   uint32
	got    chan note
}

func newNotifServer(t *testing.T, addr string) *notifServer {
	t.Helper()
	s := &notifServer{conn: connect(t, addr), got: make(chan note, 16)}
	if err := s.conn.Export(s, objPath, iface); err != nil {
		t.Fatal(err)
	}
	reply, err := s.conn.RequestName(busName, dbus.NameFlagDoNotQueue)
	if err != nil || reply != dbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("own %s: %v %v", busName, reply, err)
	}
	return s
}

func (s *notifServer) GetCapabilities() ([]string, *dbus.Error) {
	return []string{"actions", "body", "body-markup"}, nil
}

func (s *notifServer) GetServerInformation() (string, string, string, string, *dbus.Error) {
	return "usbctl-test", "usbctl", "1", "1.2", nil
}

func (s *notifServer) Notify(app string, replaces uint32, icon, summary, body string, actions []string, hints map[string]dbus.Variant, timeout int32) (uint32, *dbus.Error) {
	s.mu.Lock()
	s.next++
	n := note{id: s.next, summary: summary, body: body, actions: actions, hints: hints, timeout: timeout}
	s.notes = append(s.notes, n)
	s.mu.Unlock()
	s.got <- n
	return n.id, nil
}

func (s *notifServer) CloseNotification(id uint32) *dbus.Error {
	s.mu.Lock()
	s.closed = append(s.closed, id)
	s.mu.Unlock()
	_ = s.conn.Emit(objPath, sigClosed, id, uint32(3))
	return nil
}

func (s *notifServer) click(t *testing.T, id uint32, action string) {
	t.Helper()
	if err := s.conn.Emit(objPath, sigAction, id, action); err != nil {
		t.Fatal(err)
	}
}

func (s *notifServer) wasClosed(id uint32) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.closed {
		if c == id {
			return true
		}
	}
	return false
}

func (s *notifServer) wait(t *testing.T) note {
	t.Helper()
	select {
	case n := <-s.got:
		return n
	case <-time.After(10 * time.Second):
		t.Fatal("no notification within 10 s")
	}
	return note{}
}

// fakeDaemon is usbctld as the agent sees it: offers, a stream, answers.
type fakeDaemon struct {
	mu      sync.Mutex
	offers  []Offer
	answers []string
	changed chan struct{}
	breaks  chan struct{} // a receive ends the current Follow
	follows int
}

func (d *fakeDaemon) Offers(ctx context.Context) ([]Offer, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]Offer(nil), d.offers...), nil
}

func (d *fakeDaemon) Follow(ctx context.Context, changed func()) error {
	d.mu.Lock()
	d.follows++
	d.mu.Unlock()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-d.breaks:
			return errors.New("stream broke")
		case <-d.changed:
			changed()
		}
	}
}

func (d *fakeDaemon) Answer(ctx context.Context, o Offer, a Answer) error {
	d.mu.Lock()
	d.answers = append(d.answers, fmt.Sprintf("%s %s %s", o.Device, o.Domain, a))
	var left []Offer
	for _, x := range d.offers {
		if x.key() != o.key() {
			left = append(left, x)
		}
	}
	d.offers = left
	d.mu.Unlock()
	d.changed <- struct{}{}
	return nil
}

func (d *fakeDaemon) set(offers ...Offer) {
	d.mu.Lock()
	d.offers = offers
	d.mu.Unlock()
	d.changed <- struct{}{}
}

// An offer becomes a notification with actions; the action a person clicks
// is the answer usbctld gets; an offer that goes away takes its
// notification with it.
func TestAgentAnswersThroughDBus(t *testing.T) {
	addr := sessionBus(t)
	srv := newNotifServer(t, addr)
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	d := &fakeDaemon{changed: make(chan struct{}, 8), breaks: make(chan struct{}, 1),
		offers: []Offer{
			{Device: "001:005", Domain: "win11", What: "Evil <b>Corp</b>\x1b[31m\nUSB Receiver (046d:c52b)"},
			{Device: "001:007", Domain: "work", What: "SanDisk Ultra Fit (0781:5583)", Expires: now.Add(90 * time.Second)},
		}}
	ag := &Agent{Bus: connect(t, addr), Daemon: d, Now: func() time.Time { return now }, RetryMin: 10 * time.Millisecond, RetryMax: 20 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ag.Run(ctx) }()

	byDomain := map[string]note{}
	for range 2 {
		n := srv.wait(t)
		byDomain[strings.TrimPrefix(n.summary, "USB device for ")] = n
	}
	recv, stick := byDomain["win11"], byDomain["work"]
	if recv.id == 0 || stick.id == 0 {
		t.Fatalf("notifications by domain: %+v", byDomain)
	}
	if want := "Evil &lt;b&gt;Corp&lt;/b&gt;?[31m?USB Receiver (046d:c52b) was plugged in. Attach it to win11?"; recv.body != want {
		t.Errorf("body %q\nwant %q", recv.body, want)
	}
	if want := []string{"attach", "Attach to win11", "host", "Keep on host", "attach-always", "Always attach to win11", "host-always", "Always keep on host"}; strings.Join(recv.actions, "|") != strings.Join(want, "|") {
		t.Errorf("actions %q", recv.actions)
	}
	if recv.timeout != -1 || stick.timeout != 90000 || !strings.Contains(stick.body, "stays on the host in 1m30s") {
		t.Errorf("timeouts %d and %d (%q), want -1 and 90000", recv.timeout, stick.timeout, stick.body)
	}
	if c := stick.hints["category"].Value(); c != "device.added" {
		t.Errorf("category hint %v", c)
	}

	// A person clicks "Always attach to win11".
	srv.click(t, recv.id, "attach-always")
	waitFor(t, "the answer", func() bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		return len(d.answers) == 1
	})
	if d.answers[0] != "001:005 win11 attach-always" {
		t.Fatalf("answer %q", d.answers[0])
	}
	// The other offer times out on the daemon's side: its notification goes.
	d.set()
	waitFor(t, "the timed-out offer's notification closed", func() bool { return srv.wasClosed(stick.id) })
	if srv.wasClosed(recv.id) {
		t.Error("the answered notification was closed by the agent; the server closes it after a click")
	}
	// The stream breaks and comes back; a new offer is shown.
	d.breaks <- struct{}{}
	waitFor(t, "follow again", func() bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		return d.follows >= 2
	})
	d.set(Offer{Device: "002:003", Domain: "work", What: "Keyboard"})
	third := srv.wait(t)
	if !strings.Contains(third.body, "Keyboard") {
		t.Fatalf("third notification %+v", third)
	}
	srv.click(t, third.id, "host")
	waitFor(t, "the second answer", func() bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		return len(d.answers) == 2
	})
	if d.answers[1] != "002:003 work host" {
		t.Fatalf("answer %q", d.answers[1])
	}
	// A notification nobody answered is closed when the agent stops.
	d.set(Offer{Device: "002:004", Domain: "work", What: "Mouse"})
	fourth := srv.wait(t)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if !srv.wasClosed(fourth.id) {
		t.Error("the open notification stayed after the agent stopped")
	}
}

// Without a notification server in the session, the agent says so.
func TestAgentNeedsNotificationServer(t *testing.T) {
	addr := sessionBus(t)
	ag := &Agent{Bus: connect(t, addr), Daemon: &fakeDaemon{}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := ag.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "notification daemon") {
		t.Fatalf("Run without a server: %v", err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 10 s: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
