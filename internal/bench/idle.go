//go:build umockdev

package main

// Idle cost: CPU, wake-ups and resident memory of a quiet usbctld.

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/usbctl/usbctl/internal/sandbox"
	"github.com/usbctl/usbctl/reconcile"
)

// procSample is what /proc says about a process at one moment.
type procSample struct {
	at        time.Time
	ticks     int64 // utime+stime of the whole process, clock ticks
	runNS     int64 // sum of the threads' schedstat run time
	waitNS    int64 // sum of the threads' schedstat run-queue wait
	vol, invo int64 // context switches, summed over threads
	mainVol   int64 // context switches of the main thread only
	mainInvo  int64
	threads   int
	rssKiB    int64
	anonKiB   int64
	fileKiB   int64
	pssKiB    int64
}

const clkTck = 100 // USER_HZ on Linux/amd64

func sampleProc(pid int) (procSample, error) {
	s := procSample{at: time.Now()}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, err
	}
	// Fields after the parenthesised comm: state is field 3; utime 14,
	// stime 15.
	rest := string(b)
	if i := strings.LastIndexByte(rest, ')'); i >= 0 {
		rest = rest[i+2:]
	}
	f := strings.Fields(rest)
	if len(f) < 13 {
		return s, fmt.Errorf("/proc/%d/stat: short", pid)
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	s.ticks = ut + st
	status := func(path string) (vol, invo, rss int64) {
		f, err := os.Open(path)
		if err != nil {
			return
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			k, v, ok := strings.Cut(sc.Text(), ":")
			if !ok {
				continue
			}
			n, _ := strconv.ParseInt(strings.Fields(v + " 0")[0], 10, 64)
			switch k {
			case "voluntary_ctxt_switches":
				vol = n
			case "nonvoluntary_ctxt_switches":
				invo = n
			case "VmRSS":
				rss = n
			}
		}
		return
	}
	s.mainVol, s.mainInvo, s.rssKiB = status(fmt.Sprintf("/proc/%d/status", pid))
	s.anonKiB, s.fileKiB = rssParts(pid)
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid)); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == "Pss:" {
				s.pssKiB, _ = strconv.ParseInt(f[1], 10, 64)
			}
		}
	}
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*", pid))
	s.threads = len(tasks)
	for _, t := range tasks {
		v, i, _ := status(t + "/status")
		s.vol += v
		s.invo += i
		if b, err := os.ReadFile(t + "/schedstat"); err == nil {
			if f := strings.Fields(string(b)); len(f) > 1 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				s.runNS += n
				n, _ = strconv.ParseInt(f[1], 10, 64)
				s.waitNS += n
			}
		}
	}
	return s, nil
}

// rssParts is RssAnon and RssFile of /proc/PID/status, in KiB.
func rssParts(pid int) (anon, file int64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return
	}
	for _, l := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(l, ":")
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, _ := strconv.ParseInt(f[0], 10, 64)
		switch k {
		case "RssAnon":
			anon = n
		case "RssFile":
			file = n
		}
	}
	return
}

type idleResult struct {
	window        time.Duration
	before, after procSample
	syncs         uint64
	events        int64
	running, devs int
	attached      int
	qemuTicks     int64
	qemuN         int
	plain         procSample // usbctld without the umockdev preload
	maps          string     // the largest mappings by RSS
	// Files mapped only because of the umockdev preload (mapped by the
	// daemon under it, not by the same daemon without it), and their
	// resident KiB in the daemon under it.
	preloadOnly    []string
	preloadOnlyKiB int64
}

// smapsRSS is the resident KiB of each mapping of pid, from
// /proc/PID/smaps, with its path ("" for anonymous memory, "[heap]" and
// the like for the kernel's named ones).
func smapsRSS(pid int) ([]mapping, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		return nil, err
	}
	var out []mapping
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		switch {
		case len(f) >= 5 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":"):
			m := mapping{}
			if len(f) >= 6 {
				m.path = f[5]
			}
			out = append(out, m)
		case len(out) > 0 && len(f) >= 2 && f[0] == "Rss:":
			v, _ := strconv.ParseInt(f[1], 10, 64)
			out[len(out)-1].rssKiB += v
		}
	}
	return out, nil
}

type mapping struct {
	path   string
	rssKiB int64
}

