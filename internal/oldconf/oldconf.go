// Package oldconf reads the config of the older bash tool usbctl replaces (a
// devlist array of vendor:product ids and a whitelist, blacklist or
// matchall mode) without running it, and translates it into a domain block
// of usbctl's config. usbctl import is its command-line face.
package oldconf

import (
	"bytes"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/zclconf/go-cty/cty"

	"github.com/usbctl/usbctl/config"
	"github.com/usbctl/usbctl/reconcile"
)

// Variable names the old tool's config may use, lower-cased.
var (
	devlistNames = []string{"devlist"}
	modeNames    = []string{"mode"}
	domainNames  = []string{"vm", "vm_name", "vmname", "domain", "domain_name", "domainname", "dom", "guest", "guest_name", "vm_domain", "libvirt_domain", "virsh_domain"}
	uriNames     = []string{"uri", "libvirt_uri", "virsh_uri", "connect_uri", "virsh_default_connect_uri", "libvirt_default_uri"}
)

var oldModes = map[string]reconcile.Mode{
	"whitelist": reconcile.ModeAllow, "allow": reconcile.ModeAllow,
	"blacklist": reconcile.ModeDeny, "deny": reconcile.ModeDeny,
	"matchall": reconcile.ModeAll, "all": reconcile.ModeAll,
}

// Translate turns the old tool's config file (name, data) into a domain
// block of usbctl's config, for the VM domain (or, if empty, the one the
// file names). It returns notes on what it could not carry over, each
// "file:line: what", even when it fails. The HCL it returns always passes
// config.Parse.
func Translate(name string, data []byte, domainFlag string) ([]byte, []string, error) {
	if bytes.IndexByte(data, 0) >= 0 {
		return nil, nil, fmt.Errorf("%s is not a text file", name)
	}
	sh := parseShell(name, data)
	im := &importer{sh: sh}
	out, err := im.translate(domainFlag)
	sort.SliceStable(im.sh.notes, func(i, j int) bool { return im.sh.notes[i].line < im.sh.notes[j].line })
	notes := make([]string, 0, len(sh.notes))
	for _, n := range sh.notes {
		if n.line > 0 {
			notes = append(notes, fmt.Sprintf("%s:%d: %s", name, n.line, n.msg))
		} else {
			notes = append(notes, fmt.Sprintf("%s: %s", name, n.msg))
		}
	}
	return out, notes, err
}

type importer struct {
	sh *shParser
}

func (im *importer) note(line int, format string, args ...any) {
	im.sh.notes = append(im.sh.notes, shNote{line, fmt.Sprintf(format, args...)})
}

// find returns the variable among names (compared case-insensitively)
// assigned last; others of those names are noted as ignored.
func (im *importer) find(what string, names []string) *shVar {
	var found []*shVar
	for _, n := range im.sh.order {
		for _, want := range names {
			if strings.EqualFold(n, want) {
				found = append(found, im.sh.vars[n])
			}
		}
	}
	if len(found) == 0 {
		return nil
	}
	sort.SliceStable(found, func(i, j int) bool { return found[i].line < found[j].line })
	v := found[len(found)-1]
	v.used = true
	for _, o := range found[:len(found)-1] {
		o.used = true
		im.note(o.line, "%s is also set by %s (line %d): that one is used, this one ignored", what, v.name, v.line)
	}
	return v
}

// scalar is the literal value of a variable, or why there is none.
func (im *importer) scalar(v *shVar) (string, bool) {
	if len(v.elems) == 0 {
		return "", true
	}
	w := v.elems[0]
	if v.array && len(v.elems) > 1 {
		im.note(v.line, "%s is an array: only its first element %q is used", v.name, w.text)
	}
	if w.dynamic != "" {
		im.note(w.line, "%s=%s: its value needs bash to run (%s)", v.name, w.raw, w.dynamic)
		return "", false
	}
	return strings.TrimSpace(w.text), true
}

type importEntry struct {
	id   reconcile.IDPattern
	raw  string
	line int
}

