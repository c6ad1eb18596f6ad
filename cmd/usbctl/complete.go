package main

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/usbctl/usbctl/controller/api"
	"github.com/usbctl/usbctl/internal/ruleedit"
)

// A completer offers values for one argument, asked from usbctld: what
// is plugged in and which domains exist are the daemon's to know.
type completer func(ctx context.Context, c *api.Client, args []string) []string

// completeArgs completes argument i with per[i]; the shells (bash, zsh,
// fish, through cobra's __complete) show the description after the tab.
// A daemon that does not answer within 2 s completes nothing.
func completeArgs(sock *socketFlag, per ...completer) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		if len(args) >= len(per) {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), 2*time.Second)
		defer cancel()
		var out []string
		for _, v := range per[len(args)](ctx, sock.client(), args) {
			if strings.HasPrefix(v, toComplete) {
				out = append(out, v)
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

// compDesc makes a description one line of printable text without tabs.
func compDesc(s string) string { return strings.ReplaceAll(safe(s), "\t", " ") }

// completeDevices offers the present devices by bus:dev, described by id,
// name and port.
func completeDevices(ctx context.Context, c *api.Client, _ []string) []string {
	devs, err := c.Devices(ctx, "")
	if err != nil {
		return nil
	}
	out := make([]string, 0, len(devs))
	for _, d := range devs {
		if strings.HasPrefix(d.Port, "usb") {
			continue // root hubs go nowhere
		}
		out = append(out, fmt.Sprintf("%d:%d\t%s", d.Bus, d.Dev, compDesc(fmt.Sprintf("%s %s, port %s", d.ID(), deviceName(d), d.Port))))
	}
	return out
}

// completeDomains offers the libvirt domains usbctld sees, with their state.
func completeDomains(ctx context.Context, c *api.Client, _ []string) []string {
	st, err := c.Status(ctx)
	if err != nil {
		return nil
	}
	out := make([]string, 0, len(st.Domains))
	for _, d := range st.Domains {
		if strings.ContainsAny(d.Name, "\t\n") {
			continue
		}
		out = append(out, d.Name+"\t"+compDesc(string(d.State)))
	}
	sort.Strings(out)
	return out
}

// completeLabels offers the labels of the device blocks of the domain named
// by the first argument ("" for excludes) in its conf.d file.
func completeLabels(ctx context.Context, c *api.Client, args []string) []string {
	f, err := c.ConfigFileFor(ctx, args[0])
	if err != nil || !f.Exists {
		return nil
	}
	labels, err := ruleedit.Labels(f.Content, f.Path, args[0])
	if err != nil {
		return nil
	}
	var out []string
	for _, l := range labels {
		if !strings.ContainsAny(l, "\t\n") {
			out = append(out, l)
		}
	}
	return out
}