// fileMappings is the resident KiB of each file pid maps, by path.
func fileMappings(pid int) (map[string]int64, error) {
	ms, err := smapsRSS(pid)
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for _, m := range ms {
		if strings.HasPrefix(m.path, "/") {
			out[m.path] += m.rssKiB
		}
	}
	return out, nil
}

// topMappings lists the n largest mappings of pid by resident size, files
// by name and anonymous memory (heap, stacks) as one "[anon]".
func topMappings(pid, n int) string {
	ms, err := smapsRSS(pid)
	if err != nil {
		return ""
	}
	rss := map[string]int64{}
	for _, m := range ms {
		name := "[anon]"
		if strings.HasPrefix(m.path, "/") {
			name = filepath.Base(m.path)
		}
		rss[name] += m.rssKiB
	}
	type kv struct {
		k string
		v int64
	}
	var all []kv
	for k, v := range rss {
		all = append(all, kv{k, v})
	}
	slices.SortFunc(all, func(a, b kv) int { return int(b.v - a.v) })
	var out []string
	for i, x := range all {
		if i == n {
			break
		}
		out = append(out, fmt.Sprintf("%s %.1f", x.k, float64(x.v)/1024))
	}
	return strings.Join(out, ", ") + " MiB"
}

// quiet is how long a fresh usbctld is left alone before it is measured:
// its start-up work (first syncs, a GC) must be over.
func (b *bench) quiet() time.Duration {
	if b.o.smoke {
		return time.Second
	}
	return 3 * time.Second
}

// evictBinary drops usbctld's file pages from the page cache, so that it
// is read from disk as a daemon started at boot is. Just linked, its page
// cache is laid out as the linker wrote it, and the same binary then maps
// 0.3–1 MiB more (measured: 8.4–9.1 vs 8.1 MiB resident for the binary),
// varying from build to build.
func (b *bench) evictBinary() error {
	f, err := os.Open(b.usbctld)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.Fdatasync(int(f.Fd())); err != nil {
		return fmt.Errorf("evict %s: %w", b.usbctld, err)
	}
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		return fmt.Errorf("evict %s: %w", b.usbctld, err)
	}
	return nil
}

// startQuiet starts usbctld read from disk (evictBinary) and returns it
// once it is ready and its start-up work (the first syncs, a GC) is over.
func (b *bench) startQuiet(preload bool) (*sandbox.Usbctld, error) {
	if err := b.evictBinary(); err != nil {
		return nil, err
	}
	d, err := b.startDaemonEnv(preload)
	if err != nil {
		return nil, err
	}
	if err := d.WaitReady(b.ctx, 30*time.Second); err != nil {
		d.Stop(syscall.SIGTERM)
		return nil, err
	}
	select {
	case <-time.After(b.quiet()):
		return d, nil
	case <-b.ctx.Done():
		d.Stop(syscall.SIGTERM)
		return nil, b.ctx.Err()
	}
}

