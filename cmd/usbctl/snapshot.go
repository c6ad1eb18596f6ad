package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/usbctl/usbctl/config"
	"github.com/usbctl/usbctl/controller/api"
	"github.com/usbctl/usbctl/reconcile"
	"github.com/usbctl/usbctl/udevsrc"
	"github.com/usbctl/usbctl/virt"
)

func newSnapshotCmd(sock *socketFlag) *cobra.Command {
	var (
		uri     string
		configs []string
		out     string
	)
	cmd := &cobra.Command{
		Use:   "snapshot",
		Short: "Write the observed state (devices, domains, hostdevs) as JSON for plan --from or a bug report",
		Long: `Snapshot records what usbctl observes on this host — every USB device udev
knows and every libvirt domain with its state and USB hostdevs — in the
format usbctl plan --from reads (docs/snapshot.md). Attach it, with your
config, to a bug report: the maintainers can replay your exact plan.

It reads udev and libvirt directly (libvirt read-only), so it works when
usbctld is stopped. The libvirt URI is --uri, else the config's
libvirt { uri }, else ` + config.DefaultURI + `.

When a part cannot be observed (libvirtd is not running, udev cannot be
read), snapshot still writes the rest, lists the missing part with the
reason under "unobserved" in the JSON, says so on stderr, and exits 1.

If usbctld answers on its socket, its runtime assignments (usbctl attach,
detach, move, answered offers) are recorded too, so the replay places those
devices as usbctld does.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			warn := cmd.ErrOrStderr()
			if uri == "" {
				uri = uriFromConfig(warn, configs)
			}
			w := cmd.OutOrStdout()
			if out != "" && out != "-" {
				f, err := os.Create(out)
				if err != nil {
					return fmt.Errorf("snapshot: %w", err)
				}
				defer f.Close()
				w = f
			}
			snap := takeSnapshot(cmd.Context(), uri, udevsrc.New(slog.New(slog.DiscardHandler)), virt.ListDomainsAt)
			sctx, cancel := context.WithTimeout(cmd.Context(), 2*time.Second)
			snap.Overrides = assignmentsOf(sctx, sock.client(), snap.Devices)
			cancel()
			if err := writeJSON(w, snap); err != nil {
				return fmt.Errorf("snapshot: %w", err)
			}
			// What could not be observed is in the file, and said here;
			// the exit status says the snapshot is incomplete.
			for _, u := range snap.Unobserved {
				fmt.Fprintf(warn, "usbctl: snapshot incomplete: %s not observed: %s\n", u.Part, safe(u.Error))
			}
			if len(snap.Unobserved) > 0 {
				return exitCode(1)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&uri, "uri", "", "libvirt URI (default: the config's, else "+config.DefaultURI+")")
	cmd.Flags().StringSliceVar(&configs, "config", nil, "config to take the libvirt URI from (default "+config.DefaultPath+")")
	cmd.Flags().StringVarP(&out, "output", "o", "", "write to this file instead of stdout")
	return cmd
}

// assignmentsOf asks usbctld for its runtime assignments, as Plan gets
// them: by the key of the present device each names. None when usbctld
// does not answer.
func assignmentsOf(ctx context.Context, c *api.Client, devs []reconcile.Device) []reconcile.Override {
	st, err := c.Status(ctx)
	if err != nil {
		return nil
	}
	var out []reconcile.Override
	for _, o := range st.Overrides {
		for _, d := range devs {
			if o.Device.Is(d) {
				out = append(out, reconcile.Override{Key: d.Key(), Domain: o.Domain, Source: o.Describe()})
			}
		}
	}
	return out
}

// deviceLister and domainLister are what a snapshot reads: udev's devices
// and libvirt's domains.
type deviceLister interface {
	List(ctx context.Context) ([]reconcile.Device, error)
}

type domainLister func(ctx context.Context, uri string) ([]reconcile.Domain, error)

// takeSnapshot observes what it can. A part that cannot be read (libvirtd
// down, udev unreadable) is left empty and listed in Unobserved with why,
// and the rest is still recorded: a snapshot is most wanted when something
// is broken.
func takeSnapshot(ctx context.Context, uri string, devices deviceLister, domains domainLister) reconcile.Snapshot {
	host, _ := os.Hostname()
	snap := reconcile.Snapshot{
		Version: reconcile.SnapshotVersion, Host: host,
		TakenAt:  time.Now().UTC().Format(time.RFC3339),
		Observed: reconcile.Observed{Devices: []reconcile.Device{}, Domains: []reconcile.Domain{}},
	}
	if devs, err := devices.List(ctx); err != nil {
		snap.Unobserved = append(snap.Unobserved, reconcile.Unobserved{Part: reconcile.PartDevices, Error: fmt.Sprintf("udev: %v", err)})
	} else {
		snap.Devices = devs
	}
	if doms, err := domains(ctx, uri); err != nil {
		snap.Unobserved = append(snap.Unobserved, reconcile.Unobserved{Part: reconcile.PartDomains,
			Error: fmt.Sprintf("%v (is libvirtd running? pass --uri if usbctld uses another libvirt than %s)", err, uri)})
	} else {
		snap.Domains = doms
	}
	return snap
}

// uriFromConfig is the config's libvirt URI, or the default when there is
// no config or it is invalid (a snapshot is most wanted when things are
// broken), saying which.
func uriFromConfig(warn io.Writer, configs []string) string {
	if len(configs) == 0 {
		configs = config.DefaultPaths()
	}
	for _, p := range configs {
		if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
			fmt.Fprintf(warn, "usbctl: no config at %s, using %s (pass --uri to choose)\n", p, config.DefaultURI)
			return config.DefaultURI
		}
	}
	cfg, diags := config.Load(configs...)
	if diags.HasErrors() || cfg == nil {
		fmt.Fprintf(warn, "usbctl: config %s is invalid (usbctl check shows why), using %s (pass --uri to choose)\n", joinPaths(configs), config.DefaultURI)
		return config.DefaultURI
	}
	return cfg.LibvirtURI
}
