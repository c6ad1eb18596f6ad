package api

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/usbctl/usbctl/controller"
	"github.com/usbctl/usbctl/reconcile"
)

type fakeBackend struct {
	*fakeRuntime // the runtime routes (runtime_server_test.go); nil where unused
	reloads      atomic.Int32
	block        chan struct{} // Plan waits on it when set
}

func (f *fakeBackend) Status() controller.Status {
	return controller.Status{Syncs: 7, Ready: true, Domains: []controller.DomainStatus{{Name: "win11", State: reconcile.StateRunning}}}
}

func (f *fakeBackend) Plan(ctx context.Context) (reconcile.Result, error) {
	if f.block != nil {
		select {
		case <-f.block:
		case <-ctx.Done():
			return reconcile.Result{}, ctx.Err()
		}
	}
	return reconcile.Result{Actions: []reconcile.Action{{Kind: reconcile.Attach, Domain: "win11", Key: reconcile.DeviceKey{Bus: 1, Dev: 5}}}}, nil
}

func (f *fakeBackend) Reload(ctx context.Context) (ReloadResult, error) {
	f.reloads.Add(1)
	return ReloadResult{Applied: false, Diagnostics: []string{"a.hcl:3,5-9: Invalid id"}}, nil
}

func serve(t *testing.T, b Backend, mayChange func(peer) bool) (*Client, string) {
	t.Helper()
	return serveWith(t, NewServer(b, nil), mayChange)
}

func serveWith(t *testing.T, s *Server, mayChange func(peer) bool) (*Client, string) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "usbctl.sock")
	ln, err := Listen(sock, -1)
	if err != nil {
		t.Fatal(err)
	}
	if mayChange != nil {
		s.mayChange = mayChange
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Serve returned %v, want context.Canceled", err)
		}
	})
	return &Client{Socket: sock}, sock
}

func TestStatusPlanReload(t *testing.T) {
	fb := &fakeBackend{}
	c, sock := serve(t, fb, nil)
	ctx := context.Background()

	st, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Syncs != 7 || len(st.Domains) != 1 || st.Domains[0].Name != "win11" {
		t.Fatalf("status round trip lost data: %+v", st)
	}
	p, err := c.Plan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Actions) != 1 || p.Actions[0].Key != (reconcile.DeviceKey{Bus: 1, Dev: 5}) {
		t.Fatalf("plan round trip lost data: %+v", p)
	}
	// The tests run as root: reload is allowed and reaches the backend.
	if os.Geteuid() == 0 {
		r, err := c.Reload(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if r.Applied || len(r.Diagnostics) != 1 || fb.reloads.Load() != 1 {
			t.Fatalf("reload: %+v, backend reloads %d", r, fb.reloads.Load())
		}
	}
	st2, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if perm := st2.Mode().Perm(); perm != 0o660 {
		t.Errorf("socket mode %o, want 660", perm)
	}
}

func TestReloadRefusedForNonRoot(t *testing.T) {
	fb := &fakeBackend{}
	var sawUID atomic.Int64
	sawUID.Store(-1)
	var logBuf syncBuffer
	s := NewServer(fb, slog.New(slog.NewTextHandler(&logBuf, nil)))
	c, _ := serveWith(t, s, func(p peer) bool { sawUID.Store(int64(p.uid)); return false })
	_, err := c.Reload(context.Background())
	var he *HTTPError
	if !errors.As(err, &he) || he.Code != http.StatusForbidden || !strings.Contains(he.Message, "root") || !strings.Contains(he.Message, "--control-group") {
		t.Fatalf("reload by a refused peer: err %v, want 403 naming root and --control-group", err)
	}
	if fb.reloads.Load() != 0 {
		t.Fatal("refused reload reached the backend")
	}
	if sawUID.Load() != int64(os.Geteuid()) {
		t.Fatalf("peer uid seen %d, want our own %d (SO_PEERCRED)", sawUID.Load(), os.Geteuid())
	}
	if log := logBuf.String(); !strings.Contains(log, "reload refused") || !strings.Contains(log, fmt.Sprintf("uid=%d ", os.Geteuid())) {
		t.Fatalf("the refusal is not logged with the peer's uid:\n%s", log)
	}
}

