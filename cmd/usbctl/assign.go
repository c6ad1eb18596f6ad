package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/usbctl/usbctl/controller/api"
	"github.com/usbctl/usbctl/override"
	"github.com/usbctl/usbctl/reconcile"
)

// assignFlags are the flags of attach, detach and move.
type assignFlags struct {
	forDur    time.Duration
	untilStop bool
	save      bool
	asJSON    bool
}

func (f *assignFlags) register(cmd *cobra.Command, withDomain bool) {
	cmd.Flags().DurationVar(&f.forDur, "for", 0, "end the assignment after this long (e.g. 10m, 2h) instead of when the device is unplugged")
	if withDomain {
		cmd.Flags().BoolVar(&f.untilStop, "until-stop", false, "end the assignment when the domain stops, instead of when the device is unplugged")
		cmd.Flags().BoolVar(&f.save, "save", false, "also save it as a device rule in the domain's file under conf.d, so it holds from now on")
	} else {
		cmd.Flags().BoolVar(&f.save, "save", false, "also save an exclude block under conf.d, so the device never leaves the host")
	}
	cmd.Flags().BoolVar(&f.asJSON, "json", false, "print the result as JSON")
}

// check refuses flag combinations that mean nothing, before asking usbctld.
func (f *assignFlags) check() error {
	switch {
	case f.forDur < 0:
		return fmt.Errorf("--for %v: give a positive duration such as 10m or 2h", f.forDur)
	case f.forDur > 0 && f.untilStop:
		return errors.New("--for and --until-stop both say when the assignment ends: give one")
	case f.save && (f.forDur > 0 || f.untilStop):
		return errors.New("--save makes a rule, which holds for good: it cannot be combined with --for or --until-stop")
	}
	return nil
}

func (f *assignFlags) request(verb api.Verb, device, domain string) api.OverrideRequest {
	return api.OverrideRequest{Device: device, Domain: domain, Verb: verb, For: api.Duration(f.forDur), UntilStop: f.untilStop}
}

const deviceNames = `DEVICE is what you would call it: bus:device as usbctl status and lsusb
print it (1:5 or 001:005), a port (1-4.2), vendor:product (046d:c52b), a
serial, or a word of the maker or product name (yubikey). A name that fits
several devices is refused, with the candidates listed.`

const lifetimes = `It lasts until the device is unplugged; --for 2h ends it after a while and
--until-stop when the domain stops. It outranks every rule except an exclude,
is kept across usbctld restarts and reloads, and shows in usbctl status with
who set it, when and until when. usbctl release forgets it.`

func newAttachCmd(sock *socketFlag) *cobra.Command {
	var f assignFlags
	cmd := &cobra.Command{
		Use: "attach DEVICE [DOMAIN]",
		Example: `  usbctl attach sandisk win11 --for 10m   # lend a stick for ten minutes
  usbctl attach 1:7 win11 --save           # and keep it there from now on
  usbctl attach 1-4.2 work --until-stop    # until the guest shuts down
  usbctl attach 1:9                        # answer an offer: yes`,
		Short: "Attach a device to a running domain now, whatever the rules say",
		Long: `Attach gives DEVICE to DOMAIN at once, and keeps it there: if the device
is elsewhere it is moved. Without DOMAIN it answers an offer (a domain in mode
"ask"): the device goes to the domain it was offered to. --save also writes a
device rule for it into the domain's file under conf.d.

` + deviceNames + `

` + lifetimes + ` Changing anything needs root or usbctld's --control-group.`,
		Args:              cobra.RangeArgs(1, 2),
		ValidArgsFunction: completeArgs(sock, completeDevices, completeDomains),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := f.check(); err != nil {
				return err
			}
			domain := ""
			if len(args) == 2 {
				domain = args[1]
			}
			return runAssign(cmd.Context(), cmd.OutOrStdout(), sock.client(), f, f.request(api.VerbAttach, args[0], domain))
		},
	}
	f.register(cmd, true)
	return cmd
}

func newMoveCmd(sock *socketFlag) *cobra.Command {
	var f assignFlags
	cmd := &cobra.Command{
		Use:     "move DEVICE DOMAIN",
		Example: `  usbctl move logitech work   # the keyboard receiver to the other VM`,
		Short:   "Move a device from the domain that has it to another",
		Long: `Move detaches DEVICE from the domain that holds it and attaches it to
DOMAIN (a keyboard and mouse from one VM to the other), and keeps it there.

` + deviceNames + `

` + lifetimes,
		Args:              cobra.ExactArgs(2),
		ValidArgsFunction: completeArgs(sock, completeDevices, completeDomains),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := f.check(); err != nil {
				return err
			}
			return runAssign(cmd.Context(), cmd.OutOrStdout(), sock.client(), f, f.request(api.VerbMove, args[0], args[1]))
		},
	}
	f.register(cmd, true)
	return cmd
}

