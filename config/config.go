// Package config reads usbctl's HCL configuration into reconcile.Rules. It
// collects every problem of every file in one pass, each with its file,
// line and column, a summary, and a detail that says what to do.
package config

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"

	"github.com/usbctl/usbctl/reconcile"
)

// Default locations: a main file and a directory of *.hcl files (one per VM
// suits configuration management).
const (
	DefaultPath = "/etc/usbctl/usbctl.hcl"
	DefaultDir  = "/etc/usbctl/conf.d"
	DefaultURI  = "qemu:///system"
)

// DefaultPaths are what usbctld and usbctl read when given no path:
// DefaultPath, and DefaultDir if it is a directory.
func DefaultPaths() []string {
	paths := []string{DefaultPath}
	if st, err := os.Stat(DefaultDir); err == nil && st.IsDir() {
		paths = append(paths, DefaultDir)
	}
	return paths
}

// Config is a valid, compiled configuration.
type Config struct {
	LibvirtURI string
	Rules      reconcile.Rules
	// Files are the files read, in merge order.
	Files []string
}

// Diagnostics are the problems found, with the parsed files so they can be
// printed with their source lines.
type Diagnostics struct {
	hcl.Diagnostics
	Files map[string]*hcl.File
}

// Write prints every diagnostic with file:line:col and the offending source
// line. width 0 means no wrapping.
func (d Diagnostics) Write(w io.Writer, width uint, color bool) error {
	return hcl.NewDiagnosticTextWriter(w, d.Files, width, color).WriteDiagnostics(d.Diagnostics)
}

// Strings renders one line per diagnostic, for logs and status:
// "file:line:col: error: summary: detail".
func (d Diagnostics) Strings() []string {
	out := make([]string, 0, len(d.Diagnostics))
	for _, diag := range d.Diagnostics {
		sev := "error"
		if diag.Severity == hcl.DiagWarning {
			sev = "warning"
		}
		where := ""
		if diag.Subject != nil {
			where = fmt.Sprintf("%s:%d:%d: ", diag.Subject.Filename, diag.Subject.Start.Line, diag.Subject.Start.Column)
		}
		line := where + sev + ": " + diag.Summary
		if diag.Detail != "" {
			line += ": " + diag.Detail
		}
		out = append(out, line)
	}
	return out
}

// BlockTypes lists the top-level block types of src in order ("domain",
// "exclude", "libvirt"), for a caller that accepts only some in a file.
func BlockTypes(src []byte, name string) ([]string, hcl.Diagnostics) {
	f, diags := hclsyntax.ParseConfig(src, name, hcl.InitialPos)
	if diags.HasErrors() {
		return nil, diags
	}
	var out []string
	for _, b := range f.Body.(*hclsyntax.Body).Blocks {
		out = append(out, b.Type)
	}
	for range f.Body.(*hclsyntax.Body).Attributes {
		out = append(out, "attribute")
	}
	return out, nil
}

// Source is one config file's name and content.
type Source struct {
	Name string
	Data []byte
}

// Parse is Load for sources in memory, merged in the order given.
func Parse(srcs ...Source) (*Config, Diagnostics) {
	files := map[string]*hcl.File{}
	dc := &decoder{cfg: &Config{LibvirtURI: DefaultURI}, domains: map[string]hcl.Range{}, excludes: map[string]hcl.Range{}}
	for _, s := range srcs {
		f, diags := hclsyntax.ParseConfig(s.Data, s.Name, hcl.InitialPos)
		if f != nil {
			files[s.Name] = f // for diagnostics that quote the source
		}
		dc.add(rewriteSyntax(diags)...)
		dc.cfg.Files = append(dc.cfg.Files, s.Name)
		if f == nil {
			continue
		}
		if body, ok := f.Body.(*hclsyntax.Body); ok {
			dc.file(body)
		}
	}
	dc.warnOverlaps()
	if len(dc.cfg.Rules.Domains) == 0 && !dc.diags.HasErrors() {
		dc.warnNoDomain(srcs)
	}
	out := Diagnostics{Diagnostics: dc.diags, Files: files}
	if out.HasErrors() {
		return nil, out
	}
	return dc.cfg, out
}

