package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/godbus/dbus/v5"
	"github.com/spf13/cobra"

	"github.com/usbctl/usbctl/controller/api"
	"github.com/usbctl/usbctl/events"
	"github.com/usbctl/usbctl/internal/agent"
)

func newAgentCmd(sock *socketFlag) *cobra.Command {
	var verbose bool
	cmd := &cobra.Command{
		Use:     "agent",
		Example: `  usbctl agent &   # in the desktop session`,
		Short:   "Show offers as desktop notifications and send back the answer clicked",
		Long: `Agent runs in a desktop session and shows each offer of usbctld (a device
that a domain in mode "ask" would get) as a desktop notification with
buttons: attach it, keep it on the host, or either for good (a device rule
or an exclude is saved). It talks to the session's notification server over
D-Bus (org.freedesktop.Notifications) and to usbctld over its socket; an
answer changes what usbctld does, so it runs as a member of usbctld's
--control-group (and of the socket's group), or as root. An offer nobody answers
stays on the host when usbctld's --ask-timeout passes. Start it with the
session, e.g. from ~/.config/autostart.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			bus, err := dbus.ConnectSessionBus()
			if err != nil {
				return fmt.Errorf("session D-Bus: %w; usbctl agent runs inside a desktop session (DBUS_SESSION_BUS_ADDRESS)", err)
			}
			defer bus.Close()
			lv := slog.LevelInfo
			if !verbose {
				lv = slog.LevelWarn
			}
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: lv}))
			a := &agent.Agent{Bus: bus, Daemon: agentDaemon{c: sock.client(), out: cmd.OutOrStdout()}, Log: log}
			return a.Run(ctx)
		},
	}
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "log each offer and answer")
	return cmd
}

// agentDaemon is usbctld as the agent needs it.
type agentDaemon struct {
	c   *api.Client
	out interface{ Write([]byte) (int, error) }
}

func (d agentDaemon) Offers(ctx context.Context) ([]agent.Offer, error) {
	st, err := d.c.Status(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]agent.Offer, 0, len(st.Offers))
	for _, o := range st.Offers {
		out = append(out, agent.Offer{Device: o.Device.Key().String(), Domain: o.Domain,
			What: fmt.Sprintf("%s (%s, port %s)", deviceName(o.Device), o.Device.ID(), o.Device.Port), Expires: o.Expires})
	}
	return out, nil
}

func (d agentDaemon) Follow(ctx context.Context, changed func()) error {
	return d.c.EventsOpened(ctx, changed, func(ev events.Event) error {
		switch ev.Type {
		case events.Offered, events.OfferEnded, events.OverrideSet, events.OverrideEnded, events.DeviceUnplugged:
			changed()
		}
		return nil
	})
}

func (d agentDaemon) Answer(ctx context.Context, o agent.Offer, a agent.Answer) error {
	f := assignFlags{save: a == agent.AttachAlways || a == agent.HostAlways}
	verb, domain := api.VerbAttach, o.Domain
	if a == agent.Host || a == agent.HostAlways {
		verb, domain = api.VerbDetach, ""
	}
	return runAssign(ctx, d.out, d.c, f, f.request(verb, o.Device, domain))
}
