package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/usbctl/usbctl/config"
	"github.com/usbctl/usbctl/reconcile"
	"github.com/usbctl/usbctl/udevsrc"
	"github.com/usbctl/usbctl/virt"
)

func newSnapshotCmd() *cobra.Command {
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
libvirt { uri }, else ` + config.DefaultURI + `.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if uri == "" {
				uri = uriFromConfig(cmd.ErrOrStderr(), configs)
			}
			devs, err := udevsrc.New(slog.New(slog.DiscardHandler)).List(cmd.Context())
			if err != nil {
				return err
			}
			doms, err := virt.ListDomainsAt(cmd.Context(), uri)
			if err != nil {
				return fmt.Errorf("libvirt %s: %w (pass --uri if usbctld uses another)", uri, err)
			}
			host, _ := os.Hostname()
			snap := reconcile.Snapshot{
				Version: reconcile.SnapshotVersion, Host: host,
				TakenAt:  time.Now().UTC().Format(time.RFC3339),
				Observed: reconcile.Observed{Devices: devs, Domains: doms},
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
			return writeJSON(w, snap)
		},
	}
	cmd.Flags().StringVar(&uri, "uri", "", "libvirt URI (default: the config's, else "+config.DefaultURI+")")
	cmd.Flags().StringSliceVar(&configs, "config", nil, "config to take the libvirt URI from (default "+config.DefaultPath+")")
	cmd.Flags().StringVarP(&out, "output", "o", "", "write to this file instead of stdout")
	return cmd
}

// uriFromConfig is the config's libvirt URI, or the default when the
// config cannot be read (a snapshot is most wanted when things are broken).
func uriFromConfig(warn io.Writer, configs []string) string {
	if len(configs) == 0 {
		configs = config.DefaultPaths()
	}
	cfg, diags := config.Load(configs...)
	if diags.HasErrors() || cfg == nil {
		fmt.Fprintf(warn, "usbctl: config unreadable, using %s (pass --uri to choose)\n", config.DefaultURI)
		return config.DefaultURI
	}
	return cfg.LibvirtURI
}
