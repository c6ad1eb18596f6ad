package config

import (
	"fmt"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"

	"github.com/usbctl/usbctl/reconcile"
)

// One decode function per block type. Each checks everything in its block
// and reports every problem it finds, with its line: a mistake in one
// argument never hides a mistake in another, and a block that cannot
// become a rule (a duplicate, a missing name) still has its contents
// checked.

func (dc *decoder) file(file *hclsyntax.Body) {
	_, blocks, diags := body(file, topLevel, file.SrcRange)
	dc.add(diags...)
	for _, b := range blocks {
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

// label is a block's first label and its range, or "" and the type's
// range when it has none (body has reported that where one is needed).
func label(b *hclsyntax.Block) (string, hcl.Range) {
	if len(b.Labels) == 0 {
		return "", b.TypeRange
	}
	return b.Labels[0], b.LabelRanges[0]
}

func (dc *decoder) libvirt(b *hclsyntax.Block) {
	dup := dc.libvirtSeen != nil
	if dup {
		dc.add(errAt(b.DefRange(), "Duplicate libvirt block",
			fmt.Sprintf("The libvirt block was already given at %s; keep one.", where(*dc.libvirtSeen))))
	} else {
		r := b.DefRange()
		dc.libvirtSeen = &r
	}
	attrs, _, diags := body(b.Body, kinds["libvirt"], b.DefRange())
	dc.add(diags...)
	a, ok := attrs["uri"]
	if !ok {
		return
	}
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
	if !dup {
		dc.cfg.LibvirtURI = uri
	}
}

func (dc *decoder) domain(b *hclsyntax.Block) {
	name, labelRange := label(b)
	// keep is false for a block that is checked but cannot become a
	// rule: it has no name, or its name is taken.
	keep := len(b.Labels) > 0
	switch {
	case !keep:
	case name == "" || strings.ContainsAny(name, "/\x00") || strings.TrimSpace(name) != name:
		dc.add(errAt(labelRange, "Invalid domain name",
			fmt.Sprintf("%q cannot be a libvirt domain name: it must be the name virsh list --all shows, without '/' or surrounding spaces.", name)))
	default:
		if first, dup := dc.domains[name]; dup {
			dc.add(errAt(labelRange, "Duplicate domain",
				fmt.Sprintf("The domain %q is already configured at %s. Merge the two blocks into one.", name, where(first))))
			keep = false
		} else {
			dc.domains[name] = b.DefRange()
		}
	}

	dr := reconcile.DomainRules{Name: name, Source: where(b.DefRange()), Mode: reconcile.ModeAllow}
	attrs, blocks, diags := body(b.Body, kinds["domain"], b.DefRange())
	dc.add(diags...)
	if a, ok := attrs["priority"]; ok {
		dc.add(decodeExpr(a.Expr, &dr.Priority)...)
	}
	if a, ok := attrs["preempt"]; ok {
		dc.add(decodeExpr(a.Expr, &dr.Preempt)...)
	}
	if a, ok := attrs["mode"]; ok {
		var mode string
		if d := decodeExpr(a.Expr, &mode); d.HasErrors() {
			dc.add(d...)
		} else {
			switch m := reconcile.Mode(mode); m {
			case reconcile.ModeAllow, reconcile.ModeDeny, reconcile.ModeAll, reconcile.ModeAsk:
				dr.Mode = m
			default:
				dc.add(errAt(a.Expr.Range(), "Invalid mode",
					fmt.Sprintf("%q is not a mode. Use \"allow\" (only the listed devices; the old whitelist), \"deny\" (every device except the listed ones; blacklist), \"all\" (every device; matchall) or \"ask\" (every device, offered for an answer instead of attached).", mode)))
			}
		}
	}
	labels := map[string]hcl.Range{}
	var ranges []hcl.Range
	for _, db := range blocks {
		label, labelRange := label(db)
		use := len(db.Labels) > 0
		if first, dup := labels[label]; dup && use {
			dc.add(errAt(labelRange, "Duplicate device label",
				fmt.Sprintf("The domain %q already has a device %q at %s. Give each device block its own label.", name, label, where(first))))
			use = false
		} else if use {
			labels[label] = db.DefRange()
		}
		m, diags := match(db, "device")
		dc.add(diags...)
		if m.Ask {
			switch dr.Mode {
			case reconcile.ModeDeny:
				dc.add(errAt(db.DefRange(), "Ask in mode \"deny\"",
					fmt.Sprintf("In mode \"deny\" the device blocks of %q list what it refuses, so there is nothing to ask. Remove ask, or use mode = \"allow\".", name)))
				continue
			case reconcile.ModeAsk:
				dc.add(warnAt(db.DefRange(), "Ask in mode \"ask\"",
					fmt.Sprintf("The domain %q asks for every device it has no block for; a block in mode \"ask\" attaches without asking, and ask = true makes it ask again, which changes nothing. Remove ask, or the block.", name)))
			}
		}
		if dr.Mode == reconcile.ModeAll {
			dc.add(errAt(db.DefRange(), "Device block in mode \"all\"",
				fmt.Sprintf("The domain %q takes every device (mode = \"all\"), so this block changes nothing. Remove it, or use mode = \"allow\" to take only the listed devices or \"deny\" to take all but them.", name)))
			continue
		}
		if !use || diags.HasErrors() {
			continue
		}
		dr.Devices = append(dr.Devices, m)
		ranges = append(ranges, db.DefRange())
	}
	if dr.Mode == reconcile.ModeAllow && len(blocks) == 0 {
		dc.add(warnAt(b.DefRange(), "Domain wants no device",
			fmt.Sprintf("The domain %q is in mode \"allow\" with no device block, so it gets nothing. Add device blocks, or set mode = \"all\".", name)))
	}
	if !keep {
		return
	}
	dc.cfg.Rules.Domains = append(dc.cfg.Rules.Domains, dr)
	dc.domainRanges = append(dc.domainRanges, b.DefRange())
	dc.deviceRanges = append(dc.deviceRanges, ranges)
}

// exclude decodes an exclude block. Its label is optional: given, it
// names the exclude in status and plan; without one, its file and line do.
func (dc *decoder) exclude(b *hclsyntax.Block) {
	label, labelRange := label(b)
	keep := true
	if len(b.Labels) > 0 {
		if first, dup := dc.excludes[label]; dup {
			dc.add(errAt(labelRange, "Duplicate exclude label",
				fmt.Sprintf("An exclude %q is already defined at %s. Give each exclude block its own label.", label, where(first))))
			keep = false
		} else {
			dc.excludes[label] = b.DefRange()
		}
	}
	m, diags := match(b, "exclude")
	dc.add(diags...)
	if !keep || diags.HasErrors() {
		return
	}
	dc.cfg.Rules.Excludes = append(dc.cfg.Rules.Excludes, m)
	dc.excludeRange = append(dc.excludeRange, b.DefRange())
}

// match decodes the criteria of a device or exclude block. Every criterion
// is checked whatever the others hold; the block failed if and only if the
// diagnostics it returns have errors.
func match(b *hclsyntax.Block, kind string) (reconcile.Match, hcl.Diagnostics) {
	label, _ := label(b)
	m := reconcile.Match{Label: label, Source: where(b.DefRange())}
	attrs, _, diags := body(b.Body, kinds[kind], b.DefRange())
	str := func(name string) (string, hcl.Range, bool) {
		a, ok := attrs[name]
		if !ok {
			return "", hcl.Range{}, false
		}
		var s string
		if d := decodeExpr(a.Expr, &s); d.HasErrors() {
			diags = append(diags, d...)
			return "", a.Expr.Range(), false
		}
		return s, a.Expr.Range(), true
	}

	_, vendorSet := attrs["vendor"]
	_, productSet := attrs["product"]
	vendor, vr, vendorOK := str("vendor")
	product, pr, productOK := str("product")
	var v, p string
	if vendorOK {
		var err error
		if v, err = reconcile.ParseHexID(vendor); err != nil {
			diags = append(diags, errAt(vr, "Invalid vendor id", fmt.Sprintf("The vendor id %s. lsusb and usbctl devices show it as the part before the colon in ID 046d:c52b.", err)))
			vendorOK = false
		}
	}
	if productOK {
		var err error
		if p, err = reconcile.ParseHexID(product); err != nil {
			diags = append(diags, errAt(pr, "Invalid product id", fmt.Sprintf("The product id %s. lsusb and usbctl devices show it as the part after the colon in ID 046d:c52b.", err)))
			productOK = false
		}
	}
	switch {
	case productSet && !vendorSet:
		if !productOK {
			product = "PRODUCT"
		}
		diags = append(diags, errAt(attrs["product"].Expr.Range(), "Product without vendor",
			fmt.Sprintf("A product id alone matches that product of every vendor. Add vendor = \"...\", or if that is really meant write ids = [\"*:%s\"].", product)))
	case vendorOK && productOK:
		m.IDs = append(m.IDs, reconcile.IDPattern{Vendor: v, Product: p})
	case vendorOK && !productSet:
		m.IDs = append(m.IDs, reconcile.IDPattern{Vendor: v})
	}

	if a, ok := attrs["ids"]; ok {
		exprs, d := hcl.ExprList(a.Expr)
		if d.HasErrors() {
			diags = append(diags, errAt(a.Expr.Range(), "Invalid ids", "ids must be a list of strings such as [\"0483:5740\", \"0483:df11\"]."))
		}
		if len(exprs) == 0 && !d.HasErrors() {
			diags = append(diags, errAt(a.Expr.Range(), "Empty ids", "ids = [] matches nothing: list at least one \"vendor:product\", or remove it."))
		}
		for _, e := range exprs {
			var s string
			if d := decodeExpr(e, &s); d.HasErrors() {
				diags = append(diags, d...)
				continue
			}
			p, err := reconcile.ParseIDPattern(s)
			if err != nil {
				diags = append(diags, errAt(e.Range(), "Invalid id", capitalize(err.Error())+"."))
				continue
			}
			m.IDs = append(m.IDs, p)
		}
		if vendorSet {
			diags = append(diags, errAt(a.NameRange, "Both vendor and ids",
				"A block matches by vendor/product or by ids, not both (both must hold, which is rarely meant). Move the vendor:product into ids."))
		}
	}

	if a, ok := attrs["ask"]; ok {
		diags = append(diags, decodeExpr(a.Expr, &m.Ask)...)
	}
	if s, r, ok := str("serial"); ok {
		if s == "" {
			diags = append(diags, errAt(r, "Empty serial", "serial = \"\" would match nothing; usbctl devices shows each device's serial, or remove the attribute."))
		}
		m.Serial = s
	}
	if s, r, ok := str("port"); ok {
		pp, err := reconcile.ParsePortPattern(s)
		if err != nil {
			diags = append(diags, errAt(r, "Invalid port", capitalize(err.Error())+"."))
		} else {
			m.Port = &pp
		}
	}
	if a, ok := attrs["class"]; ok {
		var d hcl.Diagnostics
		m.Classes, d = classes(a)
		diags = append(diags, d...)
	}

	// Criteria given but wrong have their own errors above; a block that
	// gives none is a mistake of its own.
	given := 0
	for name := range attrs {
		if contains(criteria, name) {
			given++
		}
	}
	if given == 0 {
		if kind == "exclude" {
			diags = append(diags, errAt(b.DefRange(), "Exclude excludes nothing",
				"Give it at least one of vendor/product, ids, serial, port or class, or remove it."))
		} else {
			diags = append(diags, errAt(b.DefRange(), "Device block with no criteria",
				"Say which device it is: vendor and product, ids, serial, port or class (usbctl devices lists them)."))
		}
	}
	return m, diags
}

// classes accepts "hid" or ["hid", "08"], and reports every bad entry.
func classes(a *hclsyntax.Attribute) ([]string, hcl.Diagnostics) {
	v, diags := a.Expr.Value(nil)
	if diags.HasErrors() {
		return nil, diags
	}
	var items []hcl.Expression
	switch {
	case v.Type() == cty.String:
		items = []hcl.Expression{a.Expr}
	case v.Type().IsTupleType() || v.Type().IsListType():
		items, _ = hcl.ExprList(a.Expr)
		if len(items) == 0 {
			return nil, append(diags, errAt(a.Expr.Range(), "Empty class", "class = [] matches nothing: name at least one class, or remove it."))
		}
	default:
		return nil, append(diags, errAt(a.Expr.Range(), "Invalid class", "class must be a name such as \"hid\", a hex code such as \"03\", or a list of them."))
	}
	var out []string
	for _, e := range items {
		var s string
		if d := decodeExpr(e, &s); d.HasErrors() {
			diags = append(diags, d...)
			continue
		}
		c, err := reconcile.ParseClass(s)
		if err != nil {
			diags = append(diags, errAt(e.Range(), "Invalid class", capitalize(err.Error())+"."))
			continue
		}
		out = append(out, c)
	}
	return out, diags
}
