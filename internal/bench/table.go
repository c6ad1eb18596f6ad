//go:build umockdev

package main

// The one table every measurement adds its rows to.

import (
	"fmt"
	"io"
	"strings"
	"time"
)

type table struct {
	rows  [][4]string
	notes []string
}

func (t *table) section(format string, a ...any) {
	t.rows = append(t.rows, [4]string{"## " + fmt.Sprintf(format, a...)})
}

func (t *table) row(figure, value, target, ok string) {
	if target == "" {
		target = "—"
	}
	if ok == "" {
		ok = "—"
	}
	t.rows = append(t.rows, [4]string{figure, value, target, ok})
}

func (t *table) note(format string, a ...any) { t.notes = append(t.notes, fmt.Sprintf(format, a...)) }

func okIf(b bool) string {
	if b {
		return "ok"
	}
	return "MISSED"
}

func ratioOK(v, target float64, ok bool) string {
	return fmt.Sprintf("%.2f× %s", v/target, okIf(ok))
}

func width(s string) int { return len([]rune(s)) }

func pad(s string, n int) string { return s + strings.Repeat(" ", max(0, n-width(s))) }

func (t *table) print(w io.Writer) {
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

func fmtDur(d time.Duration) string {
	switch {
	case d < 0:
		return "−" + fmtDur(-d)
	case d < time.Microsecond:
		return fmt.Sprintf("%d ns", d.Nanoseconds())
	case d < time.Millisecond:
		return fmt.Sprintf("%.1f µs", float64(d)/1e3)
	case d < time.Second:
		return fmt.Sprintf("%.2f ms", float64(d)/1e6)
	}
	return fmt.Sprintf("%.3f s", d.Seconds())
}
