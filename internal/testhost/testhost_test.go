//go:build testhost

package testhost

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestHost boots one test host and exercises the API on it: commands and
// their exit codes, background processes and orphans, emulated devices
// over QMP and gadgets. go test -tags testhost ./internal/testhost/
func TestHost(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	t0 := time.Now()
	h, err := Boot(ctx, Options{Log: log})
	if err != nil {
		t.Fatal(err)
	}
	dir := h.Dir()
	defer func() {
		if err := h.Close(); err != nil {
			t.Error(err)
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("Close left %s behind", dir)
		}
	}()
	t.Logf("boot: %v", time.Since(t0))

	t.Run("run", func(t *testing.T) {
		res, err := h.Run(ctx, "sh", "-c", "echo out; echo err >&2; exit 3")
		if err != nil {
			t.Fatal(err)
		}
		if string(res.Stdout) != "out\n" || string(res.Stderr) != "err\n" || res.Exit != 3 {
			t.Errorf("got %q %q %d, want out, err, 3", res.Stdout, res.Stderr, res.Exit)
		}
		if _, err := h.Run(ctx, "no-such-command"); err == nil {
			t.Error("running a missing command: no error")
		}
		if _, err := h.Sh(ctx, "false"); err == nil {
			t.Error("Sh of false: no error")
		}
		res, err = h.Exec(ctx, Cmd{Argv: []string{"sh", "-c", `printf %s "$X"; cat`}, Env: []string{"X=a'b\"$c"}, Stdin: []byte("in")})
		if err != nil || string(res.Stdout) != "a'b\"$cin" {
			t.Errorf("env and stdin: %q, %v", res.Stdout, err)
		}
		// A cancelled Run kills its process inside.
		cctx, ccancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer ccancel()
		if _, err := h.Run(cctx, "sleep", "60"); err == nil {
			t.Error("Run outlived its context")
		}
	})

	t.Run("start", func(t *testing.T) {
		p, err := h.Start(ctx, "sleeper", "sh", "-c", "echo started; sleep 1000 & wait")
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
		if err := p.Signal(ctx, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		code, err := p.Wait(ctx)
		if err != nil || code != 128+9 {
			t.Errorf("wait: %d, %v; want 137", code, err)
		}
		if b, _ := p.Log(); string(b) != "started\n" {
			t.Errorf("log %q", b)
		}
		// Its orphaned sleep went to PID 1, the agent: kill it, and it
		// must not stay a zombie.
		if _, err := h.Sh(ctx, "pkill -x sleep; sleep 0.3; ! ps -eo stat,comm | grep -q '^Z'"); err != nil {
			t.Error(err)
		}
	})

	t.Run("emulated", func(t *testing.T) {
		if err := h.Plug(ctx, EmulatedDevice{ID: "kbd", Driver: "usb-kbd", Serial: "KBD1"}); err != nil {
			t.Fatal(err)
		}
		out, err := h.Sh(ctx, `for i in $(seq 100); do grep -l 0627 /sys/bus/usb/devices/*/idVendor 2>/dev/null && exit 0; sleep 0.1; done; exit 1`)
		if err != nil {
			t.Fatalf("usb-kbd not seen inside: %v", err)
		}
		t.Logf("kbd: %s", strings.TrimSpace(out))
		if err := h.Unplug(ctx, "kbd"); err != nil {
			t.Fatal(err)
		}
		if _, err := h.Sh(ctx, `for i in $(seq 100); do grep -q 0627 /sys/bus/usb/devices/*/idVendor 2>/dev/null || exit 0; sleep 0.1; done; exit 1`); err != nil {
			t.Errorf("usb-kbd still there after unplug: %v", err)
		}
	})

	t.Run("gadget", func(t *testing.T) {
		g, err := h.Gadget(ctx, GadgetSpec{Name: "g1", Vendor: "1d6b", Product: "5740", Serial: "S/1 \"x\"", ProductName: "Board"})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("gadget: %+v", *g)
		out, err := h.Sh(ctx, "cat /sys/bus/usb/devices/"+g.Port+"/serial")
		if err != nil || out != "S/1 \"x\"\n" {
			t.Errorf("serial %q, %v", out, err)
		}
		dev := g.Dev
		if err := g.Reenumerate(ctx, "df11"); err != nil {
			t.Fatal(err)
		}
		if g.Dev == dev || g.Spec.Product != "df11" {
			t.Errorf("re-enumerated: dev %d → %d, product %s", dev, g.Dev, g.Spec.Product)
		}
		if err := g.Remove(ctx); err != nil {
			t.Fatal(err)
		}
	})
}
