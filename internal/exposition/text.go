// Package exposition writes the Prometheus text exposition format and
// collects the process_* and go_* families that client_golang's default
// collectors exported. It knows nothing of usbctl: controller/metrics
// builds usbctl's families and serves them through it.
//
// It exists instead of client_golang: the library (with client_model and
// protobuf) added 3.7 MiB to the daemon's resident memory for a few dozen
// series (commit e1c4354; cmd/usbctld's dependency test keeps it out).
package exposition

import (
	"bytes"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// WriteText writes the Prometheus text exposition format, version 0.0.4
// (https://prometheus.io/docs/instrumenting/exposition_formats/), the way
// client_golang's expfmt does, so scrapes look the same as when usbctld
// linked the client library: families sorted by name, label pairs sorted by
// name, series sorted by label values, floats in Go's shortest 'g' form.

// Metric types, as written on the # TYPE line.
const (
	TypeCounter   = "counter"
	TypeGauge     = "gauge"
	TypeHistogram = "histogram"
	TypeSummary   = "summary"
)

// Family is one metric family: a name, its help and type, and its series.
type Family struct {
	Name, Help, Type string
	Series           []Series
}

// Label is one label pair.
type Label struct{ Name, Value string }

// Series is one set of label values. Counters and gauges use Value;
// histograms use Hist; summaries use Summary.
type Series struct {
	Labels  []Label
	Value   float64
	Hist    *Histogram
	Summary *Summary
}

// Histogram is a histogram at one instant. Cumulative[i] counts the
// observations <= Bounds[i]; Count includes those above the last bound (the
// +Inf bucket).
type Histogram struct {
	Bounds     []float64
	Cumulative []uint64
	Count      uint64
	Sum        float64
}

// Quantile is one quantile of a summary: Q, and the value V at it.
type Quantile struct{ Q, V float64 }

// Summary is a summary at one instant.
type Summary struct {
	Quantiles []Quantile
	Count     uint64
	Sum       float64
}

// Gauge and Counter build a family with a single unlabelled series.
func Gauge(name, help string, v float64) Family {
	return Family{Name: name, Help: help, Type: TypeGauge, Series: []Series{{Value: v}}}
}

// Counter: see Gauge.
func Counter(name, help string, v float64) Family {
	return Family{Name: name, Help: help, Type: TypeCounter, Series: []Series{{Value: v}}}
}

// WriteText renders fams in the text format. It sorts fams, their series
// and their label pairs in place.
func WriteText(buf *bytes.Buffer, fams []Family) {
	slices.SortFunc(fams, func(a, b Family) int { return strings.Compare(a.Name, b.Name) })
	for i := range fams {
		f := &fams[i]
		if len(f.Series) == 0 {
			// client_golang omits families without series; a lone HELP
			// and TYPE would say nothing.
			continue
		}
		for j := range f.Series {
			slices.SortFunc(f.Series[j].Labels, func(a, b Label) int { return strings.Compare(a.Name, b.Name) })
		}
		slices.SortStableFunc(f.Series, compareSeries)

		buf.WriteString("# HELP ")
		buf.WriteString(f.Name)
		buf.WriteByte(' ')
		writeEscaped(buf, f.Help, false)
		buf.WriteString("\n# TYPE ")
		buf.WriteString(f.Name)
		buf.WriteByte(' ')
		buf.WriteString(f.Type)
		buf.WriteByte('\n')
		for _, s := range f.Series {
			switch {
			case s.Hist != nil:
				h := s.Hist
				for k, le := range h.Bounds {
					writeSample(buf, f.Name, "_bucket", s.Labels, "le", le, float64(h.Cumulative[k]))
				}
				writeSample(buf, f.Name, "_bucket", s.Labels, "le", math.Inf(1), float64(h.Count))
				writeSample(buf, f.Name, "_sum", s.Labels, "", 0, h.Sum)
				writeSample(buf, f.Name, "_count", s.Labels, "", 0, float64(h.Count))
			case s.Summary != nil:
				for _, q := range s.Summary.Quantiles {
					writeSample(buf, f.Name, "", s.Labels, "quantile", q.Q, q.V)
				}
				writeSample(buf, f.Name, "_sum", s.Labels, "", 0, s.Summary.Sum)
				writeSample(buf, f.Name, "_count", s.Labels, "", 0, float64(s.Summary.Count))
			default:
				writeSample(buf, f.Name, "", s.Labels, "", 0, s.Value)
			}
		}
	}
}

// compareSeries orders series by their label values, label by label, as
// client_golang does (labels already sorted by name; all series of a family
// have the same label names).
func compareSeries(a, b Series) int {
	for i := range min(len(a.Labels), len(b.Labels)) {
		if c := strings.Compare(a.Labels[i].Value, b.Labels[i].Value); c != 0 {
			return c
		}
	}
	return len(a.Labels) - len(b.Labels)
}

// writeSample writes one line: name+suffix, the labels plus, if extraName
// is set, one more label whose value is the float extraValue (le,
// quantile), then the value.
func writeSample(buf *bytes.Buffer, name, suffix string, labels []Label, extraName string, extraValue, v float64) {
	buf.WriteString(name)
	buf.WriteString(suffix)
	if len(labels) > 0 || extraName != "" {
		buf.WriteByte('{')
		for i, l := range labels {
			if i > 0 {
				buf.WriteByte(',')
			}
			buf.WriteString(l.Name)
			buf.WriteString(`="`)
			// Invalid UTF-8 would make the whole scrape unparseable
			// (client_golang refused it with a panic); replace it.
			value := l.Value
			if !utf8.ValidString(value) {
				value = strings.ToValidUTF8(value, "\uFFFD")
			}
			writeEscaped(buf, value, true)
			buf.WriteByte('"')
		}
		if extraName != "" {
			if len(labels) > 0 {
				buf.WriteByte(',')
			}
			buf.WriteString(extraName)
			buf.WriteString(`="`)
			writeFloat(buf, extraValue)
			buf.WriteByte('"')
		}
		buf.WriteByte('}')
	}
	buf.WriteByte(' ')
	writeFloat(buf, v)
	buf.WriteByte('\n')
}

// writeFloat formats like expfmt: shortest 'g' form, "+Inf", "-Inf", "NaN",
// and "0" for negative zero too.
func writeFloat(buf *bytes.Buffer, f float64) {
	switch {
	case f == 0:
		buf.WriteByte('0')
	case math.IsInf(f, +1):
		buf.WriteString("+Inf")
	case math.IsInf(f, -1):
		buf.WriteString("-Inf")
	default:
		buf.Write(strconv.AppendFloat(buf.AvailableBuffer(), f, 'g', -1, 64))
	}
}

// writeEscaped writes s with backslash and newline escaped, and the double
// quote too if quote (label values; help texts keep theirs). Going byte by
// byte is safe: these ASCII bytes never occur inside a multi-byte UTF-8
// sequence.
func writeEscaped(buf *bytes.Buffer, s string, quote bool) {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\':
			buf.WriteString(`\\`)
		case c == '\n':
			buf.WriteString(`\n`)
		case c == '"' && quote:
			buf.WriteString(`\"`)
		default:
			buf.WriteByte(c)
		}
	}
}
