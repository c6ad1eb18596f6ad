package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/usbctl/usbctl/events"
)

func newEventsCmd(sock *socketFlag) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use: "events",
		Example: `  usbctl events
  usbctl events --json | jq -c 'select(.type == "attached")'`,
		Short: "Follow what usbctld sees and does, as it happens",
		Long: `Events prints usbctld's event stream until interrupted: devices plugged and
unplugged, attached and detached, failed actions, runtime assignments set and
ended, offers made and answered, configs reloaded and rejected. --json prints
the stream as usbctld sends it (GET /v1/events on the control socket): one
JSON object per line, with "seq", "time" and "type", and "key", "device",
"domain", "action", "reason", "error", "by", "until" or "diagnostics" as they
apply. Reading it needs the same access as usbctl status.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runEvents(cmd.Context(), cmd.OutOrStdout(), sock.client(), asJSON)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print each event as a line of JSON")
	return cmd
}

type eventsAPI interface {
	Events(ctx context.Context, f func(events.Event) error) error
}

func runEvents(ctx context.Context, w io.Writer, c eventsAPI, asJSON bool) error {
	err := c.Events(ctx, func(ev events.Event) error {
		if asJSON {
			b, err := json.Marshal(ev)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(w, "%s\n", b)
			return err
		}
		_, err := fmt.Fprintln(w, formatEvent(ev, time.Local))
		return err
	})
	if errors.Is(err, context.Canceled) || ctx.Err() != nil {
		return nil
	}
	return err
}

// formatEvent is one event as a line for people, terminal-safe.
func formatEvent(ev events.Event, loc *time.Location) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "%s  %-16s", ev.Time.In(loc).Format("15:04:05.000"), ev.Type)
	switch {
	case ev.Device != nil:
		sb.WriteString(" " + describeDevice(*ev.Device))
	case ev.Key != nil:
		sb.WriteString(" " + ev.Key.String())
	}
	if ev.Domain != "" {
		switch ev.Type {
		case events.Attached, events.Offered:
			sb.WriteString(" → " + safe(ev.Domain))
		case events.Detached:
			sb.WriteString(" ← " + safe(ev.Domain))
		default:
			sb.WriteString(" " + safe(ev.Domain))
		}
	}
	if ev.Action != "" {
		sb.WriteString(" (" + string(ev.Action) + ")")
	}
	var notes []string
	for _, s := range []string{ev.Reason, ev.Error} {
		if s != "" {
			notes = append(notes, safe(s))
		}
	}
	if ev.By != "" {
		notes = append(notes, "by "+safe(ev.By))
	}
	if !ev.Until.IsZero() {
		notes = append(notes, "until "+ev.Until.In(loc).Format("15:04:05"))
	}
	if len(notes) > 0 {
		sb.WriteString(": " + strings.Join(notes, "; "))
	}
	for _, d := range ev.Diagnostics {
		sb.WriteString("\n    " + safe(d))
	}
	return sb.String()
}
