package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/usbctl/usbctl/internal/oldconf"
)

func newImportCmd() *cobra.Command {
	var domain string
	cmd := &cobra.Command{
		Use:   "import OLDCONF",
		Short: "Translate the older bash tool's config into a domain block",
		Long: `Import reads the config file of the older bash tool (a devlist array of
"vendor:product" ids and a mode of whitelist, blacklist or matchall) and prints
the equivalent domain block on standard output:

  whitelist  mode = "allow", one device block per devlist entry
  blacklist  mode = "deny", the devlist entries are the devices refused
  matchall   mode = "all", devlist is not used

"0b05:" becomes "0b05:*" (every product of vendor 0b05) and ":1872" becomes
"*:1872" (product 1872 of every vendor). The VM is named by --domain, or else
by the old config's vm=, domain= or VM_NAME= variable.

The file is read, never run: only plain assignments are understood. What could
not be carried over (entries that are not ids, values computed by commands,
other variables and commands) is listed on standard error.

  usbctl import --domain win11 /etc/old-usb.conf > /etc/usbctl/conf.d/win11.hcl
  usbctl check && systemctl reload usbctld`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			out, notes, err := oldconf.Translate(args[0], data, domain)
			for _, n := range notes {
				fmt.Fprintln(cmd.ErrOrStderr(), "usbctl import: "+n)
			}
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(out)
			return err
		},
	}
	cmd.Flags().StringVar(&domain, "domain", "", "libvirt domain (VM) name, as virsh list --all shows it; overrides the old config's")
	return cmd
}
