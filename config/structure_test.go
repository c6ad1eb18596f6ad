package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// rawHCL are phrases of HCL's own structural messages (hclsyntax's
// Body.Content and parser), worded in HCL's terms rather than the
// config's. None may reach a user.
var rawHCL = []string{
	"must have 1 labels", "labels (", "Extraneous label", "Missing name for", "Missing label for",
	"are not expected here", "is not expected here", "Did you mean to define", "Blocks are not allowed here",
	"was already set at", "Each argument may be set only once", "no definition was found",
	"Argument names must not be quoted", "single-line block definition", "Single-line block syntax",
	"block definition must", "quoted string block label", "There is no closing brace",
	"An argument or block definition is required here", "Unexpected \"", "Attribute redefined",
	"An argument definition must end with a newline", "must be separated by newlines",
	"Invalid block definition", "Missing required argument", "No labels are expected", "are expected for",
}

// checkWords fails the test for a diagnostic in HCL's words, or one that
// does not say what to do.
func checkWords(t *testing.T, src string, diags hcl.Diagnostics) {
	t.Helper()
	for _, d := range diags {
		for _, raw := range rawHCL {
			if strings.Contains(d.Summary, raw) || strings.Contains(d.Detail, raw) {
				t.Errorf("HCL's own words %q in %q: %q\nsource:\n%s", raw, d.Summary, d.Detail, src)
			}
		}
		if d.Detail == "" {
			t.Errorf("%q says nothing about what to do\nsource:\n%s", d.Summary, src)
		}
	}
}

// structural are the shapes a block can be wrong in, each tried in every
// block kind below: a label too few or too many, an argument or block that
// does not belong, a known name used as the wrong thing.
var structural = []string{
	"%s {\n%s}\n",
	"%s \"x\" {\n%s}\n",
	"%s \"x\" \"y\" {\n%s}\n",
	"%s \"x\" {\n%s  bogus = 1\n}\n",
	"%s \"x\" {\n%s  bogus \"y\" {\n  }\n}\n",
	"%s \"x\" {\n%s  mode {\n  }\n}\n",
	"%s \"x\" {\n%s  device = 1\n}\n",
	"%s \"x\" {\n%s  device \"y\" {\n    vendor = \"046d\"\n  }\n}\n",
	"%s \"x\" {\n%s  domain \"y\" {\n  }\n}\n",
	"%s \"x\" {\n%s  vendor = \"046d\"\n  vendor = \"046e\"\n}\n",
	"%s \"x\" {\n%s  \"vendor\" = \"046d\"\n}\n",
	"%s \"x\" { vendor = \"046d\"  product = \"c52b\" }\n%s",
	"%s \"x\" { vendor = \"046d\" } domain \"z\" {\n%s}\n",
	"%s \"x\" = {\n%s}\n",
	"%s \"x\"\n{\n%s}\n",
	"%s \"x\" {\n%s",
	"%s x.y {\n%s}\n",
}

// TestStructureMessages puts every structural mistake in every kind of
// block (top level, libvirt, domain, device, exclude) and checks that no
// message is HCL's own, and that each says what to do.
func TestStructureMessages(t *testing.T) {
	wrap := map[string]func(string) string{
		"top":     func(s string) string { return s },
		"libvirt": func(s string) string { return strings.Replace(s, "\"x\" ", "", 1) },
		"domain":  func(s string) string { return s },
		"device":  func(s string) string { return "domain \"d\" {\n" + s + "}\n" },
		"exclude": func(s string) string { return s },
	}
	first := map[string]string{"top": "", "libvirt": "  uri = \"qemu:///system\"\n", "domain": "  mode = \"all\"\n", "device": "  port = \"1-1\"\n", "exclude": "  port = \"1-1\"\n"}
	typ := map[string]string{"top": "bogus", "libvirt": "libvirt", "domain": "domain", "device": "device", "exclude": "exclude"}
	n := 0
	for k, w := range wrap {
		for _, shape := range structural {
			src := w(fmt.Sprintf(shape, typ[k], first[k]))
			_, diags := Parse(Source{Name: "s.hcl", Data: []byte(src)})
			checkWords(t, src, diags.Diagnostics)
			n += len(diags.Diagnostics)
		}
	}
	if n < 50 {
		t.Fatalf("only %d diagnostics from %d mistakes: the shapes no longer exercise the checks", n, len(wrap)*len(structural))
	}
}

