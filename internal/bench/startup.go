//go:build umockdev

package main

// Start-up: process start to "ready: first sync complete", read from
// usbctld's log, with the costs a start-up is made of timed apart.

import (
	"context"
	"fmt"
	"log/slog"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"libvirt.org/go/libvirt"

	"github.com/usbctl/usbctl/internal/sandbox"
	"github.com/usbctl/usbctl/internal/stats"
	"github.com/usbctl/usbctl/udevsrc"
	"github.com/usbctl/usbctl/virt"
)

type startup struct {
	ready, started, connected time.Duration // from process start, by its log
	lastSync                  time.Duration // LastSyncDuration once ready
	syncs                     uint64
}

// missing marks a log line that did not appear.
const missing = time.Duration(-1 << 63)

type startupSet struct {
	defined, running int
	runs             []startup
}

func (b *bench) startups(defined, running int) (*startupSet, error) {
	set := &startupSet{defined: defined, running: running}
	for range b.o.starts {
		s, err := b.startupOnce()
		if err != nil {
			return nil, err
		}
		set.runs = append(set.runs, s)
	}
	return set, nil
}

// startupOnce starts usbctld and reads from its log when it started, when
// it connected to libvirt and when its first complete sync was done. The
// log is polled every millisecond: reading a small file disturbs the
// daemon less than polling its socket would.
func (b *bench) startupOnce() (startup, error) {
	var s startup
	d, err := b.startDaemon()
	if err != nil {
		return s, err
	}
	defer d.Stop(syscall.SIGTERM)
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(d.LogText(), "ready: first sync complete") {
		select {
		case <-d.Exited():
			return s, fmt.Errorf("usbctld exited at start:\n%s", d.LogText())
		case <-b.ctx.Done():
			return s, b.ctx.Err()
		case <-time.After(time.Millisecond):
		}
		if time.Now().After(deadline) {
			return s, fmt.Errorf("usbctld not ready within 30 s:\n%s", d.LogText())
		}
	}
	stamps := logTimes(d.LogText())
	at := func(msg string) time.Duration {
		t, ok := stamps[msg]
		if !ok {
			return missing
		}
		return t.Sub(d.Started)
	}
	s.started, s.connected, s.ready = at("usbctld started"), at("connected to libvirt"), at("ready: first sync complete")
	st, err := d.Client().Status(b.ctx)
	if err != nil {
		return s, err
	}
	s.lastSync, s.syncs = st.LastSyncDuration, st.Syncs
	return s, nil
}

