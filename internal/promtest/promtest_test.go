package promtest

import (
	"strings"
	"testing"
)

const text = `# HELP a_total Things.
# TYPE a_total counter
a_total{kind="x",reason="r"} 1
a_total{kind="y",reason="r"} 2
# HELP g A gauge.
# TYPE g gauge
g 7.5
# HELP h A histogram.
# TYPE h histogram
h_bucket{le="1"} 1
h_bucket{le="+Inf"} 3
h_sum 4
h_count 3
# HELP s A summary.
# TYPE s summary
s{quantile="0.5"} 1
s_sum 2
s_count 4
`

func TestValue(t *testing.T) {
	fams, err := Parse(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
		ok     bool
	}{
		{"a_total", map[string]string{"kind": "y"}, 2, true},
		{"a_total", map[string]string{"kind": "x", "reason": "r"}, 1, true},
		{"a_total", nil, 1, true},
		{"a_total", map[string]string{"kind": "z"}, 0, false},
		{"a_total", map[string]string{"kind": "x", "reason": "q"}, 0, false},
		{"g", nil, 7.5, true},
		{"h", nil, 3, true},
		{"s", nil, 4, true},
		{"missing", nil, 0, false},
	} {
		got, ok := Value(fams, c.name, c.labels)
		if got != c.want || ok != c.ok {
			t.Errorf("Value(%s, %v) = %v, %v; want %v, %v", c.name, c.labels, got, ok, c.want, c.ok)
		}
	}
}

func TestParseRejectsInvalid(t *testing.T) {
	if _, err := Parse(strings.NewReader("a{b=\"unterminated} 1\n")); err == nil {
		t.Error("an invalid exposition parsed")
	}
}
