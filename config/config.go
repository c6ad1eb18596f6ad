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
	"github.com/zclconf/go-cty/cty"

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
		dc.diags = append(dc.diags, diags...)
		dc.cfg.Files = append(dc.cfg.Files, s.Name)
		if f == nil || f.Body == nil {
			continue
		}
		dc.file(f.Body)
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

var (
	rootSchema = &hcl.BodySchema{Blocks: []hcl.BlockHeaderSchema{
		{Type: "libvirt"},
		{Type: "domain", LabelNames: []string{"name"}},
		{Type: "exclude", LabelNames: []string{"label"}},
	}}
	libvirtSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "uri", Required: true}}}
	domainSchema  = &hcl.BodySchema{
		Attributes: []hcl.AttributeSchema{{Name: "priority"}, {Name: "mode"}, {Name: "preempt"}},
		Blocks:     []hcl.BlockHeaderSchema{{Type: "device", LabelNames: []string{"label"}}},
	}
	matchSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
		{Name: "vendor"}, {Name: "product"}, {Name: "ids"}, {Name: "serial"}, {Name: "port"}, {Name: "class"},
	}}
)

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

func (dc *decoder) file(body hcl.Body) {
	content, diags := body.Content(rootSchema)
	dc.diags = append(dc.diags, diags...)
	for _, b := range content.Blocks {
		switch b.Type {
		case "libvirt":
			dc.libvirt(b)
		case "domain":
			dc.domain(b)
		case "exclude":
			dc.exclude(b)
		}
	}
}

func (dc *decoder) libvirt(b *hcl.Block) {
	if dc.libvirtSeen != nil {
		dc.add(errAt(b.DefRange, "Duplicate libvirt block",
			fmt.Sprintf("The libvirt block was already given at %s; keep one.", where(*dc.libvirtSeen))))
		return
	}
	r := b.DefRange
	dc.libvirtSeen = &r
	content, diags := b.Body.Content(libvirtSchema)
	dc.add(diags...)
	if a, ok := content.Attributes["uri"]; ok {
		var uri string
		if d := decodeExpr(a.Expr, &uri); d.HasErrors() {
			dc.add(d...)
			return
		}
		if uri == "" || !strings.Contains(uri, ":") {
			dc.add(errAt(a.Expr.Range(), "Invalid libvirt URI",
				fmt.Sprintf("%q is not a libvirt URI; use one such as %q (see virsh uri).", uri, DefaultURI)))
			return
		}
		dc.cfg.LibvirtURI = uri
	}
}