// With a control group, a refusal names it, and an allowed change is
// logged with the peer's credentials before it reaches the backend.
func TestControlGroupRefusalAndLog(t *testing.T) {
	fb := &fakeBackend{}
	var logBuf syncBuffer
	s := NewServer(fb, slog.New(slog.NewTextHandler(&logBuf, nil)))
	s.SetControlGroup(4242, "usbctl-admin")
	allow := s.mayChange
	var refuse atomic.Bool
	refuse.Store(true)
	c, _ := serveWith(t, s, func(p peer) bool { return !refuse.Load() && allow(p) })
	_, err := c.Reload(context.Background())
	var he *HTTPError
	if !errors.As(err, &he) || he.Code != http.StatusForbidden || !strings.Contains(he.Message, "root or a member of group usbctl-admin") {
		t.Fatalf("refused reload: %v, want 403 naming the control group", err)
	}
	refuse.Store(false)
	if os.Geteuid() == 0 {
		if _, err := c.Reload(context.Background()); err != nil {
			t.Fatalf("reload as root with a control group set: %v", err)
		}
		want := fmt.Sprintf(`msg="reload requested" uid=0 gid=%d pid=%d`, os.Getegid(), os.Getpid())
		if !strings.Contains(logBuf.String(), want) {
			t.Fatalf("log lacks %q:\n%s", want, logBuf.String())
		}
		if fb.reloads.Load() != 1 {
			t.Fatalf("backend reloads %d, want 1", fb.reloads.Load())
		}
	}
}

// Who may change: root; the control group as primary or supplementary
// group; nobody else, and nobody whose credentials are unknown.
func TestMayChange(t *testing.T) {
	s := NewServer(&fakeBackend{}, nil)
	rootOnly := s.mayChange
	s.SetControlGroup(100, "adm")
	for _, c := range []struct {
		name         string
		p            peer
		want, wantRO bool
	}{
		{"root", peer{uid: 0, gid: 0, known: true}, true, true},
		{"primary group", peer{uid: 1000, gid: 100, known: true}, true, false},
		{"supplementary group", peer{uid: 1000, gid: 1000, groups: []uint32{27, 100}, known: true}, true, false},
		{"other groups", peer{uid: 1000, gid: 1000, groups: []uint32{27, 101}, known: true}, false, false},
		{"no groups", peer{uid: 1000, gid: 1000, known: true}, false, false},
	} {
		if got := s.mayChange(c.p); got != c.want {
			t.Errorf("%s with control group 100: %v, want %v", c.name, got, c.want)
		}
		if got := rootOnly(c.p); got != c.wantRO {
			t.Errorf("%s without control group: %v, want %v", c.name, got, c.wantRO)
		}
	}
}

// The server reads the connecting process's credentials from the kernel:
// uid, gid, pid and its supplementary groups. As root the connecting
// process is a child with credentials of the test's choosing (this test
// binary again, see TestMain), so the groups cannot match by accident.
func TestPeerCredentials(t *testing.T) {
	dir, err := os.MkdirTemp("", "usbctl-peer-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "p.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan peer, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- peer{}
			return
		}
		defer c.Close()
		got <- peerOf(c)
	}()

	wantUID, wantGID, wantPID := uint32(os.Geteuid()), uint32(os.Getegid()), int32(os.Getpid())
	var wantGroups []uint32
	if os.Geteuid() == 0 {
		// nobody, with a primary and two supplementary groups no
		// account has.
		wantUID, wantGID, wantGroups = 65534, 4141, []uint32{4242, 4343}
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(sock, 0o777); err != nil {
			t.Fatal(err)
		}
		// A copy of this binary that nobody may run (the go tool's
		// build directory is root's alone).
		self, err := os.ReadFile(os.Args[0])
		if err != nil {
			t.Fatal(err)
		}
		bin := filepath.Join(dir, "api.test")
		if err := os.WriteFile(bin, self, 0o755); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "-test.run=^$")
		cmd.Env = append(os.Environ(), "USBCTL_API_TEST_DIAL="+sock)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: wantUID, Gid: wantGID, Groups: wantGroups}}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer cmd.Wait()
		wantPID = int32(cmd.Process.Pid)
	} else {
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		gs, err := os.Getgroups()
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range gs {
			wantGroups = append(wantGroups, uint32(g))
		}
	}
	var p peer
	select {
	case p = <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("no connection within 10 s")
	}
	if !p.known || p.uid != wantUID || p.gid != wantGID || p.pid != wantPID {
		t.Fatalf("peer %+v, want uid %d gid %d pid %d", p, wantUID, wantGID, wantPID)
	}
	slices.Sort(p.groups)
	slices.Sort(wantGroups)
	if !slices.Equal(p.groups, wantGroups) {
		t.Fatalf("SO_PEERGROUPS %v, want %v", p.groups, wantGroups)
	}
}

