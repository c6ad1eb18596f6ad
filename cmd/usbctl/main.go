// Command usbctl is the command-line client of usbctld: it validates
// configs, explains plans, lists host devices and shows the daemon's status.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/usbctl/usbctl/controller/api"
)

// socketFlag is the --socket flag shared by the commands that talk to
// usbctld, and the one client they use, built at the first request once
// the flags are parsed.
type socketFlag struct {
	path string
	c    *api.Client
}

func (s *socketFlag) client() *api.Client {
	if s.c == nil || s.c.Socket != s.path {
		s.c = &api.Client{Socket: s.path}
	}
	return s.c
}

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
	sock := &socketFlag{path: os.Getenv("USBCTL_SOCKET")}
	if sock.path == "" {
		sock.path = api.DefaultSocket
	}
	root.PersistentFlags().StringVar(&sock.path, "socket", sock.path, "usbctld control socket (env USBCTL_SOCKET)")
	// Each subcommand lives in its own file.
	root.AddCommand(
		newCheckCmd(),
		newPlanCmd(sock),
		newStatusCmd(sock),
		newReloadCmd(sock),
		newAttachCmd(sock),
		newDetachCmd(sock),
		newMoveCmd(sock),
		newReleaseCmd(sock),
		newPendingCmd(sock),
		newRuleCmd(sock),
		newEventsCmd(sock),
		newAgentCmd(sock),
		newDevicesCmd(),
		newSnapshotCmd(sock),
		newImportCmd(),
		newHookCmd(),
		newManCmd(),
	)
	return root
}

// writeJSON is every --json output: indented, one document, newline-ended.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
