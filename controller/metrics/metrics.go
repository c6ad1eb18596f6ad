// Package metrics exposes usbctld's work as Prometheus metrics: counters
// and the sync-duration histogram fed by the controller as it acts, and
// gauges read from the controller's status at scrape time, so a scrape
// never waits for the loop.
//
// It writes the text exposition format itself instead of using
// client_golang: the library (with client_model and protobuf) added
// 3.7 MiB to the daemon's resident memory for a few dozen series.
package metrics

import (
	"bytes"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/usbctl/usbctl/controller"
	"github.com/usbctl/usbctl/failure"
	"github.com/usbctl/usbctl/reconcile"
)

// StatusFunc returns the controller's latest status.
type StatusFunc func() controller.Status

// Metrics holds usbctl's metrics and serves them. It implements
// controller.Observer: the controller loop calls SyncDone and ActionDone
// while HTTP handlers scrape, so the counters are guarded by mu.
type Metrics struct {
	status StatusFunc

	mu       sync.Mutex
	actions  map[reconcile.ActionKind]uint64
	failures map[failureKey]uint64
	syncs    histogram
}

type failureKey struct {
	kind   reconcile.ActionKind
	reason string
}

// histogram counts observations per bucket (not cumulative; the scrape
// adds them up). counts[len(bounds)] is the +Inf bucket.
type histogram struct {
	bounds []float64
	counts []uint64
	sum    float64
}

// Names and help texts of the metrics usbctl defines.
const (
	nameActions  = "usbctl_actions_total"
	helpActions  = "Attaches and detaches carried out successfully, by kind."
	nameFailures = "usbctl_action_failures_total"
	helpFailures = "Failed attaches and detaches, by kind and reason (transient, permanent, domain-gone, disconnected)."
	nameSync     = "usbctl_sync_duration_seconds"
	helpSync     = "Time of one sync: observe, plan, apply."
)

// New returns metrics whose gauges read status.
func New(status StatusFunc) *Metrics {
	m := &Metrics{
		status:   status,
		actions:  map[reconcile.ActionKind]uint64{},
		failures: map[failureKey]uint64{},
	}
	// From a quiet sync (~50 µs) to one that waits on libvirt: 50 µs × 4^i,
	// i < 10, multiplied out step by step as client_golang's
	// ExponentialBuckets did, so the le labels stay the same.
	b := 50e-6
	for range 10 {
		m.syncs.bounds = append(m.syncs.bounds, b)
		b *= 4
	}
	m.syncs.counts = make([]uint64, len(m.syncs.bounds)+1)
	// Zero series for every label value, so rates work from the start.
	for _, k := range []reconcile.ActionKind{reconcile.Attach, reconcile.Detach} {
		m.actions[k] = 0
		for _, c := range failure.Classes() {
			m.failures[failureKey{k, c.String()}] = 0
		}
	}
	return m
}

// SyncDone records one sync's duration.
func (m *Metrics) SyncDone(d time.Duration) {
	v := d.Seconds()
	// The first bucket whose upper bound is >= v: buckets include their
	// bound, as le says.
	i := 0
	for i < len(m.syncs.bounds) && v > m.syncs.bounds[i] {
		i++
	}
	m.mu.Lock()
	m.syncs.counts[i]++
	m.syncs.sum += v
	m.mu.Unlock()
}

// ActionDone records the outcome of one attach or detach.
func (m *Metrics) ActionDone(kind reconcile.ActionKind, err error, class failure.Class) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err == nil {
		m.actions[kind]++
		return
	}
	m.failures[failureKey{kind, class.String()}]++
}

// Handler serves the metrics in the Prometheus text format, version 0.0.4.
func (m *Metrics) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		var buf bytes.Buffer
		writeText(&buf, m.gather())
		h := w.Header()
		h.Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		h.Set("Content-Length", strconv.Itoa(buf.Len()))
		// An error here means the scraper went away; there is no one
		// left to tell.
		_, _ = w.Write(buf.Bytes())
	})
}

