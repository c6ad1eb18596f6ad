package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/usbctl/usbctl/config"
	"github.com/usbctl/usbctl/controller"
	"github.com/usbctl/usbctl/events"
	"github.com/usbctl/usbctl/override"
	"github.com/usbctl/usbctl/reconcile"
)

func newStatusCmd(sock *socketFlag) *cobra.Command {
	var (
		asJSON   bool
		watch    bool
		interval time.Duration
	)
	cmd := &cobra.Command{
		Use:   "status",
		Short: "What is attached where and why, what is pending or failing",
		Long: `Status asks the running usbctld what it sees and did: each domain with the
devices usbctl attached to it (the rule or runtime assignment that placed
each, and since when), hostdevs attached by someone else (never touched),
runtime assignments (usbctl attach, detach, move) with who set them, when and
until when, offers waiting for an answer, actions pending or failing with
their whole last error, what to do about it when usbctl knows, and the next
retry, domains the config names that libvirt does not have, conflicts,
devices no rule gives to a running domain and why, and the config in force
(and a rejected reload). --watch follows usbctld's event stream and redraws
on every change.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if watch {
				return watchStatus(cmd.Context(), cmd.OutOrStdout(), sock.client(), isTerminal(cmd.OutOrStdout()))
			}
			st, err := sock.client().Status(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), st)
			}
			return printStatus(cmd.OutOrStdout(), st, time.Now(), time.Local)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the status as JSON")
	cmd.Flags().BoolVarP(&watch, "watch", "w", false, "redraw whenever something changes, until interrupted")
	cmd.Flags().DurationVar(&interval, "interval", 0, "ignored: --watch follows usbctld's events")
	_ = cmd.Flags().MarkDeprecated("interval", "--watch redraws on usbctld's events")
	return cmd
}

// watchAPI is what watchStatus needs from the daemon client.
type watchAPI interface {
	Status(ctx context.Context) (controller.Status, error)
	EventsOpened(ctx context.Context, opened func(), f func(events.Event) error) error
}

// watchStatus redraws the status when usbctld's event stream says
// something happened (and when the stream opens), and every 10 s so ages
// stay true; a quiet daemon costs nothing. On a terminal it redraws in
// place; otherwise it appends, with a separator, so it can be logged. A
// daemon that goes away is reported and waited for.
func watchStatus(ctx context.Context, w io.Writer, c watchAPI, tty bool) error {
	poke := make(chan struct{}, 1)
	kick := func() {
		select {
		case poke <- struct{}{}:
		default:
		}
	}
	go func() {
		wait := 250 * time.Millisecond
		for ctx.Err() == nil {
			opened := false
			_ = c.EventsOpened(ctx, func() { opened = true; kick() }, func(events.Event) error { kick(); return nil })
			if opened {
				wait = 250 * time.Millisecond
			}
			kick() // the stream broke: show that usbctld is gone
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			wait = min(2*wait, 5*time.Second)
		}
	}()
	var last string
	var drawn time.Time
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		now := time.Now()
		var buf bytes.Buffer
		st, err := c.Status(ctx)
		key := ""
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			fmt.Fprintf(&buf, "%s\nwaiting for usbctld...\n", err)
			key = err.Error()
		} else {
			_ = printStatus(&buf, st, now, time.Local)
			key = changeKey(st)
		}
		if key != last || now.Sub(drawn) >= 10*time.Second {
			if tty {
				fmt.Fprint(w, "\x1b[H\x1b[2J")
			} else if !drawn.IsZero() {
				fmt.Fprintf(w, "\n--- %s\n", now.Format("15:04:05"))
			}
			_, _ = w.Write(buf.Bytes())
			last, drawn = key, now
		}
		for waiting := true; waiting; {
			select {
			case <-ctx.Done():
				return nil
			case <-poke:
				waiting = false
			case t := <-tick.C:
				waiting = t.Sub(drawn) < 10*time.Second
			}
		}
	}
}

// changeKey is the status without what changes at every sync (times,
// counters), so a quiet daemon is not redrawn.
func changeKey(st controller.Status) string {
	st.LastSync, st.LastSyncDuration, st.Syncs = time.Time{}, 0, 0
	b, _ := json.Marshal(st)
	return string(b)
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// printStatus renders a status for people. now and loc are parameters so
// tests get stable output.
func printStatus(w io.Writer, st controller.Status, now time.Time, loc *time.Location) error {
	clock := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.In(loc).Format("2006-01-02 15:04:05") + " (" + ago(now.Sub(t)) + ")"
	}
	state := "starting: first sync not complete"
	if st.Ready {
		state = "ready"
	}
	fmt.Fprintf(w, "usbctld:  %s, %d syncs, last %s took %s\n", state, st.Syncs, clock(st.LastSync), st.LastSyncDuration.Round(time.Microsecond))
	hv := "connected"
	if !st.Hypervisor.Connected {
		hv = "DISCONNECTED"
		if st.Hypervisor.LastError != "" {
			hv += ": " + safe(st.Hypervisor.LastError)
		}
		hv += " (usbctld reconnects by itself; is libvirtd running?)"
	}
	fmt.Fprintf(w, "libvirt:  %s %s\n", safe(st.Hypervisor.URI), hv)
	c := st.Config
	fmt.Fprintf(w, "config:   %s: %s, %s, %s, loaded %s\n", safe(config.DescribeFiles(c.Files)), plural(c.Domains, "domain"), plural(c.Rules, "device rule"), plural(c.Excludes, "exclude"), clock(c.LoadedAt))
	if r := c.Rejected; r != nil {
		fmt.Fprintf(w, "          RELOAD REJECTED at %s; the config above stays in force. Fix and reload:\n", clock(r.At))
		for _, d := range r.Diagnostics {
			fmt.Fprintf(w, "            %s\n", safe(d))
		}
	}

	if st.StateError != "" {
		fmt.Fprintf(w, "state:    RUNTIME ASSIGNMENTS NOT SAVED: %s; they hold until usbctld stops\n", safe(st.StateError))
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "DOMAIN\tSTATE\tDEVICE\tPORT\tID\tNAME\tRULE\tSINCE")
	held := make(map[reconcile.DeviceKey]bool, len(st.HeldOnHost))
	for _, h := range st.HeldOnHost {
		held[h.Key] = true
	}
	doms := append([]controller.DomainStatus(nil), st.Domains...)
	sort.SliceStable(doms, func(i, j int) bool { return doms[i].Name < doms[j].Name })
	for _, d := range doms {
		name := cell(d.Name, 24)
		if !d.Managed {
			name += " (no rules)"
		}
		if len(d.Attached) == 0 {
			fmt.Fprintf(tw, "%s\t%s\t-\t\t\t\t\t\n", name, d.State)
			continue
		}
		for i, a := range d.Attached {
			n, s := name, string(d.State)
			if i > 0 {
				n, s = "", ""
			}
			port, id, dname := "-", "-", "(device gone; detaching)"
			if a.Device != nil {
				port, id, dname = cell(a.Device.Port, 16), safe(a.Device.ID()), cell(deviceName(*a.Device), 32)
			}
			since := clock(a.Since)
			if a.Adopted {
				since += " adopted"
			}
			rule := a.Rule
			if rule == "" {
				rule = "-"
			}
			if held[a.Key] {
				since += " HELD ON THE HOST (see below)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", n, s, a.Key, port, id, dname, safe(rule), since)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	if len(st.UndefinedDomains) > 0 {
		var rows [][]string
		for _, n := range st.UndefinedDomains {
			rows = append(rows, []string{cell(n, 64)})
		}
		section(w, "NOT DEFINED IN LIBVIRT: domains the config names that libvirt does not have; check the names (virsh list --all)", "DOMAIN", rows)
	}

	var foreign [][]string
	for _, d := range doms {
		for _, h := range d.Foreign {
			src := "-"
			if k, ok := h.Key(); ok {
				src = k.String()
			} else if h.Vendor != "" {
				src = h.Vendor + ":" + h.Product
			}
			foreign = append(foreign, []string{cell(d.Name, 24), cell(h.Alias, 32), src})
		}
	}
	if len(foreign) > 0 {
		section(w, "NOT OURS: USB hostdevs usbctl did not attach; it never touches them", "DOMAIN\tALIAS\tSOURCE", foreign)
	}
	if len(st.Pending) > 0 {
		var rows [][]string
		var notes [][]string
		for _, p := range st.Pending {
			next := "-"
			switch {
			case p.Permanent:
				next = "waits for a change (replug, domain restart, reload)"
			case !p.NextRetry.IsZero():
				next = "in " + ago(p.NextRetry.Sub(now))
				if p.NextRetry.Before(now) {
					next = "now"
				}
			}
			rows = append(rows, []string{string(p.Action.Kind), cell(p.Action.Domain, 24), p.Action.Key.String(), fmt.Sprint(p.Attempts), next})
			notes = append(notes, errorNotes(p))
		}
		sectionWithNotes(w, "PENDING OR FAILING", "ACTION\tDOMAIN\tDEVICE\tTRIES\tNEXT TRY", rows, notes)
	}
	if len(st.HeldOnHost) > 0 {
		var rows [][]string
		var notes [][]string
		for _, h := range st.HeldOnHost {
			rows = append(rows, []string{h.Key.String(), safe(h.Device.ID()), cell(deviceName(h.Device), 32), cell(h.Domain, 24),
				safe(strings.Join(h.Interfaces, ", ")), clock(h.Since)})
			notes = append(notes, []string{"warning: " + safe(h.Warning), "fix:     " + safe(h.Fix)})
		}
		sectionWithNotes(w, "HELD ON THE HOST: attached while a program on the host held them; the guest may not be able to use them",
			"DEVICE\tID\tNAME\tDOMAIN\tINTERFACES\tSINCE", rows, notes)
	}
	if len(st.Conflicts) > 0 {
		var rows [][]string
		for _, c := range st.Conflicts {
			rows = append(rows, []string{c.Key.String(), safe(strings.Join(c.Domains, ", ")), safe(c.Reason)})
		}
		section(w, "CONFLICTS", "DEVICE\tDOMAINS\tREASON", rows)
	}
	if len(st.Unassigned) > 0 {
		var rows [][]string
		for _, p := range st.Unassigned {
			rows = append(rows, []string{p.Device.Key().String(), safe(p.Device.ID()), cell(p.Device.Port, 16), cell(deviceName(p.Device), 32), safe(p.Reason)})
		}
		section(w, "ON THE HOST: devices no running domain gets", "DEVICE\tID\tPORT\tNAME\tWHY", rows)
	}
	if len(st.Overrides) > 0 {
		var rows [][]string
		for _, o := range st.Overrides {
			to := "(the host)"
			if !o.Host() {
				to = cell(o.Domain, 24)
			}
			name := o.Device.Name
			if strings.TrimSpace(name) == "" {
				name = "-"
			}
			rows = append(rows, []string{o.Device.Key().String(), safe(o.Device.Vendor + ":" + o.Device.Product), cell(name, 32), to,
				cell(o.SetBy.String(), 32), clock(o.SetAt), untilText(o, now, loc)})
		}
		section(w, "RUNTIME ASSIGNMENTS: usbctl attach, detach, move (usbctl release forgets one)", "DEVICE\tID\tNAME\tTO\tSET BY\tAT\tUNTIL", rows)
	}
	if len(st.Offers) > 0 {
		var rows [][]string
		for _, o := range st.Offers {
			rows = append(rows, []string{o.Device.Key().String(), safe(o.Device.ID()), cell(deviceName(o.Device), 32), cell(o.Domain, 24),
				clock(o.Since), "in " + ago(o.Expires.Sub(now))})
		}
		section(w, "WAITING FOR AN ANSWER: usbctl attach DEVICE, or usbctl detach DEVICE", "DEVICE\tID\tNAME\tOFFERED TO\tSINCE\tTO THE HOST", rows)
	}
	return nil
}

// untilText says when an assignment ends.
func untilText(o override.Override, now time.Time, loc *time.Location) string {
	switch o.Lifetime {
	case override.For:
		return o.Until.In(loc).Format("2006-01-02 15:04:05") + " (in " + ago(o.Until.Sub(now)) + "), or unplugged"
	case override.UntilStop:
		return safe(o.Domain) + " stops, or unplugged"
	}
	return "unplugged"
}

// section prints a titled table; every cell is already terminal-safe.
func section(w io.Writer, title, header string, rows [][]string) {
	fmt.Fprintf(w, "\n%s\n", title)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	_ = tw.Flush()
}

// errorNotes are the lines under a pending action: the error whole (never
// cut: the part that says what to do is often last), and its fix on a line
// of its own.
func errorNotes(p controller.PendingAction) []string {
	if p.LastError == "" {
		return nil
	}
	cause := p.LastError
	if p.Fix != "" {
		// The fix ends the message; say it once.
		cause = strings.TrimSuffix(cause, ": "+p.Fix)
	}
	notes := []string{"error: " + safe(cause)}
	if p.Fix != "" {
		notes = append(notes, "fix:   "+safe(p.Fix))
	}
	return notes
}

// sectionWithNotes is section with lines of notes under each row, indented
// and outside the columns, so a long note neither widens the table nor is
// cut to fit it.
func sectionWithNotes(w io.Writer, title, header string, rows, notes [][]string) {
	fmt.Fprintf(w, "\n%s\n", title)
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	_ = tw.Flush()
	lines := strings.SplitAfter(buf.String(), "\n")
	fmt.Fprint(w, lines[0])
	for i := range rows {
		fmt.Fprint(w, lines[i+1])
		for _, n := range notes[i] {
			fmt.Fprintf(w, "    %s\n", n)
		}
	}
}

// ago is a short human duration: "4s", "3m", "2h5m", "3d".
func ago(d time.Duration) string {
	if d < 0 {
		d = -d
	}
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(time.Second).String()
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%dm", int(d/time.Hour), int(d%time.Hour/time.Minute))
	}
	return fmt.Sprintf("%dd", int(d/(24*time.Hour)))
}
