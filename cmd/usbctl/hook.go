package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/usbctl/usbctl/config"
	"github.com/usbctl/usbctl/hook"
	"github.com/usbctl/usbctl/udevsrc"
)

// HookPath is where the libvirt qemu hook is installed (make install, the
// packages): libvirtd runs every executable in it for each operation on a
// QEMU guest.
const HookPath = "/etc/libvirt/hooks/qemu.d/usbctl"

func newHookCmd() *cobra.Command {
	var (
		configs []string
		sysfs   string
	)
	cmd := &cobra.Command{
		Use:   "hook DOMAIN OPERATION SUB-OPERATION [EXTRA]",
		Short: "The libvirt qemu hook, run by libvirtd (" + HookPath + "), not by hand",
		Long: `Hook is run by libvirtd, through ` + HookPath + `, for every
operation on a QEMU guest, with the domain XML on stdin. It acts on two:
"restore" (virsh start of a guest saved with managedsave, virsh restore)
and "migrate" (on the destination host), and does nothing for the others.

The USB devices usbctl attached are in a saved guest's state. A device
unplugged and plugged again meanwhile has a new device number, and libvirt
then failed to start the guest ("Did not find USB device"). libvirt does not
let the hook drop the device (the saved machine has it), so the hook points
it at the device that usbctl's rules give the guest now, and prints the
changed XML for libvirt to use; usbctld then finds it attached. On a
migration's destination it does the same for devices the rules do not give
the guest there. When no such device is present, the operation fails with
a message that says what to do.

libvirtd finds hooks when it starts: after installing usbctl, restart it
(systemctl restart libvirtd; running guests keep running).`,
		Args: cobra.RangeArgs(3, 4),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runHook(cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr(), args[0], args[1], configs, sysfs)
		},
	}
	cmd.Flags().StringSliceVar(&configs, "config", nil, "config file or directory; repeatable (default "+config.DefaultPath+" and "+config.DefaultDir+")")
	cmd.Flags().StringVar(&sysfs, "sysfs", "/sys", "the sysfs to read devices from")
	return cmd
}

func runHook(stdin io.Reader, stdout, stderr io.Writer, domain, op string, configs []string, sysfs string) error {
	doc, err := io.ReadAll(stdin) // always read: libvirt writes the XML for every operation
	if err != nil || !hook.Rewrites(op) {
		return nil
	}
	devs, err := udevsrc.ListSysfs(sysfs)
	if err != nil {
		// Devices that could not be read are left out; if the ones a
		// guest needs are among them, it cannot be helped here.
		fmt.Fprintf(stderr, "usbctl hook: %s %s: %v\n", op, domain, err)
	}
	in := hook.Input{Domain: domain, Op: op, XML: doc, Devices: devs}
	if len(configs) == 0 {
		configs = config.DefaultPaths()
	}
	if cfg, _ := config.Load(configs...); cfg != nil {
		in.Rules = &cfg.Rules
	} else {
		fmt.Fprintf(stderr, "usbctl hook: %s %s: config %s is missing or invalid (usbctl check shows why): no device is given to %s\n", op, domain, joinPaths(configs), domain)
	}
	out, changes, err := hook.Rewrite(in)
	switch {
	case errors.Is(err, hook.ErrUnreadable):
		// Leave XML it cannot read to libvirt rather than fail the
		// operation over it.
		fmt.Fprintf(stderr, "usbctl hook: %s %s: %v; XML left as it is\n", op, domain, err)
		return nil
	case err != nil:
		fmt.Fprintln(stderr, err)
		return exitCode(1)
	}
	for _, c := range changes {
		fmt.Fprintf(stderr, "usbctl hook: %s %s: %s\n", op, domain, c)
	}
	if out != nil {
		if _, err := stdout.Write(out); err != nil {
			return fmt.Errorf("hook: %w", err)
		}
	}
	return nil
}
