package metrics

import (
	"errors"
	"net/http/httptest"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/usbctl/usbctl/controller"
	"github.com/usbctl/usbctl/reconcile"
)

// scrape fetches the metrics over HTTP and parses them with the client
// library's own text parser, as Prometheus would.
func scrape(t *testing.T, m *Metrics) map[string]*dto.MetricFamily {
	t.Helper()
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("metrics do not parse: %v", err)
	}
	return fams
}

func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	t.Helper()
	v, ok := Value(fams, name, labels)
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
	m.ActionDone(reconcile.Attach, errors.New("busy"), controller.Permanent)
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
