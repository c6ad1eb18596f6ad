package oldconf

import (
	"bytes"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// A reader for the subset of bash a config file uses. It never runs
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
