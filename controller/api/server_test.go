package api

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/usbctl/usbctl/controller"
	"github.com/usbctl/usbctl/reconcile"
)

type fakeBackend struct {
	reloads atomic.Int32
	block   chan struct{} // Plan waits on it when set
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

func serve(t *testing.T, b Backend, mayChange func(uint32) bool) (*Client, string) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "usbctl.sock")
	ln, err := Listen(sock, -1)
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(b, nil)
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
	c, _ := serve(t, fb, func(uid uint32) bool { sawUID.Store(int64(uid)); return false })
	_, err := c.Reload(context.Background())
	var he *HTTPError
	if !errors.As(err, &he) || he.Code != http.StatusForbidden || !strings.Contains(he.Message, "root") {
		t.Fatalf("reload by a refused peer: err %v, want 403 naming root", err)
	}
	if fb.reloads.Load() != 0 {
		t.Fatal("refused reload reached the backend")
	}
	if sawUID.Load() != int64(os.Geteuid()) {
		t.Fatalf("peer uid seen %d, want our own %d (SO_PEERCRED)", sawUID.Load(), os.Geteuid())
	}
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