func (dc *decoder) domain(b *hcl.Block) {
	name := b.Labels[0]
	labelRange := b.LabelRanges[0]
	switch {
	case name == "" || strings.ContainsAny(name, "/\x00") || strings.TrimSpace(name) != name:
		dc.add(errAt(labelRange, "Invalid domain name",
			fmt.Sprintf("%q cannot be a libvirt domain name: it must be the name virsh list --all shows, without '/' or surrounding spaces.", name)))
	default:
		if first, dup := dc.domains[name]; dup {
			dc.add(errAt(labelRange, "Duplicate domain",
				fmt.Sprintf("The domain %q is already configured at %s. Merge the two blocks into one.", name, where(first))))
			return
		}
		dc.domains[name] = b.DefRange
	}

	dr := reconcile.DomainRules{Name: name, Source: where(b.DefRange), Mode: reconcile.ModeAllow}
	content, diags := b.Body.Content(domainSchema)
	dc.add(diags...)
	if a, ok := content.Attributes["priority"]; ok {
		dc.add(decodeExpr(a.Expr, &dr.Priority)...)
	}
	if a, ok := content.Attributes["preempt"]; ok {
		dc.add(decodeExpr(a.Expr, &dr.Preempt)...)
	}
	if a, ok := content.Attributes["mode"]; ok {
		var mode string
		if d := decodeExpr(a.Expr, &mode); d.HasErrors() {
			dc.add(d...)
		} else {
			switch m := reconcile.Mode(mode); m {
			case reconcile.ModeAllow, reconcile.ModeDeny, reconcile.ModeAll:
				dr.Mode = m
			default:
				dc.add(errAt(a.Expr.Range(), "Invalid mode",
					fmt.Sprintf("%q is not a mode. Use \"allow\" (only the listed devices; the old whitelist), \"deny\" (every device except the listed ones; blacklist) or \"all\" (every device; matchall).", mode)))
			}
		}
	}
	labels := map[string]hcl.Range{}
	var ranges []hcl.Range
	for _, db := range content.Blocks {
		label := db.Labels[0]
		if first, dup := labels[label]; dup {
			dc.add(errAt(db.LabelRanges[0], "Duplicate device label",
				fmt.Sprintf("The domain %q already has a device %q at %s. Give each device block its own label.", name, label, where(first))))
			continue
		}
		labels[label] = db.DefRange
		m, ok := dc.match(db, "device")
		if !ok {
			continue
		}
		if dr.Mode == reconcile.ModeAll {
			dc.add(errAt(db.DefRange, "Device block in mode \"all\"",
				fmt.Sprintf("The domain %q takes every device (mode = \"all\"), so this block changes nothing. Remove it, or use mode = \"allow\" to take only the listed devices or \"deny\" to take all but them.", name)))
			continue
		}
		dr.Devices = append(dr.Devices, m)
		ranges = append(ranges, db.DefRange)
	}
	if dr.Mode == reconcile.ModeAllow && len(content.Blocks) == 0 {
		dc.add(warnAt(b.DefRange, "Domain wants no device",
			fmt.Sprintf("The domain %q is in mode \"allow\" with no device block, so it gets nothing. Add device blocks, or set mode = \"all\".", name)))
	}
	dc.cfg.Rules.Domains = append(dc.cfg.Rules.Domains, dr)
	dc.domainRanges = append(dc.domainRanges, b.DefRange)
	dc.deviceRanges = append(dc.deviceRanges, ranges)
}

func (dc *decoder) exclude(b *hcl.Block) {
	label := b.Labels[0]
	if first, dup := dc.excludes[label]; dup {
		dc.add(errAt(b.LabelRanges[0], "Duplicate exclude label",
			fmt.Sprintf("An exclude %q is already defined at %s. Give each exclude block its own label.", label, where(first))))
		return
	}
	dc.excludes[label] = b.DefRange
	m, ok := dc.match(b, "exclude")
	if !ok {
		return
	}
	dc.cfg.Rules.Excludes = append(dc.cfg.Rules.Excludes, m)
	dc.excludeRange = append(dc.excludeRange, b.DefRange)
}

