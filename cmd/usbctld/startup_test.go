package main

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/usbctl/usbctl/controller/api"
)

// TestStartupRace starts the daemon's run, as main does, against libvirt's
// in-process test driver, whose connection is up at once: libvirt events
// then reach the controller while run is still wiring it. Run under -race
// (make test-unit does): a callback that uses the controller before it is
// built is a data race, or a nil-pointer panic. Issue 13 item 3 saw one in
// 4 of 20 starts of the binary.
func TestStartupRace(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "usbctl.hcl")
	// test:///default has one running domain, "test".
	if err := os.WriteFile(cfg, []byte(`domain "test" {
  device "none" { ids = ["dead:beef"] }
}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	for i := range 20 {
		sock := filepath.Join(dir, "usbctl.sock")
		o := options{configs: []string{cfg}, uri: "test:///default", socket: sock, runtimeDir: dir, logLevel: "info", logFormat: "text", resync: time.Minute}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- run(ctx, log, o) }()
		c := &api.Client{Socket: sock}
		deadline := time.Now().Add(20 * time.Second)
		for {
			st, err := c.Status(ctx)
			if err == nil && st.Ready {
				if !st.Hypervisor.Connected || len(st.Domains) != 1 || st.Domains[0].Name != "test" || !st.Domains[0].Managed {
					t.Fatalf("start %d: ready, but status = %+v", i, st)
				}
				break
			}
			if time.Now().After(deadline) {
				cancel()
				t.Fatalf("start %d: not ready within 20 s (last: %v)", i, err)
			}
			select {
			case err := <-done:
				cancel()
				t.Fatalf("start %d: run returned before ready: %v", i, err)
			case <-time.After(5 * time.Millisecond):
			}
		}
		cancel()
		select {
		case err := <-done:
			if err != nil && !errors.Is(err, context.Canceled) {
				t.Fatalf("start %d: run: %v", i, err)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("start %d: run did not return within 20 s of its ctx ending", i)
		}
	}
}

func TestCheckKeepalive(t *testing.T) {
	for _, c := range []struct {
		interval time.Duration
		count    uint
		ok       bool
	}{
		{5 * time.Second, 3, true}, {time.Second, 1, true},
		{500 * time.Millisecond, 3, false}, {1500 * time.Millisecond, 3, false}, {0, 3, false}, {5 * time.Second, 0, false},
	} {
		if err := checkKeepalive(c.interval, c.count); (err == nil) != c.ok {
			t.Errorf("checkKeepalive(%v, %d) = %v, want ok %v", c.interval, c.count, err, c.ok)
		}
	}
}
