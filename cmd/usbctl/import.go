package main

import (
	"bytes"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/spf13/cobra"
	"github.com/zclconf/go-cty/cty"

	"github.com/usbctl/usbctl/config"
	"github.com/usbctl/usbctl/reconcile"
)

func newImportCmd() *cobra.Command {
	var domain string
	cmd := &cobra.Command{
		Use:   "import OLDCONF",
		Short: "Translate the older bash tool's config into a domain block",
		Long: `Import reads the config file of the older bash tool (a devlist array of
"vendor:product" ids and a mode of whitelist, blacklist or matchall) and prints
the equivalent domain block on standard output:

  whitelist  mode = "allow", one device block per devlist entry
  blacklist  mode = "deny", the devlist entries are the devices refused
  matchall   mode = "all", devlist is not used

"0b05:" becomes "0b05:*" (every product of vendor 0b05) and ":1872" becomes
"*:1872" (product 1872 of every vendor). The VM is named by --domain, or else
by the old config's vm=, domain= or VM_NAME= variable.

The file is read, never run: only plain assignments are understood. What could
not be carried over (entries that are not ids, values computed by commands,
other variables and commands) is listed on standard error.

  usbctl import --domain win11 /etc/old-usb.conf > /etc/usbctl/conf.d/win11.hcl
  usbctl check && systemctl reload usbctld`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			out, notes, err := importOld(args[0], data, domain)
			for _, n := range notes {
				fmt.Fprintln(cmd.ErrOrStderr(), "usbctl import: "+n)
			}
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(out)
			return err
		},
	}
	cmd.Flags().StringVar(&domain, "domain", "", "libvirt domain (VM) name, as virsh list --all shows it; overrides the old config's")
	return cmd
}

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

