//go:build umockdev

package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/usbctl/usbctl/internal/sandbox"
	"github.com/usbctl/usbctl/reconcile"
)

// usbctl snapshot while libvirtd is down: the fake devices udev reports
// are in the file, the domains are marked as not observed (in the JSON and
// on stderr), and it exits 1. Before, it wrote nothing.
func TestSnapshotLibvirtdDown(t *testing.T) {
	w := newWorld(t)
	d := usb(2, "1-1", "046d", "c52b", "")
	w.plug(d)
	if err := w.sb.StopLibvirtd(); err != nil {
		t.Fatal(err)
	}
	out := w.dir + "/snap.json"
	cmd := exec.Command(bins.usbctl, "snapshot", "--uri", w.sb.URI(), "--config", w.dir+"/none.hcl", "-o", out)
	cmd.Env = append(sandbox.CleanEnv(), w.sb.Env()...) // udev through the testbed
	stderr, code, err := runCode(cmd)
	if err != nil {
		t.Fatal(err)
	}
	if code != 1 || !strings.Contains(stderr, "snapshot incomplete: domains not observed") {
		t.Fatalf("exit %d, want 1 with the missing part named:\n%s", code, stderr)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var snap reconcile.Snapshot
	if err := json.Unmarshal(b, &snap); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, dev := range snap.Devices {
		found = found || dev.Key() == (reconcile.DeviceKey{Bus: 1, Dev: 2}) && dev.Vendor == "046d"
	}
	if !found || len(snap.Unobserved) != 1 || snap.Unobserved[0].Part != "domains" {
		t.Fatalf("snapshot should hold the device and mark the domains unobserved:\n%s", b)
	}
}