// warnNoDomain warns about a config that gives no device to any guest. It
// is valid (an empty file parses), but a reload to it detaches every
// device usbctld attached, which is rarely what was meant.
func (dc *decoder) warnNoDomain(srcs []Source) {
	d := &hcl.Diagnostic{Severity: hcl.DiagWarning, Summary: "No domain configured",
		Detail: "No file of this config has a domain block, so usbctld gives no device to any guest, and a reload to it detaches every device usbctld attached. Add a domain block for each guest with the devices it gets (the examples directory has complete configs)."}
	if len(srcs) > 0 {
		pos := hcl.Pos{Line: 1, Column: 1}
		d.Subject = &hcl.Range{Filename: srcs[0].Name, Start: pos, End: pos}
	}
	dc.add(d)
}

type decoder struct {
	cfg         *Config
	diags       hcl.Diagnostics
	libvirtSeen *hcl.Range
	domains     map[string]hcl.Range // name → first definition
	excludes    map[string]hcl.Range
	// ranges of compiled blocks, for warnings that cite them.
	domainRanges []hcl.Range
	deviceRanges [][]hcl.Range
	excludeRange []hcl.Range
}

func (dc *decoder) add(ds ...*hcl.Diagnostic) { dc.diags = append(dc.diags, ds...) }

func errAt(r hcl.Range, summary, detail string) *hcl.Diagnostic {
	return &hcl.Diagnostic{Severity: hcl.DiagError, Summary: summary, Detail: detail, Subject: r.Ptr()}
}

func warnAt(r hcl.Range, summary, detail string) *hcl.Diagnostic {
	return &hcl.Diagnostic{Severity: hcl.DiagWarning, Summary: summary, Detail: detail, Subject: r.Ptr()}
}

func where(r hcl.Range) string { return fmt.Sprintf("%s:%d", r.Filename, r.Start.Line) }

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// warnOverlaps warns about what the priority rules settle only by name
// order: two domains of equal priority naming the same exact device, and
// device rules that an exclude makes unreachable. It compares the exact
// criteria only (ids, serials, ports), which is cheap and never wrong.
func (dc *decoder) warnOverlaps() {
	type owner struct {
		domain string
		rng    hcl.Range
	}
	seen := map[string]owner{}
	keys := func(m reconcile.Match) []string {
		var ks []string
		for _, p := range m.IDs {
			if p.Exact() && m.Serial == "" && m.Port == nil {
				ks = append(ks, "id "+p.String())
			}
		}
		if m.Serial != "" {
			ks = append(ks, "serial "+m.Serial)
		}
		if m.Port != nil && len(m.IDs) == 0 && m.Serial == "" {
			ks = append(ks, "port "+m.Port.String())
		}
		return ks
	}
	excluded := map[string]string{}
	for i, ex := range dc.cfg.Rules.Excludes {
		for _, k := range keys(ex) {
			name := "exclude"
			if ex.Label != "" {
				name = fmt.Sprintf("exclude %q", ex.Label)
			}
			excluded[k] = fmt.Sprintf("%s (%s)", name, where(dc.excludeRange[i]))
		}
	}
	for i, dr := range dc.cfg.Rules.Domains {
		for j, m := range dr.Devices {
			rng := dc.deviceRanges[i][j]
			for _, k := range keys(m) {
				if ex, ok := excluded[k]; ok && dr.Mode == reconcile.ModeAllow {
					dc.add(warnAt(rng, "Device rule never applies",
						fmt.Sprintf("The same %s is excluded by %s, and excludes win over every rule. Remove one of them.", k, ex)))
				}
				if dr.Mode != reconcile.ModeAllow {
					continue
				}
				sk := fmt.Sprintf("%d/%s", dr.Priority, k)
				if o, ok := seen[sk]; ok && o.domain != dr.Name {
					dc.add(warnAt(rng, "Same device wanted at the same priority",
						fmt.Sprintf("The domain %q at %s also wants %s with priority %d. If both run, the device goes to the first by name (%q) and stays where it is; set different priorities to decide.", o.domain, where(o.rng), k, dr.Priority, min(o.domain, dr.Name))))
				} else if !ok {
					seen[sk] = owner{domain: dr.Name, rng: rng}
				}
			}
		}
	}
}
