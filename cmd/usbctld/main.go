// Command usbctld is the usbctl daemon: it keeps libvirt guests in sync with
// host USB devices according to the rules in /etc/usbctl.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"os/user"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"

	"github.com/usbctl/usbctl/config"
	"github.com/usbctl/usbctl/controller"
	"github.com/usbctl/usbctl/controller/api"
	"github.com/usbctl/usbctl/controller/metrics"
	"github.com/usbctl/usbctl/events"
	"github.com/usbctl/usbctl/override"
	"github.com/usbctl/usbctl/reconcile"
	"github.com/usbctl/usbctl/udevsrc"
	"github.com/usbctl/usbctl/virt"
)

type options struct {
	configs       []string
	uri           string
	socket        string
	socketGroup   string
	controlGroup  string
	runtimeDir    string
	logLevel      string
	logFormat     string
	releaseOnStop bool
	resync        time.Duration
	metricsAddr   string
	stateDir      string
	askTimeout    time.Duration
	// keepaliveInterval and keepaliveCount: how soon a libvirtd that
	// stopped answering counts as gone (libvirt's own keepalive).
	keepaliveInterval time.Duration
	keepaliveCount    uint
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func main() {
	var o options
	var cfgs multiFlag
	fs := flag.NewFlagSet("usbctld", flag.ExitOnError)
	fs.Var(&cfgs, "config", "config file or directory of *.hcl files; repeatable (default "+config.DefaultPath+" and "+config.DefaultDir+")")
	fs.StringVar(&o.uri, "uri", "", "libvirt URI (overrides the config's libvirt { uri })")
	fs.StringVar(&o.socket, "socket", api.DefaultSocket, "control socket path")
	fs.StringVar(&o.socketGroup, "socket-group", "", "group given the socket (mode 0660), whose members may read status; default: usbctld's own group")
	fs.StringVar(&o.controlGroup, "control-group", "", "group whose members may also change things (reload), as root may; they must be able to open the socket too")
	fs.StringVar(&o.runtimeDir, "runtime-dir", defaultRuntimeDir(), "directory of the lock that keeps a second usbctld off the same libvirt URI")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&o.logFormat, "log-format", "text", "text or json")
	fs.BoolVar(&o.releaseOnStop, "release-on-stop", false, "detach every device usbctld attached when it stops (default: leave guests undisturbed)")
	fs.DurationVar(&o.resync, "resync", 5*time.Minute, "period of the full re-read of devices and domains")
	fs.StringVar(&o.metricsAddr, "metrics-listen", "", "also serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9585); they are always on the control socket at /metrics")
	fs.StringVar(&o.stateDir, "state-dir", defaultStateDir(), "directory of the state file that keeps runtime assignments (usbctl attach, detach, move) across restarts (default $STATE_DIRECTORY, or "+fallbackStateDir+")")
	fs.DurationVar(&o.askTimeout, "ask-timeout", 2*time.Minute, "how long an offer (mode \"ask\") waits for an answer before its device stays on the host")
	fs.DurationVar(&o.keepaliveInterval, "keepalive-interval", 5*time.Second, "libvirt keepalive: a ping to libvirtd this often (whole seconds); with --keepalive-count, a libvirtd that stops answering counts as gone after about interval × (count+1), and usbctld reconnects")
	fs.UintVar(&o.keepaliveCount, "keepalive-count", 3, "libvirt keepalive: unanswered pings before the connection counts as dead")
	_ = fs.Parse(os.Args[1:])
	if err := checkKeepalive(o.keepaliveInterval, o.keepaliveCount); err != nil {
		fmt.Fprintln(os.Stderr, "usbctld:", err)
		os.Exit(2)
	}
	o.configs = cfgs
	if len(o.configs) == 0 {
		o.configs = config.DefaultPaths()
	}
	log, err := newLogger(os.Stderr, o.logLevel, o.logFormat)
	if err != nil {
		fmt.Fprintln(os.Stderr, "usbctld:", err)
		os.Exit(2)
	}
	if err := run(context.Background(), log, o); err != nil {
		log.Error("usbctld stopped", "err", err)
		os.Exit(1)
	}
}

