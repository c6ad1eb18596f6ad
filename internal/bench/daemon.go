//go:build umockdev

package main

// usbctld processes: started on the sandbox as the bench needs them.

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/usbctl/usbctl/internal/sandbox"
)

func (b *bench) startDaemon() (*sandbox.Usbctld, error) { return b.startDaemonEnv(true) }

// startDaemonEnv starts usbctld; without the preload it sees no fake
// devices (and this machine has no USB of its own).
func (b *bench) startDaemonEnv(preload bool) (*sandbox.Usbctld, error) {
	b.starts++
	return b.sb.StartUsbctld(sandbox.UsbctldOptions{Bin: b.usbctld, Dir: b.dir, NoDevices: !preload,
		Socket: filepath.Join(b.dir, fmt.Sprintf("usbctl-%d.sock", b.starts)),
		Log:    filepath.Join(b.dir, fmt.Sprintf("usbctld-%d.log", b.starts)),
		Args:   []string{"--config", b.cfg}})
}

// diagnose is what a failure report needs: usbctld's status, then its log
// with the stacks of every goroutine (SIGQUIT makes it print them and
// exit).
func diagnose(ctx context.Context, d *sandbox.Usbctld) string {
	var s strings.Builder
	sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	st, err := d.Client().Status(sctx)
	cancel()
	if err != nil {
		fmt.Fprintf(&s, "usbctld status: %v\n", err)
	} else {
		j, _ := json.MarshalIndent(struct {
			Syncs   uint64
			Last    time.Time
			Pending any
			Domains any
		}{st.Syncs, st.LastSync, st.Pending, st.Domains}, "", "  ")
		fmt.Fprintf(&s, "usbctld status (now %s): %s\n", time.Now().Format(time.RFC3339Nano), j)
	}
	_ = d.Cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-d.Exited():
	case <-time.After(5 * time.Second):
	}
	fmt.Fprintf(&s, "usbctld log (ends with its goroutines, SIGQUIT):\n%s", d.LogText())
	return s.String()
}
