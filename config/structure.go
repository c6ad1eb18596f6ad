package config

import (
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// The structure of the language, checked here rather than by HCL's
// Body.Content: HCL's messages name its own terms ("All exclude blocks must
// have 1 labels (label)", "Blocks of type "usb" are not expected here"),
// where a user needs the block they are in, what it takes and what to
// write instead.

// kind is one kind of block, or the top level of a file ("").
type kind struct {
	name string
	// what the block is, for messages: "a domain block".
	what string
	// attrs are the arguments it takes, in the order messages list them;
	// required must be set.
	attrs, required []string
	// blocks are the block types it holds.
	blocks []string
	// minLabels and maxLabels bound the labels; label says what the
	// label is, for messages.
	minLabels, maxLabels int
	label                string
}

var (
	topLevel = kind{what: "the top level of a config file", blocks: []string{"libvirt", "domain", "exclude"}}
	kinds    = map[string]kind{
		"libvirt": {name: "libvirt", what: "the libvirt block", attrs: []string{"uri"}, required: []string{"uri"}},
		"domain": {name: "domain", what: "a domain block", attrs: []string{"priority", "mode", "preempt"}, blocks: []string{"device"},
			minLabels: 1, maxLabels: 1, label: "the domain's name, as virsh list --all shows it"},
		"device": {name: "device", what: "a device block", attrs: append(criteria[:len(criteria):len(criteria)], "ask"),
			minLabels: 1, maxLabels: 1, label: "a name of your choice, which status and plan show"},
		"exclude": {name: "exclude", what: "an exclude block", attrs: criteria,
			maxLabels: 1, label: "a name of your choice, which status and plan show"},
	}
	criteria = []string{"vendor", "product", "ids", "serial", "port", "class"}

	// examples of every argument and block, for messages that say what
	// to write.
	argExample = map[string]string{
		"uri": `uri = "qemu:///system"`, "priority": `priority = 10`, "mode": `mode = "allow"`, "preempt": `preempt = true`,
		"vendor": `vendor = "046d"`, "product": `product = "c52b"`, "ids": `ids = ["046d:c52b"]`,
		"serial": `serial = "12345678"`, "port": `port = "1-4.2"`, "class": `class = "hid"`, "ask": `ask = true`,
	}
	blockExample = map[string]string{
		"libvirt": `libvirt { uri = "qemu:///system" }`, "domain": `domain "win11" { ... }`,
		"device": `device "receiver" { ids = ["046d:c52b"] }`, "exclude": `exclude "host-keyboard" { ids = ["04d9:0006"] }`,
	}
)

// home is where an argument belongs, for one written in the wrong block.
func home(arg string) string {
	switch {
	case arg == "uri":
		return "the libvirt block: " + blockExample["libvirt"]
	case arg == "priority" || arg == "mode" || arg == "preempt":
		return "a domain block, where it applies to the whole domain: " + argExample[arg]
	case arg == "ask":
		return "a device block, whose devices are then offered rather than attached: " + argExample["ask"]
	case contains(criteria, arg):
		return "a device block (what a domain gets) or an exclude block (what no domain gets): " + blockExample["device"]
	}
	return ""
}

// blockHome is where a block type belongs, for one nested in the wrong
// place.
func blockHome(typ string) string {
	switch typ {
	case "device":
		return "inside a domain block: domain \"win11\" { device \"receiver\" { ... } }"
	case "libvirt", "domain", "exclude":
		return "at the top level of a file, outside any other block"
	}
	return ""
}

// body checks a block's body (or a file's) against k and returns the
// arguments and blocks it may use, blocks in source order, with a
// diagnostic for everything else: nothing is dropped silently.
func body(b *hclsyntax.Body, k kind, in hcl.Range) (map[string]*hclsyntax.Attribute, []*hclsyntax.Block, hcl.Diagnostics) {
	var diags hcl.Diagnostics
	attrs := map[string]*hclsyntax.Attribute{}
	names := make([]string, 0, len(b.Attributes))
	for name := range b.Attributes {
		names = append(names, name)
	}
	sort.Slice(names, func(i, j int) bool {
		return b.Attributes[names[i]].SrcRange.Start.Byte < b.Attributes[names[j]].SrcRange.Start.Byte
	})
	for _, name := range names {
		a := b.Attributes[name]
		if contains(k.attrs, name) {
			attrs[name] = a
			continue
		}
		diags = append(diags, errAt(a.NameRange, "Unsupported argument", unknownArg(k, name)))
	}
	for _, name := range k.required {
		if _, ok := attrs[name]; !ok {
			diags = append(diags, errAt(in, "Missing "+name, fmt.Sprintf("%s needs %s. %s", capitalize(k.what), name, requiredHint(name))))
		}
	}
	var blocks []*hclsyntax.Block
	for _, blk := range b.Blocks {
		if !contains(k.blocks, blk.Type) {
			diags = append(diags, errAt(blk.TypeRange, "Unsupported block type", unknownBlock(k, blk.Type)))
			continue
		}
		diags = append(diags, labels(blk, kinds[blk.Type])...)
		blocks = append(blocks, blk)
	}
	return attrs, blocks, diags
}

func requiredHint(name string) string {
	if name == "uri" {
		return fmt.Sprintf("Say which libvirt to manage, %s (virsh uri shows the one virsh uses), or remove the block to manage %s.", argExample["uri"], DefaultURI)
	}
	return "Add " + argExample[name] + "."
}

func unknownArg(k kind, name string) string {
	var s string
	if len(k.attrs) == 0 {
		s = fmt.Sprintf("%s holds %s, not arguments", capitalize(k.what), list(k.blocks, "blocks"))
	} else {
		s = fmt.Sprintf("%s takes %s; %q is not one of them", capitalize(k.what), list(k.attrs, ""), name)
	}
	switch {
	case contains(k.blocks, name):
		return fmt.Sprintf("%s is a block, not an argument: write %s, without \"=\".", name, blockExample[name])
	case home(name) != "":
		return fmt.Sprintf("%s. %s belongs in %s.", s, name, home(name))
	}
	return s + "." + didYouMean(name, k.attrs)
}

func unknownBlock(k kind, typ string) string {
	switch {
	case contains(k.attrs, typ):
		return fmt.Sprintf("%s is an argument, not a block: write %s.", typ, argExample[typ])
	case blockHome(typ) != "":
		return fmt.Sprintf("%s blocks go %s.", typ, blockHome(typ))
	case home(typ) != "":
		return fmt.Sprintf("%s is an argument of %s.", typ, home(typ))
	}
	if len(k.blocks) == 0 {
		return fmt.Sprintf("%s holds no blocks, only %s; %q is not one of them.%s", capitalize(k.what), list(k.attrs, ""), typ, didYouMean(typ, k.attrs))
	}
	return fmt.Sprintf("%s holds %s; %q is not one of them.%s", capitalize(k.what), list(k.blocks, "blocks"), typ, didYouMean(typ, k.blocks))
}

// labels checks the number of labels of a block of kind k.
func labels(blk *hclsyntax.Block, k kind) hcl.Diagnostics {
	n := len(blk.Labels)
	var d *hcl.Diagnostic
	switch {
	case n < k.minLabels:
		d = errAt(blk.TypeRange, fmt.Sprintf("%s block without a %s", capitalize(k.name), labelWord(k)),
			fmt.Sprintf("Write its %s in quotes after %q: %s (%s).", labelWord(k), k.name, blockExample[k.name], k.label))
	case n > k.maxLabels && k.maxLabels == 0:
		d = errAt(hcl.RangeBetween(blk.LabelRanges[0], blk.LabelRanges[n-1]), fmt.Sprintf("Label on the %s block", k.name),
			fmt.Sprintf("The %s block has no label: write %s.", k.name, blockExample[k.name]))
	case n > k.maxLabels:
		d = errAt(hcl.RangeBetween(blk.LabelRanges[k.maxLabels], blk.LabelRanges[n-1]), fmt.Sprintf("Too many labels on %s block", k.name),
			fmt.Sprintf("%s block has %s, %s: %s. Remove %s.", capitalize(article(k.name)), oneLabel(k), k.label, blockExample[k.name], quoteAll(blk.Labels[k.maxLabels:])))
	default:
		return nil
	}
	return hcl.Diagnostics{d}
}

func oneLabel(k kind) string {
	if k.minLabels == 0 {
		return "at most one label"
	}
	return "one label"
}

func labelWord(k kind) string {
	if k.name == "domain" {
		return "name"
	}
	return "label"
}

func article(name string) string {
	if strings.IndexByte("aeiou", name[0]) >= 0 {
		return "an " + name
	}
	return "a " + name
}

func quoteAll(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = fmt.Sprintf("%q", s)
	}
	return strings.Join(q, " ")
}

