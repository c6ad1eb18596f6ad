package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/spf13/cobra"

	"github.com/usbctl/usbctl/config"
)

func newCheckCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "check [PATH...]",
		Short: "Validate a config: every problem with file:line:col",
		Long: `Check reads config files and directories of *.hcl files, merged as usbctld
would merge them (default: ` + config.DefaultPath + ` and ` + config.DefaultDir + `),
and prints every problem with its file, line and column, the source line, and
what to do about it. It exits 1 if there are errors; warnings alone exit 0.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			paths := args
			if len(paths) == 0 {
				paths = config.DefaultPaths()
			}
			return runCheck(cmd.OutOrStdout(), paths)
		},
	}
}

func runCheck(w io.Writer, paths []string) error {
	cfg, diags := config.Load(paths...)
	if err := diags.Write(w, 0, false); err != nil {
		return err
	}
	nerr, nwarn := 0, 0
	for _, d := range diags.Diagnostics {
		if d.Severity == hcl.DiagError {
			nerr++
		} else {
			nwarn++
		}
	}
	if cfg == nil {
		fmt.Fprintf(w, "%s: %s, %s\n", config.DescribeFiles(paths), plural(nerr, "error"), plural(nwarn, "warning"))
		return exitCode(1)
	}
	rules := 0
	for _, d := range cfg.Rules.Domains {
		rules += len(d.Devices)
	}
	fmt.Fprintf(w, "%s: OK, %s, %s, %s", config.DescribeFiles(cfg.Files), plural(len(cfg.Rules.Domains), "domain"), plural(rules, "device rule"), plural(len(cfg.Rules.Excludes), "exclude"))
	if nwarn > 0 {
		fmt.Fprintf(w, ", %s", plural(nwarn, "warning"))
	}
	fmt.Fprintln(w)
	return nil
}

func joinPaths(ps []string) string {
	if len(ps) == 0 {
		return "(no files)"
	}
	return strings.Join(ps, ", ")
}

func plural(n int, word string) string {
	if n == 1 {
		return fmt.Sprintf("1 %s", word)
	}
	return fmt.Sprintf("%d %ss", n, word)
}
