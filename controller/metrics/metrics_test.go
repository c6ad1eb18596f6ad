package metrics

import (
	"bytes"
	"errors"
	"io"
	"math"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/usbctl/usbctl/controller"
	"github.com/usbctl/usbctl/failure"
	"github.com/usbctl/usbctl/internal/exposition"
	"github.com/usbctl/usbctl/internal/promtest"
	"github.com/usbctl/usbctl/reconcile"
)

// scrapeText fetches the metrics over HTTP, as Prometheus would, and
// returns the body.
func scrapeText(t *testing.T, m *Metrics) string {
	t.Helper()
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/plain; version=0.0.4; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// parse parses an exposition with the client library's own text parser.
func parse(t *testing.T, text string) map[string]*dto.MetricFamily {
	t.Helper()
	fams, err := promtest.Parse(strings.NewReader(text))
	if err != nil {
		t.Fatalf("metrics do not parse: %v\n%s", err, text)
	}
	return fams
}

func scrape(t *testing.T, m *Metrics) map[string]*dto.MetricFamily {
	t.Helper()
	return parse(t, scrapeText(t, m))
}

func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	t.Helper()
	v, ok := promtest.Value(fams, name, labels)
	if !ok {
		t.Fatalf("no %s with labels %v", name, labels)
	}
	return v
}

