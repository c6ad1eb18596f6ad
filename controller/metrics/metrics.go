// Package metrics exposes usbctld's work as Prometheus metrics: counters
// and the sync-duration histogram fed by the controller as it acts, and
// gauges read from the controller's status at scrape time, so a scrape
// never waits for the loop.
package metrics

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"

	"github.com/usbctl/usbctl/controller"
	"github.com/usbctl/usbctl/reconcile"
)

// StatusFunc returns the controller's latest status.
type StatusFunc func() controller.Status

// Metrics is a registry with usbctl's metrics. It implements
// controller.Observer.
type Metrics struct {
	reg      *prometheus.Registry
	actions  *prometheus.CounterVec
	failures *prometheus.CounterVec
	syncs    prometheus.Histogram
}

// New returns metrics whose gauges read status.
func New(status StatusFunc) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		actions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "usbctl_actions_total",
			Help: "Attaches and detaches carried out successfully, by kind.",
		}, []string{"kind"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "usbctl_action_failures_total",
			Help: "Failed attaches and detaches, by kind and reason (transient, permanent, domain-gone, disconnected).",
		}, []string{"kind", "reason"}),
		syncs: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "usbctl_sync_duration_seconds",
			Help: "Time of one sync: observe, plan, apply.",
			// From a quiet sync (~50 µs) to one that waits on libvirt.
			Buckets: prometheus.ExponentialBuckets(50e-6, 4, 10),
		}),
	}
	// Zero series for every label value, so rates work from the start.
	for _, k := range []reconcile.ActionKind{reconcile.Attach, reconcile.Detach} {
		m.actions.WithLabelValues(string(k))
		for _, c := range []controller.FailureClass{controller.Transient, controller.Permanent, controller.DomainGone, controller.Disconnected} {
			m.failures.WithLabelValues(string(k), c.String())
		}
	}
	m.reg.MustRegister(m.actions, m.failures, m.syncs, &statusCollector{status: status},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// SyncDone records one sync's duration.
func (m *Metrics) SyncDone(d time.Duration) { m.syncs.Observe(d.Seconds()) }

// ActionDone records the outcome of one attach or detach.
func (m *Metrics) ActionDone(kind reconcile.ActionKind, err error, class controller.FailureClass) {
	if err == nil {
		m.actions.WithLabelValues(string(kind)).Inc()
		return
	}
	m.failures.WithLabelValues(string(kind), class.String()).Inc()
}

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// Registry is the registry, for tests and embedding.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

var (
	descDevices = prometheus.NewDesc("usbctl_devices", "USB devices present, by placement: attached (by usbctl to a running domain) or unassigned.", []string{"placement"}, nil)
	descDomains = prometheus.NewDesc("usbctl_domains", "libvirt domains, by state and whether the config has rules for them.", []string{"state", "managed"}, nil)
	descForeign = prometheus.NewDesc("usbctl_foreign_hostdevs", "USB hostdevs usbctl did not attach (never touched).", nil, nil)
	descPending = prometheus.NewDesc("usbctl_pending_actions", "Planned actions not done yet, by whether they wait for a change (permanent) or retry.", []string{"permanent"}, nil)
	descConfl   = prometheus.NewDesc("usbctl_conflicts", "Devices the rules cannot place as written.", nil, nil)
	descRej     = prometheus.NewDesc("usbctl_config_reload_rejected", "1 if the newest reload was rejected and older rules stay in force.", nil, nil)
	descLoaded  = prometheus.NewDesc("usbctl_config_loaded_timestamp_seconds", "When the rules in force were loaded.", nil, nil)
	descRules   = prometheus.NewDesc("usbctl_config_rules", "Device rules in force.", nil, nil)
	descConn    = prometheus.NewDesc("usbctl_libvirt_connected", "1 while the libvirt connection is up.", nil, nil)
	descReady   = prometheus.NewDesc("usbctl_ready", "1 once the first complete sync is done.", nil, nil)
	descSyncs   = prometheus.NewDesc("usbctl_syncs_total", "Syncs done since start.", nil, nil)
	descLast    = prometheus.NewDesc("usbctl_last_sync_timestamp_seconds", "When the last sync finished.", nil, nil)
)

// statusCollector turns a status into gauges at scrape time.
type statusCollector struct{ status StatusFunc }

func (c *statusCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descDevices, descDomains, descForeign, descPending, descConfl, descRej, descLoaded, descRules, descConn, descReady, descSyncs, descLast} {
		ch <- d
	}
}

func (c *statusCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.status()
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
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	gauge(descDevices, float64(attached), "attached")
	gauge(descDevices, float64(len(st.Unassigned)), "unassigned")
	for k, n := range doms {
		gauge(descDomains, float64(n), k.state, boolLabel(k.managed))
	}
	gauge(descForeign, float64(foreign))
	perm := 0
	for _, p := range st.Pending {
		if p.Permanent {
			perm++
		}
	}
	gauge(descPending, float64(len(st.Pending)-perm), "false")
	gauge(descPending, float64(perm), "true")
	gauge(descConfl, float64(len(st.Conflicts)))
	rej := 0.0
	if st.Config.Rejected != nil {
		rej = 1
	}
	gauge(descRej, rej)
	gauge(descLoaded, unix(st.Config.LoadedAt))
	gauge(descRules, float64(st.Config.Rules))
	gauge(descConn, b2f(st.Hypervisor.Connected))
	gauge(descReady, b2f(st.Ready))
	ch <- prometheus.MustNewConstMetric(descSyncs, prometheus.CounterValue, float64(st.Syncs))
	gauge(descLast, unix(st.LastSync))
}

func boolLabel(b bool) string {
	if b {
		return "true"
	}
	return "false"
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

// Value finds the series of name whose labels include labels in parsed
// metric families (expfmt's TextToMetricFamilies) and returns its value: a
// counter's or gauge's value, a histogram's sample count.
func Value(fams map[string]*dto.MetricFamily, name string, labels map[string]string) (float64, bool) {
	f, ok := fams[name]
	if !ok {
		return 0, false
	}
next:
	for _, m := range f.Metric {
		for _, lp := range m.Label {
			if want, ok := labels[lp.GetName()]; ok && want != lp.GetValue() {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}
