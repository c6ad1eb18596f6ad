package main

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// minExamples is how many example configs examples/ holds at least, so the
// test fails if the glob finds nothing instead of passing vacuously.
const minExamples = 7

// okLine is check's summary for a valid config without warnings: it ends
// after the exclude count, where a warning count would follow.
var okLine = regexp.MustCompile(`(?m): OK, \d+ domains?, \d+ device rules?, \d+ excludes?$`)

// TestExamples runs every shipped example config through usbctl check, as a
// user would, and fails on any error or warning: the examples are meant to
// be copied as they are. The one exception is the installed default,
// usbctl.hcl, which has no domain on purpose (they go in conf.d or are
// added by the user): check must say exactly that, and nothing else.
func TestExamples(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "..", "examples", "*.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < minExamples {
		t.Fatalf("found %d example configs in examples/, want at least %d: %v", len(files), minExamples, files)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			out, code := run(t, "check", f)
			if code != 0 {
				t.Fatalf("usbctl check %s: exit %d, want 0; diagnostics:\n%s", f, code, out)
			}
			if filepath.Base(f) == "usbctl.hcl" {
				if strings.Count(out, "Warning:") != 1 || !strings.Contains(out, "Warning: No domain configured") || strings.Contains(out, "Error:") || !strings.HasSuffix(out, ": OK, 0 domains, 0 device rules, 0 excludes, 1 warning\n") {
					t.Fatalf("usbctl check %s: want the no-domain warning alone; got:\n%s", f, out)
				}
				return
			}
			if strings.Contains(out, "Warning:") || strings.Contains(out, "Error:") || !okLine.MatchString(out) {
				t.Fatalf("usbctl check %s: want no diagnostics; got:\n%s", f, out)
			}
		})
	}
}
