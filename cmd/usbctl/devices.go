package main

import (
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/usbctl/usbctl/reconcile"
	"github.com/usbctl/usbctl/udevsrc"
)

func newDevicesCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "devices",
		Short: "The host's USB devices as a tree by port, with what rules match on",
		Long: `Devices lists the USB devices udev knows, as a tree by physical port (hubs
are branches): bus:device, port path, vendor:product, serial, names and
class — the facts a device block matches on. It reads udev directly and needs
neither usbctld nor libvirt.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			devs, err := udevsrc.New(slog.New(slog.DiscardHandler)).List(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), devs)
			}
			return printDeviceTree(cmd.OutOrStdout(), devs)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the devices as JSON")
	return cmd
}

// parentPort is the port path of the hub a device hangs off: "1-4.2" →
// "1-4", "1-4" → "usb1"; "" for a root hub.
func parentPort(port string) string {
	if strings.HasPrefix(port, "usb") {
		return ""
	}
	if i := strings.LastIndexByte(port, '.'); i >= 0 {
		return port[:i]
	}
	if i := strings.IndexByte(port, '-'); i >= 0 {
		return "usb" + port[:i]
	}
	return ""
}

// printDeviceTree prints devices as a tree by port. A device whose parent
// hub is not in the list (udev raced a plug) is shown at the top level
// rather than dropped.
func printDeviceTree(w io.Writer, devs []reconcile.Device) error {
	byPort := make(map[string]bool, len(devs))
	for _, d := range devs {
		byPort[d.Port] = true
	}
	children := make(map[string][]reconcile.Device)
	var roots []reconcile.Device
	for _, d := range devs {
		p := parentPort(d.Port)
		if p == "" || !byPort[p] {
			roots = append(roots, d)
			continue
		}
		children[p] = append(children[p], d)
	}
	less := func(ds []reconcile.Device) {
		sort.Slice(ds, func(i, j int) bool { return portLess(ds[i].Port, ds[j].Port) })
	}
	less(roots)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PORT\tBUS:DEV\tID\tCLASS\tSERIAL\tNAME")
	var walk func(d reconcile.Device, prefix, branch string)
	walk = func(d reconcile.Device, prefix, branch string) {
		serial := "-"
		if d.Serial != "" {
			serial = cell(d.Serial, 24)
		}
		fmt.Fprintf(tw, "%s%s%s\t%s\t%s\t%s\t%s\t%s\n", prefix, branch, cell(d.Port, 24), d.Key(), safe(d.ID()), className(d), serial, cell(deviceName(d), 40))
		kids := children[d.Port]
		less(kids)
		next := prefix
		switch branch {
		case "├─ ":
			next += "│  "
		case "└─ ":
			next += "   "
		}
		for i, k := range kids {
			b := "├─ "
			if i == len(kids)-1 {
				b = "└─ "
			}
			walk(k, next, b)
		}
	}
	for _, r := range roots {
		walk(r, "", "")
	}
	return tw.Flush()
}

// className names a device's class, or its interfaces' classes when the
// device class says "per interface".
func className(d reconcile.Device) string {
	if d.IsHub() {
		return "hub"
	}
	if d.Class != "" && d.Class != "00" {
		return classLabel(d.Class)
	}
	var names []string
	seen := map[string]bool{}
	for _, c := range d.InterfaceClasses {
		n := classLabel(c)
		if !seen[n] {
			seen[n] = true
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return "-"
	}
	return strings.Join(names, ",")
}

// portLess orders port paths numerically: 1-2 < 1-10, 1-4 < 1-4.1.
func portLess(a, b string) bool {
	na, nb := portNums(a), portNums(b)
	for i := 0; i < len(na) && i < len(nb); i++ {
		if na[i] != nb[i] {
			return na[i] < nb[i]
		}
	}
	if len(na) != len(nb) {
		return len(na) < len(nb)
	}
	return a < b
}

func portNums(p string) []int {
	p = strings.TrimPrefix(p, "usb")
	var out []int
	n, in := 0, false
	for _, r := range p {
		if r >= '0' && r <= '9' {
			n, in = n*10+int(r-'0'), true
			continue
		}
		if in {
			out = append(out, n)
		}
		n, in = 0, false
	}
	if in {
		out = append(out, n)
	}
	return out
}

// classLabel is a class's name in the config language, or its hex code.
func classLabel(code string) string {
	if n := reconcile.ClassName(code); n != "" {
		return n
	}
	return safe(code)
}