func TestMetrics(t *testing.T) {
	loaded := time.Unix(1_700_000_000, 0)
	dev := &reconcile.Device{Bus: 1, Dev: 5}
	st := controller.Status{
		Ready: true, Syncs: 12,
		Hypervisor: controller.HypervisorStatus{Connected: true},
		Config:     controller.ConfigStatus{LoadedAt: loaded, Rules: 3, Rejected: &controller.RejectedConfig{}},
		Domains: []controller.DomainStatus{
			{Name: "a", State: reconcile.StateRunning, Managed: true, Attached: []controller.AttachedDevice{{Device: dev}, {Device: dev}}, Foreign: []reconcile.Hostdev{{Alias: "hostdev0"}}},
			{Name: "b", State: reconcile.StateShutoff, Managed: true},
			{Name: "c", State: reconcile.StateRunning},
		},
		Pending:    []controller.PendingAction{{Permanent: true}, {}, {}},
		Conflicts:  []reconcile.Conflict{{}},
		Unassigned: []reconcile.Placement{{}, {}, {}, {}},
	}
	m := New(func() controller.Status { return st })
	m.ActionDone(reconcile.Attach, nil, 0)
	m.ActionDone(reconcile.Attach, nil, 0)
	m.ActionDone(reconcile.Detach, nil, 0)
	m.ActionDone(reconcile.Attach, errors.New("busy"), failure.Permanent)
	m.SyncDone(3 * time.Millisecond)
	m.SyncDone(80 * time.Microsecond)

	f := scrape(t, m)
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"usbctl_actions_total", map[string]string{"kind": "attach"}, 2},
		{"usbctl_actions_total", map[string]string{"kind": "detach"}, 1},
		{"usbctl_action_failures_total", map[string]string{"kind": "attach", "reason": "permanent"}, 1},
		{"usbctl_action_failures_total", map[string]string{"kind": "detach", "reason": "transient"}, 0},
		{"usbctl_sync_duration_seconds", nil, 2},
		{"usbctl_devices", map[string]string{"placement": "attached"}, 2},
		{"usbctl_devices", map[string]string{"placement": "unassigned"}, 4},
		{"usbctl_domains", map[string]string{"state": "running", "managed": "true"}, 1},
		{"usbctl_domains", map[string]string{"state": "running", "managed": "false"}, 1},
		{"usbctl_domains", map[string]string{"state": "shut off", "managed": "true"}, 1},
		{"usbctl_foreign_hostdevs", nil, 1},
		{"usbctl_pending_actions", map[string]string{"permanent": "true"}, 1},
		{"usbctl_pending_actions", map[string]string{"permanent": "false"}, 2},
		{"usbctl_conflicts", nil, 1},
		{"usbctl_config_reload_rejected", nil, 1},
		{"usbctl_config_loaded_timestamp_seconds", nil, 1_700_000_000},
		{"usbctl_config_rules", nil, 3},
		{"usbctl_libvirt_connected", nil, 1},
		{"usbctl_ready", nil, 1},
		{"usbctl_syncs_total", nil, 12},
	} {
		if got := value(t, f, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if _, ok := f["process_resident_memory_bytes"]; !ok {
		t.Error("process metrics missing")
	}
	// The status changes; the next scrape shows it.
	st.Config.Rejected = nil
	st.Hypervisor.Connected = false
	f = scrape(t, m)
	if value(t, f, "usbctl_config_reload_rejected", nil) != 0 || value(t, f, "usbctl_libvirt_connected", nil) != 0 {
		t.Error("gauges did not follow the status")
	}
}

// goldenStatus is the status and the observations that
// testdata/usbctl.golden was scraped from, with client_golang v1.25.0's
// registry and promhttp handler, before usbctl wrote the format itself.
func goldenStatus() (controller.Status, func(*Metrics)) {
	dev := &reconcile.Device{Bus: 1, Dev: 5}
	st := controller.Status{
		Ready: true, Syncs: 12, LastSync: time.Unix(1_700_000_100, 500_000_000),
		Hypervisor: controller.HypervisorStatus{Connected: true},
		Config:     controller.ConfigStatus{LoadedAt: time.Unix(1_700_000_000, 0), Rules: 3, Rejected: &controller.RejectedConfig{}},
		Domains: []controller.DomainStatus{
			{Name: "a", State: reconcile.StateRunning, Managed: true, Attached: []controller.AttachedDevice{{Device: dev}, {Device: dev}}, Foreign: []reconcile.Hostdev{{Alias: "hostdev0"}}},
			{Name: "b", State: reconcile.StateShutoff, Managed: true},
			{Name: "c", State: reconcile.StateRunning},
			{Name: "d", State: reconcile.DomainState("we\"ird\\state\nline")},
			{Name: "e", State: reconcile.StatePaused, Managed: true},
		},
		Pending:    []controller.PendingAction{{Permanent: true}, {}, {}},
		Conflicts:  []reconcile.Conflict{{}},
		Unassigned: []reconcile.Placement{{}, {}, {}, {}},
	}
	return st, func(m *Metrics) {
		m.ActionDone(reconcile.Attach, nil, 0)
		m.ActionDone(reconcile.Attach, nil, 0)
		m.ActionDone(reconcile.Detach, nil, 0)
		m.ActionDone(reconcile.Attach, errors.New("busy"), failure.Permanent)
		m.ActionDone(reconcile.Detach, errors.New("gone"), failure.DomainGone)
		for _, d := range []time.Duration{50 * time.Microsecond, 100 * time.Microsecond, 3 * time.Millisecond, 3200 * time.Microsecond, time.Second, 20 * time.Second} {
			m.SyncDone(d)
		}
	}
}

// TestSameTextAsClientGolang compares the usbctl_* lines byte for byte with
// what client_golang wrote for the same status: order of families, series
// and labels, escaping, float formatting, bucket bounds.
func TestSameTextAsClientGolang(t *testing.T) {
	want, err := os.ReadFile("testdata/usbctl.golden")
	if err != nil {
		t.Fatal(err)
	}
	st, observe := goldenStatus()
	m := New(func() controller.Status { return st })
	observe(m)
	var got strings.Builder
	for line := range strings.Lines(scrapeText(t, m)) {
		if strings.HasPrefix(line, "usbctl_") || strings.HasPrefix(line, "# HELP usbctl_") || strings.HasPrefix(line, "# TYPE usbctl_") {
			got.WriteString(line)
		}
	}
	if got.String() != string(want) {
		t.Errorf("usbctl metrics differ from client_golang's:\n--- got\n%s--- want\n%s", got.String(), want)
	}
}

// TestSameFamiliesAsClientGolang checks that every family client_golang
// exported (its process and Go collectors included) is still there, in the
// same order, with the same help text and type, and no other.
func TestSameFamiliesAsClientGolang(t *testing.T) {
	want, err := os.ReadFile("testdata/families.golden")
	if err != nil {
		t.Fatal(err)
	}
	st, _ := goldenStatus()
	var got strings.Builder
	for line := range strings.Lines(scrapeText(t, New(func() controller.Status { return st }))) {
		if strings.HasPrefix(line, "# ") {
			got.WriteString(line)
		}
	}
	if got.String() != string(want) {
		gl, wl := strings.Split(got.String(), "\n"), strings.Split(string(want), "\n")
		for i := range max(len(gl), len(wl)) {
			var g, w string
			if i < len(gl) {
				g = gl[i]
			}
			if i < len(wl) {
				w = wl[i]
			}
			if g != w {
				t.Errorf("line %d:\n got  %q\n want %q", i+1, g, w)
				break
			}
		}
	}
}

func TestSyncDurationHistogram(t *testing.T) {
	m := New(func() controller.Status { return controller.Status{} })
	durations := []time.Duration{
		30 * time.Microsecond,  // le 5e-05
		50 * time.Microsecond,  // le 5e-05: a bound is inclusive
		500 * time.Microsecond, // le 0.0008
		500 * time.Microsecond, // le 0.0008
		2 * time.Second,        // le 3.2768
		time.Minute,            // only +Inf
	}
	wantSum := 0.0
	for _, d := range durations {
		m.SyncDone(d)
		wantSum += d.Seconds()
	}
	f := scrape(t, m)
	fam, ok := f["usbctl_sync_duration_seconds"]
	if !ok || fam.GetType() != dto.MetricType_HISTOGRAM || len(fam.Metric) != 1 {
		t.Fatalf("no single histogram usbctl_sync_duration_seconds: %v", fam)
	}
	h := fam.Metric[0].GetHistogram()
	wantBounds := []float64{5e-05, 0.0002, 0.0008, 0.0032, 0.0128, 0.0512, 0.2048, 0.8192, 3.2768, 13.1072, math.Inf(1)}
	wantCum := []uint64{2, 2, 4, 4, 4, 4, 4, 4, 5, 5, 6}
	if len(h.Bucket) != len(wantBounds) {
		t.Fatalf("%d buckets, want %d", len(h.Bucket), len(wantBounds))
	}
	for i, b := range h.Bucket {
		if ub := b.GetUpperBound(); (ub != wantBounds[i] && math.Abs(ub-wantBounds[i]) > 1e-12) || b.GetCumulativeCount() != wantCum[i] {
			t.Errorf("bucket %d: le %v count %d, want le %v count %d", i, b.GetUpperBound(), b.GetCumulativeCount(), wantBounds[i], wantCum[i])
		}
	}
	if h.GetSampleCount() != uint64(len(durations)) {
		t.Errorf("count %d, want %d", h.GetSampleCount(), len(durations))
	}
	if math.Abs(h.GetSampleSum()-wantSum) > 1e-9 {
		t.Errorf("sum %v, want %v", h.GetSampleSum(), wantSum)
	}
}

// TestLabelEscaping sends label values that need escaping (a domain state
// comes from libvirt's data) through the client library's parser.
func TestLabelEscaping(t *testing.T) {
	weird := "a \"quoted\" \\back\\slash\nand a newline"
	st := controller.Status{Domains: []controller.DomainStatus{
		{Name: "x", State: reconcile.DomainState(weird), Managed: true},
		{Name: "y", State: reconcile.DomainState("bad \xff utf-8")},
	}}
	m := New(func() controller.Status { return st })
	text := scrapeText(t, m)
	if want := `usbctl_domains{managed="true",state="a \"quoted\" \\back\\slash\nand a newline"} 1`; !strings.Contains(text, want+"\n") {
		t.Errorf("no line %s", want)
	}
	f := parse(t, text)
	for _, state := range []string{weird, "bad \uFFFD utf-8"} {
		if v, ok := promtest.Value(f, "usbctl_domains", map[string]string{"state": state}); !ok || v != 1 {
			t.Errorf("usbctl_domains{state=%q} = %v, %v; want 1", state, v, ok)
		}
	}

	// Help texts escape backslash and newline (and keep quotes).
	var buf bytes.Buffer
	help := "one \\ two\nthree \"four\""
	exposition.WriteText(&buf, []exposition.Family{exposition.Gauge("x", help, 1)})
	if got := parse(t, buf.String())["x"].GetHelp(); got != help {
		t.Errorf("help %q came back as %q", help, got)
	}
}

// TestProcessAndGoMetrics checks that the process_* and go_* families that
// replaced client_golang's collectors are there and plausible.
func TestProcessAndGoMetrics(t *testing.T) {
	runtime.GC() // so the GC pause summary has a cycle
	// Spend CPU time until the process has used 0.2 s, to compare
	// process_cpu_seconds_total with getrusage(2), which counts it
	// independently of /proc.
	cpuTime := func() float64 {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			t.Fatal(err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
	}
	for start := time.Now(); cpuTime() < 0.2 && time.Since(start) < 10*time.Second; {
	}
	f := scrape(t, New(func() controller.Status { return controller.Status{} }))
	cpu := cpuTime()
	v := func(name string) float64 { return value(t, f, name, nil) }
	now := float64(time.Now().Unix())
	const mib = 1 << 20
	for _, c := range []struct {
		name   string
		ok     bool
		detail float64
	}{
		{"process_resident_memory_bytes", v("process_resident_memory_bytes") > mib, v("process_resident_memory_bytes")},
		{"process_virtual_memory_bytes", v("process_virtual_memory_bytes") >= v("process_resident_memory_bytes"), v("process_virtual_memory_bytes")},
		{"process_start_time_seconds", v("process_start_time_seconds") > now-3600 && v("process_start_time_seconds") <= now+1, v("process_start_time_seconds")},
		// /proc counts in ticks of 10 ms; the scrape itself used a little more.
		{"process_cpu_seconds_total", v("process_cpu_seconds_total") >= 0.1 && math.Abs(v("process_cpu_seconds_total")-cpu) < 0.05+cpu/10, v("process_cpu_seconds_total")},
		{"process_open_fds", v("process_open_fds") >= 1 && v("process_open_fds") <= v("process_max_fds"), v("process_open_fds")},
		{"process_max_fds", v("process_max_fds") >= 64, v("process_max_fds")},
		{"process_virtual_memory_max_bytes", v("process_virtual_memory_max_bytes") > 0, v("process_virtual_memory_max_bytes")},
		{"process_network_receive_bytes_total", v("process_network_receive_bytes_total") >= 0, v("process_network_receive_bytes_total")},
		{"go_goroutines", v("go_goroutines") >= 1, v("go_goroutines")},
		{"go_threads", v("go_threads") >= 1, v("go_threads")},
		{"go_memstats_heap_alloc_bytes", v("go_memstats_heap_alloc_bytes") > 0 && v("go_memstats_heap_alloc_bytes") == v("go_memstats_alloc_bytes"), v("go_memstats_heap_alloc_bytes")},
		{"go_memstats_sys_bytes", v("go_memstats_sys_bytes") >= v("go_memstats_heap_sys_bytes"), v("go_memstats_sys_bytes")},
		{"go_memstats_heap_sys_bytes", v("go_memstats_heap_sys_bytes") == v("go_memstats_heap_inuse_bytes")+v("go_memstats_heap_idle_bytes"), v("go_memstats_heap_sys_bytes")},
		{"go_memstats_mallocs_total", v("go_memstats_mallocs_total") >= v("go_memstats_frees_total") && v("go_memstats_mallocs_total") > 0, v("go_memstats_mallocs_total")},
		{"go_memstats_last_gc_time_seconds", v("go_memstats_last_gc_time_seconds") > now-60 && v("go_memstats_last_gc_time_seconds") <= now+1, v("go_memstats_last_gc_time_seconds")},
		{"go_gc_duration_seconds", v("go_gc_duration_seconds") >= 1, v("go_gc_duration_seconds")},
		{"go_sched_gomaxprocs_threads", v("go_sched_gomaxprocs_threads") == float64(runtime.GOMAXPROCS(0)), v("go_sched_gomaxprocs_threads")},
		{"go_gc_gogc_percent", v("go_gc_gogc_percent") != 0, v("go_gc_gogc_percent")},
	} {
		if !c.ok {
			t.Errorf("%s = %v, implausible", c.name, c.detail)
		}
	}
	if got := value(t, f, "go_info", map[string]string{"version": runtime.Version()}); got != 1 {
		t.Errorf("go_info{version=%q} = %v", runtime.Version(), got)
	}
	if q := f["go_gc_duration_seconds"].GetMetric()[0].GetSummary().GetQuantile(); len(q) != 5 || q[0].GetQuantile() != 0 || q[4].GetQuantile() != 1 || q[4].GetValue() < q[0].GetValue() {
		t.Errorf("go_gc_duration_seconds quantiles %v, want min, quartiles, max", q)
	}
}

// TestConcurrentUse runs the controller's calls and scrapes in parallel;
// under -race it shows they share nothing unguarded, and the totals show
// no update was lost. Each scrape must be self-consistent: a histogram's
// +Inf bucket equals its count.
func TestConcurrentUse(t *testing.T) {
	var stMu sync.Mutex
	st := controller.Status{}
	m := New(func() controller.Status {
		stMu.Lock()
		defer stMu.Unlock()
		return st
	})
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()

	const writers, perWriter, scrapers, scrapes = 4, 200, 4, 10
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				var err error
				if i%4 == 0 {
					err = errors.New("failed")
				}
				kind := reconcile.Attach
				if w%2 == 1 {
					kind = reconcile.Detach
				}
				m.ActionDone(kind, err, failure.Transient)
				m.SyncDone(time.Duration(i) * time.Microsecond)
				stMu.Lock()
				st.Syncs++
				stMu.Unlock()
			}
		})
	}
	errs := make(chan error, scrapers*scrapes)
	for range scrapers {
		wg.Go(func() {
			for range scrapes {
				resp, err := srv.Client().Get(srv.URL)
				if err != nil {
					errs <- err
					return
				}
				f, err := promtest.Parse(resp.Body)
				resp.Body.Close()
				if err != nil {
					errs <- err
					return
				}
				h := f["usbctl_sync_duration_seconds"].GetMetric()[0].GetHistogram()
				last := h.Bucket[len(h.Bucket)-1].GetCumulativeCount()
				if last > h.GetSampleCount() {
					errs <- errors.New("histogram buckets exceed its count")
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	f := scrape(t, m)
	perKind := float64(writers / 2 * perWriter)
	for _, kind := range []string{"attach", "detach"} {
		ok := value(t, f, "usbctl_actions_total", map[string]string{"kind": kind})
		failed := value(t, f, "usbctl_action_failures_total", map[string]string{"kind": kind, "reason": "transient"})
		if ok != perKind*3/4 || failed != perKind/4 {
			t.Errorf("%s: %v done, %v failed; want %v, %v", kind, ok, failed, perKind*3/4, perKind/4)
		}
	}
	if got, want := value(t, f, "usbctl_sync_duration_seconds", nil), float64(writers*perWriter); got != want {
		t.Errorf("%v syncs observed, want %v", got, want)
	}
	if got, want := value(t, f, "usbctl_syncs_total", nil), float64(writers*perWriter); got != want {
		t.Errorf("usbctl_syncs_total %v, want %v", got, want)
	}
}
