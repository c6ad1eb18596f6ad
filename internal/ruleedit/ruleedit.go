// Package ruleedit adds and removes device and exclude blocks in a usbctl
// config file the way a person would edit it: the new block is rendered by
// hclwrite (which quotes and escapes every string, so a hostile serial
// cannot break out of its string) and spliced into the original bytes, and
// a removed block is cut out with its leading comments. No other byte of
// the file changes: not the user's comments, blank lines, alignment or
// tabs. (hclwrite's own output would re-space every line and turn tabs
// into spaces; it is used here to find the blocks and to render new ones.)
//
// It lives outside the daemon on purpose: hclwrite links go-cmp, which
// cost usbctld ~0.5 MB of resident heap. The CLI edits; the daemon checks
// and writes (see cmd/usbctld).
package ruleedit

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/zclconf/go-cty/cty"
)

// Criteria are what a written block matches on. Only the exact criteria a
// person pins one device with are offered: ids, serial and port.
type Criteria struct {
	IDs    []string // "vvvv:pppp"
	Serial string
	Port   string
}

func (c Criteria) empty() bool { return len(c.IDs) == 0 && c.Serial == "" && c.Port == "" }

// check refuses what HCL cannot hold: a string is UTF-8 text, and a serial
// that is not (hardware may say anything) would be read back as another
// serial and match nothing.
func (c Criteria) check() error {
	if c.empty() {
		return errors.New("no criteria to write")
	}
	for _, s := range append([]string{c.Serial, c.Port}, c.IDs...) {
		if !utf8.ValidString(s) {
			return fmt.Errorf("%q is not UTF-8 text, which HCL cannot hold: match by ids and port instead", s)
		}
	}
	return nil
}

// Block is a device block (in a domain) or an exclude block to add.
type Block struct {
	Label    string
	Criteria Criteria
	// Comment, if set, is written on the line above the block. Anything
	// but printable characters is replaced, so a device's name cannot
	// end the comment and start config.
	Comment string
}

// NewFileHeader starts a file that usbctl creates.
const NewFileHeader = "# Written by usbctl (usbctl rule add, usbctl attach --save). Edit it freely:\n# usbctl keeps your comments and layout when it adds or removes a block.\n\n"

// ErrNotFound is returned when the block to remove is not in the file.
var ErrNotFound = errors.New("not found")

// ErrLabelTaken is returned when the domain (or the file's excludes)
// already has a block of that label.
var ErrLabelTaken = errors.New("label taken")

// file is a parsed config with the byte span of every token, so edits can
// be spliced into the original bytes.
type file struct {
	src  []byte
	f    *hclwrite.File
	span map[*hclwrite.Token][2]int
}

func parse(src []byte, filename string) (*file, error) {
	f, diags := hclwrite.ParseConfig(src, filename, hcl.InitialPos)
	if diags.HasErrors() {
		return nil, fmt.Errorf("%s does not parse, so it cannot be edited: %s; fix it (usbctl check) first", filename, diags.Error())
	}
	pf := &file{src: src, f: f, span: map[*hclwrite.Token][2]int{}}
	pos := 0
	for _, t := range f.BuildTokens(nil) {
		start := pos + t.SpacesBefore
		pos = start + len(t.Bytes)
		pf.span[t] = [2]int{start, pos}
	}
	if pos != len(src) {
		// The token stream did not cover the source: splicing would
		// corrupt it. Never seen; refuse rather than guess.
		return nil, fmt.Errorf("%s: cannot map the file's tokens to its bytes (%d of %d)", filename, pos, len(src))
	}
	return pf, nil
}

// lineStart is the offset of the start of the line holding offset i.
func (pf *file) lineStart(i int) int {
	for i > 0 && pf.src[i-1] != '\n' {
		i--
	}
	return i
}

// indentOf is the whitespace that starts the line holding offset i.
func (pf *file) indentOf(i int) string {
	s := pf.lineStart(i)
	e := s
	for e < len(pf.src) && (pf.src[e] == ' ' || pf.src[e] == '\t') {
		e++
	}
	return string(pf.src[s:e])
}

func (pf *file) domain(name string) *hclwrite.Block {
	return pf.f.Body().FirstMatchingBlock("domain", []string{name})
}

// Labels returns the labels of the device blocks of domain in the file, or
// of its exclude blocks when domain is "".
func Labels(src []byte, filename, domain string) ([]string, error) {
	pf, err := parse(src, filename)
	if err != nil {
		return nil, err
	}
	body, typ := pf.f.Body(), "exclude"
	if domain != "" {
		d := pf.domain(domain)
		if d == nil {
			return nil, nil
		}
		body, typ = d.Body(), "device"
	}
	var out []string
	for _, b := range body.Blocks() {
		if b.Type() == typ && len(b.Labels()) == 1 {
			out = append(out, b.Labels()[0])
		}
	}
	return out, nil
}

