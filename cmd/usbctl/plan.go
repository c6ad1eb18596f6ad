package main

import (
	"fmt"
	"io"
	"os"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/usbctl/usbctl/config"
	"github.com/usbctl/usbctl/reconcile"
)

func newPlanCmd(sock *socketFlag) *cobra.Command {
	var (
		configs []string
		from    string
		asJSON  bool
	)
	cmd := &cobra.Command{
		Use:   "plan",
		Short: "Dry run: which device would go where, and which rule says so",
		Long: `Plan shows what usbctld would do, changing nothing.

With --from it replays a snapshot (written by usbctl snapshot, or by hand in
the format of docs/snapshot.md) against --config: useful to test rules, or to
reproduce a bug report. The snapshot is checked as strictly as usbctld checks
what udev reports (bus and device numbers in range, hex ids, no device
twice, ...): every problem is printed with its JSON path, and nothing is
planned. Without --from it asks the running daemon for the plan
on this host as it sees it now.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if from == "" {
				res, err := sock.client().Plan(cmd.Context())
				if err != nil {
					return err
				}
				return printPlan(cmd.OutOrStdout(), res, asJSON)
			}
			if len(configs) == 0 {
				configs = config.DefaultPaths()
			}
			cfg, diags := config.Load(configs...)
			if diags.HasErrors() {
				_ = diags.Write(cmd.ErrOrStderr(), 0, false)
				return fmt.Errorf("config %s is invalid (usbctl check shows the same)", joinPaths(configs))
			}
			snap, err := readSnapshot(cmd.ErrOrStderr(), from)
			if err != nil {
				return err
			}
			res := reconcile.Plan(cfg.Rules, snap.Observed, snap.Overrides)
			return printPlan(cmd.OutOrStdout(), res, asJSON)
		},
	}
	cmd.Flags().StringSliceVar(&configs, "config", nil, "config file or directory; repeatable (default "+config.DefaultPath+" and "+config.DefaultDir+")")
	cmd.Flags().StringVar(&from, "from", "", "plan for this snapshot file instead of the live host")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the plan as JSON")
	return cmd
}

// readSnapshot reads and checks a snapshot. Its problems, each with its
// JSON path, and its warnings (unknown fields, parts not observed) go to
// warn; any problem refuses the snapshot.
func readSnapshot(warn io.Writer, path string) (reconcile.Snapshot, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return reconcile.Snapshot{}, fmt.Errorf("read snapshot: %w", err)
	}
	snap, errs, warns := reconcile.ParseSnapshot(b)
	for _, e := range errs {
		fmt.Fprintf(warn, "snapshot %s: %s\n", path, safe(e.Error()))
	}
	for _, w := range warns {
		fmt.Fprintf(warn, "snapshot %s: warning: %s\n", path, safe(w.Error()))
	}
	if len(errs) > 0 {
		fmt.Fprintf(warn, "usbctl: snapshot %s is invalid (%s): fix it, or write a new one with usbctl snapshot\n", path, plural(len(errs), "problem"))
		return reconcile.Snapshot{}, exitCode(1)
	}
	for _, u := range snap.Unobserved {
		fmt.Fprintf(warn, "snapshot %s: warning: its %s were not observed (%s); the plan below takes the host to have none\n", path, u.Part, safe(u.Error))
	}
	return snap, nil
}

func printPlan(w io.Writer, res reconcile.Result, asJSON bool) error {
	if asJSON {
		return writeJSON(w, res)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if len(res.Actions) == 0 {
		fmt.Fprintln(tw, "ACTIONS: none, everything is where the rules want it")
	} else {
		fmt.Fprintln(tw, "ACTION\tDOMAIN\tBUS:DEV\tID\tPORT\tNAME\tREASON")
		for _, a := range res.Actions {
			id, port, name := "-", "-", "-"
			if a.Device != nil {
				id, port, name = a.Device.ID(), a.Device.Port, deviceName(*a.Device)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", a.Kind, cell(a.Domain, 24), a.Key, safe(id), cell(port, 16), cell(name, 32), safe(a.Reason))
		}
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "DEVICE\tID\tPORT\tNAME\tGOES TO\tWHY")
	for _, p := range res.Placements {
		to := "-"
		if p.Domain != "" {
			to = p.Domain
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", p.Device.Key(), safe(p.Device.ID()), cell(p.Device.Port, 16), cell(deviceName(p.Device), 32), cell(to, 24), safe(p.Reason))
	}
	if len(res.Conflicts) > 0 {
		fmt.Fprintln(tw)
		fmt.Fprintln(tw, "CONFLICT\tDOMAINS\tREASON")
		for _, c := range res.Conflicts {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", c.Key, safe(joinPaths(c.Domains)), safe(c.Reason))
		}
	}
	return tw.Flush()
}

// deviceName is "Manufacturer Product" as the device reports them.
func deviceName(d reconcile.Device) string {
	switch {
	case d.Manufacturer != "" && d.ProductName != "":
		return d.Manufacturer + " " + d.ProductName
	case d.ProductName != "":
		return d.ProductName
	case d.Manufacturer != "":
		return d.Manufacturer
	}
	return "-"
}