func newDetachCmd(sock *socketFlag) *cobra.Command {
	var f assignFlags
	cmd := &cobra.Command{
		Use: "detach DEVICE",
		Example: `  usbctl detach yubikey --for 5m   # back to the host for a moment
  usbctl detach 1:9 --save         # answer an offer: never`,
		Short: "Give a device back to the host, and keep it there",
		Long: `Detach takes DEVICE out of the domain that has it and keeps it on the host,
even if a rule wants it elsewhere (the YubiKey back to the host for a moment:
detach yubikey --for 5m). It also answers an offer with "no". --save writes
an exclude block for it under conf.d, so it never leaves the host.

` + deviceNames + `

` + lifetimes,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeArgs(sock, completeDevices),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := f.check(); err != nil {
				return err
			}
			return runAssign(cmd.Context(), cmd.OutOrStdout(), sock.client(), f, f.request(api.VerbDetach, args[0], ""))
		},
	}
	f.register(cmd, false)
	return cmd
}

func newReleaseCmd(sock *socketFlag) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:     "release DEVICE",
		Example: `  usbctl release yubikey`,
		Short:   "Forget what attach, detach or move said about a device: the rules decide again",
		Long: `Release removes the runtime assignment of DEVICE. Where the device goes
then is what the rules say, as if the assignment had never been made; a
device already attached stays where it is while that domain still wants it.

` + deviceNames,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeArgs(sock, completeDevices),
		RunE: func(cmd *cobra.Command, args []string) error {
			res, err := sock.client().Release(cmd.Context(), args[0])
			if err != nil {
				return explainDeviceError(cmd.OutOrStdout(), err)
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), res)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "released %s", describeDevice(res.Device))
			if o := res.Replaced; o != nil {
				fmt.Fprintf(w, " (was: %s)", describeOverride(*o))
			}
			fmt.Fprintln(w)
			printOutcome(w, res.Outcome)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}

// assignAPI is what the assignment commands need from usbctld.
type assignAPI interface {
	SetOverride(ctx context.Context, r api.OverrideRequest) (api.OverrideResult, error)
	configAPI
}

func runAssign(ctx context.Context, w io.Writer, c assignAPI, f assignFlags, req api.OverrideRequest) error {
	res, err := c.SetOverride(ctx, req)
	if err != nil {
		return explainDeviceError(w, err)
	}
	if f.asJSON && !f.save {
		return writeJSON(w, res)
	}
	o := res.Override
	switch {
	case o == nil:
		return fmt.Errorf("usbctld set no override for %s", describeDevice(res.Device))
	case o.Host():
		fmt.Fprintf(w, "kept %s on the host, %s\n", describeDevice(res.Device), describeLifetime(*o))
	case res.From != "" && res.From != o.Domain:
		fmt.Fprintf(w, "moved %s from %s to %s, %s\n", describeDevice(res.Device), safe(res.From), safe(o.Domain), describeLifetime(*o))
	default:
		fmt.Fprintf(w, "attached %s to %s, %s\n", describeDevice(res.Device), safe(o.Domain), describeLifetime(*o))
	}
	printOutcome(w, res.Outcome)
	if !f.save {
		return nil
	}
	why := fmt.Sprintf("usbctl %s --save %s", req.Verb, res.Device.Key())
	if o.Host() {
		return saveExclude(ctx, w, c, res.Device, why)
	}
	return saveDevice(ctx, w, c, o.Domain, res.Device, "", why)
}

func printOutcome(w io.Writer, out api.Outcome) {
	switch {
	case !out.Synced:
		fmt.Fprintln(w, "  usbctld has not synced yet; usbctl status shows when it has")
	case out.Pending:
		fmt.Fprintf(w, "  not done yet: %s (retried; usbctl status shows it)\n", safe(out.LastError))
	case out.AttachedTo != "":
		fmt.Fprintf(w, "  now in %s\n", safe(out.AttachedTo))
	default:
		fmt.Fprintf(w, "  now on the host: %s\n", safe(out.Reason))
	}
}

// describeDevice is "001:005 SanDisk Ultra Fit (0781:5583, port 1-1)",
// terminal-safe.
func describeDevice(d reconcile.Device) string {
	return fmt.Sprintf("%s %s (%s, port %s)", d.Key(), safe(deviceName(d)), safe(d.ID()), safe(d.Port))
}

func describeLifetime(o override.Override) string {
	switch o.Lifetime {
	case override.For:
		return "until " + o.Until.Local().Format("2006-01-02 15:04:05")
	case override.UntilStop:
		return "until " + safe(o.Domain) + " stops"
	}
	return "until it is unplugged"
}

func describeOverride(o override.Override) string {
	to := "on the host"
	if !o.Host() {
		to = "to " + safe(o.Domain)
	}
	return fmt.Sprintf("%s by %s, %s", to, safe(o.SetBy.String()), describeLifetime(o))
}

// explainDeviceError prints the candidates of an ambiguous device name.
func explainDeviceError(w io.Writer, err error) error {
	var amb *api.AmbiguousError
	if !errors.As(err, &amb) {
		return err
	}
	fmt.Fprintf(w, "%s:\n", safe(amb.Message))
	printCandidates(w, amb.Candidates)
	return exitCode(1)
}

func printCandidates(w io.Writer, devs []reconcile.Device) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  DEVICE\tID\tPORT\tSERIAL\tNAME")
	for _, d := range devs {
		serial := d.Serial
		if serial == "" {
			serial = "-"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", d.Key(), safe(d.ID()), cell(d.Port, 16), cell(serial, 24), cell(deviceName(d), 40))
	}
	_ = tw.Flush()
}
