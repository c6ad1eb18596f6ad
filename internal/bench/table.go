//go:build umockdev

package main

// The one table every measurement adds its rows to, and the libvirt event
// watcher: shared with the real-stack benchmark (internal/benchkit).

import (
	"fmt"
	"time"

	"github.com/usbctl/usbctl/internal/benchkit"
)

type table = benchkit.Table

func okIf(b bool) string { return benchkit.OK(b) }

func ratioOK(v, target float64, ok bool) string {
	return fmt.Sprintf("%.2f× %s", v/target, okIf(ok))
}

func fmtDur(d time.Duration) string { return benchkit.Dur(d) }
