package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// newManCmd writes the manual pages of usbctl and its subcommands; the
// install script and the packages call it. It is hidden: users read the
// pages it writes.
func newManCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "man DIR",
		Short:  "Write the manual pages usbctl.1 and usbctl-COMMAND.1 into DIR",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := args[0]
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			root := cmd.Root()
			root.DisableAutoGenTag = true
			// Each page's title is its command (USBCTL-CHECK). The date
			// comes from SOURCE_DATE_EPOCH when it is set, so packages
			// build reproducibly.
			header := &doc.GenManHeader{Section: "1", Source: "usbctl", Manual: "usbctl manual"}
			if err := doc.GenManTree(root, header, dir); err != nil {
				return fmt.Errorf("man pages: %w", err)
			}
			pages, err := filepath.Glob(filepath.Join(dir, "*.1"))
			if err != nil {
				return err
			}
			for _, p := range pages {
				if err := asciiRoff(p); err != nil {
					return err
				}
			}
			return nil
		},
	}
}

// asciiRoff rewrites the non-ASCII characters of a page (the help texts'
// dashes) as roff escapes, which every troff reads without preconv.
func asciiRoff(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var sb strings.Builder
	for _, r := range string(b) {
		if r < 0x80 {
			sb.WriteRune(r)
		} else {
			fmt.Fprintf(&sb, `\[u%04X]`, r)
		}
	}
	return os.WriteFile(path, []byte(sb.String()), 0o644)
}