// checkKeepalive refuses what libvirt's keepalive cannot do: it counts in
// whole seconds, and a count of 0 would drop the connection at the first
// ping that is late.
func checkKeepalive(interval time.Duration, count uint) error {
	if interval < time.Second || interval%time.Second != 0 {
		return fmt.Errorf("--keepalive-interval %v: want whole seconds, at least 1s (libvirt counts in seconds)", interval)
	}
	if count < 1 {
		return fmt.Errorf("--keepalive-count %d: want at least 1", count)
	}
	return nil
}

// fallbackStateDir is the state directory without systemd's
// StateDirectory= (which sets $STATE_DIRECTORY).
const fallbackStateDir = "/var/lib/usbctl"

func defaultStateDir() string {
	if d := os.Getenv("STATE_DIRECTORY"); d != "" {
		// systemd may list several, colon-separated; ours is the first.
		return strings.SplitN(d, ":", 2)[0]
	}
	return fallbackStateDir
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	hopts := &slog.HandlerOptions{Level: lv}
	// Under systemd the journal adds its own timestamp.
	if os.Getenv("JOURNAL_STREAM") != "" {
		hopts.ReplaceAttr = func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		}
	}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, hopts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, hopts)), nil
	}
	return nil, fmt.Errorf("log format %q: want text or json", format)
}

func configStatus(cfg *config.Config, at time.Time) controller.ConfigStatus {
	n := 0
	for _, d := range cfg.Rules.Domains {
		n += len(d.Devices)
	}
	return controller.ConfigStatus{Files: cfg.Files, LoadedAt: at, Domains: len(cfg.Rules.Domains), Rules: n, Excludes: len(cfg.Rules.Excludes)}
}