// logTimes maps each message of a slog text log to the time of its first
// occurrence.
func logTimes(text string) map[string]time.Time {
	out := map[string]time.Time{}
	for _, line := range strings.Split(text, "\n") {
		ts, ok := field(line, "time")
		if !ok {
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil {
			continue
		}
		msg, _ := field(line, "msg")
		if _, seen := out[msg]; !seen {
			out[msg] = t
		}
	}
	return out
}

// field is the value of key in a slog text line (quoted or not).
func field(line, key string) (string, bool) {
	i := strings.Index(line, key+"=")
	if i < 0 || (i > 0 && line[i-1] != ' ') {
		return "", false
	}
	v := line[i+len(key)+1:]
	if strings.HasPrefix(v, `"`) {
		if q, err := strconv.QuotedPrefix(v); err == nil {
			u, _ := strconv.Unquote(q)
			return u, true
		}
	}
	if j := strings.IndexByte(v, ' '); j >= 0 {
		v = v[:j]
	}
	return v, true
}

// median formats the median of f over the runs; "n/a" if a run lacks it.
func (s *startupSet) median(f func(startup) time.Duration) string {
	var xs []time.Duration
	for _, r := range s.runs {
		x := f(r)
		if x == missing {
			return "n/a"
		}
		xs = append(xs, x)
	}
	slices.Sort(xs)
	return fmtDur(stats.Percentile(xs, 0.5))
}

// startupCosts are the pieces a start-up is made of, timed from this
// process against the same libvirtd and testbed.
type startupCosts struct {
	virshList   time.Duration // virsh list --all: a whole client process
	virshVer    time.Duration // virsh version: exec + connect, no listing
	connect     time.Duration // libvirt.NewConnect + Close, in process
	listDomains time.Duration // virt.ListDomainsAt: connect + what usbctld's sync reads
	udevList    time.Duration // udevsrc List: the device enumeration
	execHelp    time.Duration // usbctld -h: exec, dynamic linking, runtime init
	n           int
}

func (b *bench) startupCosts() (*startupCosts, error) {
	n := max(b.o.starts, 3)
	c := &startupCosts{n: n}
	med := func(f func() error) (time.Duration, error) {
		var xs []time.Duration
		for range n {
			t0 := time.Now()
			if err := f(); err != nil {
				return 0, err
			}
			xs = append(xs, time.Since(t0))
		}
		slices.Sort(xs)
		return stats.Percentile(xs, 0.5), nil
	}
	var err error
	virsh := func(args ...string) func() error {
		return func() error {
			cmd := exec.Command("virsh", append([]string{"-q", "-c", b.sb.URI()}, args...)...)
			cmd.Env = sandbox.CleanEnv()
			if out, err := cmd.CombinedOutput(); err != nil {
				return fmt.Errorf("virsh %v: %v: %s", args, err, out)
			}
			return nil
		}
	}
	if c.virshList, err = med(virsh("list", "--all")); err != nil {
		return nil, err
	}
	if c.virshVer, err = med(virsh("version")); err != nil {
		return nil, err
	}
	if c.connect, err = med(func() error {
		conn, err := libvirt.NewConnect(b.sb.URI())
		if err != nil {
			return err
		}
		_, err = conn.Close()
		return err
	}); err != nil {
		return nil, err
	}
	if c.listDomains, err = med(func() error {
		ds, err := virt.ListDomainsAt(context.Background(), b.sb.URI())
		if err == nil && len(ds) != b.o.domains {
			err = fmt.Errorf("listed %d domains, want %d", len(ds), b.o.domains)
		}
		return err
	}); err != nil {
		return nil, err
	}
	src := udevsrc.New(slog.New(slog.DiscardHandler))
	if c.udevList, err = med(func() error {
		devs, err := src.List(b.ctx)
		if err == nil && len(devs) < b.o.devices {
			err = fmt.Errorf("udev listed %d devices, want ≥ %d", len(devs), b.o.devices)
		}
		return err
	}); err != nil {
		return nil, err
	}
	if c.execHelp, err = med(func() error {
		cmd := exec.Command(b.usbctld, "-h")
		cmd.Env = append(sandbox.CleanEnv(), b.sb.Env()...)
		_ = cmd.Run() // exits 0 or 2 after printing usage
		return nil
	}); err != nil {
		return nil, err
	}
	return c, nil
}

// addStartupRows adds the start-up section: each set measured, then the
// costs if they were (nil if not).
func addStartupRows(t *table, o options, ss []*startupSet, costs *startupCosts) {
	t.Section("start-up: process start → \"ready: first sync complete\" (median of %d, from usbctld's log)", o.starts)
	for _, s := range ss {
		what := fmt.Sprintf("%d domains defined", s.defined)
		if s.defined > 0 {
			what += fmt.Sprintf(", %d running", s.running)
		}
		t.Row("ready, "+what, s.median(func(r startup) time.Duration { return r.ready }), "", "")
		t.Row("  log \"usbctld started\" at", s.median(func(r startup) time.Duration { return r.started }), "", "")
		t.Row("  log \"connected to libvirt\" at", s.median(func(r startup) time.Duration { return r.connected }), "", "")
		var syncs []int
		for _, r := range s.runs {
			syncs = append(syncs, int(r.syncs))
		}
		slices.Sort(syncs)
		t.Row("  syncs by then; the last one took", fmt.Sprintf("%d; %s", syncs[(len(syncs)-1)/2],
			s.median(func(r startup) time.Duration { return r.lastSync })), "", "")
	}
	if costs != nil {
		t.Row(fmt.Sprintf("cost: virsh list --all (%d domains)", o.domains), fmtDur(costs.virshList), "", "")
		t.Row("cost: virsh version (exec + connect only)", fmtDur(costs.virshVer), "", "")
		t.Row("cost: usbctld -h (exec + runtime init)", fmtDur(costs.execHelp), "", "")
		t.Row("cost: libvirt connect + close, in process", fmtDur(costs.connect), "", "")
		t.Row(fmt.Sprintf("cost: list %d domains + live XML, in process", o.domains), fmtDur(costs.listDomains), "", "")
		t.Row(fmt.Sprintf("cost: udev enumerate (%d devices)", o.devices+1), fmtDur(costs.udevList), "", "")
	}
}
