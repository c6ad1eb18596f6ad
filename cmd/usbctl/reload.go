package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newReloadCmd(sock *socketFlag) *cobra.Command {
	return &cobra.Command{
		Use:   "reload",
		Short: "Make usbctld re-read its config (root, or usbctld --control-group)",
		Long: `Reload makes usbctld re-read its config files, as systemctl reload usbctld
(SIGHUP) does, and prints what the checker said. An invalid config is
rejected whole: the rules in force stay, usbctl status shows the rejection,
and reload exits 1.

Reloading is a change: usbctld allows it to root and to the members of the
group given to usbctld --control-group (as their primary or supplementary
group), and logs it with the caller's uid. Others get an error that says so.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			res, err := sock.client().Reload(cmd.Context())
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			for _, d := range res.Diagnostics {
				fmt.Fprintln(w, safe(d))
			}
			if !res.Applied {
				fmt.Fprintln(w, "reload rejected: the config in force stays; fix the errors above (usbctl check) and reload again")
				return exitCode(1)
			}
			fmt.Fprintln(w, "config reloaded")
			return nil
		},
	}
}