// run is the daemon until SIGINT or SIGTERM, ctx is done (tests), or a part
// of it fails.
func run(ctx context.Context, log *slog.Logger, o options) error {
	cfg, diags := config.Load(o.configs...)
	if diags.HasErrors() {
		_ = diags.Write(os.Stderr, 0, false)
		return fmt.Errorf("config %s is invalid: fix it and start again (usbctl check shows the same)", strings.Join(o.configs, ", "))
	}
	for _, d := range diags.Strings() {
		log.Warn("config", "diagnostic", d)
	}
	uri := o.uri
	if uri == "" {
		uri = cfg.LibvirtURI
	}
	// One usbctld per libvirt: a second one would take the first one's
	// hostdevs for its own. Held until run returns, after any release.
	if o.runtimeDir == "" {
		o.runtimeDir = defaultRuntimeDir()
	}
	lock, err := lockURI(o.runtimeDir, uri)
	if err != nil {
		return err
	}
	defer lock.release()
	gid := -1
	if o.socketGroup != "" {
		g, err := lookupGID(o.socketGroup)
		if err != nil {
			return fmt.Errorf("socket group: %w", err)
		}
		gid = int(g)
	}
	ctlGID := -1
	if o.controlGroup != "" {
		g, err := lookupGID(o.controlGroup)
		if err != nil {
			return fmt.Errorf("control group: %w", err)
		}
		ctlGID = int(g)
	}

	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	// Wire first, then start: the controller exists before anything can
	// deliver an event into it (libvirt's connection calls back from the
	// moment it starts; the udev watch and the loop start further down).
	conn, err := virt.New(virt.Options{URI: uri, Log: log.With("component", "libvirt"),
		KeepaliveInterval: o.keepaliveInterval, KeepaliveCount: o.keepaliveCount})
	if err != nil {
		return fmt.Errorf("libvirt %s: %w", uri, err)
	}
	defer conn.Close()
	src := udevsrc.New(log.With("component", "udev"))
	var ctl *controller.Controller
	// Status is read only by /metrics requests, served once ctl is set.
	met := metrics.New(func() controller.Status { return ctl.Status() })
	ctl = controller.New(controller.Options{
		Log: log.With("component", "controller"), Hypervisor: conn, Devices: src, Claims: src,
		URI: uri, Resync: o.resync, Observer: met,
		StateFile: filepath.Join(o.stateDir, override.FileName), AskTimeout: o.askTimeout,
	}, cfg.Rules, configStatus(cfg, time.Now()))
	// The connection outlives the signal: --release-on-stop detaches
	// through it after SIGTERM. conn.Close ends it.
	conn.Start(context.WithoutCancel(ctx), func(ev virt.Event) {
		switch ev.Kind {
		case virt.EventConnected:
			ctl.HypervisorConnected()
		case virt.EventDisconnected:
			ctl.HypervisorDisconnected(errors.New(ev.Detail))
		case virt.EventDeviceAdded, virt.EventDeviceRemoved:
			if ev.Domain != "" {
				ctl.DomainDevicesChanged(ev.Domain)
			}
		default:
			if ev.Domain != "" {
				ctl.DomainChanged(ev.Domain)
			}
		}
	})

	ln, err := api.Listen(o.socket, gid)
	if err != nil {
		return err
	}
	d := &backend{ctl: ctl, log: log, paths: o.configs,
		conf: &confFiles{dir: confDir(o.configs), paths: o.configs, log: log.With("component", "config")}}
	srv := api.NewServer(d, log.With("component", "api"))
	srv.SetMetrics(met.Handler())
	if ctlGID >= 0 {
		srv.SetControlGroup(uint32(ctlGID), o.controlGroup)
	}

	var wg sync.WaitGroup
	errc := make(chan error, 4)
	if o.metricsAddr != "" {
		mln, err := net.Listen("tcp", o.metricsAddr)
		if err != nil {
			return fmt.Errorf("metrics listener %s: %w", o.metricsAddr, err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", met.Handler())
		msrv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, WriteTimeout: 30 * time.Second}
		wg.Add(1)
		go func() {
			defer wg.Done()
			go func() { <-ctx.Done(); _ = msrv.Close() }()
			if err := msrv.Serve(mln); !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("metrics listener: %w", err)
			}
		}()
		log.Info("serving metrics", "addr", mln.Addr().String())
	}
	wg.Add(3)
	go func() { defer wg.Done(); errc <- ignoreCanceled(srv.Serve(ctx, ln)) }()
	go func() {
		defer wg.Done()
		errc <- ignoreCanceled(src.Watch(ctx, func(ev udevsrc.Event) {
			switch ev.Action {
			case udevsrc.ActionAdd:
				ctl.DeviceAdded(ev.Device)
			case udevsrc.ActionRemove:
				ctl.DeviceRemoved(ev.Device)
			case udevsrc.ActionResync:
				ctl.DevicesLost()
			}
		}))
	}()
	go func() { defer wg.Done(); errc <- ignoreCanceled(ctl.Run(ctx)) }()

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	log.Info("usbctld started", "uri", uri, "config", config.DescribeFiles(cfg.Files), "files", len(cfg.Files), "socket", o.socket, "uid", os.Geteuid(), "control_group", o.controlGroup)
	logFiles(log, cfg.Files)
	var firstErr error
	ready := ctl.Ready()
loop:
	for {
		select {
		case <-ready:
			ready = nil // readiness is announced once
			_, _ = daemon.SdNotify(false, daemon.SdNotifyReady)
			log.Info("ready: first sync complete")
			// Start-up (parsing the config, every domain's XML, the
			// device list) leaves garbage that the idle daemon would
			// keep resident until the heap grows past the GC goal,
			// which may be never: collect it and hand the pages back
			// now, once.
			debug.FreeOSMemory()
			trimCHeap()
		case <-hup:
			// Only root and usbctld's own uid may signal it
			// (systemctl reload runs kill as the unit's user).
			log.Info("reload requested", "by", "SIGHUP")
			_, _ = d.Reload(ctx)
		case err := <-errc:
			firstErr = err
			break loop
		case <-ctx.Done():
			break loop
		}
	}
	_, _ = daemon.SdNotify(false, daemon.SdNotifyStopping)
	stop()
	wg.Wait()
	if o.releaseOnStop {
		rctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := ctl.Release(rctx); err != nil {
			log.Error("release devices on stop", "err", err)
		}
	}
	log.Info("usbctld stopped")
	return firstErr
}