// TestMain lets TestPeerCredentials run this binary as a client that
// connects to a socket and waits for the server to close it.
func TestMain(m *testing.M) {
	if sock := os.Getenv("USBCTL_API_TEST_DIAL"); sock != "" {
		c, err := net.Dial("unix", sock)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		_, _ = c.Read(make([]byte, 1))
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// syncBuffer is a bytes.Buffer that the server's goroutines may write to
// while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestMethodAndBodyLimits(t *testing.T) {
	_, sock := serve(t, &fakeBackend{}, nil)
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}}
	// GET on reload and POST on status are not routes.
	resp, err := hc.Get("http://x/v1/reload")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET /v1/reload: %d, want 405", resp.StatusCode)
	}
	// A huge header is refused, not buffered.
	req, _ := http.NewRequest("GET", "http://x/v1/status", nil)
	req.Header.Set("X-Big", strings.Repeat("a", 64<<10))
	resp, err = hc.Do(req)
	if err != nil {
		t.Fatalf("64 KiB header: %v, want a 431 answer", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("64 KiB header: %d, want 431", resp.StatusCode)
	}
}

func TestListenStaleAndLiveSockets(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "s.sock")

	// A stale socket (nothing listening) is replaced.
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	if _, err := os.Lstat(sock); err != nil {
		t.Fatalf("setup: stale socket should exist: %v", err)
	}
	ln2, err := Listen(sock, -1)
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	// A live one is never stolen.
	if _, err := Listen(sock, -1); err == nil || !strings.Contains(err.Error(), "another usbctld") {
		t.Fatalf("second Listen on a live socket: %v, want refusal", err)
	}
	ln2.Close()

	// A regular file in the way is never removed.
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(file, -1); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("Listen over a regular file: %v, want refusal", err)
	}
	if b, _ := os.ReadFile(file); string(b) != "keep" {
		t.Fatal("regular file was touched")
	}
}

func TestClientNotRunning(t *testing.T) {
	c := &Client{Socket: filepath.Join(t.TempDir(), "none.sock")}
	_, err := c.Status(context.Background())
	if !errors.Is(err, ErrNotRunning) || !strings.Contains(err.Error(), "systemctl start usbctld") {
		t.Fatalf("status with no daemon: %v, want ErrNotRunning with advice", err)
	}
}

// A slow backend must not block status: Plan may wait on libvirt, Status
// is a copy of the last sync.
func TestSlowPlanDoesNotBlockStatus(t *testing.T) {
	fb := &fakeBackend{block: make(chan struct{})}
	defer close(fb.block)
	c, _ := serve(t, fb, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	planCtx, planCancel := context.WithCancel(ctx)
	defer planCancel()
	go func() { _, _ = c.Plan(planCtx) }()
	time.Sleep(20 * time.Millisecond)
	if _, err := c.Status(ctx); err != nil {
		t.Fatalf("status while a plan is stuck: %v", err)
	}
}