func (im *importer) translate(domainFlag string) ([]byte, error) {
	devlist := im.find("devlist", devlistNames)
	modeVar := im.find("the mode", modeNames)
	domainVar := im.find("the VM name", domainNames)
	uriVar := im.find("the libvirt URI", uriNames)
	if devlist == nil && modeVar == nil {
		return nil, fmt.Errorf("%s has no devlist and no mode variable: is it the old tool's config?", im.sh.file)
	}

	// Mode.
	mode, modeText := reconcile.ModeAllow, ""
	if modeVar == nil {
		// A variable of another name holding one of the mode words.
		var cands []*shVar
		for _, n := range im.sh.order {
			v := im.sh.vars[n]
			if v.used || v.array || len(v.elems) != 1 || v.elems[0].dynamic != "" {
				continue
			}
			if _, ok := oldModes[strings.ToLower(strings.TrimSpace(v.elems[0].text))]; ok {
				cands = append(cands, v)
			}
		}
		if len(cands) == 1 {
			modeVar = cands[0]
			modeVar.used = true
			im.note(modeVar.line, "no mode variable: took the mode from %s", modeVar.name)
		}
	}
	if modeVar == nil {
		im.note(0, "no mode variable: assumed whitelist (only the devlist devices go to the VM)")
		modeText = "whitelist"
	} else {
		s, ok := im.scalar(modeVar)
		if !ok {
			return nil, fmt.Errorf("%s:%d: the mode %s=%s is not a plain value; set it to whitelist, blacklist or matchall", im.sh.file, modeVar.line, modeVar.name, modeVar.elems[0].raw)
		}
		m, known := oldModes[strings.ToLower(s)]
		if !known {
			return nil, fmt.Errorf("%s:%d: %s=%q is not a mode of the old tool: want whitelist, blacklist or matchall", im.sh.file, modeVar.line, modeVar.name, s)
		}
		mode, modeText = m, modeVar.name+"="+s
	}

	// Domain.
	domain := domainFlag
	if domainVar != nil {
		s, ok := im.scalar(domainVar)
		switch {
		case domainFlag != "":
			if ok && s != domainFlag {
				im.note(domainVar.line, "%s=%q: --domain %q is used instead", domainVar.name, s, domainFlag)
			}
		case !ok || s == "":
			return nil, fmt.Errorf("%s:%d: the VM name %s has no plain value: give it with --domain NAME", im.sh.file, domainVar.line, domainVar.name)
		default:
			domain = s
		}
	}
	if domain == "" {
		return nil, fmt.Errorf("%s names no VM (as vm=, domain= or VM_NAME=): give it with --domain NAME (the name virsh list --all shows)", im.sh.file)
	}
	if strings.ContainsAny(domain, "/\x00") || strings.TrimSpace(domain) != domain {
		return nil, fmt.Errorf("%q cannot be a libvirt domain name: no '/' and no surrounding spaces", domain)
	}

	if uriVar != nil {
		if s, ok := im.scalar(uriVar); ok && s != "" && s != config.DefaultURI {
			im.note(uriVar.line, "%s=%q not carried over: usbctld manages one libvirt connection; set libvirt { uri = %q } in %s", uriVar.name, s, s, config.DefaultPath)
		}
	}

	// Entries.
	var entries []importEntry
	if devlist != nil {
		var words []shWord
		if devlist.array {
			words = devlist.elems
		} else if len(devlist.elems) == 1 {
			w := devlist.elems[0]
			if w.dynamic != "" {
				words = []shWord{w}
			} else {
				for _, f := range strings.Fields(w.text) {
					words = append(words, shWord{text: f, raw: f, line: w.line})
				}
				if len(words) > 1 {
					im.note(devlist.line, "%s is a string, not an array: read as %d entries separated by spaces", devlist.name, len(words))
				}
			}
		}
		if mode == reconcile.ModeAll && len(words) > 0 {
			n := fmt.Sprintf("%d entries", len(words))
			if len(words) == 1 {
				n = "1 entry"
			}
			im.note(devlist.line, "devlist (%s) not carried over: matchall takes every device, so devlist means nothing (exclude blocks keep devices on the host)", n)
			words = nil
		}
		seen := map[string]int{}
		for _, w := range words {
			if w.dynamic != "" {
				im.note(w.line, "devlist entry %s not carried over: its value needs bash to run (%s)", w.raw, w.dynamic)
				continue
			}
			s := strings.TrimSpace(w.text)
			if s == "" {
				im.note(w.line, "empty devlist entry %s skipped", w.raw)
				continue
			}
			p, err := reconcile.ParseIDPattern(s)
			if err != nil {
				im.note(w.line, "devlist entry %q not carried over: %v", s, err)
				continue
			}
			if first, dup := seen[p.String()]; dup {
				im.note(w.line, "devlist entry %q repeats line %d's: skipped", s, first)
				continue
			}
			seen[p.String()] = w.line
			entries = append(entries, importEntry{id: p, raw: s, line: w.line})
		}
	}
	for _, n := range im.sh.order {
		if v := im.sh.vars[n]; !v.used {
			im.note(v.line, "variable %s ignored: usbctl import knows only devlist, the mode and the VM name", v.name)
		}
	}

	out := im.render(domain, mode, modeText, entries)
	if _, diags := config.Parse(config.Source{Name: "imported.hcl", Data: out}); diags.HasErrors() {
		// A bug of this command, not of the user's file.
		return nil, fmt.Errorf("the translation is not a valid config (please report this):\n%s\n%s", strings.Join(diags.Strings(), "\n"), out)
	}
	return out, nil
}