// lookupGID resolves a group name, or a number, to a gid.
func lookupGID(name string) (uint32, error) {
	g, err := user.LookupGroup(name)
	if err != nil {
		if _, nerr := strconv.ParseUint(name, 10, 32); nerr == nil {
			g, err = user.LookupGroupId(name)
		}
	}
	if err != nil {
		return 0, fmt.Errorf("%s: %w (groupadd --system %s creates it)", name, err, name)
	}
	n, err := strconv.ParseUint(g.Gid, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("group %s: gid %q: %w", name, g.Gid, err)
	}
	return uint32(n), nil
}

// logFiles lists the config's files one a line, at debug level: the info
// line names them by directory (config.DescribeFiles).
func logFiles(log *slog.Logger, files []string) {
	for _, f := range files {
		log.Debug("config file", "path", f)
	}
}

func ignoreCanceled(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// backend serves the control socket.
type backend struct {
	ctl   *controller.Controller
	log   *slog.Logger
	paths []string
	conf  *confFiles
	mu    sync.Mutex // one reload at a time
}

func (b *backend) Status() controller.Status { return b.ctl.Status() }

func (b *backend) Plan(ctx context.Context) (reconcile.Result, error) { return b.ctl.PlanNow(), nil }

// Reload re-reads the config. An invalid config is rejected whole: its
// diagnostics are logged and shown in status, and the rules in force stay.
func (b *backend) Reload(ctx context.Context) (api.ReloadResult, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	cfg, diags := config.Load(b.paths...)
	lines := diags.Strings()
	if diags.HasErrors() {
		for _, l := range lines {
			b.log.Error("reload rejected", "diagnostic", l)
		}
		b.ctl.RejectConfig(time.Now(), lines)
		return api.ReloadResult{Applied: false, Diagnostics: lines}, nil
	}
	for _, l := range lines {
		b.log.Warn("config", "diagnostic", l)
	}
	b.ctl.SetRules(cfg.Rules, configStatus(cfg, time.Now()))
	b.log.Info("config reloaded", "config", config.DescribeFiles(cfg.Files), "files", len(cfg.Files))
	logFiles(b.log, cfg.Files)
	return api.ReloadResult{Applied: true, Diagnostics: lines}, nil
}

func (b *backend) Devices(name string) ([]reconcile.Device, error) { return b.ctl.Devices(name) }

func (b *backend) Assign(ctx context.Context, r controller.AssignRequest) (controller.AssignResult, bool, error) {
	return b.ctl.Assign(ctx, r)
}

func (b *backend) Unassign(ctx context.Context, device string, by override.Setter) (controller.AssignResult, bool, error) {
	return b.ctl.Unassign(ctx, device, by)
}

func (b *backend) Events() *events.Hub { return b.ctl.Events() }

// ConfigFile finds the conf.d file of a domain's rules in the config as it
// is on disk (as the rules in force say, if that does not load).
func (b *backend) ConfigFile(domain string) (api.ConfigFile, error) {
	rules := b.ctl.RulesInForce()
	if cfg, _ := config.Load(b.paths...); cfg != nil {
		rules = cfg.Rules
	}
	return b.conf.fileFor(domain, rules)
}

// WriteConfig checks and writes a conf.d file for the CLI, then reloads.
func (b *backend) WriteConfig(ctx context.Context, w api.ConfigWrite, uid uint32) (api.ConfigWritten, error) {
	return b.conf.write(w, uid, func() api.ReloadResult {
		res, err := b.Reload(ctx)
		if err != nil {
			return api.ReloadResult{Diagnostics: []string{err.Error()}}
		}
		return res
	})
}
