//go:build umockdev

package e2e

import (
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/usbctl/usbctl/internal/sandbox"
	"github.com/usbctl/usbctl/virt"
)

// A reload that races with a writer: the config is truncated and written
// again 40 times (as "> usbctl.hcl" does) while usbctl reload runs 40
// times. An empty file is a valid config, so a reload that read one
// between the truncation and the write detached the device (28 detaches
// and 28 re-attaches in 2 s before the fix). Now no reload applies a file
// that changed while it was read: the device stays, and the config in
// force at the end is the file as written.
func TestReloadDuringRewrite(t *testing.T) {
	w := oneGuestRunning(t)
	d := usb(2, "1-1", "046d", "c52b", "")
	w.plugTimed("g1", d)
	t0 := time.Now()

	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for range 40 {
			f, err := os.OpenFile(w.cfg, os.O_WRONLY|os.O_TRUNC, 0o644)
			if err != nil {
				t.Error(err)
				return
			}
			time.Sleep(2 * time.Millisecond) // the shell runs the writer after the truncation
			f.WriteString(oneGuest)
			f.Close()
			time.Sleep(40 * time.Millisecond)
		}
	}()
	codes := map[int]int{}
	go func() {
		defer wg.Done()
		for range 40 {
			cmd := exec.Command(bins.usbctl, "--socket", w.d.Socket, "reload")
			cmd.Env = sandbox.CleanEnv()
			_, code, err := runCode(cmd)
			if err != nil {
				t.Error(err)
				return
			}
			codes[code]++
		}
	}()
	wg.Wait()

	removed := w.countEvents(t0, func(ev virt.Event) bool { return ev.Kind == virt.EventDeviceRemoved && ev.Domain == "g1" })
	readded := w.countEvents(t0, added("g1", alias(d)))
	t.Logf("40 rewrites and 40 reloads: reload exit codes %v, %d detaches, %d attaches", codes, removed, readded)
	if removed != 0 || readded != 0 {
		t.Fatalf("reloads during rewrites detached the device %d times and attached it %d times", removed, readded)
	}
	if !w.has("g1", alias(d)) {
		t.Fatal("the device left the guest")
	}
	// Once the writer is done, a reload applies the file as written.
	if out, code := w.cliCode("reload"); code != 0 {
		t.Fatalf("reload after the writes: exit %d\n%s", code, out)
	}
	if st := w.status(); st.Config.Rejected != nil || st.Config.Domains != 1 {
		t.Fatalf("config in force after the writes: %+v", st.Config)
	}
}
