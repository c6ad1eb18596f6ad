package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/usbctl/usbctl/config"
	"github.com/usbctl/usbctl/controller/api"
	"github.com/usbctl/usbctl/internal/ruleedit"
	"github.com/usbctl/usbctl/reconcile"
)

// configAPI is what saving a rule needs from usbctld: the file to edit, a
// way to have it checked and written, and the present devices.
type configAPI interface {
	ConfigFileFor(ctx context.Context, domain string) (api.ConfigFile, error)
	WriteConfig(ctx context.Context, w api.ConfigWrite) (api.ConfigWritten, error)
	Devices(ctx context.Context, name string) ([]reconcile.Device, error)
}

const ruleFiles = `The CLI edits the file with hclwrite, keeping every comment and the layout,
and hands the result to usbctld, which checks it with its config parser
(together with every other config file), replaces the file atomically only
if it is valid and unchanged since it was read, and reloads. usbctld writes
only under its conf.d directory: one file per domain (conf.d/DOMAIN.hcl,
created if needed) and conf.d/excludes.hcl. A domain defined in another file
is refused with where it is. Needs root or usbctld's --control-group
(checked with the peer's credentials, and logged with its uid).`

func newRuleCmd(sock *socketFlag) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rule",
		Short: "Add or remove device rules and excludes from the command line",
		Long:  "Rule adds and removes device blocks (and exclude blocks) in usbctld's config.\n\n" + ruleFiles,
	}
	cmd.AddCommand(newRuleAddCmd(sock), newRuleRemoveCmd(sock))
	return cmd
}

type ruleFlags struct {
	exclude bool
	label   string
	ids     []string
	serial  string
	port    string
}

func newRuleAddCmd(sock *socketFlag) *cobra.Command {
	var f ruleFlags
	cmd := &cobra.Command{
		Use: "add {DOMAIN | --exclude} [DEVICE]",
		Example: `  usbctl rule add win11 1:7                          # the present device 1:7, by id and serial
  usbctl rule add work --ids 0483:5740,0483:df11 --label stm32
  usbctl rule add --exclude 04d9:0006                # the host's keyboard never leaves`,
		Short: "Add a device block to a domain (or an exclude block)",
		Long: `Rule add writes a device block for DOMAIN: for the present DEVICE (by its
vendor:product, and its serial if it has one), or for the criteria given by
--ids, --serial and --port. With --exclude it writes an exclude block: the
device never leaves the host.

` + deviceNames + `

` + ruleFiles,
		Args: func(cmd *cobra.Command, args []string) error {
			if f.exclude {
				return cobra.RangeArgs(0, 1)(cmd, args)
			}
			return cobra.RangeArgs(1, 2)(cmd, args)
		},
		ValidArgsFunction: func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
			if f.exclude {
				return completeArgs(sock, completeDevices)(cmd, args, toComplete)
			}
			return completeArgs(sock, completeDomains, completeDevices)(cmd, args, toComplete)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			domain, device := "", ""
			switch {
			case f.exclude && len(args) == 1:
				device = args[0]
			case !f.exclude:
				domain = args[0]
				if len(args) == 2 {
					device = args[1]
				}
			}
			crit, err := f.criteria(device == "")
			if err != nil {
				return err
			}
			c := sock.client()
			ctx := cmd.Context()
			w := cmd.OutOrStdout()
			var d *reconcile.Device
			if device != "" {
				devs, err := c.Devices(ctx, device)
				if err != nil {
					return explainDeviceError(w, err)
				}
				if len(devs) != 1 {
					return fmt.Errorf("usbctld named %d devices for %q", len(devs), device)
				}
				d = &devs[0]
			}
			why := "usbctl rule add " + strings.Join(args, " ")
			if f.exclude {
				why = "usbctl rule add --exclude " + strings.Join(args, " ")
			}
			return saveRule(ctx, w, c, domain, d, crit, f.label, why)
		},
	}
	cmd.Flags().BoolVar(&f.exclude, "exclude", false, "write an exclude block (no domain ever gets the device) instead of a device rule")
	cmd.Flags().StringVar(&f.label, "label", "", "the block's label (default: from the product name, or the criteria)")
	cmd.Flags().StringSliceVar(&f.ids, "ids", nil, "vendor:product to match (repeatable, or comma-separated; wildcards as in the config: 0b05:*)")
	cmd.Flags().StringVar(&f.serial, "serial", "", "serial to match")
	cmd.Flags().StringVar(&f.port, "port", "", `port to match: "1-4.2", or "1-4.*" for everything behind port 1-4`)
	return cmd
}