// importOld translates the old tool's config file (name, data) into HCL. It
// returns the notes for standard error, each "file:line: what", even when
// it fails. The HCL it returns always passes config.Parse.
func importOld(name string, data []byte, domainFlag string) ([]byte, []string, error) {
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

// ---- A reader for the subset of bash a config file uses. It never runs
// anything: it understands plain assignments (scalars and arrays, with
// quotes, escapes, comments and line continuations) and $NAME references to
// variables assigned before; everything else is noted and skipped.

type shWord struct {
	text string
	raw  string // the source text, for messages
	line int
	// dynamic says why the value cannot be known without running bash.
	dynamic string
}

type shVar struct {
	name  string
	array bool
	elems []shWord // the elements, or the one value of a scalar
	line  int      // of the last assignment
	used  bool     // by the translation, or referenced by another value
}

type shNote struct {
	line int
	msg  string
}

type shAssign struct {
	name   string
	index  string
	append bool
	array  bool
	elems  []shWord
	line   int
}

type shItem struct {
	word   *shWord
	assign *shAssign
	op     string
}

type heredoc struct {
	delim     string
	stripTabs bool
}

type shParser struct {
	file    string
	src     []byte
	pos     int
	line    int
	vars    map[string]*shVar
	order   []string
	notes   []shNote
	pending []heredoc
	depth   int // of if/for/while/case/{ } blocks
}

func parseShell(file string, src []byte) *shParser {
	p := &shParser{file: file, src: src, line: 1, vars: map[string]*shVar{}}
	for p.pos < len(p.src) {
		p.statement()
	}
	if p.depth > 0 {
		p.note(0, "a block (if, for, while, case or { }) is not closed at the end of the file")
	}
	return p
}

func (p *shParser) note(line int, format string, args ...any) {
	p.notes = append(p.notes, shNote{line, fmt.Sprintf(format, args...)})
}

func (p *shParser) peek(off int) byte {
	if p.pos+off < len(p.src) {
		return p.src[p.pos+off]
	}
	return 0
}

func isMeta(c byte) bool {
	switch c {
	case ' ', '\t', '\r', '\n', ';', '&', '|', '(', ')', '<', '>':
		return true
	}
	return false
}

// skipBlank skips spaces, tabs and line continuations.
func (p *shParser) skipBlank() {
	for p.pos < len(p.src) {
		switch c := p.src[p.pos]; {
		case c == ' ' || c == '\t' || c == '\r':
			p.pos++
		case c == '\\' && p.peek(1) == '\n':
			p.pos += 2
			p.line++
		default:
			return
		}
	}
}

func (p *shParser) skipComment() {
	for p.pos < len(p.src) && p.src[p.pos] != '\n' {
		p.pos++
	}
}

// newline consumes a newline and the bodies of the here-documents started
// on the line it ends.
func (p *shParser) newline() {
	p.pos++
	p.line++
	for _, h := range p.pending {
		start := p.line - 1
		closed := false
		for p.pos < len(p.src) && !closed {
			end := bytes.IndexByte(p.src[p.pos:], '\n')
			var l []byte
			if end < 0 {
				l, p.pos = p.src[p.pos:], len(p.src)
			} else {
				l, p.pos = p.src[p.pos:p.pos+end], p.pos+end+1
				p.line++
			}
			if h.stripTabs {
				l = bytes.TrimLeft(l, "\t")
			}
			closed = string(bytes.TrimRight(l, "\r")) == h.delim
		}
		if !closed {
			p.note(start, "here-document %s is not closed", h.delim)
		}
	}
	p.pending = nil
}

var (
	assignRe      = regexp.MustCompile(`^([A-Za-z_][A-Za-z0-9_]*)(?:\[([^\]\n]*)\])?(\+?=)`)
	arrayIndexRe  = regexp.MustCompile(`^\[[^\]\n]*\]=`)
	nameRe        = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	spliceRe      = regexp.MustCompile(`^"?\$\{([A-Za-z_][A-Za-z0-9_]*)\[[@*]\]\}"?$`)
	declKeywords  = map[string]bool{"declare": true, "typeset": true, "export": true, "readonly": true, "local": true}
	blockOpen     = map[string]bool{"if": true, "for": true, "while": true, "until": true, "case": true, "select": true, "{": true}
	blockClose    = map[string]bool{"fi": true, "done": true, "esac": true, "}": true}
	blockKeywords = map[string]bool{"then": true, "do": true, "else": true, "elif": true, "fi": true, "done": true, "esac": true, "{": true, "}": true}
)

// statement reads one simple command (up to a newline, ';' or '&') and
// applies it if it is nothing but assignments.
func (p *shParser) statement() {
	start, line := p.pos, p.line
	depth := p.depth
	var items []shItem
	assignPos, cmdPos, decl := true, true, false
	end := func() { p.apply(items, line, depth, string(p.src[start:p.pos])) }
	for {
		p.skipBlank()
		if p.pos >= len(p.src) {
			end()
			return
		}
		c := p.src[p.pos]
		switch {
		case c == '#':
			p.skipComment()
			continue
		case c == '\n':
			end()
			p.newline()
			return
		case c == ';' && p.peek(1) != ';', c == '&' && p.peek(1) != '&' && p.peek(1) != '>':
			p.pos++
			end()
			return
		case c == '<' && p.peek(1) == '<' && p.peek(2) != '<':
			p.pos += 2
			h := heredoc{}
			if p.peek(0) == '-' {
				p.pos++
				h.stripTabs = true
			}
			p.skipBlank()
			h.delim = p.readWord().text
			p.pending = append(p.pending, h)
			items = append(items, shItem{op: "<<"})
			continue
		case isMeta(c):
			op := string(c)
			if n := p.peek(1); n == c || (c == '&' && n == '>') || (c == '>' && n == '&') || (c == '<' && n == '<') {
				op += string(n)
			}
			p.pos += len(op)
			items = append(items, shItem{op: op})
			assignPos, cmdPos = true, op != "<" && op != ">" && op != ">>" && op != "&>" && op != ">&" && op != "<<<"
			continue
		}
		if assignPos {
			if a := p.tryAssign(); a != nil {
				items = append(items, shItem{assign: a})
				continue
			}
		}
		w := p.readWord()
		if w.raw == "" { // a lone character readWord does not take
			p.pos++
			continue
		}
		items = append(items, shItem{word: &w})
		switch {
		case w.raw == "{" || cmdPos && blockOpen[w.raw]:
			p.depth++
		case cmdPos && blockClose[w.raw] && p.depth > 0:
			p.depth--
		}
		switch {
		case len(items) == 1 && declKeywords[w.raw]:
			decl = true
		case decl:
		default:
			assignPos = false
		}
		cmdPos = blockKeywords[w.raw] || w.raw == "!" || w.raw == "time"
	}
}

// apply performs a statement made of assignments only; anything else is
// noted as not carried over.
func (p *shParser) apply(items []shItem, line, depth int, raw string) {
	if len(items) == 0 {
		return
	}
	keywordsOnly, command, decl := true, false, false
	for i, it := range items {
		switch {
		case it.assign != nil:
			keywordsOnly = false
		case it.op != "":
			keywordsOnly, command = false, true
		case i == 0 && declKeywords[it.word.raw]:
			keywordsOnly, decl = false, true
		case decl && (strings.HasPrefix(it.word.raw, "-") || strings.HasPrefix(it.word.raw, "+") || assignRe.MatchString(it.word.raw+"=")):
			// declare -a, export NAME
		default:
			if !blockKeywords[it.word.raw] {
				keywordsOnly = false
			}
			command = true
		}
	}
	if keywordsOnly {
		return
	}
	raw = strings.TrimSpace(raw)
	if i := strings.IndexByte(raw, '\n'); i >= 0 {
		raw = raw[:i] + " ..."
	}
	if len(raw) > 72 {
		raw = raw[:69] + "..."
	}
	switch {
	case command:
		p.note(line, "command not run: %s", raw)
		return
	case depth > 0:
		p.note(line, "assignment inside a block (if, for, while, case or a function) not carried over: %s", raw)
		return
	}
	for _, it := range items {
		if a := it.assign; a != nil {
			p.assign(a)
		}
	}
}

func (p *shParser) assign(a *shAssign) {
	v, ok := p.vars[a.name]
	if !ok {
		v = &shVar{name: a.name}
		p.vars[a.name] = v
		p.order = append(p.order, a.name)
	}
	v.line = a.line
	switch {
	case a.array && a.append:
		if !v.array && len(v.elems) == 1 && v.elems[0].text == "" && v.elems[0].dynamic == "" {
			v.elems = nil
		}
		v.array = true
		v.elems = append(v.elems, a.elems...)
	case a.array:
		v.array, v.elems = true, a.elems
	case a.index != "":
		w := a.elems[0]
		if !v.array && len(v.elems) == 1 && v.elems[0].text == "" && v.elems[0].dynamic == "" {
			v.elems = nil
		}
		v.array = true
		if i, err := strconv.Atoi(a.index); err == nil && i >= 0 && i < len(v.elems) {
			if a.append {
				w = concat(v.elems[i], w)
			}
			v.elems[i] = w
		} else {
			v.elems = append(v.elems, w)
		}
	case a.append && len(v.elems) > 0:
		v.elems[0] = concat(v.elems[0], a.elems[0])
	default:
		v.array, v.elems = false, a.elems
	}
}

func concat(a, b shWord) shWord {
	d := a.dynamic
	if d == "" {
		d = b.dynamic
	}
	return shWord{text: a.text + b.text, raw: a.raw + b.raw, line: a.line, dynamic: d}
}

// tryAssign reads NAME=value, NAME+=value, NAME[i]=value or NAME=( ... ).
func (p *shParser) tryAssign() *shAssign {
	m := assignRe.FindSubmatchIndex(p.src[p.pos:])
	if m == nil {
		return nil
	}
	a := &shAssign{name: string(p.src[p.pos+m[2] : p.pos+m[3]]), line: p.line}
	if m[4] >= 0 {
		a.index = string(p.src[p.pos+m[4] : p.pos+m[5]])
	}
	a.append = m[7]-m[6] == 2
	p.pos += m[1]
	if p.peek(0) == '(' && a.index == "" {
		p.pos++
		a.array = true
		a.elems = p.readArray(a.line)
		return a
	}
	if p.pos >= len(p.src) || isMeta(p.src[p.pos]) {
		a.elems = []shWord{{line: p.line}}
		return a
	}
	a.elems = []shWord{p.readWord()}
	return a
}

// readArray reads the elements of ( ... ) up to the closing parenthesis.
func (p *shParser) readArray(line int) []shWord {
	var elems []shWord
	for {
		p.skipBlank()
		if p.pos >= len(p.src) {
			p.note(line, "array not closed with ')': read up to the end of the file")
			return elems
		}
		switch c := p.src[p.pos]; {
		case c == '\n':
			p.pos++
			p.line++
			continue
		case c == '#':
			p.skipComment()
			continue
		case c == ')':
			p.pos++
			return elems
		case isMeta(c):
			p.note(p.line, "unexpected %q in an array: skipped", c)
			p.pos++
			continue
		}
		if m := arrayIndexRe.Find(p.src[p.pos:]); m != nil {
			p.pos += len(m)
		}
		w := p.readWord()
		if m := spliceRe.FindStringSubmatch(w.raw); m != nil {
			if v, ok := p.vars[m[1]]; ok {
				v.used = true
				elems = append(elems, v.elems...)
				continue
			}
		}
		elems = append(elems, w)
	}
}

// readWord reads one word, removing quotes and escapes as bash does.
func (p *shParser) readWord() shWord {
	w := shWord{line: p.line}
	start := p.pos
	var b strings.Builder
loop:
	for p.pos < len(p.src) {
		c := p.src[p.pos]
		switch {
		case isMeta(c):
			break loop
		case c == '\\':
			switch p.peek(1) {
			case '\n':
				p.line++
			case 0:
			default:
				b.WriteByte(p.src[p.pos+1])
			}
			p.pos += 2
		case c == '\'':
			p.pos++
			p.single(&b, &w)
		case c == '"':
			p.pos++
			p.double(&b, &w)
		case c == '$':
			p.dollar(&b, &w, false)
		case c == '`':
			p.backtick(&w)
		default:
			b.WriteByte(c)
			p.pos++
		}
	}
	if p.pos > len(p.src) {
		p.pos = len(p.src)
	}
	w.text, w.raw = b.String(), string(p.src[start:p.pos])
	return w
}

func (w *shWord) setDynamic(why string) {
	if w.dynamic == "" {
		w.dynamic = why
	}
}

func (p *shParser) single(b *strings.Builder, w *shWord) {
	end := bytes.IndexByte(p.src[p.pos:], '\'')
	if end < 0 {
		p.note(w.line, "quote ' not closed")
		w.setDynamic("unclosed quote")
		end = len(p.src) - p.pos
	}
	s := p.src[p.pos : p.pos+end]
	b.Write(s)
	p.line += bytes.Count(s, []byte{'\n'})
	p.pos += end + 1
}

func (p *shParser) double(b *strings.Builder, w *shWord) {
	for p.pos < len(p.src) {
		c := p.src[p.pos]
		switch c {
		case '"':
			p.pos++
			return
		case '\\':
			switch n := p.peek(1); n {
			case '\n':
				p.line++
			case '$', '`', '"', '\\':
				b.WriteByte(n)
			default:
				b.WriteByte('\\')
				if n != 0 {
					b.WriteByte(n)
				}
				if n == '\n' {
					p.line++
				}
			}
			p.pos += 2
		case '$':
			p.dollar(b, w, true)
		case '`':
			p.backtick(w)
		default:
			if c == '\n' {
				p.line++
			}
			b.WriteByte(c)
			p.pos++
		}
	}
	p.note(w.line, "quote \" not closed")
	w.setDynamic("unclosed quote")
}

var ansiEscapes = map[byte]string{'n': "\n", 't': "\t", 'r': "\r", 'a': "\a", 'b': "\b", 'e': "\x1b", 'E': "\x1b", 'f': "\f", 'v': "\v", '\\': "\\", '\'': "'", '"': "\"", '?': "?"}

// dollar reads a $ expansion: $NAME and ${NAME} of a variable assigned
// before are replaced by its value; anything else makes the word dynamic.
func (p *shParser) dollar(b *strings.Builder, w *shWord, quoted bool) {
	p.pos++ // $
	c := p.peek(0)
	switch {
	case c == '\'' && !quoted:
		p.pos++
		for p.pos < len(p.src) && p.src[p.pos] != '\'' {
			if p.src[p.pos] == '\\' && p.pos+1 < len(p.src) {
				if e, ok := ansiEscapes[p.src[p.pos+1]]; ok {
					b.WriteString(e)
					p.pos += 2
					continue
				}
			}
			if p.src[p.pos] == '\n' {
				p.line++
			}
			b.WriteByte(p.src[p.pos])
			p.pos++
		}
		p.pos++
	case c == '"' && !quoted:
		p.pos++
		p.double(b, w)
	case c == '(':
		p.skipBalanced('(', ')')
		w.setDynamic("$(...) runs a command")
	case c == '{':
		start := p.pos + 1
		p.skipBalanced('{', '}')
		inner := string(p.src[min(start, len(p.src)):max(min(start, len(p.src)), min(p.pos-1, len(p.src)))])
		if p.pos > len(p.src) || p.src[p.pos-1] != '}' {
			p.note(w.line, "${ not closed")
			w.setDynamic("unclosed ${")
		} else if nameRe.MatchString(inner) {
			p.expand(b, w, inner)
		} else {
			w.setDynamic("${" + inner + "}")
		}
	case c == '_' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z':
		start := p.pos
		for p.pos < len(p.src) {
			c := p.src[p.pos]
			if c == '_' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' {
				p.pos++
				continue
			}
			break
		}
		p.expand(b, w, string(p.src[start:p.pos]))
	case c >= '0' && c <= '9' || strings.IndexByte("@*#?$!-", c) >= 0 && c != 0:
		p.pos++
		w.setDynamic("$" + string(c))
	default:
		b.WriteByte('$')
	}
}