// gather collects every family: usbctl's own, then the process's and the
// Go runtime's.
func (m *Metrics) gather() []family {
	fams := m.counterFamilies()
	fams = append(fams, statusFamilies(m.status())...)
	fams = append(fams, procFamilies()...)
	fams = append(fams, goFamilies()...)
	return fams
}

// counterFamilies snapshots the counters and the histogram under one lock,
// so a histogram's buckets, sum and count agree with each other.
func (m *Metrics) counterFamilies() []family {
	m.mu.Lock()
	defer m.mu.Unlock()
	actions := family{name: nameActions, help: helpActions, typ: typeCounter}
	for k, n := range m.actions {
		actions.series = append(actions.series, series{labels: []label{{"kind", string(k)}}, value: float64(n)})
	}
	failures := family{name: nameFailures, help: helpFailures, typ: typeCounter}
	for k, n := range m.failures {
		failures.series = append(failures.series, series{labels: []label{{"kind", string(k.kind)}, {"reason", k.reason}}, value: float64(n)})
	}
	h := &histSnapshot{bounds: m.syncs.bounds, cumulative: make([]uint64, len(m.syncs.bounds)), sum: m.syncs.sum}
	for i, n := range m.syncs.counts {
		h.count += n
		if i < len(h.cumulative) {
			h.cumulative[i] = h.count
		}
	}
	syncs := family{name: nameSync, help: helpSync, typ: typeHistogram, series: []series{{hist: h}}}
	return []family{actions, failures, syncs}
}

// statusFamilies turns a status into gauges (and the syncs counter).
func statusFamilies(st controller.Status) []family {
	attached, foreign := 0, 0
	type dk struct {
		state   string
		managed bool
	}
	doms := map[dk]int{}
	for _, d := range st.Domains {
		attached += len(d.Attached)
		foreign += len(d.Foreign)
		doms[dk{string(d.State), d.Managed}]++
	}
	domains := family{name: "usbctl_domains", help: "libvirt domains, by state and whether the config has rules for them.", typ: typeGauge}
	for k, n := range doms {
		domains.series = append(domains.series, series{labels: []label{{"state", k.state}, {"managed", strconv.FormatBool(k.managed)}}, value: float64(n)})
	}
	perm := 0
	for _, p := range st.Pending {
		if p.Permanent {
			perm++
		}
	}
	return []family{
		{name: "usbctl_devices", help: "USB devices present, by placement: attached (by usbctl to a running domain) or unassigned.", typ: typeGauge, series: []series{
			{labels: []label{{"placement", "attached"}}, value: float64(attached)},
			{labels: []label{{"placement", "unassigned"}}, value: float64(len(st.Unassigned))},
		}},
		domains,
		gauge("usbctl_foreign_hostdevs", "USB hostdevs usbctl did not attach (never touched).", float64(foreign)),
		{name: "usbctl_pending_actions", help: "Planned actions not done yet, by whether they wait for a change (permanent) or retry.", typ: typeGauge, series: []series{
			{labels: []label{{"permanent", "false"}}, value: float64(len(st.Pending) - perm)},
			{labels: []label{{"permanent", "true"}}, value: float64(perm)},
		}},
		gauge("usbctl_conflicts", "Devices the rules cannot place as written.", float64(len(st.Conflicts))),
		gauge("usbctl_config_reload_rejected", "1 if the newest reload was rejected and older rules stay in force.", b2f(st.Config.Rejected != nil)),
		gauge("usbctl_config_loaded_timestamp_seconds", "When the rules in force were loaded.", unix(st.Config.LoadedAt)),
		gauge("usbctl_config_rules", "Device rules in force.", float64(st.Config.Rules)),
		gauge("usbctl_libvirt_connected", "1 while the libvirt connection is up.", b2f(st.Hypervisor.Connected)),
		gauge("usbctl_ready", "1 once the first complete sync is done.", b2f(st.Ready)),
		counter("usbctl_syncs_total", "Syncs done since start.", float64(st.Syncs)),
		gauge("usbctl_last_sync_timestamp_seconds", "When the last sync finished.", unix(st.LastSync)),
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func unix(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.UnixNano()) / 1e9
}