// AddDevice adds a device block to the domain block of the file; a file
// without one gets a new domain block at its end (an empty src is a new
// file).
func AddDevice(src []byte, filename, domain string, b Block) ([]byte, error) {
	if err := b.Criteria.check(); err != nil {
		return nil, fmt.Errorf("device %q for domain %q: %w", b.Label, domain, err)
	}
	if !utf8.ValidString(domain) || !utf8.ValidString(b.Label) {
		return nil, fmt.Errorf("domain %q, device %q: HCL labels must be UTF-8", domain, b.Label)
	}
	pf, err := parse(src, filename)
	if err != nil {
		return nil, err
	}
	d := pf.domain(domain)
	if d == nil {
		// A new domain block at the end (a new file gets a header
		// first), then the device goes into it like into any other.
		cmt := ""
		if len(bytesTrim(src)) == 0 {
			src, cmt = nil, NewFileHeader
		}
		pf.src = src
		grown := pf.appendTop(cmt, hclwrite.NewBlock("domain", []string{domain}))
		if pf, err = parse(grown, filename); err != nil {
			return nil, err
		}
		if d = pf.domain(domain); d == nil {
			return nil, fmt.Errorf("domain %q: its block, once written, does not read back under that name", domain)
		}
	}
	if d.Body().FirstMatchingBlock("device", []string{b.Label}) != nil {
		return nil, fmt.Errorf("domain %q in %s already has a device %q: %w", domain, filename, b.Label, ErrLabelTaken)
	}
	return pf.insertInto(d, filename, domain, b)
}

// AddExclude adds an exclude block at the end of the file.
func AddExclude(src []byte, filename string, b Block) ([]byte, error) {
	if err := b.Criteria.check(); err != nil {
		return nil, fmt.Errorf("exclude %q: %w", b.Label, err)
	}
	if !utf8.ValidString(b.Label) {
		return nil, fmt.Errorf("exclude %q: HCL labels must be UTF-8", b.Label)
	}
	pf, err := parse(src, filename)
	if err != nil {
		return nil, err
	}
	if pf.f.Body().FirstMatchingBlock("exclude", []string{b.Label}) != nil {
		return nil, fmt.Errorf("%s already has an exclude %q: %w", filename, b.Label, ErrLabelTaken)
	}
	cmt := comment(b.Comment)
	if len(bytesTrim(src)) == 0 {
		pf.src, cmt = nil, NewFileHeader+cmt
	}
	return pf.appendTop(cmt, render(b, "exclude")), nil
}

// RemoveDevice removes the device block of that label from the domain, with
// the comment lines right above it.
func RemoveDevice(src []byte, filename, domain, label string) ([]byte, error) {
	pf, err := parse(src, filename)
	if err != nil {
		return nil, err
	}
	d := pf.domain(domain)
	if d == nil {
		return nil, fmt.Errorf("%s has no domain %q: %w", filename, domain, ErrNotFound)
	}
	blk := d.Body().FirstMatchingBlock("device", []string{label})
	if blk == nil {
		return nil, fmt.Errorf("domain %q in %s has no device %q: %w", domain, filename, label, ErrNotFound)
	}
	return pf.cut(blk), nil
}

// RemoveExclude removes the exclude block of that label, with the comment
// lines right above it.
func RemoveExclude(src []byte, filename, label string) ([]byte, error) {
	pf, err := parse(src, filename)
	if err != nil {
		return nil, err
	}
	blk := pf.f.Body().FirstMatchingBlock("exclude", []string{label})
	if blk == nil {
		return nil, fmt.Errorf("%s has no exclude %q: %w", filename, label, ErrNotFound)
	}
	return pf.cut(blk), nil
}

// render builds the block with hclwrite: labels and values are quoted and
// escaped by it ("${" becomes "$${", control characters \u escapes).
func render(b Block, typ string) *hclwrite.Block {
	blk := hclwrite.NewBlock(typ, []string{b.Label})
	body := blk.Body()
	if len(b.Criteria.IDs) > 0 {
		ids := make([]cty.Value, len(b.Criteria.IDs))
		for i, id := range b.Criteria.IDs {
			ids[i] = cty.StringVal(id)
		}
		body.SetAttributeValue("ids", cty.ListVal(ids))
	}
	if b.Criteria.Serial != "" {
		body.SetAttributeValue("serial", cty.StringVal(b.Criteria.Serial))
	}
	if b.Criteria.Port != "" {
		body.SetAttributeValue("port", cty.StringVal(b.Criteria.Port))
	}
	return blk
}