// TestSyntaxMessages triggers every parser message the config rewrites,
// so that an HCL upgrade that rewords one (and so lets HCL's wording
// through) fails here.
func TestSyntaxMessages(t *testing.T) {
	cases := map[string]string{
		"Duplicate argument":                       "domain \"a\" {\n  mode = \"all\"\n  mode = \"deny\"\n}\n",
		"Block written as an argument":             "domain \"a\" = {\n}\n",
		"Block without braces on its line":         "domain \"a\"\n{\n}\n",
		"Invalid block header":                     "domain \"a\" [ {\n}\n",
		"More than one argument on a block's line": "domain \"a\" { mode = \"all\"  preempt = true }\n",
		"Text after a block":                       "domain \"a\" { mode = \"all\" } x\n",
		"Unclosed block":                           "domain \"a\" {\n  mode = \"all\"\n",
		"Quoted argument name":                     "domain \"a\" {\n  \"mode\" = \"all\"\n}\n",
		"Argument or block expected":               "domain \"a\" {\n  mode\n}\n",
		"Two arguments on one line":                "domain \"a\" {\n  mode = \"all\" preempt = true\n}\n",
		"Comma after an argument":                  "domain \"a\" {\n  mode = \"all\",\n}\n",
	}
	seen := map[int]bool{}
	for summary, src := range cases {
		_, diags := Parse(Source{Name: "s.hcl", Data: []byte(src)})
		found := false
		for _, d := range diags.Diagnostics {
			found = found || d.Summary == summary
		}
		if !found {
			t.Errorf("%q: no %q diagnostic, got %v", src, summary, diags.Strings())
		}
		checkWords(t, src, diags.Diagnostics)
		// The rewrites match the parser's own wording: parse again
		// without them to see which applied.
		_, raw := hclParse(src)
		for i, sm := range syntaxMessages {
			for _, d := range raw {
				if sm.summary.MatchString(d.Summary) && sm.detail.MatchString(d.Detail) {
					seen[i] = true
				}
			}
		}
	}
	for i, sm := range syntaxMessages {
		if !seen[i] {
			t.Errorf("rewrite %d (%s) never matched: HCL reworded its message, or no case triggers it", i, sm.summary)
		}
	}
}

// TestDataWords checks every testdata config and fuzz seed for HCL's
// words.
func TestDataWords(t *testing.T) {
	files, _ := filepath.Glob("testdata/*/*.hcl")
	fuzz, _ := filepath.Glob("testdata/fuzz/FuzzParse/*")
	for _, f := range append(files, fuzz...) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		_, diags := Parse(Source{Name: f, Data: b})
		checkWords(t, string(b), diags.Diagnostics)
	}
}

func TestUnlabeledExclude(t *testing.T) {
	cfg, diags := Parse(Source{Name: "u.hcl", Data: []byte("domain \"w\" {\n  mode = \"all\"\n}\n\nexclude {\n  ids = [\"04d9:0006\"]\n}\n\nexclude {\n  port = \"1-1\"\n}\n")})
	if diags.HasErrors() || len(diags.Diagnostics) != 0 {
		t.Fatalf("unlabeled excludes: %v", diags.Strings())
	}
	if len(cfg.Rules.Excludes) != 2 || cfg.Rules.Excludes[0].Label != "" || cfg.Rules.Excludes[0].Source != "u.hcl:5" || cfg.Rules.Excludes[1].Source != "u.hcl:9" {
		t.Fatalf("excludes: %+v", cfg.Rules.Excludes)
	}
}

// hclParse is the bare parser, before the config rewrites its messages.
func hclParse(src string) (*hcl.File, hcl.Diagnostics) {
	return hclsyntax.ParseConfig([]byte(src), "s.hcl", hcl.InitialPos)
}

// TestUnlabeledExcludeWarning: a warning that cites an unlabeled exclude
// names it by file and line.
func TestUnlabeledExcludeWarning(t *testing.T) {
	_, diags := Parse(Source{Name: "u.hcl", Data: []byte("domain \"w\" {\n  device \"kbd\" {\n    ids = [\"04d9:0006\"]\n  }\n}\n\nexclude {\n  ids = [\"04d9:0006\"]\n}\n")})
	if len(diags.Diagnostics) != 1 || !strings.Contains(diags.Diagnostics[0].Detail, "excluded by exclude (u.hcl:7)") {
		t.Fatalf("diagnostics: %v", diags.Strings())
	}
}