// criteria checks the criteria flags; without a device, some must be given.
func (f ruleFlags) criteria(required bool) (ruleedit.Criteria, error) {
	c := ruleedit.Criteria{Serial: f.serial, Port: f.port}
	for _, id := range f.ids {
		if _, err := reconcile.ParseIDPattern(id); err != nil {
			return c, fmt.Errorf("--ids %s: %w", id, err)
		}
		c.IDs = append(c.IDs, id)
	}
	if f.port != "" {
		if _, err := reconcile.ParsePortPattern(f.port); err != nil {
			return c, fmt.Errorf("--port %s: %w", f.port, err)
		}
	}
	if required && len(c.IDs) == 0 && c.Serial == "" && c.Port == "" {
		return c, errors.New("say which device: name a present DEVICE, or give --ids, --serial or --port")
	}
	return c, nil
}

func newRuleRemoveCmd(sock *socketFlag) *cobra.Command {
	var exclude bool
	cmd := &cobra.Command{
		Use: "remove {DOMAIN LABEL | --exclude LABEL}",
		Example: `  usbctl rule remove win11 sandisk-ultra-fit
  usbctl rule remove --exclude keyboard`,
		Short: "Remove a device block from a domain (or an exclude block)",
		Long: `Rule remove deletes the device block LABEL of DOMAIN, with the comment lines
right above it, from the domain's file under conf.d; with --exclude, the
exclude block LABEL from conf.d/excludes.hcl.

` + ruleFiles,
		Args: func(cmd *cobra.Command, args []string) error {
			if exclude {
				return cobra.ExactArgs(1)(cmd, args)
			}
			return cobra.ExactArgs(2)(cmd, args)
		},
		ValidArgsFunction: func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
			if exclude {
				return completeArgs(sock, completeLabels)(cmd, append([]string{""}, args...), toComplete)
			}
			return completeArgs(sock, completeDomains, completeLabels)(cmd, args, toComplete)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			domain, label := "", args[0]
			if !exclude {
				domain, label = args[0], args[1]
			}
			return removeRule(cmd.Context(), cmd.OutOrStdout(), sock.client(), domain, label, "usbctl rule remove "+strings.Join(args, " "))
		},
	}
	cmd.Flags().BoolVar(&exclude, "exclude", false, "remove an exclude block")
	return cmd
}

// saveDevice writes a device rule for d into the domain's file.
func saveDevice(ctx context.Context, w io.Writer, c configAPI, domain string, d reconcile.Device, label, why string) error {
	return saveRule(ctx, w, c, domain, &d, ruleedit.Criteria{}, label, why)
}

// saveExclude writes an exclude block for d.
func saveExclude(ctx context.Context, w io.Writer, c configAPI, d reconcile.Device, why string) error {
	return saveRule(ctx, w, c, "", &d, ruleedit.Criteria{}, "", why)
}

// saveRule adds a device block for domain (an exclude block when domain is
// "") for the device d and/or the criteria, and has usbctld write it.
func saveRule(ctx context.Context, w io.Writer, c configAPI, domain string, d *reconcile.Device, crit ruleedit.Criteria, label, why string) error {
	if d != nil {
		crit = criteriaOf(*d, crit)
	}
	f, err := c.ConfigFileFor(ctx, domain)
	if err != nil {
		return err
	}
	what := fmt.Sprintf("domain %q", domain)
	if domain == "" {
		what = "the excludes"
	}
	// Already there? A block of this file that matches the device exactly.
	if d != nil && f.Exists {
		if cfg, _ := config.Parse(config.Source{Name: f.Path, Data: f.Content}); cfg != nil {
			if l, ok := savedAs(cfg.Rules, domain, *d); ok {
				fmt.Fprintf(w, "%s already has a block for %s in %s: %s; nothing to save\n", what, describeDevice(*d), f.Path, safe(l))
				return nil
			}
		}
	}
	taken, err := ruleedit.Labels(f.Content, f.Path, domain)
	if err != nil {
		return err
	}
	if label == "" {
		label = uniqueLabel(labelFor(d, crit), taken)
	}
	b := ruleedit.Block{Label: label, Criteria: crit, Comment: "added by " + why}
	if d != nil {
		b.Comment += ": " + deviceName(*d)
	}
	var out []byte
	if domain == "" {
		out, err = ruleedit.AddExclude(f.Content, f.Path, b)
	} else {
		out, err = ruleedit.AddDevice(f.Content, f.Path, domain, b)
	}
	if err != nil {
		return err
	}
	base := f.SHA256
	if !f.Exists {
		base = ""
	}
	res, err := c.WriteConfig(ctx, api.ConfigWrite{Name: f.Name, BaseSHA256: base, Content: out, Why: why})
	if err != nil {
		return err
	}
	for _, l := range res.Diagnostics {
		fmt.Fprintln(w, safe(l))
	}
	if !res.Written {
		fmt.Fprintf(w, "not saved: the config would not be valid (above); %s is unchanged\n", safe(res.Path))
		return exitCode(1)
	}
	kind := "device"
	if domain == "" {
		kind = "exclude"
	}
	fmt.Fprintf(w, "saved %s %q for %s in %s\n", kind, safe(label), what, safe(res.Path))
	return reportReload(w, res.Reload)
}