// list renders names as "a, b and c", with an optional noun after it.
func list(names []string, noun string) string {
	s := names[len(names)-1]
	if len(names) > 1 {
		s = strings.Join(names[:len(names)-1], ", ") + " and " + s
	}
	if noun != "" {
		s += " " + noun
	}
	return s
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// didYouMean suggests the closest of names to a misspelt one.
func didYouMean(s string, names []string) string {
	best, bestD := "", 3 // more than two edits is not a typo
	for _, n := range names {
		if d := editDistance(strings.ToLower(s), n); d < bestD {
			best, bestD = n, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" Did you mean %q?", best)
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// syntaxMessages replaces the parser's messages about the shape of blocks
// and arguments with ones that say what to write. Each one is matched by
// its exact summary and detail (TestSyntaxMessages triggers every one, so
// an HCL upgrade that rewords one fails there); the rest (expressions,
// strings) say what is wrong well enough and are kept.
var syntaxMessages = []struct {
	summary, detail *regexp.Regexp
	rewrite         func(m []string) (string, string)
}{
	{
		regexp.MustCompile(`^Attribute redefined$`),
		regexp.MustCompile(`^The argument "(.*)" was already set at (.*):(\d+),.*\. Each argument may be set only once\.$`),
		func(m []string) (string, string) {
			return "Duplicate argument", fmt.Sprintf("%s is already set in this block at %s:%s; keep one of the two.", m[1], m[2], m[3])
		},
	},
	{
		regexp.MustCompile(`^Invalid block definition$`),
		regexp.MustCompile(`^The equals sign "=" indicates an argument definition, and must not be used when defining a block\.$`),
		func([]string) (string, string) {
			return "Block written as an argument", "A block has no \"=\": write its type, its label in quotes, then the braces, as in " + blockExample["device"] + "."
		},
	},
	{
		regexp.MustCompile(`^Invalid block definition$`),
		regexp.MustCompile(`^A block definition must have block content delimited by "\{" and "\}", starting on the same line as the block header\.$`),
		func([]string) (string, string) {
			return "Block without braces on its line", "Put the opening \"{\" on the same line as the block's type and label: domain \"win11\" {, then the contents, then \"}\"."
		},
	},
	{
		regexp.MustCompile(`^Invalid block definition$`),
		regexp.MustCompile(`^Either a quoted string block label or an opening brace \("\{"\) is expected here\.$`),
		func([]string) (string, string) {
			return "Invalid block header", "A block header is its type, then its label in quotes, then \"{\": domain \"win11\" {. Only letters, digits, '-' and '_' may stand unquoted."
		},
	},
	{
		regexp.MustCompile(`^(Invalid single-argument block definition|Argument definition required)$`),
		regexp.MustCompile(`^(Single-line block syntax can include only one argument definition|An argument definition on the same line as its containing block|A single-line block definition must end with a closing brace|A single-line block definition can contain only a single argument)`),
		func([]string) (string, string) {
			return "More than one argument on a block's line", "A block written on one line, such as " + blockExample["device"] + ", holds one argument only. For more, put each argument on a line of its own after the \"{\", and the closing \"}\" on a line of its own."
		},
	},
	{
		regexp.MustCompile(`^Missing newline after block definition$`),
		regexp.MustCompile(`^A block definition must end with a newline\.$`),
		func([]string) (string, string) {
			return "Text after a block", "Nothing may follow a block's closing \"}\" on its line: start the next block or argument on a new line."
		},
	},
	{
		regexp.MustCompile(`^Unclosed configuration block$`),
		regexp.MustCompile(`^There is no closing brace for this block`),
		func([]string) (string, string) {
			return "Unclosed block", "This block has no closing \"}\" before the end of the file. Add it; if it is there, a \"{\" or \"}\" elsewhere in the file does not pair up."
		},
	},
	{
		regexp.MustCompile(`^Invalid argument name$`),
		regexp.MustCompile(`^Argument names must not be quoted\.$`),
		func([]string) (string, string) {
			return "Quoted argument name", "Write an argument's name without quotes: " + argExample["vendor"] + "."
		},
	},
	{
		regexp.MustCompile(`^Missing newline after argument$`),
		regexp.MustCompile(`^An argument definition must end with a newline\.$`),
		func([]string) (string, string) {
			return "Two arguments on one line", "Put each argument on a line of its own; nothing may follow an argument's value on its line."
		},
	},
	{
		regexp.MustCompile(`^Unexpected comma after argument$`),
		regexp.MustCompile(`^Argument definitions must be separated by newlines, not commas\.`),
		func([]string) (string, string) {
			return "Comma after an argument", "Arguments are separated by new lines, not commas: remove the comma and put the next argument on a line of its own."
		},
	},
	{
		regexp.MustCompile(`^Argument or block definition required$`),
		regexp.MustCompile(`^An argument or block definition is required here\.`),
		func([]string) (string, string) {
			return "Argument or block expected", "Each line holds an argument (" + argExample["mode"] + ") or starts a block (" + blockExample["domain"] + "); \"=\" sets an argument."
		},
	},
}

// rewriteSyntax applies syntaxMessages to the parser's diagnostics.
func rewriteSyntax(diags hcl.Diagnostics) hcl.Diagnostics {
	for _, d := range diags {
		for _, sm := range syntaxMessages {
			if !sm.summary.MatchString(d.Summary) {
				continue
			}
			m := sm.detail.FindStringSubmatch(d.Detail)
			if m == nil {
				continue
			}
			d.Summary, d.Detail = sm.rewrite(m)
			break
		}
	}
	return diags
}
