package metrics

import (
	"bytes"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// This file writes the Prometheus text exposition format, version 0.0.4
// (https://prometheus.io/docs/instrumenting/exposition_formats/), the way
// client_golang's expfmt does, so scrapes look the same as when usbctld
// linked the client library: families sorted by name, label pairs sorted by
// name, series sorted by label values, floats in Go's shortest 'g' form.

// Metric types, as written on the # TYPE line.
const (
	typeCounter   = "counter"
	typeGauge     = "gauge"
	typeHistogram = "histogram"
	typeSummary   = "summary"
)

// family is one metric family: a name, its help and type, and its series.
type family struct {
	name, help, typ string
	series          []series
}

type label struct{ name, value string }

// series is one set of label values. Counters and gauges use value;
// histograms use hist; summaries use summ.
type series struct {
	labels []label
	value  float64
	hist   *histSnapshot
	summ   *summarySnapshot
}

// histSnapshot is a histogram at one instant. cumulative[i] counts the
// observations <= bounds[i]; count includes those above the last bound (the
// +Inf bucket).
type histSnapshot struct {
	bounds     []float64
	cumulative []uint64
	count      uint64
	sum        float64
}

type quantile struct{ q, v float64 }

type summarySnapshot struct {
	quantiles []quantile
	count     uint64
	sum       float64
}

// gauge and counter build a family with a single unlabelled series.
func gauge(name, help string, v float64) family {
	return family{name: name, help: help, typ: typeGauge, series: []series{{value: v}}}
}

func counter(name, help string, v float64) family {
	return family{name: name, help: help, typ: typeCounter, series: []series{{value: v}}}
}

// writeText renders fams in the text format. It sorts fams, their series
// and their label pairs in place.
func writeText(buf *bytes.Buffer, fams []family) {
	slices.SortFunc(fams, func(a, b family) int { return strings.Compare(a.name, b.name) })
	for i := range fams {
		f := &fams[i]
		if len(f.series) == 0 {
			// client_golang omits families without series; a lone HELP
			// and TYPE would say nothing.
			continue
		}
		for j := range f.series {
			slices.SortFunc(f.series[j].labels, func(a, b label) int { return strings.Compare(a.name, b.name) })
		}
		slices.SortStableFunc(f.series, compareSeries)

		buf.WriteString("# HELP ")
		buf.WriteString(f.name)
		buf.WriteByte(' ')
		writeEscaped(buf, f.help, false)
		buf.WriteString("\n# TYPE ")
		buf.WriteString(f.name)
		buf.WriteByte(' ')
		buf.WriteString(f.typ)
		buf.WriteByte('\n')
		for _, s := range f.series {
			switch {
			case s.hist != nil:
				h := s.hist
				for k, le := range h.bounds {
					writeSample(buf, f.name, "_bucket", s.labels, "le", le, float64(h.cumulative[k]))
				}
				writeSample(buf, f.name, "_bucket", s.labels, "le", math.Inf(1), float64(h.count))
				writeSample(buf, f.name, "_sum", s.labels, "", 0, h.sum)
				writeSample(buf, f.name, "_count", s.labels, "", 0, float64(h.count))
			case s.summ != nil:
				for _, q := range s.summ.quantiles {
					writeSample(buf, f.name, "", s.labels, "quantile", q.q, q.v)
				}
				writeSample(buf, f.name, "_sum", s.labels, "", 0, s.summ.sum)
				writeSample(buf, f.name, "_count", s.labels, "", 0, float64(s.summ.count))
			default:
				writeSample(buf, f.name, "", s.labels, "", 0, s.value)
			}
		}
	}
}

// compareSeries orders series by their label values, label by label, as
// client_golang does (labels already sorted by name; all series of a family
// have the same label names).
func compareSeries(a, b series) int {
	for i := range min(len(a.labels), len(b.labels)) {
		if c := strings.Compare(a.labels[i].value, b.labels[i].value); c != 0 {
			return c
		}
	}
	return len(a.labels) - len(b.labels)
}

// writeSample writes one line: name+suffix, the labels plus, if extraName
// is set, one more label whose value is the float extraValue (le,
// quantile), then the value.
func writeSample(buf *bytes.Buffer, name, suffix string, labels []label, extraName string, extraValue, v float64) {
	buf.WriteString(name)
	buf.WriteString(suffix)
	if len(labels) > 0 || extraName != "" {
		buf.WriteByte('{')
		for i, l := range labels {
			if i > 0 {
				buf.WriteByte(',')
			}
			buf.WriteString(l.name)
			buf.WriteString(`="`)
			// Invalid UTF-8 would make the whole scrape unparseable
			// (client_golang refused it with a panic); replace it.
			value := l.value
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