// removeRule removes the device block (or exclude block) label.
func removeRule(ctx context.Context, w io.Writer, c configAPI, domain, label, why string) error {
	f, err := c.ConfigFileFor(ctx, domain)
	if err != nil {
		return err
	}
	if !f.Exists {
		return fmt.Errorf("%s does not exist: nothing to remove (usbctl rule edits only files under conf.d)", f.Path)
	}
	var out []byte
	if domain == "" {
		out, err = ruleedit.RemoveExclude(f.Content, f.Path, label)
	} else {
		out, err = ruleedit.RemoveDevice(f.Content, f.Path, domain, label)
	}
	if err != nil {
		return err
	}
	res, err := c.WriteConfig(ctx, api.ConfigWrite{Name: f.Name, BaseSHA256: f.SHA256, Content: out, Why: why})
	if err != nil {
		return err
	}
	for _, l := range res.Diagnostics {
		fmt.Fprintln(w, safe(l))
	}
	if !res.Written {
		fmt.Fprintf(w, "not removed: the config would not be valid (above); %s is unchanged\n", safe(res.Path))
		return exitCode(1)
	}
	fmt.Fprintf(w, "removed %q from %s\n", safe(label), safe(res.Path))
	return reportReload(w, res.Reload)
}

func reportReload(w io.Writer, r api.ReloadResult) error {
	if !r.Applied {
		for _, d := range r.Diagnostics {
			fmt.Fprintln(w, safe(d))
		}
		fmt.Fprintln(w, "the reload was rejected: the rules in force stay; fix the errors above and run usbctl reload")
		return exitCode(1)
	}
	fmt.Fprintln(w, "config reloaded")
	return nil
}

// criteriaOf pins the device: its vendor:product, and its serial when it
// has one HCL can hold; extra criteria given by flags are kept.
func criteriaOf(d reconcile.Device, extra ruleedit.Criteria) ruleedit.Criteria {
	c := extra
	if len(c.IDs) == 0 {
		c.IDs = []string{d.ID()}
	}
	if c.Serial == "" && d.Serial != "" && utf8.ValidString(d.Serial) {
		c.Serial = d.Serial
	}
	return c
}

// savedAs finds a block that already places (or excludes) d exactly.
func savedAs(r reconcile.Rules, domain string, d reconcile.Device) (string, bool) {
	if domain == "" {
		for _, m := range r.Excludes {
			if ok, exact := reconcile.Matches(m, d); ok && exact {
				return "exclude " + m.Label, true
			}
		}
		return "", false
	}
	for _, dr := range r.Domains {
		if dr.Name != domain {
			continue
		}
		for _, m := range dr.Devices {
			if ok, exact := reconcile.Matches(m, d); ok && exact {
				return "device " + m.Label, true
			}
		}
	}
	return "", false
}

// labelFor names a block after the product ("sandisk-ultra-fit"), or after
// its criteria.
func labelFor(d *reconcile.Device, c ruleedit.Criteria) string {
	var src string
	switch {
	case d != nil && deviceName(*d) != "-":
		src = deviceName(*d)
	case d != nil:
		src = d.Vendor + "-" + d.Product
	case len(c.IDs) > 0:
		src = c.IDs[0]
	case c.Serial != "":
		src = "serial-" + c.Serial
	default:
		src = "port-" + c.Port
	}
	var parts []string
	for _, f := range strings.FieldsFunc(strings.ToLower(src), func(r rune) bool {
		return r > unicode.MaxASCII || !(unicode.IsLetter(r) || unicode.IsDigit(r))
	}) {
		parts = append(parts, f)
	}
	l := strings.Join(parts, "-")
	if len(l) > 40 {
		l = strings.TrimRight(l[:40], "-")
	}
	if l == "" {
		l = "device"
	}
	return l
}

func uniqueLabel(l string, taken []string) string {
	if !slices.Contains(taken, l) {
		return l
	}
	for i := 2; ; i++ {
		if c := fmt.Sprintf("%s-%d", l, i); !slices.Contains(taken, c) {
			return c
		}
	}
}