// text renders blocks at the top level, formatted, with a comment line
// above the first if one is given.
func text(cmt string, blocks ...*hclwrite.Block) string {
	f := hclwrite.NewEmptyFile()
	for _, b := range blocks {
		f.Body().AppendBlock(b)
	}
	return cmt + string(hclwrite.Format(f.Bytes()))
}

// comment is a "# ..." line made safe: one line of printable characters.
func comment(s string) string {
	if s == "" {
		return ""
	}
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == '\u2028' || r == '\u2029' || r == 0x85 {
			return '?'
		}
		return r
	}, s)
	return "# " + s + "\n"
}

// appendTop appends top-level blocks at the end of the file, after a blank
// line.
func (pf *file) appendTop(cmt string, blocks ...*hclwrite.Block) []byte {
	out := append([]byte(nil), pf.src...)
	if len(out) > 0 {
		if out[len(out)-1] != '\n' {
			out = append(out, '\n')
		}
		if len(out) < 2 || out[len(out)-2] != '\n' {
			out = append(out, '\n')
		}
	}
	return append(out, text(cmt, blocks...)...)
}

// insertInto splices the device block before the closing brace of domain
// block d, indented like the domain's other content (tabs included).
func (pf *file) insertInto(d *hclwrite.Block, filename, domain string, b Block) ([]byte, error) {
	toks := d.BuildTokens(nil)
	closeAt := -1
	for i := len(toks) - 1; i >= 0; i-- {
		if toks[i].Type == hclsyntax.TokenCBrace {
			closeAt = i
			break
		}
	}
	if closeAt <= 0 || !endsLine(toks[closeAt-1]) {
		return nil, fmt.Errorf("domain %q in %s is written on one line; put its closing brace on a line of its own so a device block can go inside", domain, filename)
	}
	closeStart := pf.span[toks[closeAt]][0]
	at := pf.lineStart(closeStart)
	outer := pf.indentOf(pf.span[toks[0]][0])
	// The domain's content sets the indentation: the first token after the
	// opening brace's line.
	inner, content := "", false
	for i := 0; i < closeAt; i++ {
		if toks[i].Type == hclsyntax.TokenOBrace {
			for j := i + 1; j < closeAt; j++ {
				if toks[j].Type != hclsyntax.TokenNewline {
					inner, content = pf.indentOf(pf.span[toks[j]][0]), true
					break
				}
			}
			break
		}
	}
	unit := "  "
	if strings.HasPrefix(inner, outer) && len(inner) > len(outer) {
		unit = inner[len(outer):]
	} else {
		inner = outer + unit
	}
	var sb strings.Builder
	// A blank line between the domain's last item and the new block,
	// unless the domain is empty or ends in one already.
	if prev := pf.src[:at]; content && len(prev) >= 2 && prev[len(prev)-2] != '\n' {
		sb.WriteByte('\n')
	}
	for _, line := range strings.SplitAfter(text(comment(b.Comment), render(b, "device")), "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		n := len(line) - len(strings.TrimLeft(line, " "))
		sb.WriteString(inner + strings.Repeat(unit, n/2) + line[n:])
	}
	out := make([]byte, 0, len(pf.src)+sb.Len())
	out = append(out, pf.src[:at]...)
	out = append(out, sb.String()...)
	return append(out, pf.src[at:]...), nil
}

func bytesTrim(b []byte) string { return strings.TrimSpace(string(b)) }

// endsLine reports whether a token ends its line: a newline, or a comment
// (whose token holds the newline).
func endsLine(t *hclwrite.Token) bool {
	return t.Type == hclsyntax.TokenNewline || (t.Type == hclsyntax.TokenComment && len(t.Bytes) > 0 && t.Bytes[len(t.Bytes)-1] == '\n')
}

// cut removes the block's lines, from its first comment line to the end
// of its closing line. A blank line that the block stood between and
// something else (another blank line, a closing brace, the end of the
// file) goes with it, so adding and then removing a block gives back the
// file as it was.
func (pf *file) cut(blk *hclwrite.Block) []byte {
	toks := blk.BuildTokens(nil)
	start := pf.lineStart(pf.span[toks[0]][0])
	end := pf.span[toks[len(toks)-1]][1]
	out := append([]byte(nil), pf.src[:start]...)
	rest := pf.src[end:]
	blankBefore := start >= 2 && pf.src[start-2] == '\n'
	switch {
	case (blankBefore || start == 0) && len(rest) > 0 && rest[0] == '\n':
		rest = rest[1:]
	case blankBefore && (strings.TrimSpace(string(rest)) == "" || strings.HasPrefix(strings.TrimLeft(string(rest), " \t"), "}")):
		out = out[:len(out)-1]
	}
	return append(out, rest...)
}
