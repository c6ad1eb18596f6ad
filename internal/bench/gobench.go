//go:build umockdev

package main

import (
	"bufio"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// goTargets are the targets for the go test benchmarks' metrics:
// by unit, for the benchmarks whose name is bench (any if empty). Plan
// under 10 ms at the largest size; event → attach call p99 under 1 ms
// over 10,000 events (EventToAttach, not the growing-world variant, which
// has no target); a 1,000-add burst in at most 10 syncs, never a
// duplicate attach.
var goTargets = []struct {
	bench, unit, text string
	ok                func(float64) bool
}{
	{"reconcile.Plan/devices=5000/domains=200/rules=2000", "ns/op", "< 10 ms", func(v float64) bool { return v < 10e6 }},
	{"controller.EventToAttach", "p99-ns", "< 1 ms", func(v float64) bool { return v < 1e6 }},
	{"", "syncs", "≤ 10", func(v float64) bool { return v <= 10 }},
	{"", "dup-attaches", "= 0", func(v float64) bool { return v == 0 }},
}

var procSuffix = regexp.MustCompile(`-\d+$`)

// addGoBench adds the results in a go test -bench output file to the
// table: one row per benchmark and metric. A FAIL in the output is an
// error (and a row).
func addGoBench(t *table, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("go benchmarks: %w", err)
	}
	defer f.Close()
	t.Section("go test -bench . -benchmem ./reconcile ./controller")
	pkg := ""
	var failed []string
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		fs := strings.Fields(line)
		switch {
		case len(fs) >= 2 && fs[0] == "pkg:":
			pkg = fs[1][strings.LastIndexByte(fs[1], '/')+1:]
		case len(fs) >= 1 && (fs[0] == "FAIL" || fs[0] == "---" && len(fs) > 1 && fs[1] == "FAIL:"):
			failed = append(failed, line)
		case len(fs) >= 4 && strings.HasPrefix(fs[0], "Benchmark"):
			if _, err := strconv.Atoi(fs[1]); err != nil {
				continue
			}
			name := procSuffix.ReplaceAllString(strings.TrimPrefix(fs[0], "Benchmark"), "")
			if pkg != "" {
				name = pkg + "." + name
			}
			for i := 2; i+1 < len(fs); i += 2 {
				v, err := strconv.ParseFloat(fs[i], 64)
				if err != nil {
					continue
				}
				unit := fs[i+1]
				target, ok := "", ""
				for _, g := range goTargets {
					if g.unit == unit && (g.bench == "" || g.bench == name) {
						target, ok = g.text, okIf(g.ok(v))
					}
				}
				t.Row(name+" "+unit, fmtMetric(v, unit), target, ok)
				n++
			}
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("go benchmarks: %w", err)
	}
	if len(failed) > 0 {
		t.Row("go test benchmarks", "FAIL", "pass", "MISSED")
		return fmt.Errorf("go benchmarks failed: %s", strings.Join(failed, "; "))
	}
	if n == 0 {
		t.Row("go test benchmarks", "no results", "results", "MISSED")
		return fmt.Errorf("go benchmarks: no results in %s", path)
	}
	return nil
}

func fmtMetric(v float64, unit string) string {
	switch {
	case unit == "ns/op" || strings.HasSuffix(unit, "-ns"):
		return fmtDur(time.Duration(v))
	case unit == "B/op":
		switch {
		case v >= 1<<20:
			return fmt.Sprintf("%.1f MiB", v/(1<<20))
		case v >= 1<<10:
			return fmt.Sprintf("%.1f KiB", v/(1<<10))
		}
		return fmt.Sprintf("%.0f B", v)
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}