// match decodes the criteria of a device or exclude block.
func (dc *decoder) match(b *hcl.Block, kind string) (reconcile.Match, bool) {
	m := reconcile.Match{Label: b.Labels[0], Source: where(b.DefRange)}
	content, diags := b.Body.Content(matchSchema)
	dc.add(diags...)
	n := len(dc.diags)
	str := func(name string) (string, hcl.Range, bool) {
		a, ok := content.Attributes[name]
		if !ok {
			return "", hcl.Range{}, false
		}
		var s string
		if d := decodeExpr(a.Expr, &s); d.HasErrors() {
			dc.add(d...)
			return "", a.Expr.Range(), false
		}
		return s, a.Expr.Range(), true
	}

	vendor, vr, hasVendor := str("vendor")
	product, pr, hasProduct := str("product")
	if hasVendor {
		v, err := reconcile.ParseHexID(vendor)
		if err != nil {
			dc.add(errAt(vr, "Invalid vendor id", fmt.Sprintf("The vendor id %s. lsusb and usbctl devices show it as the part before the colon in ID 046d:c52b.", err)))
		} else if hasProduct {
			p, err := reconcile.ParseHexID(product)
			if err != nil {
				dc.add(errAt(pr, "Invalid product id", fmt.Sprintf("The product id %s. lsusb and usbctl devices show it as the part after the colon in ID 046d:c52b.", err)))
			} else {
				m.IDs = append(m.IDs, reconcile.IDPattern{Vendor: v, Product: p})
			}
		} else {
			m.IDs = append(m.IDs, reconcile.IDPattern{Vendor: v})
		}
	} else if hasProduct {
		dc.add(errAt(pr, "Product without vendor",
			fmt.Sprintf("A product id alone matches that product of every vendor. Add vendor = \"...\", or if that is really meant write ids = [\"*:%s\"].", product)))
	}

	if a, ok := content.Attributes["ids"]; ok {
		exprs, d := hcl.ExprList(a.Expr)
		if d.HasErrors() {
			dc.add(errAt(a.Expr.Range(), "Invalid ids", "ids must be a list of strings such as [\"0483:5740\", \"0483:df11\"]."))
		}
		if len(exprs) == 0 && !d.HasErrors() {
			dc.add(errAt(a.Expr.Range(), "Empty ids", "ids = [] matches nothing: list at least one \"vendor:product\", or remove it."))
		}
		for _, e := range exprs {
			var s string
			if d := decodeExpr(e, &s); d.HasErrors() {
				dc.add(d...)
				continue
			}
			p, err := reconcile.ParseIDPattern(s)
			if err != nil {
				dc.add(errAt(e.Range(), "Invalid id", capitalize(err.Error())+"."))
				continue
			}
			m.IDs = append(m.IDs, p)
		}
		if hasVendor && len(m.IDs) > 0 {
			dc.add(errAt(a.NameRange, "Both vendor and ids",
				"A block matches by vendor/product or by ids, not both (both must hold, which is rarely meant). Move the vendor:product into ids."))
		}
	}

	if s, r, ok := str("serial"); ok {
		if s == "" {
			dc.add(errAt(r, "Empty serial", "serial = \"\" would match nothing; usbctl devices shows each device's serial, or remove the attribute."))
		}
		m.Serial = s
	}
	if s, r, ok := str("port"); ok {
		pp, err := reconcile.ParsePortPattern(s)
		if err != nil {
			dc.add(errAt(r, "Invalid port", capitalize(err.Error())+"."))
		} else {
			m.Port = &pp
		}
	}
	if a, ok := content.Attributes["class"]; ok {
		m.Classes = dc.classes(a)
	}

	if len(dc.diags) > n {
		return m, false
	}
	if len(m.IDs) == 0 && m.Serial == "" && m.Port == nil && len(m.Classes) == 0 {
		if kind == "exclude" {
			dc.add(errAt(b.DefRange, "Exclude excludes nothing",
				"Give it at least one of vendor/product, ids, serial, port or class, or remove it."))
		} else {
			dc.add(errAt(b.DefRange, "Device block with no criteria",
				"Say which device it is: vendor and product, ids, serial, port or class (usbctl devices lists them)."))
		}
		return m, false
	}
	return m, true
}

// classes accepts "hid" or ["hid", "08"].
func (dc *decoder) classes(a *hcl.Attribute) []string {
	v, d := a.Expr.Value(nil)
	if d.HasErrors() {
		dc.add(d...)
		return nil
	}
	var items []hcl.Expression
	switch {
	case v.Type() == cty.String:
		items = []hcl.Expression{a.Expr}
	case v.Type().IsTupleType() || v.Type().IsListType():
		items, _ = hcl.ExprList(a.Expr)
		if len(items) == 0 {
			dc.add(errAt(a.Expr.Range(), "Empty class", "class = [] matches nothing: name at least one class, or remove it."))
			return nil
		}
	default:
		dc.add(errAt(a.Expr.Range(), "Invalid class", "class must be a name such as \"hid\", a hex code such as \"03\", or a list of them."))
		return nil
	}
	var out []string
	for _, e := range items {
		var s string
		if d := decodeExpr(e, &s); d.HasErrors() {
			dc.add(d...)
			continue
		}
		c, err := reconcile.ParseClass(s)
		if err != nil {
			dc.add(errAt(e.Range(), "Invalid class", capitalize(err.Error())+"."))
			continue
		}
		out = append(out, c)
	}
	return out
}

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
			excluded[k] = fmt.Sprintf("exclude %q (%s)", ex.Label, where(dc.excludeRange[i]))
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