func (b *bench) idleCost() (*idleResult, error) {
	ctx := b.ctx
	d, err := b.startQuiet(true)
	if err != nil {
		return nil, err
	}
	defer d.Stop(syscall.SIGTERM)
	st0, err := d.Client().Status(ctx)
	if err != nil {
		return nil, err
	}
	r := &idleResult{window: b.o.idle, devs: len(st0.Unassigned)}
	for _, ds := range st0.Domains {
		if ds.State == reconcile.StateRunning {
			r.running++
		}
		r.attached += len(ds.Attached) + len(ds.Foreign)
	}
	if r.running != b.o.running || r.attached != 0 {
		return nil, fmt.Errorf("idle set-up: %d domains running (want %d), %d hostdevs attached (want 0)", r.running, b.o.running, r.attached)
	}
	qemuTicks := func() int64 {
		var sum int64
		r.qemuN = 0
		for i := range b.o.running {
			if pid, err := b.sb.QEMUPid(vmName(i)); err == nil {
				if s, err := sampleProc(pid); err == nil {
					sum += s.ticks
					r.qemuN++
				}
			}
		}
		return sum
	}
	pid := d.Cmd.Process.Pid
	ev0 := b.w.Total.Load()
	q0 := qemuTicks()
	if r.before, err = sampleProc(pid); err != nil {
		return nil, err
	}
	select {
	case <-time.After(b.o.idle):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if r.after, err = sampleProc(pid); err != nil {
		return nil, err
	}
	r.maps = topMappings(pid, 6)
	underPreload, err := fileMappings(pid)
	if err != nil {
		return nil, err
	}
	r.qemuTicks = qemuTicks() - q0
	r.events = b.w.Total.Load() - ev0
	st1, err := d.Client().Status(ctx)
	if err != nil {
		return nil, err
	}
	r.syncs = st1.Syncs - st0.Syncs
	d.Stop(syscall.SIGTERM)

	// The same daemon without the umockdev preload, for its memory.
	plain, err := b.startQuiet(false)
	if err != nil {
		return nil, err
	}
	defer plain.Stop(syscall.SIGTERM)
	if r.plain, err = sampleProc(plain.Cmd.Process.Pid); err != nil {
		return nil, err
	}
	plainMaps, err := fileMappings(plain.Cmd.Process.Pid)
	if err != nil {
		return nil, err
	}
	for path, kib := range underPreload {
		if _, ok := plainMaps[path]; !ok {
			r.preloadOnly = append(r.preloadOnly, filepath.Base(path))
			r.preloadOnlyKiB += kib
		}
	}
	slices.Sort(r.preloadOnly)
	return r, nil
}

func (r *idleResult) addRows(t *table, o options) {
	win := r.after.at.Sub(r.before.at)
	perMin := func(x float64) float64 { return x * float64(time.Minute) / float64(win) }
	t.Section("idle usbctld, %v: rules of %d domains, %d running, %d devices present, 0 attached", win.Round(time.Second), o.running, r.running, r.devs)
	cpu := float64(r.after.ticks-r.before.ticks) / clkTck
	cpuMin := perMin(cpu)
	t.Row("CPU, utime+stime (/proc/PID/stat)", fmt.Sprintf("%.3f s/min", cpuMin), "< 0.05 s/min", ratioOK(cpuMin, 0.05, cpuMin < 0.05))
	run := float64(r.after.runNS-r.before.runNS) / 1e9
	t.Row("CPU, threads' schedstat run time (ns precision)", fmt.Sprintf("%.4f s/min", perMin(run)), "", "")
	sw := (r.after.vol + r.after.invo) - (r.before.vol + r.before.invo)
	t.Row("wakeups: context switches, all threads", fmt.Sprintf("%d (%.0f/min)", sw, perMin(float64(sw))), "", "")
	msw := (r.after.mainVol + r.after.mainInvo) - (r.before.mainVol + r.before.mainInvo)
	t.Row("wakeups: context switches, main thread", fmt.Sprintf("%d", msw), "", "")
	mib := func(k int64) float64 { return float64(k) / 1024 }
	// The umockdev preload is the sandbox's, not usbctld's: its own
	// libraries (glib, gio, ... mapped by no usbctld outside the sandbox)
	// come off; what it allocates on the heap for the fake devices cannot
	// be told apart and stays in, so this is an upper bound.
	host := mib(r.after.rssKiB - r.preloadOnlyKiB)
	t.Row("RSS as on a host: VmRSS minus the umockdev preload's own libraries", fmt.Sprintf("%.1f MiB", host), "< 30 MiB", ratioOK(host, 30, host < 30))
	t.Row("  VmRSS under the preload / the preload's libraries in it", fmt.Sprintf("%.1f / %.1f MiB", mib(r.after.rssKiB), mib(r.preloadOnlyKiB)), "", "")
	t.Row("  of which RssAnon (private) / RssFile (binary, shared libs)", fmt.Sprintf("%.1f / %.1f MiB", mib(r.after.anonKiB), mib(r.after.fileKiB)), "", "")
	t.Row("  PSS (shared pages split among the processes mapping them)", fmt.Sprintf("%.1f MiB", mib(r.after.pssKiB)), "", "")
	t.Row("RSS without the umockdev preload (no devices), anon / file", fmt.Sprintf("%.1f MiB (%.1f / %.1f)", mib(r.plain.rssKiB), mib(r.plain.anonKiB), mib(r.plain.fileKiB)), "", "")
	if r.maps != "" {
		t.Note("idle usbctld RSS by mapping: %s", r.maps)
	}
	if len(r.preloadOnly) > 0 {
		t.Note("files only the umockdev preload maps (%.1f MiB resident): %s", mib(r.preloadOnlyKiB), strings.Join(r.preloadOnly, ", "))
	}
	t.Note("idle: %d threads; %d syncs and %d libvirt events in the window; %d idle TCG guests used %.1f%% of a core",
		r.after.threads, r.syncs, r.events, r.qemuN, 100*float64(r.qemuTicks)/clkTck/win.Seconds())
}