func (p *shParser) expand(b *strings.Builder, w *shWord, name string) {
	v, ok := p.vars[name]
	if !ok {
		w.setDynamic("$" + name + " is not set in this file")
		return
	}
	v.used = true
	if len(v.elems) > 0 {
		b.WriteString(v.elems[0].text)
		if v.elems[0].dynamic != "" {
			w.setDynamic(v.elems[0].dynamic)
		}
	}
}

// skipBalanced skips from an opening bracket at pos to its match, stepping
// over quoted text.
func (p *shParser) skipBalanced(open, close byte) {
	depth := 0
	for p.pos < len(p.src) {
		c := p.src[p.pos]
		switch c {
		case open:
			depth++
		case close:
			depth--
			if depth == 0 {
				p.pos++
				return
			}
		case '\\':
			p.pos++
		case '\'', '"', '`':
			if end := bytes.IndexByte(p.src[p.pos+1:], c); end >= 0 {
				p.line += bytes.Count(p.src[p.pos:p.pos+1+end], []byte{'\n'})
				p.pos += end + 1
			}
		case '\n':
			p.line++
		}
		p.pos++
	}
}

func (p *shParser) backtick(w *shWord) {
	p.pos++
	for p.pos < len(p.src) && p.src[p.pos] != '`' {
		if p.src[p.pos] == '\\' {
			p.pos++
		} else if p.src[p.pos] == '\n' {
			p.line++
		}
		p.pos++
	}
	p.pos++
	w.setDynamic("`...` runs a command")
}
