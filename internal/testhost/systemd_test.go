//go:build testhost && testsystemd

package testhost

import (
	"context"
	"log/slog"
	"os"
	"testing"
	"time"
)

// TestSystemd boots with systemd as PID 1: the system reaches "running"
// with nothing failed, the agent is its unit, Debian's policy-rc.d is
// hidden (so dpkg -i starts services), and libvirtd runs from its unit.
func TestSystemd(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	h, err := Boot(ctx, Options{Init: "systemd", Log: log})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	out, err := h.Sh(ctx, `
systemctl is-system-running --wait || { systemctl --failed --no-legend >&2; exit 1; }
systemctl is-active testhost-agent.service
[ "$(ps -p 1 -o comm=)" = systemd ]
[ ! -e /usr/sbin/policy-rc.d ]`)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s", out)
	if err := h.SetupLibvirt(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Sh(ctx, "systemctl is-active libvirtd.service"); err != nil {
		t.Fatal(err)
	}
}
