package main

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/usbctl/usbctl/override"
)

func newPendingCmd(sock *socketFlag) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use: "pending",
		Example: `  usbctl pending
  usbctl attach 1:9 --save   # yes, and from now on`,
		Short: "Devices waiting on the host for an answer (mode \"ask\")",
		Long: `Pending lists the offers usbctld holds: devices that a domain in mode "ask"
(or an ask device rule) would get, kept on the host until someone answers.
Answer with usbctl attach DEVICE (to the domain offered; --save remembers it
as a rule) or usbctl detach DEVICE (keep it on the host; --save: for good),
or with the buttons of usbctl agent's desktop notifications. An offer nobody
answers in time stays on the host until the device is unplugged
(usbctld --ask-timeout).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := sock.client().Status(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				offers := st.Offers
				if offers == nil {
					offers = []override.Offer{}
				}
				return writeJSON(cmd.OutOrStdout(), offers)
			}
			return printPending(cmd.OutOrStdout(), st.Offers, time.Now())
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the offers as JSON")
	return cmd
}

func printPending(w io.Writer, offers []override.Offer, now time.Time) error {
	if len(offers) == 0 {
		fmt.Fprintln(w, "no device is waiting for an answer")
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "DEVICE\tID\tPORT\tNAME\tOFFERED TO\tSINCE\tTO THE HOST IN")
	for _, o := range offers {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", o.Device.Key(), safe(o.Device.ID()), cell(o.Device.Port, 16), cell(deviceName(o.Device), 32),
			cell(o.Domain, 24), ago(now.Sub(o.Since))+" ago", ago(o.Expires.Sub(now)))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "\nanswer: usbctl attach DEVICE [--save]   or   usbctl detach DEVICE [--save]")
	return nil
}