var simpleFileName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]*$`)

func (im *importer) render(domain string, mode reconcile.Mode, modeText string, entries []importEntry) []byte {
	var b bytes.Buffer
	base := im.sh.file
	if i := strings.LastIndexByte(base, '/'); i >= 0 {
		base = base[i+1:]
	}
	fmt.Fprintf(&b, "# Imported by usbctl import from %s (the older bash tool's config).\n", commentSafe(base))
	dest := "a file in " + config.DefaultDir
	if simpleFileName.MatchString(domain) {
		dest = config.DefaultDir + "/" + domain + ".hcl"
	}
	fmt.Fprintf(&b, "# Save it as %s, then run usbctl check.\n", dest)
	wildcard := false
	for _, e := range entries {
		wildcard = wildcard || !e.id.Exact()
	}
	switch {
	case mode == reconcile.ModeAllow && wildcard:
		b.WriteString("# usbctl gives a hub to a VM only through an exact vendor:product: a hub\n# matched only by a wildcard entry stays on the host.\n")
	case mode != reconcile.ModeAllow:
		b.WriteString("# usbctl never gives a hub to a VM in mode \"deny\" or \"all\", and exclude\n# blocks (in usbctl.hcl) keep devices on the host whatever the mode.\n")
	}
	fmt.Fprintf(&b, "domain %s {\n", hclString(domain))
	comment := map[reconcile.Mode]string{
		reconcile.ModeAllow: "only the devices listed below",
		reconcile.ModeDeny:  "every device except those listed below",
		reconcile.ModeAll:   "every device",
	}[mode]
	fmt.Fprintf(&b, "  mode = %s # %s: %s\n", hclString(string(mode)), commentSafe(modeText), comment)
	if mode == reconcile.ModeAll {
		b.WriteString("}\n")
		return hclwrite.Format(b.Bytes())
	}
	if len(entries) == 0 {
		if mode == reconcile.ModeAllow {
			b.WriteString("  # devlist lists no device: this VM gets none (usbctl check warns).\n")
		} else {
			b.WriteString("  # devlist lists no device: this VM refuses none (the same as mode = \"all\").\n")
		}
	}
	for _, e := range entries {
		fmt.Fprintf(&b, "\n  # devlist entry %s, line %d\n", commentSafe(strconv.Quote(e.raw)), e.line)
		fmt.Fprintf(&b, "  device %s {\n    ids = [%s]\n  }\n", hclString(e.id.String()), hclString(e.id.String()))
	}
	b.WriteString("}\n")
	return hclwrite.Format(b.Bytes())
}

// hclString quotes s as an HCL string literal, escaping template sequences.
func hclString(s string) string {
	return string(hclwrite.TokensForValue(cty.StringVal(s)).Bytes())
}

// commentSafe keeps text on one comment line.
func commentSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, s)
}
