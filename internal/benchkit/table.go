// Package benchkit is what the two benchmarks of make bench share: the
// sandbox one (internal/bench, umockdev devices) and the real-stack one
// (e2e/kernel's TestBench with internal/benchreal inside the test host).
// Both print the same kind of table and both stop their clocks at
// libvirt's events as an independent client sees them (Watcher).
package benchkit

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// Table is the one table a benchmark adds its rows to: figure, value,
// target, ratio/ok, with sections and notes.
type Table struct {
	rows  [][4]string
	notes []string
}

// Section starts a titled group of rows.
func (t *Table) Section(format string, a ...any) {
	t.rows = append(t.rows, [4]string{"## " + fmt.Sprintf(format, a...)})
}

// Row adds a figure; an empty target or ok prints as "—".
func (t *Table) Row(figure, value, target, ok string) {
	if target == "" {
		target = "—"
	}
	if ok == "" {
		ok = "—"
	}
	t.rows = append(t.rows, [4]string{figure, value, target, ok})
}

// Note adds a line printed under the table.
func (t *Table) Note(format string, a ...any) { t.notes = append(t.notes, fmt.Sprintf(format, a...)) }

// OK is the ratio/ok column of a target: "ok" or "MISSED".
func OK(b bool) string {
	if b {
		return "ok"
	}
	return "MISSED"
}

func width(s string) int { return len([]rune(s)) }

func pad(s string, n int) string { return s + strings.Repeat(" ", max(0, n-width(s))) }

// Print writes the table with aligned columns, then the notes.
func (t *Table) Print(w io.Writer) {
	hdr := [4]string{"figure", "value", "target", "ratio/ok"}
	wd := [4]int{}
	for _, r := range append([][4]string{hdr}, t.rows...) {
		if strings.HasPrefix(r[0], "## ") {
			continue
		}
		for i, c := range r {
			wd[i] = max(wd[i], width(c))
		}
	}
	line := func(r [4]string) {
		fmt.Fprintf(w, "%s  %s  %s  %s\n", pad(r[0], wd[0]), pad(r[1], wd[1]), pad(r[2], wd[2]), r[3])
	}
	fmt.Fprintln(w)
	line(hdr)
	line([4]string{strings.Repeat("-", wd[0]), strings.Repeat("-", wd[1]), strings.Repeat("-", wd[2]), strings.Repeat("-", wd[3])})
	for _, r := range t.rows {
		if strings.HasPrefix(r[0], "## ") {
			fmt.Fprintln(w, r[0][3:])
			continue
		}
		line(r)
	}
	for _, n := range t.notes {
		fmt.Fprintln(w, "note:", n)
	}
}

// Dur formats a duration with a unit that suits its size.
func Dur(d time.Duration) string {
	switch {
	case d < 0:
		return "−" + Dur(-d)
	case d < time.Microsecond:
		return fmt.Sprintf("%d ns", d.Nanoseconds())
	case d < time.Millisecond:
		return fmt.Sprintf("%.1f µs", float64(d)/1e3)
	case d < time.Second:
		return fmt.Sprintf("%.2f ms", float64(d)/1e6)
	}
	return fmt.Sprintf("%.3f s", d.Seconds())
}
