// Command usbctl is the command-line client of usbctld: it validates
// configs, explains plans, lists host devices and shows the daemon's status.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

func main() {
	if err := newRootCmd().Execute(); err != nil {
		var ec exitCode
		if asExitCode(err, &ec) {
			os.Exit(int(ec))
		}
		fmt.Fprintln(os.Stderr, "usbctl:", err)
		os.Exit(1)
	}
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "usbctl",
		Short:         "Attach host USB devices to libvirt guests by rule",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	// Each subcommand lives in its own file.
	root.AddCommand(
		newCheckCmd(),
		newPlanCmd(),
	)
	return root
}
